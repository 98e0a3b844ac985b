"""The per-bus polling loop: an absolute tick schedule on an asyncio loop.

Tick ``n`` starts at ``n / rate_hz`` seconds after the Unix epoch, so every
bus, worker and process agrees on tick numbers, and a resumed run continues
the same schedule. Devices on one bus are polled one after another (a serial
bus carries one transaction at a time). A tick never overlaps the previous
one: when a tick overruns its slot, the missed slots are skipped and
counted as late.

Bus timing: on an ``rtu://`` bus the line is kept silent for 3.5 character times
(1.75 ms above 19200 baud) between the end of one transaction and the next request;
``Bus.pause_s`` and ``Device.pause_s`` ask for longer silences. A device's
``timeout_s``/``retries`` override the bus's for its requests.

Faults (all become error rows, none is raised): a device silent for 3 ticks in a row
is backed off (see connectors.faults); a lost connection is reopened at once, then
after 0.5 s, 1 s ... 30 s; a bad frame is recorded and the line left silent before the
next request; a merged read rejected with exception 2 falls back to one read per
parameter, once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException

from connectors.bus import Bus, Device
from connectors.faults import DeviceBackoff, Reconnect, exception_text, transport_text
from connectors.registers import (
    Parameter,
    Read,
    decode_read,
    describe_plan,
    split_read,
)
from connectors.sample import Sample, TickStats
from connectors.sim.device import InProcessClient
from connectors.transport import (
    BadFrameError,
    frame_gap_s,
    open_client,
    pending_bytes,
    set_timing,
)

__all__ = ["BusPoller"]

log = logging.getLogger(__name__)
# pymodbus logs every timeout at ERROR with a dump of recent frames; here the
# same failure is an error row already. A level the user set is kept.
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

# Outcomes of one request (None: the device answered with a value or an exception).
_TIMEOUT, _LOST, _BAD, _FALLBACK = "timeout", "lost", "bad", "fallback"
_SKIPPED = "backoff: not sent after a timeout of this device in this tick"
_RESYNC_S = 0.02  # silence kept after a bad frame, so its tail is not taken for an answer


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
        self.last_drift = 0.0  # how late the latest tick started
        self.next_start = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None  # the sleep in progress
        self._stop_requested = False
        self._reads = 0  # requests sent in the tick in progress
        self._errors_in_tick = 0  # planned reads of the tick that became error rows
        self._plans = {d.name: list(d.reads) for d in bus.devices}  # after any fallback
        self._timings = {  # (timeout, retries) of each device's requests
            d.name: (
                bus.timeout_s if d.timeout_s is None else d.timeout_s,
                bus.retries if d.retries is None else d.retries,
            )
            for d in bus.devices
        }
        self._backoff = {d.name: DeviceBackoff() for d in bus.devices}
        self._reconnect = Reconnect()
        self._outage: str | None = None  # why the connection is down, in this tick
        self._timing = (bus.timeout_s, bus.retries)  # the client's timeout and retries now
        self._idle_since = -math.inf  # when the last transaction ended (monotonic)
        self._gap = 0.0  # the RTU inter-frame silence, set in run()
        self._resync = False

    def request_stop(self) -> None:
        """Finish the tick in progress, then return from :meth:`run` (at once if it has not
        started). Thread-safe."""
        self._stop_requested = True  # before looking at the loop: run() checks it after
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        """End the sleep in progress, if any (on the loop)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _sleep(self, delay: float) -> None:
        """Sleep about ``delay`` seconds in one timer, or until a stop is requested; it may
        end early, so callers look at the clock again.

        uvloop's timers count whole milliseconds from now, rounded to the nearest: the
        rest of a sleep that woke a little early (under half a millisecond) became a timer
        of 0 that fired at once, again and again until the deadline, spinning the loop
        (about a quarter of the poller's CPU per read at a fast tick). There the delay is
        rounded up, so the timer fires at most a millisecond after the deadline.
        """
        loop = asyncio.get_running_loop()
        if type(loop).__module__.startswith("uvloop"):
            delay = math.ceil(delay * 1000) / 1000
        self._waiter = loop.create_future()
        timer = loop.call_later(delay, self._wake)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def run(self, first_tick: int, end_tick: int | None) -> None:
        """Poll ticks ``first_tick`` .. ``end_tick - 1`` (forever if None) or until stopped."""
        self._loop = asyncio.get_running_loop()
        self._gap = frame_gap_s(self.url.baudrate) if self.url.scheme == "rtu" else 0.0
        for device in self.bus.devices:
            log.debug(
                "bus %s device %s: plan %s", self.bus.name, device.name, describe_plan(device.reads)
            )
        tick = first_tick
        try:
            while end_tick is None or tick < end_tick:
                self.next_start = tick * self.period
                # The schedule is on the wall clock, timers are not: look again after a
                # wake, as a sleep may end early or the wall clock be set back meanwhile.
                while (delay := self.next_start - time.time()) > 0 and not self._stop_requested:
                    await self._sleep(delay)
                if self._stop_requested:
                    break
                self.tick_started, self.tick_running = time.time(), True
                self.last_drift = self.tick_started - self.next_start
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
                    drift_s=self.last_drift,
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
        """Read every device once; failures become error samples, never exceptions."""
        samples: list[Sample] = []
        self._reads = self._errors_in_tick = 0
        outage = await self._ensure_connected()
        for device in self.bus.devices:
            backoff, reads = self._backoff[device.name], self._plans[device.name]
            if not backoff.due():
                self._fail(device, reads, tick, backoff.reason, samples)
                continue
            if outage is None:
                outage = await self._poll_device(device, tick, samples)
            else:
                self._fail(device, reads, tick, outage, samples)
        return samples

    async def _poll_device(self, device: Device, tick: int, samples: list[Sample]) -> str | None:
        """Read one device's plan; returns the outage text if the connection went down.

        A merged read rejected with exception 2 is replaced in the plan, for good, by one
        read per parameter, which are read at once in the same tick.
        """
        backoff, plan = self._backoff[device.name], self._plans[device.name]
        answered: bool | None = None
        i = 0
        while i < len(plan):
            read = plan[i]
            if self._outage is not None:
                self._fail(device, plan[i:], tick, self._outage, samples)
                break
            if answered is False:  # it timed out once this tick: do not pay that again
                self._fail(device, plan[i:], tick, _SKIPPED, samples)
                break
            # A read of one parameter (as every read split off a rejected one is) has no
            # smaller reads to fall back to.
            fallback = len(read.parameters) > 1
            outcome = await self._transact(device, read, tick, samples, fallback=fallback)
            if outcome == _FALLBACK:
                singles = split_read(read)
                plan[i : i + 1] = singles
                log.info(
                    "bus %s device %s: read of %d registers at %d rejected (illegal data "
                    "address); reading its parameters one by one from now on",
                    self.bus.name, device.name, read.count, read.address,
                )  # fmt: skip
                continue
            if outcome == _TIMEOUT:
                answered = answered or False
            elif outcome != _LOST:
                answered = True
            i += 1
        backoff.record(answered)
        if answered is False and backoff.silent == backoff.after:
            log.warning(
                "bus %s device %s: no answer in %d ticks, polling it every %d ticks",
                self.bus.name, device.name, backoff.silent, backoff.every,
            )  # fmt: skip
        return self._outage

    async def _ensure_connected(self) -> str | None:
        """Open the client if it is not; None when connected, else the rows' error text."""
        self._outage = None
        if self.client is None:
            self.client = open_client(
                self.url, timeout=self.bus.timeout_s, retries=self.bus.retries
            )
        if self.client.connected:
            return None
        reconnect = self._reconnect
        if not reconnect.due():
            self._outage = reconnect.outage_text()
            return self._outage
        set_timing(self.client, timeout=self.bus.timeout_s, retries=self.bus.retries)
        self._timing = (self.bus.timeout_s, self.bus.retries)
        try:
            ok = await self.client.connect()
            error = None if ok else f"connection failed: cannot open {self.url}"
        except (ModbusException, OSError) as exc:
            error = f"connection failed: {exc}"
        if error is None:
            down = reconnect.connected()
            if down is not None:
                log.warning("bus %s: reconnected after %.1f s", self.bus.name, down)
            return None
        reconnect.failed(error)
        log.warning(
            "bus %s: %s (attempt %d, next in %.1f s)",
            self.bus.name, error, reconnect.attempts, reconnect.delay,
        )  # fmt: skip
        self._outage = error
        return error

    async def _quiet(self, need: float) -> None:
        """Keep the bus silent for ``need`` seconds since the last transaction ended (the RTU
        inter-frame gap and the pauses), or longer after a bad frame."""
        if self._resync:  # after a bad frame, let the line fall silent before talking
            need, self._resync = max(need, _RESYNC_S), False
        # A stop request wakes the sleep early; the silence is kept all the same.
        while (wait := self._idle_since + need - time.monotonic()) > 0:
            await self._sleep(wait)

    async def _transact(
        self, device: Device, read: Read, tick: int, samples: list[Sample], *, fallback=False
    ) -> str | None:
        """One request; appends its samples. Returns None for a value or an exception
        response, ``_TIMEOUT`` when nothing answered, ``_LOST`` when the connection went
        down, ``_BAD`` for anything else that failed, or (with ``fallback``) ``_FALLBACK``
        without samples when a merged read was rejected with exception 2."""
        client = self.client
        assert client is not None
        timing = self._timings[device.name]
        if timing != self._timing:
            set_timing(client, timeout=timing[0], retries=timing[1])
            self._timing = timing
        need = max(self._gap, self.bus.pause_s, device.pause_s)
        if need > 0 or self._resync:
            await self._quiet(need)
        call = (
            client.read_holding_registers
            if read.table == "holding"
            else client.read_input_registers
        )
        requested = self.clock()
        self._reads += 1
        outcome: str | None = _BAD
        try:
            response = await call(read.address, count=read.count, device_id=device.address)
        except BadFrameError as exc:
            error, self._resync = f"bad frame: {exc.text}", True
        except (ModbusException, OSError) as exc:
            error, outcome = self._failure(exc)
        except Exception as exc:
            log.exception("bus %s device %s: read failed", self.bus.name, device.name)
            error = f"internal error: {exc!r}"
        else:
            error = None
        received = self.clock()
        self._idle_since = time.monotonic()
        if error is None:
            if response.isError():
                code = getattr(response, "exception_code", 0)
                if fallback and code == 2:
                    return _FALLBACK
                error, outcome = exception_text(code), None
            else:
                try:
                    values = decode_read(read, response.registers)
                except ValueError as exc:
                    error = f"bad response: {exc}"
                else:
                    samples.extend(
                        self._sample(device, p, tick, requested, received, v, None)
                        for p, v in values
                    )
                    return None
        self._errors_in_tick += 1
        samples.extend(self._errors(device, read, tick, requested, received, error))
        return outcome

    def _failure(self, exc: ModbusException | OSError) -> tuple[str, str]:
        """The error text and outcome of a raised failure; notes a lost connection."""
        assert self.client is not None
        text = transport_text(exc) if isinstance(exc, ModbusException) else str(exc)
        if isinstance(exc, ConnectionException | OSError) or not self.client.connected:
            if self.client.connected:
                self.client.close()
            lost = "connection lost" if text.startswith("timeout") else text
            self._reconnect.lost(lost)
            self._outage = lost
            return lost, _LOST
        if text.startswith("timeout"):
            pending = pending_bytes(self.client)
            if pending:
                self._resync = True
                return f"bad frame: {pending} bytes received, no valid response", _BAD
            return text, _TIMEOUT
        return text, _BAD

    def _fail(
        self, device: Device, reads: Sequence[Read], tick: int, error: str, out: list[Sample]
    ) -> None:
        """Error rows for reads not sent (their time is now). Reads kept from a down
        connection count as errors; reads held back by backoff do not (nothing was asked)."""
        now = self.clock()
        if not error.startswith("backoff"):
            self._errors_in_tick += len(reads)
        for read in reads:
            out.extend(self._errors(device, read, tick, now, now, error))

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
        text = p.label(value) if p.labels and value is not None else None
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
            text=text,
        )
