"""Paths of the file sinks (CSV, JSONL, Parquet): checked, one per worker."""

from __future__ import annotations

import io
from pathlib import Path

__all__ = ["check_path", "ends_with_newline", "worker_file"]


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


def check_path(path: object, what: str) -> Path:
    """``path`` as a Path; ValueError naming ``what`` unless it is a non-empty str or Path."""
    if not isinstance(path, (str, Path)) or str(path) in ("", "."):
        raise ValueError(f"{what}: {path!r} is not a file path")
    return Path(path)
