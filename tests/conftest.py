"""Shared helpers: simulated buses and running a source to completion."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.bus import Bus, Device
from connectors.link import BusLink
from connectors.poller import BusPoller
from connectors.registers import load_profile
from connectors.sample import Sample, TickStats
from connectors.sim import BusSimulator, SimulatedDevice
from connectors.source import ControllerSource
from connectors.transport import parse_bus_url

SIM_URLS = {
    "tcp": "tcp://127.0.0.1:0",
    "rtu": "rtu://pty",
    "rtu+tcp": "rtu+tcp://127.0.0.1:0",
    "sim": "sim://",
}


def sim_bus(
    name: str,
    kind: str,
    devices: Sequence[SimulatedDevice],
    *,
    parameters: dict[int, Sequence[str]] | None = None,
    timeout_s: float = 0.5,
) -> Bus:
    """A simulated bus whose devices are named ``<bus>-<unit>``, are played as ``devices`` say
    and read every profile parameter (or the names given per unit id in ``parameters``)."""
    polled = []
    for d in devices:
        profile = load_profile(d.profile)
        names = (parameters or {}).get(d.address)
        params = tuple(profile.parameter(n) for n in names) if names else profile.parameters
        device = Device(
            name=f"{name}-{d.address}",
            address=d.address,
            parameters=params,
            simulation=d.simulation(),
        )
        polled.append(device)
    return Bus(
        name=name,
        url=parse_bus_url(SIM_URLS[kind]),
        devices=tuple(polled),
        timeout_s=timeout_s,
        simulate=True,
    )


def run_source(buses: Sequence[Bus], *, rate_hz: float, duration_s: float) -> list[Sample]:
    """Run a ControllerSource in a one-worker dataflow and return every Sample it emitted."""
    flow = Dataflow("test_source")
    samples = op.input("in", flow, ControllerSource(buses, rate_hz=rate_hz, duration_s=duration_s))
    out: list[Sample] = []
    op.output("out", samples, TestingSink(out))
    run_main(flow)
    return out


Tick = tuple[list[Sample], TickStats]


def poll_bus(
    bus: Bus,
    *,
    rate_hz: float,
    ticks: int,
    on_tick: Callable[[int, BusSimulator], Any] | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    **simulator: Any,
) -> list[Tick]:
    """Poll ``bus`` with a BusPoller for ``ticks`` ticks against its simulator, opened through its
    BusLink (with ``simulator`` attributes set first, e.g. ``wire_time=True``), all on one fresh
    event loop.

    ``on_tick(i, sim)`` runs on the loop after the i-th tick (0-based) was emitted; it may
    change fault knobs or schedule ``sim.stop()``/``sim.start()`` as tasks. Returns each
    tick's samples and stats, in order. ``loop_factory`` builds that loop (default:
    asyncio's).
    """
    polled = _poll_bus(bus, rate_hz, ticks, on_tick, simulator)
    if loop_factory is None:
        return asyncio.run(polled)
    loop = loop_factory()  # asyncio.Runner(loop_factory=) is Python 3.11+
    try:
        return loop.run_until_complete(polled)
    finally:
        loop.close()


async def _poll_bus(
    bus: Bus,
    rate_hz: float,
    ticks: int,
    on_tick: Callable[[int, BusSimulator], Any] | None,
    options: dict[str, Any],
) -> list[Tick]:
    assert bus.simulate
    link = BusLink(bus)
    sim = link.simulator
    assert sim is not None
    for option, value in options.items():
        assert hasattr(sim, option), option
        setattr(sim, option, value)
    out: list[Tick] = []
    tasks: list[asyncio.Task[Any]] = []

    def emit(tick: int, samples: list[Sample], stats: TickStats) -> None:
        out.append((samples, stats))
        if on_tick is not None:
            result = on_tick(len(out) - 1, sim)
            if asyncio.iscoroutine(result):
                tasks.append(asyncio.ensure_future(result))

    poller = BusPoller(bus, link=link, rate_hz=rate_hz, emit=emit)
    await link.start()
    first = math.floor(time.time() * rate_hz) + 1
    try:
        await poller.run(first, first + ticks)
        await asyncio.gather(*tasks)
    finally:
        await link.close()
    return out
