"""Parquet sink (pyarrow, optional): a dataset directory of typed part files per worker.

``path`` is a directory, read whole with ``pyarrow.dataset.dataset(path, format="parquet")``.
Worker ``i`` writes ``part-w<i>-<sequence>.parquet`` (``part-w0-000000.parquet``, ...); the
sequence continues after the highest part of that worker already there, so a restart never
overwrites a part. A part is written under a hidden name (``.part-w0-000000.parquet.tmp``,
which dataset discovery skips) and renamed into place once its footer is written and synced:
every visible part is complete, and a crash loses at most the open part of each worker.

A part is closed when it holds ``rows_per_part`` rows (a batch is split across parts so that
no part holds more) or, checked at each write, when it has been open ``part_age_s`` seconds.
Each write appends one row group per part it touches, so rows are not held in memory.

The types, and which values a column takes, are those of :mod:`sinks.arrow`: a misfit, e.g.
a float in an int column, rejects the whole batch with SinkValueError naming the column,
before anything is written. A directory that cannot be made or written raises
SinkUnavailableError.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sinks.arrow import arrow_schema, arrow_table
from sinks.base import (
    IntoSink,
    Schema,
    SinkConfigError,
    SinkDependencyError,
    SinkTarget,
    SinkUnavailableError,
    SinkWriteError,
)
from sinks.partition import LockedPartition

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

__all__ = ["IntoParquet"]

_CODECS = ("none", "snappy", "gzip", "brotli", "lz4", "zstd")
_INSTALL_HINT = 'pip install ".[parquet]"'


def _import_pyarrow() -> tuple[ModuleType, ModuleType]:
    try:
        import pyarrow
        import pyarrow.fs
        import pyarrow.parquet
    except ImportError as exc:
        raise SinkDependencyError(
            f"the Parquet sink needs pyarrow, which is not installed: {_INSTALL_HINT}"
        ) from exc
    return pyarrow, pyarrow.parquet


def _sync(path: Path) -> None:
    if os.name != "posix":  # Windows can neither fsync a read-only handle nor open a directory
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class IntoParquet(IntoSink):
    """Write rows to the Parquet dataset directory ``path``, part files per worker.

    ``schema``: the columns to write; None locks them from the first non-empty batch.
    ``rows_per_part``: the most rows in one part file (an int >= 1).
    ``part_age_s``: seconds after which the open part is closed at the next write (> 0;
    ``math.inf`` closes parts by row count only).
    ``compression``: one of none, snappy, gzip, brotli, lz4, zstd; ``compression_level`` an int
    for the codecs that take one (checked when a partition is built), or None for the default.
    ``use_dictionary``: dictionary-encode columns (Parquet falls back to plain per column
    when the dictionary grows too large).
    """

    path: str | Path
    schema: Schema | None = None
    rows_per_part: int = 1_000_000
    part_age_s: float = 300.0
    compression: str = "zstd"
    compression_level: int | None = None
    use_dictionary: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, Path)) or str(self.path) == "":
            raise SinkConfigError("IntoParquet", "path", f"{self.path!r} is not a directory path")
        object.__setattr__(self, "path", Path(self.path))
        if self.schema is not None and not isinstance(self.schema, Schema):
            raise SinkConfigError(
                "IntoParquet", "schema", f"{self.schema!r} is not a Schema or None"
            )
        rows = self.rows_per_part
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise SinkConfigError("IntoParquet", "rows_per_part", f"{rows!r} is not an int >= 1")
        age = self.part_age_s
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not age > 0:
            raise SinkConfigError(
                "IntoParquet", "part_age_s", f"{age!r} is not a number of seconds > 0"
            )
        codec = self.compression.lower() if isinstance(self.compression, str) else None
        if codec not in _CODECS:
            raise SinkConfigError(
                "IntoParquet",
                "compression",
                f"{self.compression!r} is not one of {', '.join(_CODECS)}",
            )
        object.__setattr__(self, "compression", codec)
        level = self.compression_level
        if level is not None and (
            isinstance(level, bool) or not isinstance(level, int) or codec == "none"
        ):
            raise SinkConfigError(
                "IntoParquet", "compression_level", f"{level!r} is not None or an int for a codec"
            )
        if not isinstance(self.use_dictionary, bool):
            raise SinkConfigError(
                "IntoParquet", "use_dictionary", f"{self.use_dictionary!r} is not a bool"
            )

    @property
    def target(self) -> SinkTarget:
        """The dataset directory ``path``."""
        return SinkTarget("directory", os.path.abspath(self.path), "path")

    def build_partition(self, worker_index: int, worker_count: int) -> _ParquetPartition:
        """Import pyarrow (SinkDependencyError with the install hint if it is missing), check
        the codec, create the directory and find this worker's next part number. A part file
        is only created by the first write into it."""
        lib, parquet = _import_pyarrow()
        if self.compression != "none":
            if not lib.Codec.is_available(self.compression):
                raise SinkDependencyError(
                    f"IntoParquet.compression: this pyarrow has no {self.compression} codec"
                )
            try:
                lib.Codec(self.compression, compression_level=self.compression_level)
            except lib.ArrowException as exc:
                raise SinkConfigError("IntoParquet", "compression_level", str(exc)) from exc
        return _ParquetPartition(self, worker_index, lib, parquet)


class _ParquetPartition(LockedPartition):
    """One worker's part files; see the module docstring for the layout and the types."""

    layout = "columns"  # pa.array takes columns

    def __init__(
        self, sink: IntoParquet, worker_index: int, lib: ModuleType, parquet: ModuleType
    ) -> None:
        super().__init__(sink.schema, f"Parquet dataset {str(sink.path)!r} (worker {worker_index})")
        self._sink = sink
        self._dir = Path(sink.path)
        self._worker = worker_index
        self._pa = lib
        self._pq = parquet
        self._arrow: pa.Schema | None = None
        self._writer: pq.ParquetWriter | None = None
        self._part_rows = 0
        self._opened_at = 0.0
        mine = re.compile(rf"part-w{worker_index}-(\d+)\.parquet")
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            found = [mine.fullmatch(p.name) for p in self._dir.iterdir()]
        except OSError as exc:
            raise SinkUnavailableError(f"cannot open {self._where}: {exc}") from exc
        self._seq = max((int(m.group(1)) + 1 for m in found if m), default=0)

    def _part(self, hidden: bool = False) -> Path:
        name = f"part-w{self._worker}-{self._seq:06d}.parquet"
        return self._dir / (f".{name}.tmp" if hidden else name)

    def _open_part(self) -> None:
        while self._part().exists():  # written by another process since we looked
            self._seq += 1
        self._writer = self._pq.ParquetWriter(
            str(self._part(hidden=True)),
            self._arrow,
            filesystem=self._pa.fs.LocalFileSystem(),
            compression=self._sink.compression,
            compression_level=self._sink.compression_level,
            use_dictionary=self._sink.use_dictionary,
        )
        self._part_rows = 0
        self._opened_at = time.monotonic()

    def _close_part(self) -> None:
        """Write the footer, sync, and rename the open part into place."""
        writer, self._writer = self._writer, None
        hidden, visible = self._part(hidden=True), self._part()
        self._seq += 1
        assert writer is not None
        writer.close()
        _sync(hidden)  # data before name: a power cut must not leave a visible empty part
        os.replace(hidden, visible)
        _sync(self._dir)

    def _drop_part(self) -> None:
        """After a failed write: give up the open part, whose state is unknown. It stays
        under its hidden name and the next write starts a new part."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._seq += 1
            with contextlib.suppress(Exception):
                writer.close()

    def _write(self, schema: Schema, values: list[list[Any]]) -> None:
        """Append the batch as one row group (per part touched), rolling parts by age and by
        row count; a bad value rejects the whole batch before anything is written."""
        if self._arrow is None:
            self._arrow = arrow_schema(self._pa, schema)
        table = arrow_table(self._pa, self._arrow, schema, values, self._where)
        limit, age = self._sink.rows_per_part, self._sink.part_age_s
        try:
            if self._writer is not None and time.monotonic() - self._opened_at >= age:
                self._close_part()
            start = 0
            while start < table.num_rows:
                if self._writer is None:
                    self._open_part()
                assert self._writer is not None
                take = min(limit - self._part_rows, table.num_rows - start)
                self._writer.write_table(table.slice(start, take), row_group_size=take)
                self._part_rows += take
                start += take
                if self._part_rows >= limit:
                    self._close_part()
        except (OSError, self._pa.ArrowException) as exc:
            self._drop_part()
            error = SinkUnavailableError if isinstance(exc, OSError) else SinkWriteError
            raise error(f"{self._where}: writing {table.num_rows} rows failed: {exc}") from exc

    def _close(self) -> None:
        """Close the open part, if any, making it visible."""
        if self._writer is not None:
            try:
                self._close_part()
            except (OSError, self._pa.ArrowException) as exc:
                error = SinkUnavailableError if isinstance(exc, OSError) else SinkWriteError
                raise error(f"{self._where}: closing the open part failed: {exc}") from exc
