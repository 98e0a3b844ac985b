"""Shared helpers: simulated buses and running a source to completion."""

from __future__ import annotations

from collections.abc import Sequence

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.poller import Bus, Device
from connectors.registers import load_profile
from connectors.sample import Sample
from connectors.simulator import SimulatedDevice
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
    """A simulated bus whose devices are named ``<bus>-<unit>`` and read every profile parameter
    (or the names given per unit id in ``parameters``)."""
    polled = []
    for d in devices:
        profile = load_profile(d.profile)
        names = (parameters or {}).get(d.address)
        params = tuple(profile.parameter(n) for n in names) if names else profile.parameters
        polled.append(Device(name=f"{name}-{d.address}", address=d.address, parameters=params))
    return Bus(
        name=name,
        url=parse_bus_url(SIM_URLS[kind]),
        devices=tuple(polled),
        timeout_s=timeout_s,
        simulate=tuple(devices),
    )


def run_source(buses: Sequence[Bus], *, rate_hz: float, duration_s: float) -> list[Sample]:
    """Run a ControllerSource in a one-worker dataflow and return every Sample it emitted."""
    flow = Dataflow("test_source")
    samples = op.input("in", flow, ControllerSource(buses, rate_hz=rate_hz, duration_s=duration_s))
    out: list[Sample] = []
    op.output("out", samples, TestingSink(out))
    run_main(flow)
    return out
