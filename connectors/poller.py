"""The per-bus polling loop: an absolute tick schedule on an asyncio loop.

Tick ``n`` starts at ``n / rate_hz`` seconds after the Unix epoch, so every
bus, worker and process agrees on tick numbers, and a resumed run continues
the same schedule. Devices on one bus are polled one after another (a serial
bus carries one transaction at a time). A tick never overlaps the previous
one: when a tick overruns its slot, the missed slots are skipped and
counted as late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException

from connectors.registers import Parameter, Read, decode_read, plan_reads
from connectors.sample import Sample, TickStats
from connectors.simulator import InProcessClient, SimulatedDevice
from connectors.transport import BusUrl, open_client

__all__ = ["Bus", "BusPoller", "Device", "exception_text"]

log = logging.getLogger(__name__)
# pymodbus logs every timeout at ERROR with a dump of recent frames; here the
# same failure is an error row already. A level the user set is kept.
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def exception_text(code: int) -> str:
    """A Modbus exception code as a row's error text, e.g. ``illegal data address (2)``."""
    return f"{EXCEPTION_NAMES.get(code, 'exception')} ({code})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One controller on a bus and the parameters to read from it."""

    name: str
    address: int
    parameters: tuple[Parameter, ...]
    instance: int = 1
    max_gap: int = 0  # unused registers a merged read may span (see plan_reads)
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


def _now() -> datetime:
    return datetime.now(timezone.utc)


class BusPoller:
    """Polls every device of one bus once per tick and hands each tick's samples to ``emit``.

    ``emit(tick, samples, stats)`` is called on the event loop thread once per
    tick; ``stats.late`` counts the slots skipped before the next tick.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        rate_hz: float,
        emit: Callable[[int, list[Sample], TickStats], None],
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.bus = bus
        self.period = 1.0 / rate_hz
        self.emit = emit
        self.clock = clock
        self.client: ModbusBaseClient | InProcessClient | None = None
        self.url = bus.url
        self.tick_started = 0.0
        self.tick_running = False
        self.last_duration = 0.0
        self.next_start = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._reads = 0  # requests sent in the tick in progress
        self._errors_in_tick = 0  # of which failed

    def request_stop(self) -> None:
        """Finish the tick in progress, then return from :meth:`run` (at once if it has not
        started). Thread-safe."""
        self._stop_requested = True  # before looking at the loop: run() checks it after
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    async def run(self, first_tick: int, end_tick: int | None) -> None:
        """Poll ticks ``first_tick`` .. ``end_tick - 1`` (forever if None) or until stopped."""
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_requested:
            self._stop.set()
        tick = first_tick
        try:
            while end_tick is None or tick < end_tick:
                self.next_start = tick * self.period
                delay = self.next_start - time.time()
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                if self._stop.is_set():
                    break
                self.tick_started, self.tick_running = time.time(), True
                samples = await self.poll_tick(tick)
                done = time.time()
                self.last_duration, self.tick_running = done - self.tick_started, False
                following = tick + 1
                if done > following * self.period:
                    following = math.floor(done / self.period) + 1
                if end_tick is not None:
                    following = min(following, end_tick)
                late = following - tick - 1
                if late:
                    log.warning(
                        "bus %s: tick %d overran, %d slot(s) skipped", self.bus.name, tick, late
                    )
                stats = TickStats(
                    bus=self.bus.name,
                    tick=tick,
                    started_at=datetime.fromtimestamp(self.tick_started, timezone.utc),
                    duration_s=self.last_duration,
                    drift_s=self.tick_started - self.next_start,
                    devices=len(self.bus.devices),
                    reads=self._reads,
                    errors=self._errors_in_tick,
                    late=late,
                )
                self.emit(tick, samples, stats)
                tick = following
        finally:
            if self.client is not None:
                self.client.close()

    async def poll_tick(self, tick: int) -> list[Sample]:
        """Read every device once; failures become error samples."""
        samples: list[Sample] = []
        self._reads = self._errors_in_tick = 0
        connect_error = await self._ensure_connected()
        for device in self.bus.devices:
            for read in device.reads:
                if connect_error is not None:
                    self._errors_in_tick += 1
                    now = self.clock()
                    samples.extend(self._errors(device, read, tick, now, now, connect_error))
                else:
                    samples.extend(await self._read(device, read, tick))
        return samples

    async def _ensure_connected(self) -> str | None:
        if self.client is None:
            self.client = open_client(
                self.url, timeout=self.bus.timeout_s, retries=self.bus.retries
            )
        if self.client.connected:
            return None
        try:
            if await self.client.connect():
                return None
        except (ModbusException, OSError) as exc:
            return f"connection failed: {exc}"
        return f"connection failed: cannot open {self.url}"

    async def _read(self, device: Device, read: Read, tick: int) -> list[Sample]:
        assert self.client is not None
        call = (
            self.client.read_holding_registers
            if read.table == "holding"
            else self.client.read_input_registers
        )
        requested = self.clock()
        self._reads += 1
        try:
            response = await call(read.address, count=read.count, device_id=device.address)
        except ModbusException as exc:
            self._errors_in_tick += 1
            return self._errors(device, read, tick, requested, self.clock(), _transport_text(exc))
        received = self.clock()
        if response.isError():
            self._errors_in_tick += 1
            text = exception_text(getattr(response, "exception_code", 0))
            return self._errors(device, read, tick, requested, received, text)
        try:
            values = decode_read(read, response.registers)
        except ValueError as exc:
            self._errors_in_tick += 1
            return self._errors(device, read, tick, requested, received, f"bad response: {exc}")
        return [
            self._sample(device, p, tick, requested, received, value, None) for p, value in values
        ]

    def _errors(
        self,
        device: Device,
        read: Read,
        tick: int,
        requested: datetime,
        received: datetime,
        error: str,
    ) -> list[Sample]:
        return [
            self._sample(device, p, tick, requested, received, None, error) for p in read.parameters
        ]

    def _sample(
        self,
        device: Device,
        p: Parameter,
        tick: int,
        requested: datetime,
        received: datetime,
        value: int | float | str | None,
        error: str | None,
    ) -> Sample:
        return Sample(
            bus=self.bus.name,
            device=device.name,
            address=device.address,
            protocol=self.url.protocol,
            parameter=p.name,
            parameter_id=p.id,
            instance=device.instance,
            value=value,
            unit=p.unit,
            requested_at=requested,
            received_at=received,
            tick=tick,
            error=error,
        )


def _transport_text(exc: ModbusException) -> str:
    text = str(exc)
    if "No response received" in text:
        return "timeout: no response"
    if "cannot connect" in text.lower() or "not connected" in text.lower():
        return "connection lost"
    return text.replace("Modbus Error: ", "")
