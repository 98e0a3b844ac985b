"""JSON Lines sink: one JSON object per row and line, appended, flushed after every batch.

With one worker the file is ``path`` itself; with several, worker ``i`` writes
``<stem>-w<i><suffix>`` beside it. Keys come in the schema's column order; None is ``null``,
timestamps are ISO 8601 UTC strings with microseconds, and non-finite floats (NaN, inf),
which JSON cannot hold, are written as ``null``. Text is UTF-8 as is (``ensure_ascii=False``),
so text UTF-8 cannot encode (lone surrogates) rejects the batch with SinkValueError naming the
column: ``\\uXXXX`` escapes would not do, as a reader joins a high and a low surrogate into
one other character. A directory that cannot be made or a file that cannot be opened or
written (a full disk) raises SinkUnavailableError.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from sinks.base import (
    ColumnType,
    IntoSink,
    Schema,
    SinkConfigError,
    SinkError,
    SinkTarget,
    SinkUnavailableError,
    SinkValueError,
)
from sinks.columns import timestamp_column
from sinks.files import append_whole, check_path, ends_with_newline, file_target, worker_file
from sinks.partition import LockedPartition
from sinks.values import misfit

__all__ = ["IntoJsonl"]


_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_STRING = encode_basestring  # a JSON string literal (C), UTF-8 kept as is


def _float(v: Any) -> str:
    if type(v) is float:
        return repr(v) if math.isfinite(v) else "null"
    return _ENCODE(v)


def _json_column(kind: ColumnType, values: Sequence[Any]) -> list[str]:
    """One column as JSON literals. Column-wise with the common case inline: a Python call
    per cell (json.dumps per row) costs several times more."""
    if kind == "text":
        return [
            "null" if v is None else _STRING(v) if type(v) is str else _ENCODE(v) for v in values
        ]
    if kind == "int":
        return ["null" if v is None else str(v) if type(v) is int else _ENCODE(v) for v in values]
    if kind == "float":
        return ["null" if v is None else _float(v) for v in values]
    if kind == "bool":
        return ["null" if v is None else "true" if v else "false" for v in values]
    return ["null" if v is None else f'"{v}"' for v in timestamp_column(values)]


@dataclass(frozen=True)
class IntoJsonl(IntoSink):
    """Append rows to JSON Lines files, one per worker.

    ``path``: the file (one worker) or the pattern of the per-worker files.
    ``schema``: the columns to write; None locks them from the first non-empty batch.
    """

    path: str | Path
    schema: Schema | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", check_path(self.path, "IntoJsonl"))
        if self.schema is not None and not isinstance(self.schema, Schema):
            raise SinkConfigError("IntoJsonl", "schema", f"{self.schema!r} is not a Schema or None")

    @property
    def target(self) -> SinkTarget:
        """The file at ``path`` (the per-worker files beside it are part of it)."""
        return file_target(Path(self.path))

    def build_partition(self, worker_index: int, worker_count: int) -> _JsonlPartition:
        """Open this worker's file for appending (creating its directory)."""
        return _JsonlPartition(
            worker_file(Path(self.path), worker_index, worker_count), self.schema
        )


class _JsonlPartition(LockedPartition):
    """One worker's JSON Lines file."""

    def __init__(self, path: Path, schema: Schema | None) -> None:
        super().__init__(schema, f"JSONL file {str(path)!r}")
        self._path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: io.FileIO = open(path, "ab", buffering=0)  # noqa: SIM115
            if self._file.seek(0, io.SEEK_END) > 0 and not ends_with_newline(self._path):
                append_whole(self._file, b"\n")  # a crash mid-line left a partial row; start afresh
        except OSError as exc:
            raise SinkUnavailableError(f"cannot open {self._where}: {exc}") from exc

    @staticmethod
    def _render(schema: Schema, values: list[tuple[Any, ...]]) -> bytes:
        # Column names are checked identifiers, so they need no JSON escaping.
        line = "{" + ", ".join(f'"{name}": %s' for name in schema.names) + "}\n"
        columns = []
        for c, col in zip(schema.columns, zip(*values, strict=True), strict=True):
            try:
                columns.append(_json_column(c.type, col))
            except SinkError as exc:  # a timestamp the format refused
                raise type(exc)(f"column {c.name!r} ({c.type}): {exc}") from exc
        return "".join([line % row for row in zip(*columns, strict=True)]).encode()

    def _write(self, schema: Schema, values: list[tuple[Any, ...]]) -> None:
        """Append the batch whole (or nothing, see append_whole); it is rendered first so a bad
        value writes nothing."""
        try:
            data = self._render(schema, values)
        except SinkValueError as exc:
            raise SinkValueError(f"{self._where}: {exc}") from exc
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            problem = misfit(schema, values) or f"a value cannot be JSON: {exc}"
            message = f"{self._where}: {problem}; none of the batch was written"
            raise SinkValueError(message) from exc
        try:
            append_whole(self._file, data)
        except OSError as exc:
            raise SinkUnavailableError(f"cannot write {self._where}: {exc}") from exc

    def _close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            raise SinkUnavailableError(f"cannot close {self._where}: {exc}") from exc
