"""A recovery run killed with SIGKILL and resumed, for tests/flows/test_recovery.py.

Two standalone simulator processes (Modbus TCP, and RTU framing over TCP), each logging the
reads it answered; the flow as ``python -m bytewax.run flows.acquire -r DIR -s 1 -b 0``
against them, writing every sink kind, killed with SIGKILL at random moments and resumed
each time, then run to its end. Then what each sink holds, keyed on the natural key.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.machine import free_ports
from connectors.describe import Description
from connectors.registers import load_profile

ROOT = Path(__file__).resolve().parents[2]
RATE_HZ = 5
SNAPSHOT_S = 1
PART_AGE_S = 1.0
# bus -> (simulator option, url scheme, {unit id: (device, profile, parameters or all)})
BUSES = {
    "tcp-bus": ("--tcp", "tcp", {1: ("oven", "watlow_pm", None)}),
    "rot-bus": (
        "--rtu-over-tcp",
        "rtu+tcp",
        {
            3: ("kiln", "watlow_pm", ["analog_input_value", "heat_power", "closed_loop_set_point"]),
            4: ("flue", "servomex_4100", ["measurement_1", "measurement_1_name"]),
        },
    ),
}

Key = tuple[str, str, int, datetime]  # device, parameter, instance, requested_at


def config_text(
    ports: dict[str, int], duration_s: float, out: Path, pg: tuple[str, str] | None
) -> str:
    lines = [f"[acquisition]\nrate_hz = {RATE_HZ}\nduration_s = {duration_s}\n"]
    for bus, (_, scheme, devices) in BUSES.items():
        # A generous timeout: a read the simulator answered must not become a timeout row.
        lines.append(f'[[bus]]\nname = "{bus}"\nurl = "{scheme}://127.0.0.1:{ports[bus]}"')
        lines.append("timeout_s = 3.0\n")
        for unit, (name, profile, parameters) in devices.items():
            lines.append(f'[[bus.device]]\nname = "{name}"\nprofile = "{profile}"')
            lines.append(f"address = {unit}")
            if parameters:
                lines.append(f"parameters = {json.dumps(parameters)}")
            lines.append("")
    sinks = [
        f'kind = "sqlite"\npath = "{out}/samples.sqlite"',
        f'kind = "sqlite"\npath = "{out}/samples.sqlite"\ntable = "bus_stats"\n'
        'stream = "bus_stats"',
        f'kind = "csv"\npath = "{out}/samples.csv"',
        f'kind = "jsonl"\npath = "{out}/samples.jsonl"',
        f'kind = "parquet"\npath = "{out}/parquet"\npart_age_s = {PART_AGE_S}',
    ]
    if pg is not None:
        dsn, table = pg
        sinks.append(f'kind = "postgres"\ndsn = "{dsn}"\ntable = "{table}"\ncreate_table = true')
    lines += [f"[[sink]]\n{sink}\n" for sink in sinks]
    return "\n".join(lines)


@dataclass
class KilledRun:
    """What happened: when each kill came, what each simulator answered, each run's stderr."""

    out: Path
    recovery: Path
    kills: list[float] = field(default_factory=list)
    answered: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    final_stdout: str = ""
    seed: int = 0
    pg_table: str | None = None


def covering(log: Path, devices: dict[int, tuple[str, str, list[str] | None]]) -> Counter:
    """(device, parameter) -> answered reads covering that polled parameter, from the log."""
    polled, asking = {}, {}
    for unit, (name, profile, names) in devices.items():
        loaded = load_profile(profile)
        polled[unit] = (name, [p for p in loaded.parameters if names is None or p.name in names])
        # The reads asking how to read the rest, made at each connect: they give no rows.
        asking[unit] = set(Description("", name, (), loaded.describe).spans())
    counts: Counter[tuple[str, str]] = Counter()
    for line in log.read_text().splitlines():
        unit, table, address, count = line.split()
        if (table, int(address), int(count)) in asking[int(unit)]:
            continue
        name, params = polled[int(unit)]
        start, end = int(address), int(address) + int(count)
        for p in params:
            if p.table == table and p.address < end and p.address + p.count > start:
                counts[name, p.name] += 1
    return counts


def run_with_kills(tmp: Path, kills: int, pg: tuple[str, str] | None, seed: int) -> KilledRun:
    """Serve the buses, run the flow killed ``kills`` times at random moments (each run lives
    0.8-2.6 s, start-up included), then to its end; returns what the simulators logged."""
    rng = random.Random(seed)
    run = KilledRun(out=tmp / "out", recovery=tmp / "recovery", seed=seed)
    run.pg_table = None if pg is None else pg[1]
    run.recovery.mkdir()
    subprocess.run(
        [sys.executable, "-m", "bytewax.recovery", str(run.recovery), "1"], check=True, cwd=ROOT
    )
    ports = dict(zip(BUSES, free_ports(len(BUSES)), strict=True))
    sims = []
    try:
        for bus, (option, _, devices) in BUSES.items():
            units = [f"{unit}:{profile}" for unit, (_, profile, _) in devices.items()]
            args = [option, f"127.0.0.1:{ports[bus]}", "--log", str(tmp / f"{bus}.log")]
            for unit in units:
                args += ["--device", unit]
            sim = subprocess.Popen(
                [sys.executable, "-m", "connectors.sim", *args],
                cwd=ROOT, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            sims.append(sim)
        for sim in sims:
            assert sim.stdout is not None and "serving" in sim.stdout.readline()
        lifetimes = [rng.uniform(0.8, 2.6) for _ in range(kills)]
        config = tmp / "acquire.toml"
        # Long enough that the schedule outlives the killed runs and a final one polls on.
        config.write_text(config_text(ports, sum(lifetimes) + 3.0, run.out, pg))
        for i in range(kills + 1):
            err = tmp / f"run-{i}.err"
            with (tmp / f"run-{i}.out").open("w") as so, err.open("w") as se:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "bytewax.run", "flows.acquire", "-r",
                     str(run.recovery), "-s", str(SNAPSHOT_S), "-b", "0"],
                    cwd=ROOT, env={**os.environ, "ACQUIRE_CONFIG": str(config)},
                    stdout=so, stderr=se,
                )  # fmt: skip
                if i < kills:
                    time.sleep(lifetimes[i])
                    proc.send_signal(signal.SIGKILL)
                    run.kills.append(time.time())
                    proc.wait(timeout=10)
                else:
                    code = proc.wait(timeout=60)
                    assert code == 0, err.read_text()
            run.errors.append(err.read_text())
        run.final_stdout = (tmp / f"run-{kills}.out").read_text()
    finally:
        for sim in sims:
            sim.send_signal(signal.SIGINT)
        for sim in sims:
            sim.wait(timeout=10)
    for bus, (_, _, devices) in BUSES.items():
        run.answered += covering(tmp / f"{bus}.log", devices)
    return run


def sqlite_keys(path: Path, table: str = "samples") -> Counter[Key]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            f"SELECT device, parameter, instance, requested_at FROM {table} WHERE error IS NULL"
        ).fetchall()
    return Counter((d, p, i, datetime.fromisoformat(t)) for d, p, i, t in rows)


def text_rows(path: Path) -> Iterator[dict | None]:
    """CSV or JSON Lines rows as dicts; None for a line a kill cut short."""
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            for cells in reader:
                yield dict(zip(header, cells, strict=True)) if len(cells) == len(header) else None
        return
    for line in path.read_text().splitlines():
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            yield None


def keys_of(rows: Iterator[dict | None]) -> tuple[Counter[Key], int]:
    """The natural keys of the value rows, and how many lines were cut short."""
    keys: Counter[Key] = Counter()
    torn = 0
    for r in rows:
        if r is None or not r.get("requested_at"):
            torn += 1
        elif not r["error"]:
            when = datetime.fromisoformat(r["requested_at"])
            keys[r["device"], r["parameter"], int(r["instance"]), when] += 1
    return keys, torn


def parquet_keys(path: Path) -> Counter[Key]:
    import pyarrow.parquet as pq

    keys: Counter[Key] = Counter()
    for part in sorted(path.glob("part-*.parquet")):
        t = pq.read_table(
            part, columns=["device", "parameter", "instance", "requested_at", "error"]
        )
        for r in t.to_pylist():
            if r["error"] is None:
                keys[r["device"], r["parameter"], r["instance"], r["requested_at"]] += 1
    return keys


def tick_of(db: Path) -> dict[str, list[tuple[datetime, int]]]:
    """bus -> (started_at, tick) of every tick, sorted, from the bus_stats table."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT bus, started_at, tick FROM bus_stats ORDER BY 1, 2").fetchall()
    out: dict[str, list[tuple[datetime, int]]] = {}
    for bus, started, tick in rows:
        out.setdefault(bus, []).append((datetime.fromisoformat(started), tick))
    return out
