"""Bus statistics: one row per bus and tick, counts that match the rows written, real sinks."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import textwrap
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.sample import Sample, TickStats
from flows.acquire import acquire_with_stats, build_flow, to_stats_rows, write
from flows.config import load_config
from flows.observe.busstats import BUS_STATS_SCHEMA, to_stats_row
from sinks.memory import IntoMemory

TICKS = 4  # 1 s at 4 Hz

CONFIG = """
[acquisition]
rate_hz = 4
duration_s = 1.0

[[bus]]
name = "tcp-bus"
url = "tcp://127.0.0.1:0"
simulate = true
timeout_s = 0.05

  [[bus.device]]
  name = "pm-live"
  profile = "watlow_pm"
  address = 1
  parameters = ["analog_input_value", "heat_power", "cool_power"]

  [[bus.device]]
  name = "pm-dead"
  profile = "watlow_pm"
  address = 2
  parameters = ["analog_input_value"]
  simulate = { dead = true }

[[bus]]
name = "sim-bus"
url = "sim://"
simulate = true

  [[bus.device]]
  name = "gas"
  profile = "servomex_4100"
  address = 3
  parameters = ["measurement_1", "measurement_2"]

[[sink]]
kind = "sqlite"
path = "out/acquire.sqlite"

[[sink]]
kind = "sqlite"
path = "out/acquire.sqlite"
table = "bus_stats"
stream = "bus_stats"
"""


def query(db: Path, sql: str) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run of the whole flow: the SQLite file and what it printed."""
    tmp = tmp_path_factory.mktemp("busstats")
    path = tmp / "acquire.toml"
    path.write_text(textwrap.dedent(CONFIG))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_main(build_flow(load_config(path)))
    return tmp / "out" / "acquire.sqlite", out.getvalue()


def test_stats_rows_land_in_sqlite_with_the_schema(run: tuple[Path, str]) -> None:
    db, _ = run
    columns = query(db, "PRAGMA table_info(bus_stats)")
    assert tuple(c["name"] for c in columns) == BUS_STATS_SCHEMA.names
    assert {c["name"] for c in columns if c["pk"]} == {"bus", "tick"}
    rows = query(db, "SELECT * FROM bus_stats ORDER BY bus, tick")
    per_bus = defaultdict(list)
    for r in rows:
        per_bus[r["bus"]].append(r["tick"])
    assert {bus: len(ticks) for bus, ticks in per_bus.items()} == {"tcp-bus": TICKS, "sim-bus": 4}
    for ticks in per_bus.values():
        assert ticks == list(range(ticks[0], ticks[0] + TICKS))
    for r in rows:
        started = datetime.fromisoformat(r["started_at"])
        assert started.utcoffset() is not None and started.utcoffset().total_seconds() == 0
        assert r["duration_s"] > 0 and r["drift_s"] >= 0 and r["late"] == 0


def test_stats_counts_match_the_rows_written(run: tuple[Path, str]) -> None:
    db, _ = run
    samples = query(db, "SELECT bus, device, requested_at, error FROM samples")
    # A read is one request: the samples it gave share device and requested_at.
    reads: dict[tuple[str, int], set[tuple[str, str]]] = defaultdict(set)
    failed: dict[tuple[str, int], set[tuple[str, str]]] = defaultdict(set)
    devices: dict[tuple[str, int], set[str]] = defaultdict(set)
    stats = {(r["bus"], r["tick"]): r for r in query(db, "SELECT * FROM bus_stats")}
    starts = {key: datetime.fromisoformat(r["started_at"]) for key, r in stats.items()}
    for s in samples:
        requested = datetime.fromisoformat(s["requested_at"])
        # The tick of a sample: the last tick of its bus that started at or before it.
        tick = max(t for (b, t), at in starts.items() if b == s["bus"] and at <= requested)
        key = (s["bus"], tick)
        devices[key].add(s["device"])
        if s["error"] is not None and "backoff" in s["error"]:
            continue  # a backed-off device is not asked: an error row, but no read
        reads[key].add((s["device"], s["requested_at"]))
        if s["error"] is not None:
            failed[key].add((s["device"], s["requested_at"]))
    assert set(devices) == set(stats)
    total_errors = 0
    for key, r in stats.items():
        assert r["devices"] == len(devices[key]), key
        assert r["reads"] == len(reads[key]), key
        assert r["errors"] == len(failed[key]), key
        total_errors += r["errors"]
    assert total_errors >= 1  # the dead device fails when asked (then it is backed off)
    assert sum(r["errors"] for (bus, _), r in stats.items() if bus == "sim-bus") == 0
    # 3 + 1 reads a tick on tcp-bus unless the dead device's reads are merged or backed off
    assert all(r["reads"] >= 2 for (bus, _), r in stats.items() if bus == "tcp-bus")


def test_summary_prints_the_bus_figures(run: tuple[Path, str]) -> None:
    _, printed = run
    lines = printed.splitlines()
    dead = next(line for line in lines if "tcp-bus/pm-dead" in line)
    assert dead.split()[1:4] == [str(TICKS), str(TICKS), "100.0"]  # then late, p50, p99
    live = next(line for line in lines if "tcp-bus/pm-live" in line)
    assert live.split()[1:4] == [str(3 * TICKS), "0", "0.0"]
    bus = next(line for line in lines if line.startswith("  bus tcp-bus:"))
    assert bus.startswith(f"  bus tcp-bus: {TICKS} ticks, 0 late; tick p50 ")
    assert " ms, p99 " in bus and ", max drift " in bus and "failed" in bus
    assert f"total: {(3 + 1 + 2) * TICKS} rows, {TICKS} error rows" in printed


def test_acquire_with_stats_composes_with_a_memory_sink(tmp_path: Path) -> None:
    path = tmp_path / "acquire.toml"
    path.write_text(textwrap.dedent(CONFIG.replace("duration_s = 1.0", "duration_s = 0.5")))
    config = load_config(path)
    flow = Dataflow("stats_only")
    samples, stats = acquire_with_stats(flow, config)
    sink = IntoMemory()
    write(to_stats_rows(stats), [sink], schema=BUS_STATS_SCHEMA, name="bus_stats")
    seen: list[object] = []
    op.output("samples", samples, TestingSink(seen))
    run_main(flow)
    assert len(sink.rows) == 2 * 2  # 2 buses x 2 ticks
    assert all(tuple(r) == BUS_STATS_SCHEMA.names for r in sink.rows)
    assert {r["bus"] for r in sink.rows} == {"tcp-bus", "sim-bus"}
    assert all(isinstance(s, Sample) for s in seen)
    assert len(seen) == (3 + 1 + 2) * 2
    assert sum(r["reads"] for r in sink.rows) >= 3 * 2


def test_to_stats_row() -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    s = TickStats(
        bus="b", tick=7, started_at=t, duration_s=0.25, drift_s=0.001, devices=3, reads=5,
        errors=1, late=2,
    )  # fmt: skip
    row = to_stats_row(s)
    assert tuple(row) == BUS_STATS_SCHEMA.names
    assert BUS_STATS_SCHEMA.key == ("bus", "tick")
    assert row == {
        "bus": "b", "tick": 7, "started_at": t, "duration_s": 0.25, "drift_s": 0.001,
        "devices": 3, "reads": 5, "errors": 1, "late": 2,
    }  # fmt: skip
