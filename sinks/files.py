"""Paths of the file sinks (CSV, JSONL, Parquet): checked, one per worker."""

from __future__ import annotations

import io
import os
from pathlib import Path

from sinks.base import SinkConfigError, SinkTarget

__all__ = ["check_path", "ends_with_newline", "file_target", "worker_file"]


def worker_file(path: Path, worker_index: int, worker_count: int) -> Path:
    """The file a worker of a file sink writes: ``path`` itself with one worker, else
    ``<stem>-w<index><suffix>`` beside it, so workers never clobber each other."""
    if worker_count == 1:
        return path
    return path.with_name(f"{path.stem}-w{worker_index}{path.suffix}")


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
