"""The per-bus journal: exact round trip through the file, replay from a tick, the trim rule,
and a bus partition that replays it on resume, against a real simulated bus."""

from __future__ import annotations

import math
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.codec import Value
from connectors.journal import Journal, journal_path
from connectors.sample import ErrorKind, Sample, TickStats
from connectors.sim import SimulatedDevice
from connectors.source import ControllerSource
from tests.conftest import make_sample, make_stats, sim_bus

T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone.utc)
VALUES: list[Value | None] = [
    21.5, math.nan, -0.0, 0.0, math.inf, -math.inf, 1e-320, 7, -(2**63), 2**64 - 1, -(2**70),
    True, False, "O2", "", "Ofen 'ÄÖÜ' \"温度\"", None,
]  # fmt: skip


def sample(tick: int, i: int, value: Value | None, **changes: object) -> Sample:
    at = T0 + timedelta(seconds=tick, microseconds=i)
    fields = dict(
        bus="lab/bus 1", device=f"dev-{i % 3}", address=1 + i % 3, parameter=f"p{i}",
        parameter_id=4001 if i % 2 else None, instance=1 + i % 2, value=value,
        unit="degC" if i % 2 else None, requested_at=at,
        received_at=at + timedelta(microseconds=1501), tick=tick,
    )  # fmt: skip
    return make_sample(**{**fields, **changes})


def stats(tick: int, late: int = 0) -> TickStats:
    return make_stats(
        bus="lab/bus 1", tick=tick, started_at=T0 + timedelta(seconds=tick), duration_s=0.0125,
        drift_s=0.0021, devices=3, reads=6, errors=1, late=late,
    )  # fmt: skip


def exact(samples: list[Sample]) -> list[tuple[str, str]]:
    """What must survive the journal: every field's repr (NaN, -0.0, bool vs int) and type."""
    return [(repr(s), type(s.value).__name__) for s in samples]


def ticks(n: int = 3) -> dict[int, list[Sample]]:
    out = {}
    for tick in range(100, 100 + n):
        out[tick] = [sample(tick, i, v) for i, v in enumerate(VALUES)]
        out[tick].append(
            sample(tick, 99, None, error="timeout: no response", error_kind=ErrorKind.TIMEOUT)
        )
        out[tick].append(
            sample(
                tick, 97, None, error="illegal data address (2)",
                error_kind=ErrorKind.EXCEPTION, exception_code=2,
            )
        )  # fmt: skip
        out[tick].append(sample(tick, 98, 61, text="none"))
    return out


def test_replay_after_reopen_is_exact(tmp_path: Path) -> None:
    polled = ticks()
    journal = Journal(tmp_path, "lab/bus 1")
    for tick, samples in polled.items():
        journal.append(tick, samples, stats(tick))
    journal.close()
    journal.close()
    reopened = Journal(tmp_path, "lab/bus 1")
    entries = reopened.replay()
    assert [e.tick for e in entries] == [100, 101, 102]
    for entry in entries:
        assert exact(entry.samples) == exact(polled[entry.tick])
        assert entry.stats == stats(entry.tick)
        assert {s.requested_at.tzinfo for s in entry.samples} == {timezone.utc}
    assert [e.tick for e in reopened.replay(101)] == [101, 102]
    assert reopened.replay(103) == []
    reopened.close()


def test_next_tick_skips_the_late_slots(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "b")
    assert journal.next_tick() is None
    journal.append(7, [], stats(7, late=0))
    assert journal.next_tick() == 8
    journal.append(8, [sample(8, 0, 1.0)], stats(8, late=3))
    assert journal.next_tick() == 12
    assert [len(e.samples) for e in journal.replay()] == [0, 1]  # a tick without samples too
    journal.close()


def test_a_tick_is_one_transaction(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "b")
    journal.append(5, [sample(5, 0, 1.0)], stats(5))
    with pytest.raises(sqlite3.IntegrityError):
        journal.append(5, [sample(5, 1, 2.0)], stats(5))
    with pytest.raises(TypeError, match="cannot be journaled"):
        journal.append(6, [sample(6, 0, 1.0), sample(6, 1, b"raw")], stats(6))  # type: ignore[arg-type]
    assert [(e.tick, len(e.samples)) for e in journal.replay()] == [(5, 1)]
    journal.close()


def test_snapshots_trim_what_no_resume_needs(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "b")
    for tick in range(10, 20):
        journal.append(tick, [sample(tick, 0, float(tick))], stats(tick))
    assert len(journal.resume(None)) == 10  # no snapshot yet: everything is replayed
    journal.snapshot_taken(13)  # may not be durable yet: a crash resumes with no snapshot
    assert journal.replay()[0].tick == 10
    journal.snapshot_taken(16)  # 13 is durable now
    assert journal.replay()[0].tick == 13
    journal.snapshot_taken(16)
    journal.snapshot_taken(18)
    assert journal.replay()[0].tick == 16
    journal.close()
    resumed = Journal(tmp_path, "b")
    assert [e.tick for e in resumed.resume(18)] == [18, 19]
    resumed.snapshot_taken(20)  # the resume point, 18, is what a crash now goes back to
    assert resumed.replay()[0].tick == 18
    resumed.close()


def test_file_names(tmp_path: Path) -> None:
    assert journal_path(tmp_path, "lab-tcp").name == "lab-tcp.sqlite3"
    assert journal_path(tmp_path, "hall/2 ü").name == "hall%2F2%20%C3%BC.sqlite3"
    assert journal_path(tmp_path, "..").name.startswith("sha256-")
    long = journal_path(tmp_path, "x" * 300)
    assert long.name.startswith("sha256-") and len(long.name) < 100
    Journal(tmp_path, "a").close()
    journal_path(tmp_path, "a").rename(journal_path(tmp_path, "b"))
    with pytest.raises(ValueError, match="journal of bus 'a', not 'b'"):
        Journal(tmp_path, "b")


def run_part(
    source: ControllerSource, state: dict | None, snapshot_at: int | None = None
) -> tuple[list, dict | None]:
    """Drive one partition as Bytewax does until it ends: its items, and the snapshot taken
    once the tick ``snapshot_at`` was emitted (only then, so nothing is trimmed)."""
    part = source.build_part("in", "j", state)  # type: ignore[arg-type]
    items: list = []
    snap = None
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                items.extend(part.next_batch())
            except StopIteration:
                return items, snap
            if snap is None and any(getattr(i, "tick", None) == snapshot_at for i in items):
                snap = part.snapshot()
            time.sleep(0.005)
        raise AssertionError("partition did not finish")
    finally:
        part.close()


def samples_of(items: list) -> list[Sample]:
    return [s for s in items if isinstance(s, Sample)]


def test_resumed_partition_replays_the_journal_then_polls_on(tmp_path: Path) -> None:
    bus = sim_bus("j", "tcp", [SimulatedDevice(address=1, profile="watlow_pm")])
    source = ControllerSource([bus], rate_hz=10, stats=True, journal_dir=tmp_path)
    first = math.floor(time.time() * 10) + 3
    items, snap = run_part(source, {"next_tick": first, "end_tick": first + 4}, first + 1)
    polled = samples_of(items)
    assert sorted({s.tick for s in polled}) == list(range(first, first + 4))
    assert snap == {"next_tick": first + 2, "end_tick": first + 4}
    assert journal_path(tmp_path, "j").exists()
    # As if the run had died after that snapshot: ticks first + 2 and 3 come back, the same
    # Samples and TickStats, then it polls on after the journal's last tick.
    items, _ = run_part(source, {"next_tick": first + 2, "end_tick": first + 6})
    assert [t.tick for t in items if isinstance(t, TickStats)] == list(range(first + 2, first + 6))
    again = samples_of(items)
    replayed = [s for s in again if s.tick < first + 4]
    assert exact(replayed) == exact([s for s in polled if s.tick >= first + 2])
    new = [s for s in again if s.tick >= first + 4]
    assert {s.tick for s in new} == {first + 4, first + 5}
    assert min(s.requested_at for s in new) > max(s.received_at for s in polled)
    # Built without a snapshot (a crash before the first was written): the whole journal
    # first, then a fresh schedule after it.
    short = ControllerSource([bus], rate_hz=10, duration_s=0.3, journal_dir=tmp_path)
    items, _ = run_part(short, None)
    everything = polled + new
    assert exact(items[: len(everything)]) == exact(everything)
    fresh = {s.tick for s in items[len(everything) :]}
    assert len(fresh) == 3 and min(fresh) > first + 5


def test_no_journal_directory_no_journal(tmp_path: Path) -> None:
    bus = sim_bus("n", "sim", [SimulatedDevice(address=1, profile="watlow_pm")])
    source = ControllerSource([bus], rate_hz=10, duration_s=0.2)
    assert source.journal_dir is None
    part = source.build_part("in", "n", None)
    assert part._journal is None and part._poller._emit == part._emit
    part.close()


# The samples table of the journals written before Samples had error kinds.
_OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE ticks (
    tick INTEGER PRIMARY KEY, started_at INTEGER NOT NULL, duration_s REAL NOT NULL,
    drift_s REAL NOT NULL, devices INTEGER NOT NULL, reads INTEGER NOT NULL,
    errors INTEGER NOT NULL, late INTEGER NOT NULL
);
CREATE TABLE samples (
    tick INTEGER NOT NULL, seq INTEGER NOT NULL, device TEXT NOT NULL, address INTEGER NOT NULL,
    protocol TEXT NOT NULL, parameter TEXT NOT NULL, parameter_id INTEGER,
    instance INTEGER NOT NULL, kind TEXT, value, unit TEXT, requested_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL, error TEXT, text TEXT, PRIMARY KEY (tick, seq)
) WITHOUT ROWID;
"""


def test_every_error_kind_survives_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "lab/bus 1")
    failed = [
        sample(7, i, None, error=f"{kind.value}: x", error_kind=kind)
        for i, kind in enumerate(ErrorKind)
    ]
    journal.append(7, failed, stats(7))
    (entry,) = journal.replay()
    assert [(s.error_kind, s.error) for s in entry.samples] == [
        (s.error_kind, s.error) for s in failed
    ]
    journal.close()


def test_a_journal_from_before_error_kinds_still_resumes(tmp_path: Path) -> None:
    bus = "old"
    path = journal_path(tmp_path, bus)
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SCHEMA)
        db.execute("INSERT INTO meta VALUES ('bus', ?)", (bus,))
        db.execute("INSERT INTO ticks VALUES (5, 0, 0.01, 0.0, 1, 1, 1, 0)")
        db.execute(
            "INSERT INTO samples VALUES (5, 0, 'd', 1, 'modbus-tcp', 'p', NULL, 1, NULL, NULL,"
            " NULL, 0, 1000, 'timeout: no response', NULL)"
        )
    db.close()
    journal = Journal(tmp_path, bus)
    (old,) = journal.resume(5)
    assert old.tick == 5 and journal.next_tick() == 6
    (row,) = old.samples
    assert (row.error, row.error_kind, row.exception_code) == ("timeout: no response", None, None)
    new = sample(6, 0, None, bus=bus, error="timeout: no response", error_kind=ErrorKind.TIMEOUT)
    journal.append(6, [new], stats(6))
    assert [s.error_kind for e in journal.replay() for s in e.samples] == [
        None, ErrorKind.TIMEOUT
    ]  # fmt: skip
    journal.close()
