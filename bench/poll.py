"""The poller against its floors: the wire limit of an RTU bus, and bare pymodbus's CPU.

Wire efficiency: one simulated 19200-baud RTU bus (served by another process on a
pseudo-terminal, with the real wire time of every frame and a device turnaround) with 8
Watlow PM devices x 3 parameters, polled through the project's flow (``acquire_with_stats``,
a ``ControllerSource`` partition running a ``BusPoller``) at a tick rate above what the bus
carries. Achieved reads/s over the theoretical limit for the same reads: per read,
(8 + 5 + 2 x registers) characters of 11 bits, two 3.5-character gaps (1.75 ms above 19200
baud) and the turnaround. Target >= 0.9.

CPU cost: the same reads against a Modbus TCP simulator in another process
(``python -m connectors.sim --tcp``), through the project's flow and through a bare
pymodbus ``AsyncModbusTcpClient`` loop making the identical requests, each for
``--seconds``, in ``--rounds`` interleaved rounds; CPU seconds (process time of this
process) per read over all rounds, project / bare (target <= 1.3). The project polls on
uvloop's event loop where it is installed (connectors.source), so the same bare loop is
also run on uvloop (target <= 1.2). It runs flat out, while the project keeps its tick
schedule: at ``--rate-hz`` a tick of the 24 reads overruns its slot and waits for the next,
so the project idles between ticks and pays waking up again. The bare loop is therefore also
run paced as the project (rounds of the reads as ticks on the same absolute schedule, waits
in whole milliseconds rounded up): over that, what is left is the project's own work (the
Bytewax worker's wake-ups, the hand-over to it, building each Sample). The project's CPU is
also split between the Bytewax worker thread and the polling loop's, and Bytewax's own floor
(bench/floor.py: a flow with nothing to do, run as long, in each round) is given per read at
the project's rate: what Bytewax costs whatever the poller does.

The machine's CPU steal share over each half is printed too: figures taken under heavy
steal are unreliable. The last line holds the ratios, machine-readable:
``wire 0.96, cpu 0.92, cpu_uvloop 1.35, cpu_paced 1.10`` (``n/a`` where one could not be
measured).

    python bench/poll.py [--seconds 5] [--rounds 3] [--turnaround-ms 5] [--rate-hz 500]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The project first, even when installed: bench/ holds a sinks.py of its own.
sys.path.insert(0, str(ROOT))

import bytewax.operators as op  # noqa: E402
from bytewax.dataflow import Dataflow  # noqa: E402
from bytewax.outputs import DynamicSink, StatelessSinkPartition  # noqa: E402
from bytewax.testing import TestingSink, run_main  # noqa: E402

from bench.floor import idle_flow  # noqa: E402
from bench.machine import cpu_times, free_ports, steal_since  # noqa: E402
from connectors.bus import Bus, Device  # noqa: E402
from connectors.registers import load_profile  # noqa: E402
from connectors.sample import TickStats  # noqa: E402
from connectors.sim import BusSimulator, SimulatedDevice  # noqa: E402
from connectors.transport import frame_gap_s, parse_bus_url, wire_time_s  # noqa: E402
from flows.acquire import acquire_with_stats  # noqa: E402
from flows.config import Acquisition, Config  # noqa: E402

try:
    import uvloop
except ImportError:  # Windows: the project polls on asyncio's loop there
    uvloop = None  # type: ignore[assignment]

BAUDRATE = 19200
UNITS = tuple(range(1, 9))
PROFILE = "watlow_pm"
PARAMETERS = ("analog_input_value", "closed_loop_set_point", "heat_power")


def devices() -> tuple[Device, ...]:
    """The 8 polled devices, 3 parameters each (their read plan is the project's)."""
    profile = load_profile(PROFILE)
    params = tuple(profile.parameter(name) for name in PARAMETERS)
    return tuple(Device(name=f"pm{u}", address=u, parameters=params) for u in UNITS)


def wire_read_s(count: int, baudrate: int, turnaround_s: float = 0.0) -> float:
    """Least time one read of ``count`` registers holds an RTU bus: request (8 characters)
    and response (5 + 2 x count) at 11 bits each, two inter-frame gaps, the turnaround."""
    return wire_time_s(8, baudrate) + wire_time_s(5 + 2 * count, baudrate) + turnaround_s


@dataclass(frozen=True)
class Run:
    """One measured run: reads sent, failed reads, wall seconds, CPU seconds of this process
    and, of a project run, of its Bytewax worker thread (the rest is the polling loop's)."""

    reads: int
    errors: int
    wall_s: float
    cpu_s: float
    worker_cpu_s: float = 0.0

    @property
    def reads_per_s(self) -> float:
        return self.reads / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_per_read(self) -> float:
        return self.cpu_s / self.reads if self.reads else float("nan")


class _Drop(StatelessSinkPartition[object]):
    def write_batch(self, items: list[object]) -> None:
        pass


class _Discard(DynamicSink[object]):
    """Drops the samples, as the bare loop drops its responses: a list would keep every one
    alive for the garbage collector to walk."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Drop:
        return _Drop()


def run_idle(seconds: float) -> Run:
    """Bytewax's own floor: a flow with nothing to do for ``seconds`` (bench/floor.py), its
    CPU seconds and wall seconds (no reads)."""
    c0, t0 = time.process_time(), time.perf_counter()
    run_main(idle_flow(seconds))
    return Run(0, 0, time.perf_counter() - t0, time.process_time() - c0)


def run_project(bus: Bus, rate_hz: float, seconds: float) -> tuple[Run, list[TickStats]]:
    """Poll ``bus`` through the project's flow for ``seconds``; the run and its TickStats."""
    config = Config(
        acquisition=Acquisition(rate_hz=rate_hz, duration_s=seconds), buses=(bus,), sinks=()
    )
    flow = Dataflow("bench_poll")
    samples, stats = acquire_with_stats(flow, config)
    kept: list[TickStats] = []
    op.output("samples", samples, _Discard())
    op.output("stats", stats, TestingSink(kept))
    # run_main runs the worker on this thread: its CPU time is the worker's.
    c0, w0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    run_main(flow)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    worker = time.thread_time() - w0
    reads, errors = sum(s.reads for s in kept), sum(s.errors for s in kept)
    return Run(reads, errors, wall, cpu, worker), kept


async def _bare_loop(
    port: int, polled: Sequence[Device], seconds: float, rate_hz: float | None = None
) -> Run:
    """The same reads by a bare pymodbus client, flat out; with ``rate_hz``, paced as the
    project: each round of reads is tick ``n``, started no earlier than ``n / rate_hz`` on the
    wall clock, a tick that overran its slot waits for the next one, and a wait is a timer of
    whole milliseconds rounded up (as the poller's on uvloop). What the project costs above
    the paced loop is not its schedule's idling but its own work."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
    await client.connect()
    plan = [(d.address, r) for d in polled for r in d.reads]
    reads = errors = 0
    c0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + seconds
    tick = math.floor(time.time() * rate_hz) + 1 if rate_hz else 0
    while time.perf_counter() < deadline:
        if rate_hz:
            while (delay := tick / rate_hz - time.time()) > 0:
                await asyncio.sleep(math.ceil(delay * 1000) / 1000)
        for unit, read in plan:
            call = (
                client.read_holding_registers
                if read.table == "holding"
                else client.read_input_registers
            )
            response = await call(read.address, count=read.count, device_id=unit)
            reads += 1
            errors += response.isError()
        if rate_hz:
            tick = max(tick + 1, math.floor(time.time() * rate_hz) + 1)
    run = Run(reads, errors, time.perf_counter() - t0, time.process_time() - c0)
    client.close()
    return run


async def _bare_rtu(path: str, polled: Sequence[Device], seconds: float) -> Run:
    """The same reads on the same cable by a bare pymodbus serial client that keeps the
    3.5-character silence after each answer: what the cable and pymodbus allow."""
    from pymodbus.client import AsyncModbusSerialClient
    from pymodbus.framer import FramerType

    client = AsyncModbusSerialClient(
        path, framer=FramerType.RTU, baudrate=BAUDRATE, timeout=0.5, retries=0
    )
    await client.connect()
    reads = errors = 0
    c0, t0 = time.process_time(), time.perf_counter()
    while time.perf_counter() < t0 + seconds:
        for unit, read in [(d.address, r) for d in polled for r in d.reads]:
            response = await client.read_holding_registers(
                read.address, count=read.count, device_id=unit
            )
            reads, errors = reads + 1, errors + response.isError()
            await asyncio.sleep(frame_gap_s(BAUDRATE))
    run = Run(reads, errors, time.perf_counter() - t0, time.process_time() - c0)
    client.close()
    return run


def start_server(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start a simulator process; returns it and its first line of output."""
    proc = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise SystemExit(f"simulator did not start: {command}")
    return proc, line


def stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    proc.terminate()
    proc.wait(timeout=10)


def has_wire_time() -> bool:
    """Whether BusSimulator takes ``wire_time`` and ``turnaround_s``."""
    names = inspect.signature(BusSimulator).parameters
    return "wire_time" in names and "turnaround_s" in names


async def _serve_rtu(turnaround_s: float) -> None:
    sims = [SimulatedDevice(address=u, profile=PROFILE) for u in UNITS]
    sim = BusSimulator(
        "rtu",
        sims,
        baudrate=BAUDRATE,
        wire_time=True,  # type: ignore[call-arg]
        turnaround_s=turnaround_s,  # type: ignore[call-arg]
    )
    print(await sim.start(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await sim.stop()


def wire_efficiency(seconds: float, rate_hz: float, turnaround_s: float) -> float | None:
    """Run the RTU half; prints its figures and returns the ratio (None if not measurable)."""
    if not has_wire_time():
        print("wire: skipped (BusSimulator has no wire_time/turnaround_s yet)")
        return None
    serve = [sys.executable, str(Path(__file__).resolve()), "--serve-rtu"]
    proc, url = start_server([*serve, "--turnaround-ms", str(turnaround_s * 1000)])
    try:
        polled = devices()
        bus = Bus(name="rtu", url=parse_bus_url(url), devices=polled, timeout_s=0.5)
        before = cpu_times()
        run, stats = run_project(bus, rate_hz, seconds)
        steal = steal_since(before)
        bare = asyncio.run(_bare_rtu(bus.url.path, polled, seconds))
    finally:
        stop_server(proc)
    counted = stats[1:]  # the first tick opens the port
    if not counted:
        print("wire: no ticks measured")
        return None
    first, last = counted[0], counted[-1]
    span = (last.started_at - first.started_at).total_seconds() + last.duration_s
    achieved = sum(s.reads for s in counted) / span
    per_tick = sum(wire_read_s(r.count, BAUDRATE, turnaround_s) for d in polled for r in d.reads)
    limit = sum(len(d.reads) for d in polled) / per_tick
    reads = sum(len(d.reads) for d in polled)
    print(
        f"wire: {reads} reads/tick, {achieved:.1f} reads/s achieved, limit {limit:.1f} reads/s "
        f"({BAUDRATE} baud, turnaround {turnaround_s * 1000:g} ms), {run.errors} failed, "
        f"CPU steal {steal:.0%}"
    )
    print(
        f"wire: bare pymodbus on the same cable {bare.reads_per_s:.1f} reads/s "
        f"({bare.reads_per_s / limit:.2f} of the limit, {bare.errors} failed)"
    )
    return achieved / limit


def pooled(runs: Sequence[Run]) -> Run:
    """The runs added up (interleaved rounds share the machine's noise alike)."""
    return Run(
        sum(r.reads for r in runs),
        sum(r.errors for r in runs),
        sum(r.wall_s for r in runs),
        sum(r.cpu_s for r in runs),
        sum(r.worker_cpu_s for r in runs),
    )


def cpu_cost(
    seconds: float, rate_hz: float, rounds: int
) -> tuple[float, float | None, float | None]:
    """Run the TCP half; prints its figures and returns project / bare CPU per read, on
    asyncio's loop, on uvloop's and on uvloop's paced as the project (None without uvloop)."""
    (port,) = free_ports(1)
    units = [arg for u in UNITS for arg in ("--device", f"{u}:{PROFILE}")]
    command = [sys.executable, "-m", "connectors.sim", "--tcp", f"127.0.0.1:{port}"]
    proc, _ = start_server([*command, *units])
    polled = devices()
    bus = Bus(
        name="tcp", url=parse_bus_url(f"tcp://127.0.0.1:{port}"), devices=polled, timeout_s=1.0
    )
    bares: list[Run] = []
    uvloops: list[Run] = []
    paced: list[Run] = []
    projects: list[Run] = []
    idles: list[Run] = []
    before = cpu_times()
    try:
        for _ in range(rounds):
            bares.append(asyncio.run(_bare_loop(port, polled, seconds)))
            projects.append(run_project(bus, rate_hz, seconds)[0])
            idles.append(run_idle(seconds))
            if uvloop is not None:
                loop = uvloop.new_event_loop()
                try:
                    uvloops.append(loop.run_until_complete(_bare_loop(port, polled, seconds)))
                    paced.append(
                        loop.run_until_complete(_bare_loop(port, polled, seconds, rate_hz))
                    )
                finally:
                    loop.close()
    finally:
        stop_server(proc)
    steal = steal_since(before)
    bare, project = pooled(bares), pooled(projects)
    runs = [("bare pymodbus", bare), ("project", project)]
    if uvloops:
        runs.append(("bare, uvloop", pooled(uvloops)))
        runs.append(("uvloop, paced", pooled(paced)))
    for name, run in runs:
        print(
            f"cpu: {name:<13} {run.reads_per_s:8.0f} reads/s, {run.cpu_per_read * 1e6:7.1f} us "
            f"CPU/read ({run.reads} reads, {run.errors} failed)"
        )
    worker = project.worker_cpu_s / project.reads if project.reads else float("nan")
    print(
        f"cpu: project's split: {worker * 1e6:.1f} us/read on the Bytewax worker thread, "
        f"{project.cpu_per_read * 1e6 - worker * 1e6:.1f} us/read on the polling loop's"
    )
    idle = pooled(idles)
    idle_share = idle.cpu_s / idle.wall_s if idle.wall_s else float("nan")
    print(
        f"cpu: Bytewax's own floor (a flow with nothing to do): {idle_share:.1%} of a core, "
        f"{idle_share / project.reads_per_s * 1e6:.1f} us/read at the project's reads/s"
    )
    on_uvloop = on_paced = None
    if uvloops:
        # The project polls on uvloop (connectors.source): against the same loop, what is
        # left is the project's own cost per read and its schedule's idling.
        on_uvloop = project.cpu_per_read / runs[2][1].cpu_per_read
        on_paced = project.cpu_per_read / runs[3][1].cpu_per_read
        print(f"cpu: project / bare pymodbus on uvloop, the project's loop: {on_uvloop:.2f}")
        print(f"cpu: project / bare pymodbus on uvloop paced as the project: {on_paced:.2f}")
    print(f"cpu: CPU steal {steal:.0%} over {rounds} interleaved round(s)")
    return project.cpu_per_read / bare.cpu_per_read, on_uvloop, on_paced


def main(argv: Sequence[str] | None = None) -> None:
    """Run both halves; the last line holds both ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved CPU runs per side")
    parser.add_argument("--turnaround-ms", type=float, default=5.0)
    parser.add_argument("--rate-hz", type=float, default=500.0, help="above the bus capacity")
    parser.add_argument("--serve-rtu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_rtu:
        asyncio.run(_serve_rtu(args.turnaround_ms / 1000))
        return
    # Every tick overruns on purpose: the poller's warning per skipped slot is noise here.
    logging.getLogger("connectors.poller").setLevel(logging.ERROR)
    before = cpu_times()
    wire = wire_efficiency(args.seconds, args.rate_hz, args.turnaround_ms / 1000)
    cpu, on_uvloop, on_paced = cpu_cost(args.seconds, args.rate_hz, args.rounds)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU steal over the whole run: {steal_since(before):.0%} (load {load:.1f})")
    print(
        "targets: wire >= 0.9, cpu (project/bare pymodbus) <= 1.3, "
        "cpu_uvloop (project/bare pymodbus on uvloop) <= 1.2"
    )
    ratios = {"wire": wire, "cpu": cpu, "cpu_uvloop": on_uvloop, "cpu_paced": on_paced}
    print(", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
