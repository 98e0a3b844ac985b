"""Soak: 64 simulated buses through the real flow for a long run; memory, lateness, rows.

The flow is ``python -m bytewax.run flows.acquire`` on a generated config: ``--buses``
``sim://`` buses (the simulator's registers in process, no Modbus I/O), each with 8 Watlow
PM devices x 4 parameters (bench/scale.py's config), polled at ``--rate-hz`` for
``--seconds``, raw rows and bus statistics written to SQLite in a temporary directory. The
flow process's resident set size (VmRSS) is sampled every ``--sample-s`` meanwhile.

Figures: RSS growth after warm-up, the median RSS of the last 5 % of the run over the
median of the 5 % of the run around its 20 % mark (from the process start); late ticks
(the bus statistics' ``late``, summed); rows stored (counted in SQLite) over rows expected
(ticks x devices x parameters). The last line holds them with their targets: RSS growth
< 5 %, zero late ticks, stored == expected.

    python bench/soak.py [--seconds 600] [--buses 64] [--rate-hz 1] [--sample-s 0.5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The project first, even when installed: bench/ holds a sinks.py of its own.
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_times, steal_since  # noqa: E402
from bench.scale import PARAMS, config  # noqa: E402

DEVICES_PER_BUS = 8  # bench/scale.py's config
PARAMETERS = len(json.loads(PARAMS))  # the TOML array of parameter names, as JSON
SINKS = """
[[sink]]
kind = "sqlite"
path = "soak.sqlite"

[[sink]]
kind = "sqlite"
path = "soak.sqlite"
table = "bus_stats"
stream = "bus_stats"
"""


@dataclass(frozen=True)
class Soak:
    """What one soak run measured."""

    seconds: float
    buses: int
    rate_hz: float
    rss: list[tuple[float, int]]  # (seconds since the process started, VmRSS in bytes)
    late: int
    ticks: int  # bus statistics rows: ticks run, over every bus
    stored: int
    expected: int
    steal: float

    def rss_near(self, start: float, end: float) -> float:
        """Median RSS of the samples taken from ``start`` to ``end`` (shares of the run)."""
        inside = [r for t, r in self.rss if start * self.seconds <= t <= end * self.seconds]
        if not inside:  # a run too short for its sampling: the sample closest to the window
            middle = (start + end) / 2 * self.seconds
            inside = [min(self.rss, key=lambda s: abs(s[0] - middle))[1]]
        return statistics.median(inside)

    @property
    def growth(self) -> float:
        return self.rss_near(0.95, 1.0) / self.rss_near(0.175, 0.225) - 1


def rss_bytes(pid: int) -> int | None:
    """VmRSS of process ``pid`` in bytes; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def soak(work: Path, buses: int, rate_hz: float, seconds: float, sample_s: float) -> Soak:
    """Run the flow on ``buses`` buses for ``seconds``, sampling its RSS; count what it stored."""
    cfg = config(work / "soak.toml", buses, rate_hz, seconds)
    with cfg.open("a") as f:
        f.write(SINKS)
    env = {**os.environ, "ACQUIRE_CONFIG": str(cfg)}
    before = cpu_times()
    out_path = work / "flow.out"
    with out_path.open("w") as out:  # a file, not a pipe: nobody reads it while it runs
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "flows.acquire"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    started = time.monotonic()
    rss: list[tuple[float, int]] = []
    # Only while it acquires: closing the sinks and printing the summary is not the soak.
    while proc.poll() is None and (elapsed := time.monotonic() - started) <= seconds:
        size = rss_bytes(proc.pid)
        if size is not None:
            rss.append((elapsed, size))
        time.sleep(sample_s)
    code = proc.wait()
    if code or not rss:
        raise SystemExit(f"flow failed ({code}):\n{out_path.read_text()[-3000:]}")
    with sqlite3.connect(work / "soak.sqlite") as db:
        stored = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        ticks, late = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(late), 0) FROM bus_stats"
        ).fetchone()
    # Each bus runs its first ceil(seconds x rate) slots from the first one after start.
    expected = max(1, math.ceil(seconds * rate_hz - 1e-9)) * buses * DEVICES_PER_BUS * PARAMETERS
    return Soak(seconds, buses, rate_hz, rss, late, ticks, stored, expected, steal_since(before))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--buses", type=int, default=64)
    parser.add_argument("--rate-hz", type=float, default=1.0)
    parser.add_argument("--sample-s", type=float, default=0.5, help="RSS sampling interval")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = soak(Path(tmp), args.buses, args.rate_hz, args.seconds, args.sample_s)
    for share in (0.1, 0.2, 0.4, 0.6, 0.8, 1.0):
        at = share * run.seconds
        print(f"  RSS at {at:>6.0f} s: {run.rss_near(share - 0.025, share) / 2**20:7.1f} MiB")
    print(
        f"  {run.ticks} bus ticks run, {run.late} late; CPU steal {run.steal:.0%}; "
        f"{run.stored} rows stored of {run.expected} expected"
    )
    print(
        f"soak {run.seconds:.0f} s, {run.buses} buses x {DEVICES_PER_BUS} devices x "
        f"{PARAMETERS} parameters at {run.rate_hz:g} Hz: RSS growth after warm-up "
        f"{run.growth:+.1%} (target < 5 %), late ticks {run.late} (target 0), rows stored "
        f"{run.stored} / expected {run.expected} (target equal)"
    )


if __name__ == "__main__":
    main()
