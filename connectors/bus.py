"""A bus and its devices, as configured: what a BusPoller polls."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from connectors.describe import Describer
from connectors.parameter import Parameter
from connectors.registers import Read, plan_reads
from connectors.transport import BusUrl

__all__ = ["Bus", "Device", "Simulation"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Simulation:
    """How the simulator plays one device of a bus configured ``simulate = true``: plain data,
    which connectors.sim turns into a simulated controller serving ``profile``.

    ``delay_s`` answers late, ``dead`` never answers, ``exception_code`` answers every read
    with that Modbus exception, ``garbage`` (``rtu``, ``ascii``) answers with a frame whose
    check is wrong, ``max_read`` never answers a read of more registers than that (as some
    gateways and devices do, instead of exception 2), or with ``garbage`` answers only such a
    read garbled; ``set_point`` is the set point the
    simulated controller starts with.
    ``word_order`` and ``units`` are how a controller that says how it is read (a Watlow PM)
    is set: its 32-bit values low word first (``low_high``, Watlow's factory default) or high
    word first (``high_low``), and its temperatures in degC (``C``) or degF (``F``); it serves
    its word order and units registers to match.
    """

    WORD_ORDERS: ClassVar[tuple[str, ...]] = ("low_high", "high_low")
    UNITS: ClassVar[tuple[str, ...]] = ("C", "F")

    profile: str
    set_point: float | None = None
    delay_s: float = 0.0
    dead: bool = False
    exception_code: int | None = None
    garbage: bool = False
    word_order: str = "low_high"
    units: str = "C"
    max_read: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One controller on a bus and the parameters to read from it.

    ``reads`` is the request plan, computed once: ``plan_reads`` with ``max_gap`` and
    ``max_registers`` (registers per read), or one read per parameter with
    ``one_request_per_parameter``. ``step_down``: a merged read that times out or comes back
    garbled while the device answers is tried in halves, down to one parameter per read, and
    the smaller reads that answer are kept (see connectors.poller).
    ``simulation`` is how the simulator plays it on a simulated bus (None: not simulated).
    ``describe`` are its profile's registers that say how to read the rest
    (connectors.describe); ``pinned`` the (parameter, field) pairs a config override set
    (``byte_order``, ``unit``), which the device's say does not change.
    """

    name: str
    address: int
    parameters: tuple[Parameter, ...]
    instance: int = 1
    max_gap: int = 10  # unused registers a merged read may span (see plan_reads)
    timeout_s: float | None = None  # None: the bus's
    retries: int | None = None  # None: the bus's
    pause_s: float = 0.0  # silence before each request to this device
    max_registers: int = 125  # registers per read, at most (125: Modbus's own limit)
    one_request_per_parameter: bool = False
    step_down: bool = True
    every_s: float | str | None = None  # its poll group: seconds, "connect"; None: every tick
    simulation: Simulation | None = None
    describe: tuple[Describer, ...] = ()
    pinned: frozenset[tuple[str, str]] = frozenset()
    reads: tuple[Read, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads", self.plan(self.parameters))

    def plan(self, parameters: Iterable[Parameter]) -> tuple[Read, ...]:
        """The reads of ``parameters`` as this device merges them (``max_gap``,
        ``max_registers``, ``one_request_per_parameter``)."""
        if self.one_request_per_parameter:
            return tuple(r for p in dict.fromkeys(parameters) for r in plan_reads([p], max_gap=0))
        return plan_reads(parameters, max_gap=self.max_gap, max_registers=self.max_registers)

    def groups(self) -> dict[float | str | None, tuple[Parameter, ...]]:
        """The parameters by poll group: seconds, ``"connect"`` or None (every tick), each
        parameter in its own ``every_s`` or else the device's."""
        groups: dict[float | str | None, list[Parameter]] = {}
        for p in self.parameters:
            groups.setdefault(p.every_s if p.every_s is not None else self.every_s, []).append(p)
        return {every: tuple(ps) for every, ps in groups.items()}

    def timing(self, bus: Bus) -> tuple[float, int]:
        """The response timeout (s) and retries of this device's requests on ``bus``: its own
        where set, else the bus's."""
        return (
            bus.timeout_s if self.timeout_s is None else self.timeout_s,
            bus.retries if self.retries is None else self.retries,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bus:
    """One bus (serial line or TCP gateway) and its devices.

    ``url`` is where the bus is, and its scheme picks its transport. With ``simulate`` the
    bus is served by a simulator (connectors.sim, reached only through connectors.link)
    playing each device's :class:`Simulation`; ``url`` then says how it is served (host,
    port 0 for any, baud rate) and the live address belongs to the opened link.
    """

    name: str
    url: BusUrl
    devices: tuple[Device, ...]
    timeout_s: float = 1.0
    retries: int = 0
    simulate: bool = False
    host: str | None = None
    pause_s: float = 0.0  # silence between any two requests on the bus
    pause_after_connect_s: float = 0.0  # silence after the connection opens (slow gateways)
    close_after_tick: bool = False  # for gateways that serve one client: let go each tick
