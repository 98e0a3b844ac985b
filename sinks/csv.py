"""CSV sink: one UTF-8 CSV file per worker, header once, flushed after every batch.

With one worker the file is ``path`` itself; with several, worker ``i`` writes
``<stem>-w<i><suffix>`` next to it (``samples-w0.csv``, ``samples-w1.csv``) so workers never
clobber each other. An existing non-empty file is appended to, and its header must equal the
schema's column names. Cells: None is an empty field, bools are ``true``/``false``, floats use
``repr()`` so they round-trip, timestamps are ISO 8601 UTC with microseconds
(``2026-11-22T05:01:54.123456+00:00``). CSV cannot tell None from an empty string.

Any text is written as is (quotes, delimiters, line breaks and NUL characters are quoted or
kept) except what UTF-8 cannot encode: a lone surrogate rejects the batch with
SinkValueError naming the column, and nothing of it is written. So does a NUL character on
Python 3.10, whose csv module can neither write nor read one. A directory that cannot be
made or a file that cannot be opened or written (a full disk) raises SinkUnavailableError.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

from sinks.base import (
    ColumnType,
    IntoSink,
    Schema,
    SinkConfigError,
    SinkSchemaError,
    SinkTarget,
    SinkUnavailableError,
    SinkValueError,
)
from sinks.columns import ColumnFormatter, format_columns, timestamp_column
from sinks.files import append_whole, check_path, ends_with_newline, file_target, worker_file
from sinks.partition import LockedPartition
from sinks.values import misfit

# Python 3.10's csv module raises on a NUL character, writing or reading; 3.11 quotes it.
_NUL = "CSV on Python 3.10" if sys.version_info < (3, 11) else None

__all__ = ["IntoCsv"]

_FORBIDDEN_DELIMITERS = frozenset('"\r\n')


def _bool_column(values: Sequence[Any]) -> list[str | None]:
    return [None if v is None else "true" if v else "false" for v in values]


# The csv module already writes None as an empty field and floats with repr().
_FORMATTERS: dict[ColumnType, ColumnFormatter] = {
    "timestamp": timestamp_column,
    "bool": _bool_column,
}


@dataclass(frozen=True)
class IntoCsv(IntoSink):
    """Write rows to CSV files, one per worker.

    ``path``: the file (one worker) or the pattern of the per-worker files.
    ``schema``: the columns to write; None locks them from the first non-empty batch.
    ``delimiter``: one character, not a quote or a line break.
    """

    path: str | Path
    schema: Schema | None = None
    delimiter: str = ","

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", check_path(self.path, "IntoCsv"))
        if self.schema is not None and not isinstance(self.schema, Schema):
            raise SinkConfigError("IntoCsv", "schema", f"{self.schema!r} is not a Schema or None")
        if (
            not isinstance(self.delimiter, str)
            or len(self.delimiter) != 1
            or self.delimiter in _FORBIDDEN_DELIMITERS
        ):
            raise SinkConfigError(
                "IntoCsv",
                "delimiter",
                f"{self.delimiter!r} is not one character other than a double quote or a line "
                "break",
            )

    @property
    def target(self) -> SinkTarget:
        """The file at ``path`` (the per-worker files beside it are part of it)."""
        return file_target(Path(self.path))

    def file_for(self, worker_index: int, worker_count: int) -> Path:
        """The file worker ``worker_index`` of ``worker_count`` writes."""
        return worker_file(Path(self.path), worker_index, worker_count)

    def build_partition(self, worker_index: int, worker_count: int) -> _CsvPartition:
        """Open this worker's file (creating its directory); check or write the header if the
        schema is given, else on the first batch."""
        return _CsvPartition(self.file_for(worker_index, worker_count), self.schema, self.delimiter)


class _CsvPartition(LockedPartition):
    """One worker's CSV file; see the module docstring for the format."""

    def __init__(self, path: Path, schema: Schema | None, delimiter: str) -> None:
        super().__init__(schema, f"CSV file {str(path)!r}")
        self._path = path
        self._delimiter = delimiter
        self._file: io.FileIO | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkUnavailableError(
                f"cannot create the directory of {str(path)!r}: {exc}"
            ) from exc
        if schema is not None:
            self._open(schema)

    def _open(self, schema: Schema) -> None:
        expected = list(schema.names)
        try:
            if self._path.exists() and self._path.stat().st_size > 0:
                self._check_header(expected)
                self._file = open(self._path, "ab", buffering=0)  # noqa: SIM115
                if not ends_with_newline(self._path):
                    # A crash mid-line left a partial row; keep ours off that line.
                    append_whole(self._file, b"\r\n")
            else:
                self._file = open(self._path, "ab", buffering=0)  # noqa: SIM115
                append_whole(self._file, self._render([expected]).encode())
        except OSError as exc:
            raise SinkUnavailableError(f"cannot open CSV file {str(self._path)!r}: {exc}") from exc

    def _check_header(self, expected: list[str]) -> None:
        with open(self._path, encoding="utf-8", newline="") as existing:
            found = next(csv.reader(existing, delimiter=self._delimiter), [])
        if found != expected:
            column = next(i for i, (e, f) in enumerate(zip_longest(expected, found)) if e != f)
            raise SinkSchemaError(
                f"CSV file {str(self._path)!r} has an incompatible header: column {column + 1} "
                f"differs (expected header {expected!r}, found {found!r})"
            )

    def _render(self, lines: Sequence[Sequence[Any]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self._delimiter).writerows(lines)
        return buffer.getvalue()

    def _write(self, schema: Schema, values: list[tuple[Any, ...]]) -> None:
        """Append the batch whole (or nothing, see append_whole); it is rendered first so a bad
        value writes nothing."""
        try:
            # Encoded here, not by a text file, so that a value UTF-8 cannot hold fails the
            # batch before any of it reaches the file.
            data = self._render(format_columns(schema, values, _FORMATTERS, self._where)).encode()
        except (UnicodeEncodeError, ValueError, csv.Error) as exc:
            problem = misfit(schema, values, nul=_NUL) or f"a value cannot be written: {exc}"
            raise SinkValueError(
                f"{self._where}: {problem}; none of the batch was written"
            ) from exc
        if self._file is None:
            self._open(schema)
        assert self._file is not None
        try:
            append_whole(self._file, data)
        except OSError as exc:
            raise SinkUnavailableError(f"cannot write CSV file {str(self._path)!r}: {exc}") from exc

    def _close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                raise SinkUnavailableError(
                    f"cannot close CSV file {str(self._path)!r}: {exc}"
                ) from exc
