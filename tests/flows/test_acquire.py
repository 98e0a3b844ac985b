"""The whole flow end to end: build_flow into SQLite and CSV, and the README's main command."""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from bytewax.testing import run_main

from connectors.sample import Sample
from flows.acquire import build_flow
from flows.config import load_config
from flows.rows import SAMPLE_SCHEMA, to_row
from sinks.sqlite import IntoSqlite
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[acquisition]
rate_hz = 4
duration_s = {duration}

[[bus]]
name = "tcp-bus"
url = "tcp://127.0.0.1:0"
simulate = true
timeout_s = 0.3

  [[bus.device]]
  name = "pm-a"
  profile = "watlow_pm"
  address = 1

  [[bus.device]]
  name = "gas-a"
  profile = "servomex_4100"
  address = 2
  parameters = ["measurement_1", "measurement_1_name"]

[[bus]]
name = "rtu-bus"
url = "rtu://pty?baudrate=38400"
simulate = true
timeout_s = 0.3

  [[bus.device]]
  name = "pm-b"
  profile = "watlow_pm"
  address = 5
  parameters = ["analog_input_value", "heat_power"]

[[sink]]
kind = "sqlite"
path = "out/acquire.sqlite"

[[sink]]
kind = "csv"
path = "out/samples.csv"
"""


def config_file(tmp_path: Path, duration: float | None) -> Path:
    """The test config, acquiring for ``duration`` seconds (None: until stopped)."""
    text = CONFIG.format(duration=duration)
    if duration is None:
        text = text.replace("duration_s = None\n", "")
    return write_config(tmp_path, text)


def sqlite_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT device, parameter, value, value_text, error FROM samples"
        ).fetchall()


def test_build_flow_writes_every_row_once(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, 1.0))
    run_main(build_flow(config))
    per_device = {"pm-a": 8, "gas-a": 2, "pm-b": 2}
    expected = sum(per_device.values()) * 4  # parameters x 4 ticks (1 s at 4 Hz)
    db_rows = sqlite_rows(tmp_path / "out" / "acquire.sqlite")
    assert len(db_rows) == expected
    assert all(error is None for *_, error in db_rows)
    for device, n in per_device.items():
        assert sum(1 for r in db_rows if r[0] == device) == n * 4
    assert {r[3] for r in db_rows if r[1] == "measurement_1_name"} == {"O2"}
    with (tmp_path / "out" / "samples.csv").open(newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == expected
    assert list(csv_rows[0]) == list(SAMPLE_SCHEMA.names)
    keys = {(r["device"], r["parameter"], r["requested_at"]) for r in csv_rows}
    assert len(keys) == expected


def test_replayed_batch_adds_no_rows(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, 0.5))
    run_main(build_flow(config))
    db = tmp_path / "out" / "acquire.sqlite"
    before = sqlite_rows(db)
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        stored = [dict(r) for r in conn.execute("SELECT * FROM samples")]
    # Put the stored rows back through the sink as a replayed batch would arrive.
    for row in stored:
        for column in ("requested_at", "received_at", "midpoint_at"):
            row[column] = datetime.fromisoformat(row[column])
    part = IntoSqlite(path=db, schema=SAMPLE_SCHEMA).build_partition(0, 1)
    part.write_batch(stored)
    part.write_batch(stored)
    part.close()
    assert sorted(sqlite_rows(db), key=repr) == sorted(before, key=repr)
    assert len(before) == (8 + 2 + 2) * 2


def test_to_row_columns_and_types() -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    s = Sample(
        bus="b", device="d", address=3, protocol="modbus-tcp", parameter="p", parameter_id=4001,
        instance=1, value=7, unit="degC", requested_at=t,
        received_at=t + timedelta(milliseconds=20), tick=9,
    )  # fmt: skip
    row = to_row(s)
    assert tuple(row) == SAMPLE_SCHEMA.names
    assert row["value"] == 7.0 and isinstance(row["value"], float)
    assert row["value_text"] is None
    assert row["midpoint_at"] == t + timedelta(milliseconds=10)
    assert row["latency_s"] == 0.02
    assert row["error"] is None
    for value, expected in ((True, (1.0, None)), ("O2", (None, "O2")), (None, (None, None))):
        row = to_row(dataclasses.replace(s, value=value))
        assert (row["value"], row["value_text"]) == expected


def readme_main_command() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- run-command -->\s*```sh\n(.+?)\n```", readme)
    assert match, "README.md has no run command block"
    return match.group(1)


def run_flow_process(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ACQUIRE_CONFIG": str(config)}
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.acquire", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_readme_main_command_runs(tmp_path: Path) -> None:
    command = readme_main_command()
    assert command.endswith("python -m bytewax.run flows.acquire")
    proc = run_flow_process(config_file(tmp_path, 1.0))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "run summary" in out
    assert re.search(r"pm-a\s+32\s+0", out), out
    assert "total: 48 rows, 0 error rows" in out
    assert len(sqlite_rows(tmp_path / "out" / "acquire.sqlite")) == 48


SIGNALS = [signal.SIGTERM, signal.SIGINT]


@pytest.fixture(scope="module")
def signalled(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[signal.Signals, tuple[Path, int, str, str]]:
    """A run per signal of SIGNALS (an open-ended run with a Parquet sink added, each in a
    directory of its own, side by side), sent that signal once 30 CSV lines are written:
    signal -> (its directory, exit code, stdout, stderr)."""
    procs = {}
    for signum in SIGNALS:
        tmp = tmp_path_factory.mktemp(signum.name)
        config = config_file(tmp, None)
        with config.open("a") as f:
            f.write('\n[[sink]]\nkind = "parquet"\npath = "out/parquet"\n')
        procs[signum] = tmp, run_flow_process(config)
    done = {}
    try:
        for signum, (tmp, proc) in procs.items():
            csv_path = tmp / "out" / "samples.csv"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                not csv_path.exists() or csv_path.read_text().count("\n") < 30
            ):
                time.sleep(0.1)
            proc.send_signal(signum)
        for signum, (tmp, proc) in procs.items():
            out, err = proc.communicate(timeout=30)
            done[signum] = tmp, proc.returncode, out, err
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return done


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_closes_sinks_and_prints_summary(
    signalled: dict[signal.Signals, tuple[Path, int, str, str]], signum: signal.Signals
) -> None:
    tmp_path, returncode, out, err = signalled[signum]
    csv_path = tmp_path / "out" / "samples.csv"
    assert returncode == 0, err
    assert f"{signum.name}: finishing the tick in progress" in err
    total = int(re.search(r"total: (\d+) rows", out).group(1))
    text = csv_path.read_text()
    assert text.endswith("\n")
    assert text.count("\n") == total + 1
    assert len(sqlite_rows(tmp_path / "out" / "acquire.sqlite")) == total
    # WAL checkpointed on close: the database file alone holds every row.
    wal = tmp_path / "out" / "acquire.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    # Parquet footers written: the open part was published, and every part reads whole.
    import pyarrow.parquet as pq

    parquet = tmp_path / "out" / "parquet"
    assert list(parquet.glob(".*")) == []
    assert sum(pq.read_metadata(p).num_rows for p in parquet.glob("part-*.parquet")) == total


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = config_file(tmp_path, 1.0)
    path.write_text(path.read_text().replace("address = 5", "address = 300"))
    proc = run_flow_process(path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err == f"{path}: bus[1].device[0].address: 300 is not a Modbus unit id (1-247)\n"


def test_acquire_gives_samples_only(tmp_path: Path) -> None:
    """acquire() is the Samples-only building block: no bus statistics in its stream."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink

    from flows.acquire import acquire

    config = load_config(config_file(tmp_path, 0.5))
    flow = Dataflow("samples_only")
    out: list[object] = []
    op.output("out", acquire(flow, config), TestingSink(out))
    run_main(flow)
    assert len(out) == (8 + 2 + 2) * 2
    assert all(isinstance(s, Sample) for s in out)
