"""The per-bus polling loop: an absolute tick schedule on an asyncio loop.

Tick ``n`` starts at ``n / rate_hz`` seconds after the Unix epoch, so every
bus, worker and process agrees on tick numbers, and a resumed run continues
the same schedule. Devices on one bus are polled one after another (a serial
bus carries one transaction at a time). A tick never overlaps the previous
one: when a tick overruns its slot, the missed slots are skipped and
counted as late.

Each request on the wire (its silences, the answer checked, the failure classified, its
Samples) is connectors.request's; the client comes from the bus's link (connectors.link).
A device's ``timeout_s``/``retries`` override the bus's for its requests (``Device.timing``).

Faults (all become error rows, none is raised): a device silent for 3 ticks in a row
is backed off (see connectors.faults); a lost connection is reopened at once, then
after 0.5 s, 1 s ... 30 s; a bad frame is recorded and the line left silent before the
next request; a merged read rejected with exception 2 falls back to one read per
parameter, once; a merged read that times out or comes back garbled from a device that
answered last tick is tried at once in halves, down to one parameter, and the smaller
reads that answer are kept (``Device.step_down``). A bus may pause after connecting
(``pause_after_connect_s``) and hang up after every tick (``close_after_tick``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

from connectors.bus import Bus, Device
from connectors.faults import DeviceBackoff, Reconnect
from connectors.groups import PollGroup, poll_groups
from connectors.link import BusLink
from connectors.registers import Read, describe_plan, split_read
from connectors.request import Outcome, Wire
from connectors.sample import ErrorKind, Sample, TickStats
from connectors.stepdown import send

__all__ = ["BusPoller", "Schedule"]

log = logging.getLogger(__name__)
_UNITS = {"coil": "coils", "discrete": "discrete inputs"}  # what a read of a bit table counts
# pymodbus logs every timeout at ERROR with a dump of recent frames; here the
# same failure is an error row already. A level the user set is kept.
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

Failure = tuple[ErrorKind, str]  # the kind and text of the rows of reads not sent

_SKIPPED = "backoff: not sent after a timeout of this device in this tick"
_BACKED: Failure = (ErrorKind.BACKOFF, _SKIPPED)  # the rows of reads held back by it


# The clock of every request's two timestamps: a C call, no Python frame.
_now: Callable[[], datetime] = partial(datetime.now, timezone.utc)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Where a poller is in its schedule, for its source's wake-up (Unix time, seconds).

    ``due`` is when the tick in progress started, or when the coming one is expected to:
    its slot plus how late the last tick started (the buses sharing a loop take their turns
    in the same order). ``duration`` is how long the last tick took.
    """

    due: float = 0.0
    duration: float = 0.0


class BusPoller:
    """Polls every device of one bus once per tick and hands each tick's samples to ``emit``.

    ``emit(tick, samples, stats)`` is called on the event loop thread once per
    tick; ``stats.late`` counts the slots skipped before the next tick. The client comes
    from ``link``, whose owner starts it before :meth:`run` and closes it after.
    ValueError for a read of a register table there is no read for.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        link: BusLink,
        rate_hz: float,
        emit: Callable[[int, list[Sample], TickStats], None],
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._bus = bus
        self._period = 1.0 / rate_hz
        self._emit = emit
        self._clock = clock
        self._wire = Wire(bus, link, clock=clock, sleep=self._sleep)
        self._schedule = Schedule()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None  # the sleep in progress
        self._stop_requested = False
        # Each device's poll groups, their plans refined as the devices answer.
        self._groups = {d.name: poll_groups(d, rate_hz) for d in bus.devices}
        self._backoff = {d.name: DeviceBackoff() for d in bus.devices}
        self._versions: dict[str, int] = {}  # the description each device's plan follows
        self._reconnect = Reconnect()
        self._outage: Failure | None = None  # why the connection is down, in this tick
        self._stepped: set[str] = set()  # devices whose reads were stepped down (logged once)

    @property
    def schedule(self) -> Schedule:
        """Where the poller is in its schedule now (read from any thread)."""
        return self._schedule

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
        bus = self._bus
        for device in bus.devices:
            log.debug(
                "bus %s device %s: plan %s", bus.name, device.name, describe_plan(device.reads)
            )
        tick, drift, duration = first_tick, 0.0, 0.0
        while end_tick is None or tick < end_tick:
            next_start = tick * self._period
            self._schedule = Schedule(next_start + drift, duration)
            # The schedule is on the wall clock, timers are not: look again after a
            # wake, as a sleep may end early or the wall clock be set back meanwhile.
            while (delay := next_start - time.time()) > 0 and not self._stop_requested:
                await self._sleep(delay)
            if self._stop_requested:
                break
            started = time.time()
            drift = started - next_start
            self._schedule = Schedule(started, duration)
            self._wire.reads = self._wire.errors = 0
            samples = await self._poll_tick(tick)
            done = time.time()
            duration = done - started
            self._schedule = Schedule(next_start + drift, duration)
            following = tick + 1
            if done > following * self._period:
                following = math.floor(done / self._period) + 1
            if end_tick is not None:
                following = min(following, end_tick)
            late = following - tick - 1
            if late:
                log.warning("bus %s: tick %d overran, %d slot(s) skipped", bus.name, tick, late)
            stats = TickStats(
                bus=bus.name,
                tick=tick,
                started_at=datetime.fromtimestamp(started, timezone.utc),
                duration_s=duration,
                drift_s=drift,
                devices=len(bus.devices),
                reads=self._wire.reads,
                errors=self._wire.errors,
                late=late,
            )
            self._emit(tick, samples, stats)
            tick = following

    async def _poll_tick(self, tick: int) -> list[Sample]:
        """Read every device once; failures become error samples, never exceptions.

        A device's first request of the connection (and one a minute) asks how to read it
        (connectors.describe). A merged read rejected with exception 2 is replaced in its
        plan, for good, by one read per parameter, which are read at once in the same tick;
        one that times out or comes back garbled may be stepped down (connectors.stepdown).
        """
        samples: list[Sample] = []
        outage = await self._ensure_connected()
        wire = self._wire
        for device in self._bus.devices:
            due = [g for g in self._groups[device.name] if g.due(tick)]
            if not due:
                continue  # nothing of it is due: no request, no row
            backoff = self._backoff[device.name]
            failure = outage if backoff.due() else (ErrorKind.BACKOFF, backoff.reason)
            if failure is not None:
                reads = [r for g in due for r in g.plan]
                wire.not_sent(device, reads, tick, failure, samples)
                continue
            answered: bool | None = None
            i = 0
            desc = wire.descriptions.get(device.name)
            if desc is not None and (desc.due or desc.stale(time.monotonic())):
                answered, i = await self._describe(device, due, tick, samples)
            for group in due:
                answered = await self._read_plan(device, group.plan, i, tick, samples, answered)
                i = 0
                if group.every is None and answered and self._outage is None:
                    group.pending = False
            backoff.record(answered)
            if answered is False and backoff.silent == backoff.after:
                log.warning(
                    "bus %s device %s: no answer in %d ticks, polling it every %d ticks",
                    self._bus.name, device.name, backoff.silent, backoff.every,
                )  # fmt: skip
            outage = self._outage
        if self._bus.close_after_tick:
            wire.hang_up()
        return samples

    async def _describe(
        self, device: Device, due: list[PollGroup], tick: int, samples: list[Sample]
    ) -> tuple[bool | None, int]:
        """Ask ``device`` how to read it; failing, that stands for the first read due (whose
        rows carry the failure). Whether it answered (None: not asked) and the index in the
        first group's plan to read on from."""
        first = due[0].plan[0] if due[0].plan else None
        outcome = await self._wire.describe(device, first, tick, samples)
        self._replan(device)
        if outcome is None:
            return None, 0
        return self._settle(outcome, None), 1

    async def _read_plan(
        self,
        device: Device,
        plan: list[Read],
        i: int,
        tick: int,
        samples: list[Sample],
        answered: bool | None,
    ) -> bool | None:
        """Send ``plan`` from read ``i`` on; returns whether the device answered so far."""
        wire, backoff = self._wire, self._backoff[device.name]
        desc = wire.descriptions.get(device.name)
        while i < len(plan):
            read = plan[i]
            if self._outage is not None:
                wire.not_sent(device, plan[i:], tick, self._outage, samples)
                break
            if answered is False:  # it timed out once this tick: do not pay that again
                wire.not_sent(device, plan[i:], tick, _BACKED, samples)
                break
            merged = len(read.parameters) > 1
            # Stepping down costs a timeout per halving: only for a merged read of a device
            # that answered last tick (a silent one times out whole, as before).
            sent: list[Read] | None = None
            unsent: Sequence[Read] = ()
            if merged and device.step_down and backoff.silent == 0:
                outcome, sent, unsent = await send(wire, device, read, tick, samples, _BACKED)
            else:
                answer = await wire.call(device, read.table, read.address, read.count)
                outcome = wire.took(device, read, answer, tick, samples, fallback=merged)
            if outcome is Outcome.FALLBACK:
                plan[i : i + 1] = split_read(read)
                log.info(
                    "bus %s device %s: read of %d %s at %d rejected (illegal data "
                    "address); reading its parameters one by one from now on",
                    self._bus.name, device.name, read.count, _UNITS.get(read.table, "registers"),
                    read.address,
                )  # fmt: skip
                continue
            if sent is not None:
                plan[i : i + 1] = [*sent, *unsent]
                self._stepped_down(device, read, sent, unsent)
                i += len(sent) - 1
            answered = True if outcome is Outcome.ANSWERED else self._settle(outcome, answered)
            if desc is not None:
                self._replan(device)
            i += 1
        return answered

    def _stepped_down(
        self, device: Device, read: Read, sent: Sequence[Read], unsent: Sequence[Read]
    ) -> None:
        """Say once per device that its reads are smaller now (and why)."""
        if device.name in self._stepped:
            log.debug("bus %s device %s: read at %d split further", self._bus.name,
                      device.name, read.address)  # fmt: skip
            return
        self._stepped.add(device.name)
        largest = max(r.count for r in [*sent, *unsent])
        log.warning(
            "bus %s device %s: a read of %d registers at %d got no good answer while smaller "
            "ones do; reading it in smaller pieces from now on (%d registers at most; set "
            "max_registers to start there)",
            self._bus.name, device.name, read.count, read.address, largest,
        )  # fmt: skip

    def _settle(self, outcome: Outcome, answered: bool | None) -> bool | None:
        """Whether the device answered this tick so far, after a request's ``outcome``; a lost
        connection is noted as the tick's outage."""
        if outcome is Outcome.LOST:
            lost = self._wire.lost or "connection lost"
            self._reconnect.lost(lost)
            self._outage = (ErrorKind.CONNECTION_LOST, lost)
            return answered
        if outcome is Outcome.TIMEOUT:
            return answered or False
        return True

    def _replan(self, device: Device) -> None:
        """Rebuild ``device``'s plan when what it says of itself changed (same reads, each
        parameter with its codec and unit as the device says; a fallback split is kept)."""
        desc = self._wire.descriptions[device.name]
        if desc.version == self._versions.get(device.name, 0):
            return
        self._versions[device.name] = desc.version
        now = desc.parameters()
        for group in self._groups[device.name]:
            group.plan[:] = [
                Read(r.table, r.address, r.count, tuple(now[p.name] for p in r.parameters))
                for r in group.plan
            ]
        log.info(
            "bus %s device %s: read as it says: %s", self._bus.name, device.name, desc.summary()
        )

    async def _ensure_connected(self) -> Failure | None:
        """Open the client if it is not; None when connected, else the rows' failure."""
        self._outage = None
        wire = self._wire
        if wire.connected():
            return None
        reconnect = self._reconnect
        if not reconnect.due():
            self._outage = (ErrorKind.CONNECTION_FAILED, reconnect.outage_text())
            return self._outage
        renewed = not wire.hung_up  # a hang-up of our own is not a new connection
        error = await wire.connect()
        if error is None and renewed:
            for groups in self._groups.values():  # identity and configuration: again
                for group in groups:
                    group.pending = True
        if error is None and self._bus.pause_after_connect_s:
            await self._sleep(self._bus.pause_after_connect_s)  # a gateway still waking up
        if error is None:
            down = reconnect.connected()
            if down is not None:
                log.warning("bus %s: reconnected after %.1f s", self._bus.name, down)
            return None
        reconnect.failed(error)
        log.warning(
            "bus %s: %s (attempt %d, next in %.1f s)",
            self._bus.name, error, reconnect.attempts, reconnect.delay,
        )  # fmt: skip
        self._outage = (ErrorKind.CONNECTION_FAILED, error)
        return self._outage
