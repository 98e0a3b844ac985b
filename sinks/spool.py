"""The spool on disk: batches a sink could not write, kept in order until its backend is back.

One spool is one append-only file, ``<name>.spool``, and a cursor file, ``<name>.done``.
A record is a 24-byte header, ``<4s I I d I>`` (little-endian): the magic ``b"SPL1"``, the
number of rows, the payload length, the time the batch was spooled (Unix seconds) and the
CRC-32 of the payload; then the payload, the batch (a list of row dicts) pickled with
protocol 5. :meth:`Spool.append` writes one record and fsyncs the file before it returns, so
a batch it took survives a crash or kill -9. The cursor file holds the offset of the first
record not yet forwarded (8 bytes, little-endian, written in place and fsynced after each
forwarded record); once every record is forwarded both files are removed.

A record cut short by a crash (its header or payload incomplete, or its CRC wrong) can only be
the last one, whose append never returned: :meth:`Spool.open` truncates it.
"""

from __future__ import annotations

import os
import pickle
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Record", "Spool", "SpoolCorruptError"]

_HEADER = struct.Struct("<4sIIdI")
_MAGIC = b"SPL1"
_CURSOR = struct.Struct("<Q")


class SpoolCorruptError(Exception):
    """A spool file that is not one: a record before the last one is damaged."""


@dataclass(frozen=True, slots=True)
class Record:
    """One spooled batch: where it starts and ends in the file, its rows and when it came."""

    start: int
    end: int
    rows: int
    spooled_at: float


class Spool:
    """One sink partition's spool: ``<path>.spool`` and its cursor ``<path>.done``.

    Not thread-safe: the caller holds a lock around every call.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(f"{path}.spool")
        self._cursor_path = Path(f"{path}.done")
        self._records: list[Record] = []  # waiting, in order
        self._file: Any = None
        self._cursor: Any = None

    @classmethod
    def open(cls, path: Path) -> Spool:
        """The spool at ``path`` (``.spool`` and ``.done`` are added), with what an earlier run
        left in it. Raises SpoolCorruptError for a damaged spool, OSError if it cannot be read."""
        spool = cls(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if spool.path.exists():
            spool._load()
        elif spool._cursor_path.exists():
            spool._cursor_path.unlink()  # the spool was drained; removing the cursor was not
        return spool

    @property
    def rows(self) -> int:
        """Rows waiting."""
        return sum(r.rows for r in self._records)

    @property
    def bytes(self) -> int:
        """Bytes waiting."""
        return self._records[-1].end - self._records[0].start if self._records else 0

    @property
    def oldest(self) -> float | None:
        """When the oldest waiting batch was spooled (Unix seconds); None when none waits."""
        return self._records[0].spooled_at if self._records else None

    def __bool__(self) -> bool:
        return bool(self._records)

    def append(self, rows: list[dict[str, Any]]) -> int:
        """Add one batch at the end and fsync; return the bytes it took."""
        payload = pickle.dumps(rows, protocol=5)
        now = time.time()
        header = _HEADER.pack(_MAGIC, len(rows), len(payload), now, zlib.crc32(payload))
        if self._file is None:
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
            _sync_dir(self.path.parent)
        start = self._file.seek(0, os.SEEK_END)
        data = header + payload
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]
        os.fsync(self._file.fileno())
        self._records.append(Record(start, start + len(data), len(rows), now))
        return len(data)

    def first(self) -> tuple[Record, list[dict[str, Any]]] | None:
        """The oldest waiting batch and its rows, or None when none waits."""
        if not self._records:
            return None
        record = self._records[0]
        with open(self.path, "rb") as file:
            file.seek(record.start + _HEADER.size)
            payload = file.read(record.end - record.start - _HEADER.size)
        return record, pickle.loads(payload)

    def forwarded(self, record: Record) -> None:
        """Mark the oldest batch forwarded; remove the files when none is left."""
        assert self._records and self._records[0] == record
        self._records.pop(0)
        if not self._records:
            self._remove()
            return
        if self._cursor is None:
            self._cursor = open(self._cursor_path, "r+b" if self._cursor_path.exists() else "w+b")  # noqa: SIM115
        self._cursor.seek(0)
        self._cursor.write(_CURSOR.pack(self._records[0].start))
        self._cursor.flush()
        os.fsync(self._cursor.fileno())

    def take_from(self, other: Spool) -> None:
        """Append every batch still waiting in ``other`` (another worker's left-over spool)
        to this one, then remove ``other``'s files."""
        while (first := other.first()) is not None:
            _, rows = first
            self.append(rows)
            other._records.pop(0)
        other._remove()

    def close(self) -> None:
        """Close the files; what waits stays on disk for the next run."""
        for file in (self._file, self._cursor):
            if file is not None:
                file.close()
        self._file = self._cursor = None

    def _remove(self) -> None:
        self.close()
        self._records.clear()
        # The spool first: a cursor without its spool is ignored by open().
        self.path.unlink(missing_ok=True)
        self._cursor_path.unlink(missing_ok=True)
        _sync_dir(self.path.parent)

    def _load(self) -> None:
        start = 0
        if self._cursor_path.exists():
            raw = self._cursor_path.read_bytes()
            if len(raw) == _CURSOR.size:
                (start,) = _CURSOR.unpack(raw)
        for record in self._scan(start):
            self._records.append(record)
        if not self._records:
            self._remove()

    def _scan(self, start: int) -> Iterator[Record]:
        size = self.path.stat().st_size
        with open(self.path, "r+b") as file:
            offset = start
            while offset < size:
                file.seek(offset)
                header = file.read(_HEADER.size)
                record = None
                if len(header) == _HEADER.size:
                    magic, rows, length, spooled_at, crc = _HEADER.unpack(header)
                    end = offset + _HEADER.size + length
                    if magic == _MAGIC and end <= size and zlib.crc32(file.read(length)) == crc:
                        record = Record(offset, end, rows, spooled_at)
                if record is None:
                    if not self._is_tail(file, offset, size):
                        raise SpoolCorruptError(
                            f"spool {str(self.path)!r} is damaged at byte {offset} of {size}"
                        )
                    file.truncate(offset)  # the append a crash cut short
                    os.fsync(file.fileno())
                    return
                yield record
                offset = record.end

    @staticmethod
    def _is_tail(file: Any, offset: int, size: int) -> bool:
        """Whether no whole record follows ``offset``: a cut append, not damage."""
        file.seek(offset)
        rest = file.read(size - offset)
        at = rest.find(_MAGIC, 1)
        while at != -1:
            header = rest[at : at + _HEADER.size]
            if len(header) == _HEADER.size:
                _, _, length, _, crc = _HEADER.unpack(header)
                payload = rest[at + _HEADER.size : at + _HEADER.size + length]
                if len(payload) == length and zlib.crc32(payload) == crc:
                    return False
            at = rest.find(_MAGIC, at + 1)
        return True


def _sync_dir(directory: Path) -> None:
    """Make a file's creation or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
