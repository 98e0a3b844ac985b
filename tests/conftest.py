"""Shared helpers: simulated buses, running a source to completion, Sample and TickStats
builders, writing a config."""

from __future__ import annotations

import asyncio
import math
import textwrap
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
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

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

SIM_URLS = {
    "tcp": "tcp://127.0.0.1:0",
    "udp": "udp://127.0.0.1:0",
    "rtu": "rtu://pty",
    "ascii": "ascii://pty",
    "rtu+tcp": "rtu+tcp://127.0.0.1:0",
    "sim": "sim://",
}


def make_sample(**fields: Any) -> Sample:
    """A Sample of parameter ``p`` of device ``d`` (unit 1) on bus ``b`` read at tick 1 with
    value 1.0, requested and received at :data:`T0`; ``fields`` override any of that."""
    base: dict[str, Any] = dict(
        bus="b", device="d", address=1, protocol="modbus-tcp", parameter="p",
        parameter_id=None, instance=1, value=1.0, unit=None, requested_at=T0,
        received_at=T0, tick=1,
    )  # fmt: skip
    return Sample(**{**base, **fields})


def make_stats(**fields: Any) -> TickStats:
    """The TickStats of tick 1 of bus ``b``: 2 devices, 2 reads, no error, on time, 10 ms;
    ``fields`` override any of that."""
    base: dict[str, Any] = dict(
        bus="b", tick=1, started_at=T0, duration_s=0.01, drift_s=0.0, devices=2, reads=2,
        errors=0, late=0,
    )  # fmt: skip
    return TickStats(**{**base, **fields})


def write_config(directory: Path, text: str) -> Path:
    """``text`` (dedented) as ``directory/acquire.toml``; returns its path."""
    path = directory / "acquire.toml"
    path.write_text(textwrap.dedent(text))
    return path


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
    after = None if on_tick is None else lambda i: on_tick(i, sim)
    return await run_poller(bus, link, rate_hz=rate_hz, ticks=ticks, on_tick=after)


async def run_poller(
    bus: Bus,
    link: BusLink,
    *,
    rate_hz: float,
    ticks: int,
    on_tick: Callable[[int], Any] | None = None,
) -> list[Tick]:
    """Poll ``bus`` through ``link`` (started here) for ``ticks`` ticks on the running loop,
    then close the link; ``on_tick(i)`` runs after the i-th tick was emitted (a coroutine it
    returns runs as a task, awaited before returning). Each tick's samples and stats.

    A tick that overruns its slot (a loaded machine) skips slots, not ticks: the poller is
    stopped once ``ticks`` ticks were polled, within ten times as many slots."""
    out: list[Tick] = []
    tasks: list[asyncio.Future[Any]] = []

    def emit(tick: int, samples: list[Sample], stats: TickStats) -> None:
        out.append((samples, stats))
        if len(out) == ticks:
            poller.request_stop()
        if on_tick is not None and asyncio.iscoroutine(result := on_tick(len(out) - 1)):
            tasks.append(asyncio.ensure_future(result))

    poller = BusPoller(bus, link=link, rate_hz=rate_hz, emit=emit)
    await link.start()
    first = math.floor(time.time() * rate_hz) + 1
    try:
        await poller.run(first, first + 10 * ticks)
        await asyncio.gather(*tasks)
    finally:
        await link.close()
    return out
