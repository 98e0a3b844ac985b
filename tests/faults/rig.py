"""The fault rig: simulators on their own event-loop thread, a config pointing at them, and
the whole flow (``build_flow``, one worker) run while a thread injects faults on a schedule.

The simulators are not the flow's (no ``simulate = true``): the test owns them, so it can
change their fault knobs, stop and restart them, and read their log of answered reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bytewax.testing import run_main

from connectors.sim import BusSimulator, SimulatedDevice
from flows.acquire import build_flow
from flows.config import load_config

__all__ = [
    "PARAMETERS",
    "PROFILE",
    "Answered",
    "BusSpec",
    "Served",
    "SimLoop",
    "SimProcess",
    "at_phase",
    "device_name",
    "run_flow",
    "set_point",
    "write_config",
]

T = TypeVar("T")
PROFILE = "watlow_pm"
# Three reads per device (the registers are far apart), so a timeout holds back the others.
PARAMETERS = ("analog_input_value", "closed_loop_set_point", "heat_power")
ROOT = Path(__file__).resolve().parents[2]
# (unit id, table, address, count) -> reads answered with values: the simulator's own log.
Answered = Counter[tuple[int, str, int, int]]
# unit id -> (table, address, count) -> the register words it answered such reads with.
Served = dict[int, dict[tuple[str, int, int], set[tuple[int, ...]]]]


def device_name(bus: str, unit: int) -> str:
    return f"{bus}-pm{unit}"


def set_point(unit: int) -> float:
    """The simulator's default set point of a PM at ``unit``: what its set point reads."""
    return 70.0 + 5.0 * unit


class SimLoop:
    """An asyncio loop on a daemon thread that serves the test's BusSimulators.

    Every method is called from the test's threads and runs on the loop, so a simulator is
    only touched from the thread that serves it.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._sims: list[BusSimulator] = []

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def serve(self, kind: str, devices: Sequence[SimulatedDevice], **options: Any) -> BusSimulator:
        """Start a simulator of ``kind`` (``tcp``, ``rtu``...) serving ``devices``; its URL is
        ``sim.url``."""

        async def make() -> BusSimulator:
            sim = BusSimulator(kind, devices, **options)
            for state in sim.devices.values():
                state.served = {}  # what each device answered, for the audit to hold values to
            await sim.start()
            return sim

        sim = self.call(make())
        self._sims.append(sim)
        return sim

    def set_fault(self, sim: BusSimulator, unit: int, **knobs: object) -> None:
        async def change() -> None:
            sim.set_fault(unit, **knobs)

        self.call(change())

    def stop(self, sim: BusSimulator) -> None:
        self.call(sim.stop())

    def start(self, sim: BusSimulator) -> None:
        """Serve ``sim`` again, on the port it had."""
        self.call(sim.start())

    def answered(self, sim: BusSimulator) -> Answered:
        async def read() -> Answered:
            return sim.answered()

        return self.call(read())

    def served(self, sim: BusSimulator) -> Served:
        """What each device of ``sim`` answered its reads with (a copy)."""

        async def read() -> Served:
            return {
                unit: {read: set(words) for read, words in (state.served or {}).items()}
                for unit, state in sim.devices.items()
            }

        return self.call(read())

    def close(self) -> None:
        for sim in self._sims:
            self.call(sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class SimProcess:
    """``python -m connectors.sim --tcp 127.0.0.1:PORT`` as a subprocess that can be
    killed with SIGKILL and started again on the same port, logging every read it answers
    to one file over all its lives."""

    def __init__(self, port: int, units: Sequence[int], log: Path) -> None:
        self.port, self.units, self.log = port, tuple(units), log
        self.url = f"tcp://127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it listens (it says so on its output)."""
        devices = [a for u in self.units for a in ("--device", f"{u}:{PROFILE}")]
        command = [sys.executable, "-m", "connectors.sim", "--tcp", f"127.0.0.1:{self.port}"]
        output = self.log.with_suffix(".out")
        # To a file, not a pipe: a pipe nobody reads would block it once full.
        with output.open("w") as out:
            self._proc = subprocess.Popen(
                [*command, *devices, "--log", str(self.log)], cwd=ROOT, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 20
        while "serving" not in output.read_text():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"simulator did not start: {output.read_text()!r}")
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL: no shutdown, sockets closed by the kernel."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
            self._proc = None

    def answered(self) -> Answered:
        """The log: one ``UNIT TABLE ADDRESS COUNT`` line per read answered with values."""
        found: Answered = Counter()
        for line in self.log.read_text(encoding="ascii").splitlines():
            unit, table, address, count = line.split()
            found[(int(unit), table, int(address), int(count))] += 1
        return found


@dataclass(frozen=True)
class BusSpec:
    """One bus of the config: where it is, the PMs on it (unit ids) and its timeouts.

    ``device_timeouts`` gives some units their own response timeout (a dead or slow device
    fails fast, while the healthy ones keep a timeout no scheduling hiccup reaches).
    """

    name: str
    url: str
    units: tuple[int, ...]
    timeout_s: float = 0.5
    device_timeouts: tuple[tuple[int, float], ...] = ()

    def devices(self) -> dict[str, int]:
        return {device_name(self.name, u): u for u in self.units}


def write_config(
    path: Path, buses: Sequence[BusSpec], sinks: str, *, rate_hz: float, duration_s: float
) -> Path:
    """Write the TOML config of a run: every bus, its PMs reading PARAMETERS, and ``sinks``
    (the ``[[sink]]`` tables)."""
    names = ", ".join(f'"{p}"' for p in PARAMETERS)
    parts = [f"[acquisition]\nrate_hz = {rate_hz}\nduration_s = {duration_s}\n"]
    for bus in buses:
        parts.append(
            f'[[bus]]\nname = "{bus.name}"\nurl = "{bus.url}"\ntimeout_s = {bus.timeout_s}\n'
        )
        timeouts = dict(bus.device_timeouts)
        for unit in bus.units:
            parts.append(
                f'  [[bus.device]]\n  name = "{device_name(bus.name, unit)}"\n'
                f'  profile = "{PROFILE}"\n  address = {unit}\n  parameters = [{names}]\n'
            )
            if unit in timeouts:
                parts.append(f"  timeout_s = {timeouts[unit]}\n")
    parts.append(sinks)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


@contextlib.contextmanager
def _schedule(actions: Sequence[tuple[float, Callable[[], object]]]) -> Iterator[list[float]]:
    """Run each ``(offset_s, action)`` on a thread, ``offset_s`` after entering; yields the
    offsets the actions actually ran at. Waits for the actions to finish and re-raises
    their first error on exit."""
    done: list[float] = []
    errors: list[BaseException] = []
    start = time.monotonic()

    def run() -> None:
        for offset, action in sorted(actions, key=lambda a: a[0]):
            time.sleep(max(0.0, start + offset - time.monotonic()))
            try:
                action()
            except BaseException as exc:
                errors.append(exc)
                return
            done.append(time.monotonic() - start)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        thread.join(timeout=30)
    if errors:
        raise errors[0]


def at_phase(rate_hz: float, phase_s: float, action: Callable[[], object]) -> Callable[[], None]:
    """``action``, run once the next tick slot has begun ``phase_s`` ago (slot n begins at
    n / rate_hz after the epoch, as the poller's ticks do): so a fault lands at a known
    point of a tick, between two ticks or while a given request is in flight."""

    def aligned() -> None:
        at = (math.floor(time.time() * rate_hz) + 1) / rate_hz + phase_s
        time.sleep(max(0.0, at - time.time()))
        action()

    return aligned


def run_flow(config: Path, actions: Sequence[tuple[float, Callable[[], object]]] = ()) -> None:
    """Run the whole acquisition flow of ``config`` to its end (its ``duration_s``), with
    ``actions`` run at their offsets (seconds after the flow is started) meanwhile."""
    flow = build_flow(load_config(config))
    with _schedule(actions) as done:
        run_main(flow)
    assert len(done) == len(actions), f"only {len(done)} of {len(actions)} faults injected"
