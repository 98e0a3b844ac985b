"""Outage: PostgreSQL goes dark mid-run; what each sink lost and duplicated, and the spool.

``--buses`` ``sim://`` buses (8 Watlow PMs x 4 parameters each, bench/scale.py's config) at
``--rate-hz`` through ``python -m bytewax.run flows.acquire`` into SQLite (raw rows and bus
statistics), PostgreSQL and Parquet; PostgreSQL is reached through a fault proxy
(tests/faults/proxy.py). ``--before-s`` after the first rows are stored, the proxy goes
dark for ``--dark-s`` (``--mode``: ``refuse`` new connections and reset the open ones,
``blackhole`` everything, or ``cut``: reset the open connections every second, passing
between the cuts), then passes again; the run goes on ``--after-s`` more, for the spool to
drain, and ends.

Then, in each sink, every (device, parameter, tick) of every tick that ran (SQLite's bus
statistics rows) is looked for: *lost* are those with no row, *duplicated* the rows beyond
one (and rows of no tick); PostgreSQL is also compared with SQLite row for row. *Late* ticks
are the bus statistics' ``late``, summed. The spool directory is watched meanwhile: its peak
size on disk, and when it was empty again (the drain time, counted from the proxy passing
again and from the first spooled batch). The run's CPU steal is printed beside them. Last
line: ``lost N, duplicated N, late N`` (all three 0 when all is well).

    python bench/outage.py [--buses 16] [--rate-hz 2] [--dark-s 60] [--mode refuse]
                           [--before-s 20] [--after-s 60] [--pg-retries N]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
# The project first, even when installed: bench/ holds a sinks.py of its own.
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_times, steal_since  # noqa: E402
from bench.scale import PARAMS, config  # noqa: E402
from tests.faults.proxy import MODES, FaultProxy  # noqa: E402

DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DEVICES_PER_BUS = 8  # bench/scale.py's config
PARAMETERS = len(PARAMS.split(","))
Key = tuple[str, str, datetime]  # device, parameter, requested_at
# A sink's line of the run summary: its rows written and spooled, peak, retries, drain time.
SINK_LINE = re.compile(r"\s+sink\[\d+\] .*: \d+ rows written")


def sinks(dsn: str, table: str, pg_retries: int | None) -> str:
    retries = "" if pg_retries is None else f"retries = {pg_retries}\n"
    return f"""
[spool]
dir = "spool"

[[sink]]
kind = "sqlite"
path = "outage.sqlite"

[[sink]]
kind = "sqlite"
path = "outage.sqlite"
table = "bus_stats"
stream = "bus_stats"

[[sink]]
kind = "postgres"
dsn = "{dsn}"
table = "{table}"
create_table = true
application_name = "bench-outage"
{retries}
[[sink]]
kind = "parquet"
path = "parquet"
"""


@dataclass
class SpoolWatch:
    """The spool directory's size on disk, sampled on a thread every 50 ms."""

    directory: Path
    samples: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, bytes)
    _stop: threading.Event = field(default_factory=threading.Event)

    def size(self) -> int:
        total = 0
        for path in self.directory.glob("*.spool"):
            with contextlib.suppress(FileNotFoundError):  # drained and removed meanwhile
                total += path.stat().st_size
        return total

    def run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append((time.monotonic(), self.size()))

    def start(self) -> None:
        threading.Thread(target=self.run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.samples.append((time.monotonic(), self.size()))

    @property
    def peak(self) -> int:
        return max((size for _, size in self.samples), default=0)

    def first_spooled(self) -> float | None:
        return next((t for t, size in self.samples if size), None)

    def empty_after(self, since: float) -> float | None:
        """The first moment after ``since`` that the spool was empty, None if it never was."""
        return next((t for t, size in self.samples if t >= since and not size), None)


def wait_for_rows(db: Path, proc: subprocess.Popen[bytes], out: Path) -> None:
    """Wait until the flow has stored its first rows in SQLite."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"flow ended early ({proc.returncode}):\n{out.read_text()[-3000:]}")
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                if conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]:
                    return
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    raise SystemExit("the flow stored no row in 60 s")


def sqlite_rows(db: Path) -> tuple[list[Key], dict[str, list[tuple[datetime, int]]], int]:
    """SQLite's raw rows, bus -> (started_at, tick) of every tick run, late ticks summed."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT device, parameter, requested_at FROM samples").fetchall()
        stats = conn.execute("SELECT bus, started_at, tick, late FROM bus_stats").fetchall()
    ticks: dict[str, list[tuple[datetime, int]]] = {}
    for bus, started, tick, _ in sorted(stats):
        ticks.setdefault(bus, []).append((datetime.fromisoformat(started), tick))
    keys = [(d, p, datetime.fromisoformat(at)) for d, p, at in rows]
    return keys, ticks, sum(late for *_, late in stats)


def postgres_rows(table: str) -> list[Key]:
    import asyncpg

    async def fetch() -> list[Key]:
        conn = await asyncpg.connect(DSN)
        try:
            rows = await conn.fetch(f'SELECT device, parameter, requested_at FROM "{table}"')
            await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        finally:
            await conn.close()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    return asyncio.run(fetch())


def parquet_rows(directory: Path) -> list[Key]:
    import pyarrow.parquet as pq

    keys: list[Key] = []
    for part in sorted(directory.glob("part-*.parquet")):
        t = pq.read_table(part, columns=["device", "parameter", "requested_at"])
        keys += [(r["device"], r["parameter"], r["requested_at"]) for r in t.to_pylist()]
    return keys


def count(rows: list[Key], ticks: dict[str, list[tuple[datetime, int]]]) -> tuple[int, int]:
    """(lost, duplicated) of ``rows`` against every device, parameter and tick run."""
    found: Counter[tuple[str, str, int | None]] = Counter()
    for device, parameter, at in rows:
        starts = ticks.get(device.partition("-")[0], [])
        i = bisect.bisect_right(starts, at, key=lambda s: s[0]) - 1
        found[(device, parameter, starts[i][1] if i >= 0 else None)] += 1
    expected = sum(len(t) for t in ticks.values()) * DEVICES_PER_BUS * PARAMETERS
    present = sum(1 for (_, _, tick) in found if tick is not None)
    duplicated = sum(n - 1 for n in found.values()) + sum(
        n for (_, _, tick), n in found.items() if tick is None
    )
    return expected - present, duplicated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buses", type=int, default=16)
    parser.add_argument("--rate-hz", type=float, default=2.0)
    parser.add_argument("--dark-s", type=float, default=60.0)
    parser.add_argument("--mode", choices=[m for m in MODES if m != "pass"], default="refuse")
    parser.add_argument("--before-s", type=float, default=20.0, help="s stored before dark")
    parser.add_argument("--after-s", type=float, default=60.0, help="s run after dark")
    parser.add_argument(
        "--pg-retries", type=int, default=None, help="the Postgres sink's retries (its default)"
    )
    args = parser.parse_args()
    parts = urlsplit(DSN)
    table = f"bench_outage_{uuid.uuid4().hex[:12]}"
    seconds = args.before_s + args.dark_s + args.after_s
    with tempfile.TemporaryDirectory() as tmp, FaultProxy(
        (parts.hostname or "127.0.0.1", parts.port or 5432)
    ) as proxy:  # fmt: skip
        work = Path(tmp)
        cfg = config(work / "outage.toml", args.buses, args.rate_hz, seconds)
        with cfg.open("a") as f:
            f.write(sinks(proxy.dsn(DSN), table, args.pg_retries))
        watch = SpoolWatch(work / "spool")
        out = work / "flow.out"
        before = cpu_times()
        with out.open("w") as o:  # a file, not a pipe: nobody reads it while it runs
            proc = subprocess.Popen(
                [sys.executable, "-m", "bytewax.run", "flows.acquire"],
                cwd=ROOT, env={**os.environ, "ACQUIRE_CONFIG": str(cfg)},
                stdout=o, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for_rows(work / "outage.sqlite", proc, out)
            watch.start()
            time.sleep(args.before_s)
            dark_at = time.monotonic()
            if args.mode == "cut":  # a flapping link: every connection reset each second
                while (left := dark_at + args.dark_s - time.monotonic()) > 0:
                    proxy.mode = "cut"
                    time.sleep(min(1.0, left))
            else:
                proxy.mode = args.mode
                time.sleep(args.dark_s)
            proxy.mode = "pass"
            back_at = time.monotonic()
            code = proc.wait(timeout=seconds + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
            watch.stop()
        steal = steal_since(before)
        text = out.read_text()
        if code:
            postgres_rows(table)  # which drops the table
            raise SystemExit(f"flow failed ({code}):\n{text[-3000:]}")
        rows, ticks, late = sqlite_rows(work / "outage.sqlite")
        stored = {"sqlite": rows, "postgres": postgres_rows(table)}
        stored["parquet"] = parquet_rows(work / "parquet")
        left = watch.size()
    tick_count = sum(len(t) for t in ticks.values())
    expected = tick_count * DEVICES_PER_BUS * PARAMETERS
    print(f"{args.buses} buses x {DEVICES_PER_BUS} devices x {PARAMETERS} parameters at "
          f"{args.rate_hz:g} Hz for {seconds:g} s; Postgres {args.mode} for {args.dark_s:g} s "
          f"after {args.before_s:g} s")  # fmt: skip
    lost = duplicated = 0
    for name, keys in stored.items():
        n_lost, n_dup = count(keys, ticks)
        lost, duplicated = lost + n_lost, duplicated + n_dup
        print(f"  {name}: {len(keys)} rows of {expected} expected ({tick_count} bus ticks): "
              f"lost {n_lost}, duplicated {n_dup}")  # fmt: skip
    only = Counter(stored["postgres"]) - Counter(stored["sqlite"])
    only_sqlite = Counter(stored["sqlite"]) - Counter(stored["postgres"])
    print(f"  postgres against sqlite: {sum(only.values())} rows only in postgres, "
          f"{sum(only_sqlite.values())} only in sqlite")  # fmt: skip
    summary_late = sum(int(n) for n in re.findall(r"ticks, (\d+) late", text))
    print(f"  late ticks: {late} (bus statistics), {summary_late} (summary)")
    first = watch.first_spooled()
    empty = None if first is None else watch.empty_after(max(back_at, first))
    if first is None:
        spool = "nothing spooled"
    elif empty is None:
        spool = f"peak {watch.peak / 2**20:.2f} MiB on disk; not drained ({left} bytes left)"
    else:
        spool = (
            f"peak {watch.peak / 2**20:.2f} MiB on disk; first batch spooled "
            f"{first - dark_at:.1f} s after dark; empty {empty - back_at:.1f} s after Postgres "
            f"was back, {empty - first:.1f} s after the first spooled batch"
        )
    print(f"  spool directory: {spool}")
    for line in text.splitlines():
        if SINK_LINE.match(line) and " postgres " in line:
            print(f"  summary: {line.strip()}")
    print(f"  proxy: {proxy.accepted} connections accepted, {proxy.resets} reset by it")
    print(f"  CPU steal {steal:.0%}")
    late = max(late, summary_late)
    print(f"lost {lost}, duplicated {duplicated}, late {late}")


if __name__ == "__main__":
    main()
