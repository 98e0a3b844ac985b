"""A bus and its devices, as configured: what a BusPoller polls."""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.registers import Parameter, Read, plan_reads
from connectors.sim import SimulatedDevice
from connectors.transport import BusUrl

__all__ = ["Bus", "Device"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One controller on a bus and the parameters to read from it.

    ``reads`` is the request plan (``plan_reads`` with ``max_gap``), computed once.
    """

    name: str
    address: int
    parameters: tuple[Parameter, ...]
    instance: int = 1
    max_gap: int = 10  # unused registers a merged read may span (see plan_reads)
    timeout_s: float | None = None  # None: the bus's
    retries: int | None = None  # None: the bus's
    pause_s: float = 0.0  # silence before each request to this device
    reads: tuple[Read, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads", plan_reads(self.parameters, max_gap=self.max_gap))


@dataclass(frozen=True, slots=True, kw_only=True)
class Bus:
    """One bus (serial line or TCP gateway) and its devices.

    With ``simulate`` set, the bus is served by a :class:`BusSimulator`
    started with the poller; ``url``'s scheme picks its transport.
    """

    name: str
    url: BusUrl
    devices: tuple[Device, ...]
    timeout_s: float = 1.0
    retries: int = 0
    simulate: tuple[SimulatedDevice, ...] | None = None
    host: str | None = None
    pause_s: float = 0.0  # silence between any two requests on the bus
