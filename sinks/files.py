"""Paths of the file sinks (CSV, JSONL, Parquet): checked, one per worker."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from sinks.base import SinkConfigError, SinkTarget

__all__ = ["append_whole", "check_path", "ends_with_newline", "file_target", "worker_file"]


def worker_file(path: Path, worker_index: int, worker_count: int) -> Path:
    """The file a worker of a file sink writes: ``path`` itself with one worker, else
    ``<stem>-w<index><suffix>`` beside it, so workers never clobber each other."""
    if worker_count == 1:
        return path
    return path.with_name(f"{path.stem}-w{worker_index}{path.suffix}")


def append_whole(file: io.FileIO, data: bytes) -> None:
    """Append all of ``data`` to the unbuffered ``file``, or nothing: when a write fails (a
    full disk) the file is cut back to its size before, so a batch retried later is written
    whole and once. Raises the OSError."""
    start = file.seek(0, io.SEEK_END)
    view = memoryview(data)
    try:
        while view:
            view = view[file.write(view) or 0 :]
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(file.fileno(), start)
        raise


def ends_with_newline(path: Path) -> bool:
    """Whether the non-empty file at ``path`` ends with a line break (a crash mid-line
    leaves it without one)."""
    with open(path, "rb") as raw:
        raw.seek(-1, io.SEEK_END)
        return raw.read(1) == b"\n"


def check_path(path: object, sink: str) -> Path:
    """``path`` as a Path; SinkConfigError for field ``path`` of ``sink`` (e.g. ``IntoCsv``)
    unless it is a non-empty str or Path."""
    if not isinstance(path, (str, Path)) or str(path) in ("", "."):
        raise SinkConfigError(sink, "path", f"{path!r} is not a file path")
    return Path(path)


def file_target(path: Path, table: str | None = None) -> SinkTarget:
    """The target of a sink writing the file ``path`` (``table`` in it), blamed on its
    ``table`` setting when it has one, else on ``path``."""
    where = os.path.abspath(path)
    return SinkTarget("file", where, "path" if table is None else "table", table)
