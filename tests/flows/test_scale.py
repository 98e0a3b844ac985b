"""Scale-out: 6 simulated buses over 3 worker threads and over 2 processes."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"tcp": "tcp://127.0.0.1:0", "rtu": "rtu://pty", "sim": "sim://"}
PARAMS = '["analog_input_value", "heat_power"]'


def six_bus_config(tmp_path: Path) -> Path:
    buses = []
    for i, (kind, url) in enumerate([*KINDS.items(), *KINDS.items()]):
        devices = "".join(
            f'\n  [[bus.device]]\n  name = "{kind}{i}-pm{u}"\n  profile = "watlow_pm"\n'
            f"  address = {u}\n  parameters = {PARAMS}\n"
            for u in (1, 2)
        )
        buses.append(f'[[bus]]\nname = "{kind}{i}"\nurl = "{url}"\nsimulate = true\n{devices}')
    sinks = (
        '[[sink]]\nkind = "sqlite"\npath = "out/acquire.sqlite"\n\n'
        '[[sink]]\nkind = "csv"\npath = "out/samples.csv"\n\n'
        '[[sink]]\nkind = "parquet"\npath = "out/samples"\n'
    )
    path = tmp_path / "acquire.toml"
    text = "[acquisition]\nrate_hz = 4\nduration_s = 1\n\n" + "\n".join(buses) + "\n" + sinks
    path.write_text(text)
    return path


def run(config: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env={**os.environ, "ACQUIRE_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def check_outputs(out: Path, workers: int) -> None:
    with sqlite3.connect(out / "acquire.sqlite") as db:
        keys = db.execute("SELECT bus, device, parameter, requested_at FROM samples").fetchall()
    assert len(keys) == len(set(keys))
    per_bus = Counter(bus for bus, *_ in keys)
    assert len(per_bus) == 6
    # 2 devices x 2 parameters x 4 ticks per bus, each exactly once.
    assert set(per_bus.values()) == {16}, per_bus
    ticks = Counter((bus, device, parameter) for bus, device, parameter, _ in keys)
    assert set(ticks.values()) == {4}

    csv.field_size_limit(1_000_000)
    files = sorted(out.glob("samples-w*.csv"))
    assert [f.name for f in files] == [f"samples-w{i}.csv" for i in range(workers)]
    buses_of: list[set[str]] = []
    csv_rows = 0
    for f in files:
        with f.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert f.read_text().endswith("\n")
        csv_rows += len(rows)
        buses_of.append({r["bus"] for r in rows})
    assert csv_rows == len(keys)
    # Each bus is polled by exactly one worker: the workers' bus sets are disjoint.
    assert sum(len(b) for b in buses_of) == len(set().union(*buses_of)) == 6

    dataset = ds.dataset(out / "samples", format="parquet")
    assert dataset.count_rows() == len(keys)
    for part in (out / "samples").iterdir():
        assert part.name.startswith(tuple(f"part-w{i}-" for i in range(workers)))


def test_three_worker_threads(tmp_path: Path) -> None:
    stdout = run(six_bus_config(tmp_path), "bytewax.run", "flows.acquire", "-w", "3")
    assert stdout.count("  total: ") >= 1
    check_outputs(tmp_path / "out", workers=3)


@pytest.mark.parametrize("processes", [2])
def test_local_cluster_of_processes(tmp_path: Path, processes: int) -> None:
    run(six_bus_config(tmp_path), "bytewax.testing", "flows.acquire", "-p", str(processes))
    check_outputs(tmp_path / "out", workers=processes)
