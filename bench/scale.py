"""How many buses one process polls at 1 Hz without a late tick, and what two processes add.

Each bus is a ``sim://`` bus (the simulator's registers in process, no Modbus I/O) with 8
Watlow PM devices x 4 parameters, polled at 1 Hz through the real flow
(``python -m bytewax.run flows.acquire``, rows counted by the run summary). For 1 process and
for 2 processes (``-i/-a``, one worker each) the bus count doubles until a run of
``--seconds`` has a late tick, then bisects between the last clean and the first late count
until they are at most ``--step`` buses apart; the largest clean count gives rows/s. The two
searches run in turns, a run of one then a run of the other, so the machine's drift falls on
both alike; the range of speed-ups the bisection's steps leave open is printed too. With
``--pin`` each process is pinned to a core of its own (one process: one core). The peak RSS
of the flow's processes is sampled through each run; at the largest clean count of one
process it is printed per bus, whole and above a bare Bytewax flow's. Then 256 idle buses
at 0.1 Hz: CPU of the process over ``--idle-seconds`` after warm-up, as a share of one core,
next to the same figure for a bare Bytewax flow with nothing to do (``bench/floor.py``).
The last line is machine-readable: the 2-process/1-process rows/s ratio (target >= 1.6),
the idle CPU in % of one core (target < 5) and the RSS per bus in KiB, whole and above the
bare flow's, as ``speedup 1.62, idle_cpu_pct 4.8, rss_kib_per_bus 310,
rss_kib_per_bus_above_floor 270``.

    python bench/scale.py [--seconds 60] [--start 32] [--most 8192] [--step 64]
                          [--idle-seconds 30] [--warm-up 10] [--pin] [--hosts N]

With ``--hosts N`` (root: Linux network namespaces), the largest clean 2-process bus count
also runs on N processes, each on a host of its own (a namespace with its own address and
hostname), so the exchange between processes crosses a network: rows/s and late ticks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The project first, even when installed: bench/ holds a sinks.py of its own.
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_times, free_ports, steal_since  # noqa: E402

PARAMS = '["analog_input_value", "closed_loop_set_point", "heat_power", "cool_power"]'
TICKS = os.sysconf("SC_CLK_TCK")
IDLE_PERIOD_S = 10.0  # the idle run's tick period (0.1 Hz)


def config(path: Path, buses: int, rate_hz: float, seconds: float) -> Path:
    parts = [f"[acquisition]\nrate_hz = {rate_hz}\nduration_s = {seconds}\n"]
    for b in range(buses):
        parts.append(f'[[bus]]\nname = "b{b}"\nurl = "sim://"\nsimulate = true\n')
        for d in range(1, 9):
            parts.append(
                f'  [[bus.device]]\n  name = "b{b}-pm{d}"\n  profile = "watlow_pm"\n'
                f"  address = {d}\n  parameters = {PARAMS}\n"
            )
    path.write_text("\n".join(parts))
    return path


def cores(processes: int, pin: bool) -> list[set[int] | None]:
    """The core each process is pinned to: one each, if asked and there are enough."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(usable) < processes:
        return [None] * processes
    return [{core} for core in usable[:processes]]


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else 0


def run(cfg: Path, processes: int, pin: bool = False) -> tuple[int, int, int]:
    """Run the flow on ``processes`` processes; returns (rows, late ticks, the peak of their
    summed RSS in KiB, sampled every half second)."""
    env = {**os.environ, "ACQUIRE_CONFIG": str(cfg)}
    base = [sys.executable, "-m", "bytewax.run", "flows.acquire"]
    if processes == 1:
        commands = [base]
    else:
        addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(processes))
        commands = [[*base, "-i", str(i), "-a", addresses] for i in range(processes)]
    # Each process writes to its own file: reading pipes one after another would let a
    # process block on a full pipe at its summary while its peer waits for it to finish.
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"out-{i}.txt" for i in range(len(commands))]
        procs = []
        for command, out_path, core in zip(commands, outs, cores(processes, pin), strict=True):
            with out_path.open("w") as out_file:
                procs.append(
                    subprocess.Popen(
                        command,
                        cwd=ROOT,
                        env=env,
                        stdout=out_file,
                        stderr=subprocess.STDOUT,
                        preexec_fn=None if core is None else partial(os.sched_setaffinity, 0, core),
                    )
                )
        peak = 0
        while running := [p for p in procs if p.poll() is None]:
            peak = max(peak, sum(rss_kib(p.pid) for p in procs))
            with contextlib.suppress(subprocess.TimeoutExpired):
                running[0].wait(timeout=0.5)  # back at once when it ends
        codes = [p.wait() for p in procs]
        out = "".join(path.read_text() for path in outs)
    if any(codes):
        raise SystemExit(f"flow failed: {codes}")
    rows = sum(int(n) for n in re.findall(r"total: (\d+) rows", out))
    late = sum(int(n) for n in re.findall(r"ticks, (\d+) late", out))
    return rows, late, peak


@dataclass
class Search:
    """The bisection for one process count: double the bus count from ``buses`` until a run
    has late ticks (or passes ``most``), then bisect between the last clean and the first
    late count until they are at most ``step`` apart. ``best`` is (buses, rows/s, peak RSS in
    KiB) of the largest clean run; ``failed`` the smallest late count (0: none yet)."""

    processes: int
    buses: int
    most: int
    step: int
    best: tuple[int, float, int] = (0, 0.0, 0)
    failed: int = 0

    def done(self) -> bool:
        if self.failed:
            return self.failed - self.best[0] <= self.step
        return self.buses > self.most

    def record(self, result: tuple[float, int] | None) -> None:
        """The run of :attr:`buses`: None if it had late ticks, else (rows/s, peak RSS)."""
        buses = self.buses
        if result is None:
            self.failed = buses
        else:
            self.best = (buses, *result)
        self.buses = (self.best[0] + self.failed) // 2 if self.failed else buses * 2


def largest_clean(
    work: Path, start: int, most: int, seconds: float, step: int, pin: bool
) -> tuple[Search, Search]:
    """The searches for 1 and 2 processes, run in turns (a run of one, then a run of the
    other) so that the machine's drift over the half hour falls on both alike."""

    def clean(processes: int, buses: int) -> tuple[float, int] | None:
        before = cpu_times()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        rows, late, rss = run(
            config(work / f"p{processes}-{buses}.toml", buses, 1.0, seconds), processes, pin
        )
        print(
            f"  {processes} process(es), {buses:>4} buses: {rows:>8} rows, {late} late ticks, "
            f"RSS {rss / 1024:.0f} MiB (CPU steal {steal_since(before):.0%}, load {load:.1f})",
            flush=True,
        )
        return None if late else (rows / seconds, rss)

    searches = (Search(1, start, most, step), Search(2, start, most, step))
    while pending := [s for s in searches if not s.done()]:
        for search in pending:
            search.record(clean(search.processes, search.buses))
    return searches


def across_hosts(work: Path, buses: int, seconds: float, hosts: int) -> tuple[int, int]:
    """Run ``buses`` buses at 1 Hz on ``hosts`` processes (``-i``/``-a``, one worker each),
    each in a network namespace of its own with its own address and hostname (bench/netns.py,
    root only): what passes between processes crosses veth pairs and a bridge, as between
    hosts. Returns (rows, late ticks)."""
    from bench.netns import Hosts, unavailable

    if (reason := unavailable()) is not None:
        raise SystemExit(f"--hosts: {reason}")
    cfg = config(work / f"hosts{hosts}-{buses}.toml", buses, 1.0, seconds)
    env = {**os.environ, "ACQUIRE_CONFIG": str(cfg)}
    with Hosts(hosts, prefix="bench") as net:
        addresses = ";".join(f"{address}:2101" for address in net.addresses)
        base = [sys.executable, "-m", "bytewax.run", "flows.acquire", "-a", addresses]
        outs = [work / f"hosts-{i}.txt" for i in range(hosts)]
        procs = []
        try:
            for i, out_path in enumerate(outs):
                with out_path.open("w") as out_file:
                    command = net.command(i, [*base, "-i", str(i)])
                    procs.append(
                        subprocess.Popen(
                            command, cwd=ROOT, env=env, stdout=out_file, stderr=subprocess.STDOUT
                        )
                    )
            codes = [p.wait(timeout=seconds + 120) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    out = "".join(path.read_text() for path in outs)
    if any(codes):
        raise SystemExit(f"flow failed across hosts: {codes}: {out[-2000:]}")
    rows = sum(int(n) for n in re.findall(r"total: (\d+) rows", out))
    late = sum(int(n) for n in re.findall(r"ticks, (\d+) late", out))
    return rows, late


def _process_cpu(
    command: list[str], env: dict[str, str], seconds: float, warm_up: float
) -> tuple[float, int]:
    """Share of one core ``command`` uses over ``seconds``, after ``warm_up`` seconds, and its
    RSS in KiB at the end of that window; then it is ended with SIGTERM. The window starts
    in the middle of a 10 s tick slot, so a whole number of 0.1 Hz ticks falls in a window
    of whole tens of seconds (a window shorter than a slot starts at once)."""
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def cpu() -> float:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    time.sleep(warm_up)
    if seconds >= IDLE_PERIOD_S:
        time.sleep(IDLE_PERIOD_S - (time.time() + IDLE_PERIOD_S / 2) % IDLE_PERIOD_S)
    c0, t0 = cpu(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu(), time.monotonic()
    rss = rss_kib(proc.pid)
    proc.send_signal(signal.SIGTERM)  # the acquisition flow ends its tick and closes
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return (c1 - c0) / (t1 - t0), rss


def idle_cpu(work: Path, seconds: float, warm_up: float = 10.0) -> tuple[float, float, int]:
    """Share of one core used by 256 buses at 0.1 Hz, and by a bare Bytewax flow whose one
    partition has nothing to do (Bytewax's own floor: its worker parks for at most 1 ms),
    measured side by side over ``seconds`` each, after ``warm_up`` seconds; and the bare
    flow's RSS in KiB."""
    cfg = config(work / "idle.toml", 256, 1 / IDLE_PERIOD_S, seconds + 30)
    flow = [sys.executable, "-m", "bytewax.run", "flows.acquire"]
    floor = [sys.executable, "-m", "bytewax.run", "bench.floor:flow"]
    before = cpu_times()
    idle, _ = _process_cpu(flow, {**os.environ, "ACQUIRE_CONFIG": str(cfg)}, seconds, warm_up)
    bare, bare_rss = _process_cpu(floor, dict(os.environ), seconds, warm_up)
    print(f"  idle: CPU steal {steal_since(before):.0%}", flush=True)
    return idle, bare, bare_rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--start", type=int, default=32)
    parser.add_argument("--most", type=int, default=8192, help="largest bus count to try")
    parser.add_argument(
        "--step", type=int, default=64, help="bisect until clean and late are this close"
    )
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--warm-up", type=float, default=10.0, help="s before the idle window")
    parser.add_argument("--pin", action="store_true", help="pin each process to its own core")
    parser.add_argument(
        "--hosts",
        type=int,
        default=0,
        help="also run the 2-process bus count on N processes, each in a network namespace "
        "of its own (root)",
    )
    args = parser.parse_args()
    pin = args.pin
    placed = "each on a core of its own" if cores(2, pin)[0] is not None else "not pinned"
    print(f"processes: {placed}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        one_search, two_search = largest_clean(
            work, args.start, args.most, args.seconds, args.step, pin
        )
        one, two = one_search.best, two_search.best
        idle, floor, floor_rss = idle_cpu(work, args.idle_seconds, args.warm_up)
        across = across_hosts(work, two[0], args.seconds, args.hosts) if args.hosts else None
    print(f"1 process: {one[0]} buses, {one[1]:,.0f} rows/s")
    print(f"2 processes: {two[0]} buses, {two[1]:,.0f} rows/s")
    if across is not None:
        print(
            f"{args.hosts} processes on {args.hosts} hosts (network namespaces): {two[0]} buses, "
            f"{across[0] / args.seconds:,.0f} rows/s, {across[1]} late ticks"
        )
    per_bus = one[2] / one[0] if one[0] else float("nan")
    above = (one[2] - floor_rss) / one[0] if one[0] else float("nan")
    print(
        f"RSS at {one[0]} buses, 1 process: {one[2] / 1024:.0f} MiB, {per_bus:.0f} KiB per bus "
        f"({above:.0f} KiB per bus above a bare Bytewax flow's {floor_rss / 1024:.0f} MiB)"
    )
    print(f"256 idle buses at 0.1 Hz: {idle:.1%} of one core (a bare Bytewax flow: {floor:.1%})")
    if one_search.failed and two_search.failed and one[0]:
        # Between the largest clean and the first late count, either side could be anywhere.
        low, high = two[0] / (one_search.failed - 1), (two_search.failed - 1) / one[0]
        print(
            f"1 process late at {one_search.failed}, 2 processes at {two_search.failed}: "
            f"the bisection leaves the speedup between {low:.2f} and {high:.2f}"
        )
    ratio = two[1] / one[1] if one[1] else float("nan")
    print(
        f"speedup {ratio:.2f}, idle_cpu_pct {idle * 100:.1f}, rss_kib_per_bus {per_bus:.0f}, "
        f"rss_kib_per_bus_above_floor {above:.0f}"
    )


if __name__ == "__main__":
    main()
