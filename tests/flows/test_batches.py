"""The composition example: acquisition rows joined with an independent stream of batch labels."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bytewax.testing import TestingSource, run_main

from connectors.sim import SimulatedDevice
from flows.batches import BatchLabel, build_batch_flow
from flows.config import Acquisition, Config
from sinks.memory import IntoMemory
from sinks.sqlite import IntoSqlite
from tests.conftest import sim_bus

ROOT = Path(__file__).resolve().parents[2]


def test_rows_carry_the_active_batch(tmp_path: Path) -> None:
    bus = sim_bus(
        "line",
        "sim",
        [
            SimulatedDevice(address=1, profile="watlow_pm"),
            SimulatedDevice(address=2, profile="watlow_pm"),
        ],
        parameters={1: ["analog_input_value"], 2: ["analog_input_value"]},
    )
    memory = IntoMemory()
    config = Config(
        acquisition=Acquisition(rate_hz=4, duration_s=1.0),
        buses=(bus,),
        sinks=(memory, IntoSqlite(path=tmp_path / "t.db")),
    )
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    labels = [
        BatchLabel("line-1", "B-100", past),
        BatchLabel("line-1", "B-099", past - timedelta(hours=1)),  # older: not the active one
        BatchLabel("line-2", "B-200", past),
    ]
    run_main(build_batch_flow(config, TestingSource(labels)))
    rows = memory.rows
    assert len(rows) == 8 and {r["batch"] for r in rows} >= {"B-100", "B-200"}
    # Labels and rows travel independently: a row may be joined before its label arrives.
    for r in rows:
        assert r["batch"] in ({"line-1": "B-100", "line-2": "B-200"}[r["device"]], None)
    assert sum(r["batch"] is not None for r in rows) >= 6
    with sqlite3.connect(tmp_path / "t.db") as db:
        stored = db.execute("SELECT device, batch FROM samples").fetchall()
    assert sorted(stored) == sorted((r["device"], r["batch"]) for r in rows)


def test_example_runs_from_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "acquire.toml"
    config.write_text(
        (ROOT / "acquire.toml").read_text().replace("duration_s = 10", "duration_s = 1")
    )
    labels = tmp_path / "batches.csv"
    past = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    labels.write_text(f"device,batch,started_at\noven-1,B-7,{past}\nfurnace-2,B-8,{past}\n")
    env = {**os.environ, "ACQUIRE_CONFIG": str(config), "ACQUIRE_BATCHES": str(labels)}
    result = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.batches"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "data" / "acquire.sqlite") as db:
        batches = dict(db.execute("SELECT device, max(batch) FROM samples GROUP BY device"))
    assert batches["oven-1"] == "B-7" and batches["furnace-2"] == "B-8"
    assert batches["oven-2"] is None
