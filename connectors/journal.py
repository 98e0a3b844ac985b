"""A durable journal of what one bus partition polled, for replay after a crash.

A live controller cannot be asked for the past, so Bytewax's replay of an unfinished epoch
needs the samples themselves. Each bus partition keeps one SQLite file, ``<directory>/
<bus>.sqlite3`` (the bus name percent-quoted, or hashed when long), in WAL mode. Every tick
is one transaction: its :class:`TickStats` row and its Samples, written before the tick is
handed to the dataflow, so anything the flow may have emitted is in the journal.

Contract:

- :meth:`Journal.append` commits one tick; it returns once the tick survives a crash of the
  process (``kill -9``). A power cut may lose the last ticks (``synchronous=NORMAL``).
- :meth:`Journal.replay` gives back the ticks at or after a tick, in tick order, with Samples
  equal to those appended: same values of the same types (bool, int of any size, float
  including NaN, inf and -0.0, str, None), same UTC timestamps to the microsecond, same
  error kinds and exception codes. A journal written before Samples had error kinds is
  given the columns when opened; its Samples come back with ``error_kind`` None.
- :meth:`Journal.trim` forgets the ticks before a tick; :meth:`Journal.next_tick` is the tick
  the poller continues with after the last one journaled (skipping its late slots).
- With recovery, a partition calls :meth:`Journal.resume` once (what to emit again) and
  :meth:`Journal.snapshot_taken` at each snapshot, which trims what no resume can need.
- One journal belongs to one bus and one recovery store. Methods are thread-safe (the loop
  thread appends, the worker thread replays and trims).
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

from connectors.codec import Value
from connectors.sample import ErrorKind, Sample, TickStats

__all__ = ["Journal", "JournalEntry", "journal_path"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_INT64 = range(-(2**63), 2**63)
_LONGEST_NAME = 120  # quoted bus names longer than this are hashed (file names stop at 255)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ticks (
    tick INTEGER PRIMARY KEY, started_at INTEGER NOT NULL, duration_s REAL NOT NULL,
    drift_s REAL NOT NULL, devices INTEGER NOT NULL, reads INTEGER NOT NULL,
    errors INTEGER NOT NULL, late INTEGER NOT NULL
);
-- value has no declared type, so SQLite keeps each value's own type (no affinity)
CREATE TABLE IF NOT EXISTS samples (
    tick INTEGER NOT NULL, seq INTEGER NOT NULL, device TEXT NOT NULL, address INTEGER NOT NULL,
    protocol TEXT NOT NULL, parameter TEXT NOT NULL, parameter_id INTEGER,
    instance INTEGER NOT NULL, kind TEXT, value, unit TEXT, requested_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL, error TEXT, text TEXT, error_kind TEXT, exception_code INTEGER,
    PRIMARY KEY (tick, seq)
) WITHOUT ROWID;
"""
# Columns added since the first journals: added to an older file when it is opened.
_ADDED = (("error_kind", "TEXT"), ("exception_code", "INTEGER"))
_TICK_COLUMNS = "tick, started_at, duration_s, drift_s, devices, reads, errors, late"
_INSERT_TICK = f"INSERT INTO ticks ({_TICK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_SAMPLE_COLUMNS = (
    "tick, device, address, protocol, parameter, parameter_id, instance, kind, value, unit, "
    "requested_at, received_at, error, text, error_kind, exception_code"
)
_INSERT_SAMPLE = f"INSERT INTO samples (seq, {_SAMPLE_COLUMNS}) VALUES ({', '.join('?' * 17)})"


def journal_path(directory: str | os.PathLike[str], bus: str) -> Path:
    """The journal file of ``bus`` in ``directory``: the name percent-quoted (so any bus name
    is one safe file name), or its SHA-256 when the quoted name is too long."""
    name = quote(bus, safe="-_.")
    if len(name) > _LONGEST_NAME or name.startswith("."):
        name = "sha256-" + hashlib.sha256(bus.encode("utf-8", "surrogatepass")).hexdigest()
    return Path(directory) / f"{name}.sqlite3"


def _us(at: datetime) -> int:
    return (at - _EPOCH) // _US


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _encode(value: Value | None) -> tuple[str | None, object]:
    """(kind, stored value): SQLite keeps neither bools, NaN, -0.0 nor ints beyond 64 bits."""
    kind = type(value)
    if value is None:
        return None, None
    if kind is bool:
        return "b", int(value)  # type: ignore[arg-type]
    if kind is float:
        if math.isfinite(value) and (value or math.copysign(1.0, value) > 0):  # type: ignore[arg-type]
            return "f", value
        return "x", value.hex()  # type: ignore[union-attr]
    if kind is int:
        return ("i", value) if value in _INT64 else ("I", str(value))
    if kind is str:
        return "s", value
    raise TypeError(f"a Sample value of type {kind.__name__} cannot be journaled: {value!r}")


def _decode(kind: str | None, stored: object) -> Value | None:
    if kind is None:
        return None
    if kind == "b":
        return bool(stored)
    if kind == "x":
        return float.fromhex(stored)  # type: ignore[arg-type]
    if kind == "I":
        return int(stored)  # type: ignore[call-overload]
    if kind == "f":
        return float(stored)  # type: ignore[arg-type]
    return stored  # type: ignore[return-value]  # "i" and "s" come back as they went


def _sample_row(tick: int, seq: int, s: Sample) -> tuple[object, ...]:
    error_kind = None if s.error_kind is None else s.error_kind.value
    return (
        seq, tick, s.device, s.address, s.protocol, s.parameter, s.parameter_id, s.instance,
        *_encode(s.value), s.unit, _us(s.requested_at), _us(s.received_at), s.error, s.text,
        error_kind, s.exception_code,
    )  # fmt: skip


def _sample_from(bus: str, row: tuple[object, ...]) -> Sample:
    tick, dev, addr, proto, par, pid, inst, kind, val, unit, req, rec, err, text, ek, code = row
    return Sample(
        bus=bus, device=dev, address=addr, protocol=proto, parameter=par, parameter_id=pid,
        instance=inst, value=_decode(kind, val), unit=unit, requested_at=_at(req),
        received_at=_at(rec), tick=tick, error=err, text=text,
        error_kind=None if ek is None else ErrorKind(ek), exception_code=code,
    )  # type: ignore[arg-type]  # fmt: skip


def _stats_from(bus: str, head: tuple[object, ...]) -> TickStats:
    tick, started, duration, drift, devices, reads, errors, late = head
    return TickStats(
        bus=bus, tick=tick, started_at=_at(started), duration_s=duration, drift_s=drift,
        devices=devices, reads=reads, errors=errors, late=late,
    )  # type: ignore[arg-type]  # fmt: skip


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journaled tick: its number, its Samples in polled order, its statistics."""

    tick: int
    samples: list[Sample]
    stats: TickStats


class Journal:
    """The journal of one bus in ``directory`` (created if missing, with the file).

    Raises ValueError if the file there is the journal of another bus (hashed names).
    """

    def __init__(self, directory: str | os.PathLike[str], bus: str) -> None:
        self.bus = bus
        self.path = journal_path(directory, bus)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._keep_from: int | None = None  # next_tick of the snapshot before the latest
        # Autocommit mode: the transactions below are explicit.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(samples)")}
            for column, kind in _ADDED:
                if column not in have:
                    self._db.execute(f"ALTER TABLE samples ADD COLUMN {column} {kind}")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('bus', ?)", (bus,))
            (owner,) = self._db.execute("SELECT value FROM meta WHERE key = 'bus'").fetchone()
            if owner != bus:
                raise ValueError(f"{self.path} is the journal of bus {owner!r}, not {bus!r}")
        except BaseException:
            self._db.close()
            raise

    def append(self, tick: int, samples: Sequence[Sample], stats: TickStats) -> None:
        """Journal one tick's samples and statistics in one transaction (``tick`` must be new)."""
        rows = [_sample_row(tick, seq, s) for seq, s in enumerate(samples)]
        head = (
            tick, _us(stats.started_at), stats.duration_s, stats.drift_s, stats.devices,
            stats.reads, stats.errors, stats.late,
        )  # fmt: skip
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(_INSERT_TICK, head)
                self._db.executemany(_INSERT_SAMPLE, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def replay(self, from_tick: int | None = None) -> list[JournalEntry]:
        """The journaled ticks at or after ``from_tick`` (all of them for None), in order."""
        low = -(2**63) if from_tick is None else from_tick
        with self._lock:
            heads = self._db.execute(
                f"SELECT {_TICK_COLUMNS} FROM ticks WHERE tick >= ? ORDER BY tick", (low,)
            ).fetchall()
            rows = self._db.execute(
                f"SELECT {_SAMPLE_COLUMNS} FROM samples WHERE tick >= ? ORDER BY tick, seq",
                (low,),
            ).fetchall()
        polled: dict[int, list[Sample]] = {head[0]: [] for head in heads}
        for row in rows:
            polled[row[0]].append(_sample_from(self.bus, row))
        return [
            JournalEntry(head[0], polled[head[0]], _stats_from(self.bus, head)) for head in heads
        ]

    def resume(self, next_tick: int | None) -> list[JournalEntry]:
        """The ticks a partition resumed from a snapshot at ``next_tick`` emits again: those
        from ``next_tick`` on, or all of them for a partition that has no snapshot."""
        self._keep_from = next_tick
        return self.replay(next_tick)

    def snapshot_taken(self, next_tick: int) -> None:
        """Note a snapshot resuming at ``next_tick``; trims the ticks before the previous
        snapshot's ``next_tick``."""
        # Bytewax lets an input emit into an epoch only once the previous epoch is complete,
        # its snapshots written: when a snapshot is taken the one before it is durable, but
        # this one may not be yet. A crash now resumes from the one before, which needs the
        # ticks from its next_tick on; older ticks no resume can ask for.
        if self._keep_from is not None and self._keep_from != next_tick:
            self.trim(self._keep_from)
        self._keep_from = next_tick

    def next_tick(self) -> int | None:
        """The tick after the last one journaled and its late slots; None when empty."""
        with self._lock:
            last = self._db.execute(
                "SELECT tick, late FROM ticks ORDER BY tick DESC LIMIT 1"
            ).fetchone()
        return None if last is None else last[0] + 1 + last[1]

    def trim(self, before_tick: int) -> None:
        """Forget every tick before ``before_tick``."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM samples WHERE tick < ?", (before_tick,))
                self._db.execute("DELETE FROM ticks WHERE tick < ?", (before_tick,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the file (SQLite checkpoints the WAL into it); idempotent."""
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"Journal(bus={self.bus!r}, path={str(self.path)!r})"
