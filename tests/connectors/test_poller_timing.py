"""BusPoller timing against the real simulator: the RTU inter-frame silence, the pauses of
a bus and of a device, one timer per wait, and a wire-true RTU read taking its wire time.
The faults and the fallback are tested in test_poller.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from typing import Any

import pytest

from connectors.bus import Bus
from connectors.poller import BusPoller
from connectors.sample import Sample
from connectors.sim import SimulatedDevice
from connectors.transport import char_time_s, frame_gap_s, parse_bus_url, wire_time_s
from tests.conftest import poll_bus, sim_bus


def with_devices(bus: Bus, **changes: Any) -> Bus:
    """``bus`` with every device changed by ``changes`` (a dataclasses.replace)."""
    devices = tuple(dataclasses.replace(d, **changes) for d in bus.devices)
    return dataclasses.replace(bus, devices=devices)


def gaps(samples: list[Sample]) -> list[tuple[str, float]]:
    """(device of the next request, silence before it) between consecutive requests."""
    ordered = sorted(samples, key=lambda s: s.requested_at)
    firsts = list({s.requested_at: s for s in ordered}.values())  # one per request
    return [
        (b.device, (b.requested_at - a.received_at).total_seconds())
        for a, b in itertools.pairwise(firsts)
    ]


# The source runs its pollers on uvloop (connectors.source), whose timers count whole
# milliseconds; asyncio's do not. The silences and tick starts hold on both.
LOOPS = {"asyncio": asyncio.new_event_loop}

with contextlib.suppress(ImportError):  # uvloop is a dependency except on Windows
    import uvloop

    LOOPS["uvloop"] = uvloop.new_event_loop


@pytest.mark.parametrize("loop", LOOPS)
def test_rtu_inter_frame_gap_and_pauses(loop: str) -> None:
    # Three parameters far apart: three requests per device per tick, at 9600 baud.
    only = {1: ["analog_input_value", "heat_power", "display_units"]}
    bus = sim_bus("p", "rtu", [SimulatedDevice(address=1, profile="watlow_pm")], parameters=only)
    bus = dataclasses.replace(bus, url=parse_bus_url("rtu://pty?baudrate=9600"))
    assert len(bus.devices[0].reads) == 3
    ticks = poll_bus(bus, rate_hz=5, ticks=3, loop_factory=LOOPS[loop])
    silences = [g for _, g in gaps([s for tick, _ in ticks for s in tick])]
    assert len(silences) == 8 and min(silences) >= frame_gap_s(9600) - 1e-5
    # No tick starts before its slot, and no request before its tick.
    assert all(stats.drift_s >= 0 for _, stats in ticks)
    assert all(s.requested_at >= stats.started_at for tick, stats in ticks for s in tick)

    two_pms = [SimulatedDevice(address=n, profile="watlow_pm") for n in (1, 2)]
    paused = sim_bus(
        "q", "tcp", two_pms, parameters={n: ["analog_input_value", "heat_power"] for n in (1, 2)}
    )
    one, two = paused.devices
    paused = dataclasses.replace(
        paused, pause_s=0.02, devices=(one, dataclasses.replace(two, pause_s=0.06))
    )
    ticks = poll_bus(paused, rate_hz=4, ticks=3, loop_factory=LOOPS[loop])
    measured = gaps([s for tick, _ in ticks for s in tick])
    assert len(measured) == 11
    assert all(g >= 0.02 - 1e-5 for _, g in measured)
    assert all(g >= 0.06 - 1e-5 for device, g in measured if device == "q-2")
    assert all(s.error is None for tick, _ in ticks for s in tick)


@pytest.mark.parametrize("loop", LOOPS)
def test_each_wait_is_one_timer_not_a_busy_loop(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # What is left of a millisecond once a timer woke a little early used to become a
    # timer of 0 on uvloop, again and again until the deadline: hundreds of loop turns
    # per silence. Each silence and each tick start now takes one timer, two at most.
    sleeps = 0
    sleep = BusPoller._sleep

    async def counted(self: BusPoller, delay: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await sleep(self, delay)

    monkeypatch.setattr(BusPoller, "_sleep", counted)
    only = {1: ["analog_input_value", "heat_power", "display_units"]}
    bus = sim_bus("s", "rtu", [SimulatedDevice(address=1, profile="watlow_pm")], parameters=only)
    bus = dataclasses.replace(bus, url=parse_bus_url("rtu://pty?baudrate=19200"))
    ticks = poll_bus(bus, rate_hz=20, ticks=5, loop_factory=LOOPS[loop])
    requests = sum(stats.reads for _, stats in ticks)
    assert requests == 15 and all(s.error is None for tick, _ in ticks for s in tick)
    # A wait before every tick, a silence before every request but a tick's first.
    assert requests <= sleeps <= 2 * requests
    silences = [g for _, g in gaps([s for tick, _ in ticks for s in tick])]
    assert min(silences) >= frame_gap_s(19200) - 1e-5
    assert all(stats.drift_s >= 0 for _, stats in ticks)


def test_wire_true_rtu_read_takes_its_wire_time() -> None:
    baud, turnaround = 9600, 0.005
    only = {1: ["analog_input_value"]}  # float32: 2 registers
    bus = sim_bus("w", "rtu", [SimulatedDevice(address=1, profile="watlow_pm")], parameters=only)
    bus = with_devices(dataclasses.replace(bus, url=parse_bus_url(f"rtu://pty?baudrate={baud}")))
    # Ten requests of the same read per tick: ten polled devices, one simulated, at unit 1.
    device = bus.devices[0]
    polled = [dataclasses.replace(device, name=f"w-{i}", simulation=None) for i in range(1, 10)]
    bus = dataclasses.replace(bus, devices=(device, *polled))
    ticks = poll_bus(bus, rate_hz=2, ticks=2, wire_time=True, turnaround_s=turnaround)
    samples = [s for tick, _ in ticks for s in tick]
    assert all(s.error is None for s in samples)
    n = 2
    # Request, end-of-frame silence, turnaround, answer: what the poller waits for.
    floor = 8 * char_time_s(baud) + frame_gap_s(baud) + turnaround + (5 + 2 * n) * char_time_s(baud)
    latency = [(s.received_at - s.requested_at).total_seconds() for s in samples]
    assert min(latency) >= floor - 1e-4 and max(latency) < floor + 0.25
    # Request to request: the full theoretical cycle, both gaps included.
    cycle = wire_time_s(8, baud) + wire_time_s(5 + 2 * n, baud) + turnaround
    for tick, _ in ticks:
        starts = sorted(s.requested_at for s in tick)
        steps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
        assert len(steps) == 9 and min(steps) >= cycle - 1e-4
