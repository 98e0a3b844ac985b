"""One request on a bus's wire: keep the line's silences, send it, check the answer, and
classify a failure where it happens; its Samples are built by connectors.readings.

A :class:`Wire` belongs to one bus's poller, which decides what to send and when (connectors.
poller); the wire sends it and says how it went (:class:`Outcome`). Bus timing: on an
``rtu://`` bus the line is kept silent for 3.5 character times (1.75 ms above 19200 baud)
between the end of one transaction and the next request; ``Bus.pause_s`` and
``Device.pause_s`` ask for longer silences; after a bad frame the line is left silent for
a while, so its tail is not taken for the next answer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from pymodbus.exceptions import ModbusException

from connectors.bus import Bus, Device
from connectors.describe import Description
from connectors.faults import exception_text
from connectors.link import BusLink, Client
from connectors.parameter import BIT_TABLES
from connectors.readings import Readings
from connectors.registers import Read, pack_read
from connectors.sample import ErrorKind, Sample
from connectors.transport import frame_gap_s, pending_bytes, read_failure, set_timing

__all__ = ["Answer", "Outcome", "Wire", "answer_words", "read_call"]

log = logging.getLogger("connectors.poller")  # the bus's log lines, under one name

_RESYNC_S = 0.02  # silence kept after a bad frame, so its tail is not taken for an answer

# Register table -> the client's read of it (FC03, FC04, FC01, FC02).
_READS = {
    "holding": "read_holding_registers",
    "input": "read_input_registers",
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
}


def _read_name(table: str) -> str:
    name = _READS.get(table)
    if name is None:
        raise ValueError(f"no read for register table {table!r} (known: {', '.join(_READS)})")
    return name


def read_call(client: Client, table: str) -> Callable[..., Awaitable[Any]]:
    """``client``'s read of register ``table``; ValueError for a table it has none for."""
    return getattr(client, _read_name(table))  # type: ignore[no-any-return]


def answer_words(table: str, response: Any, count: int) -> list[int]:
    """The words of a read's answer: its registers, or for a read of ``count`` coils or
    discrete inputs its bits as 0 / 1 (pymodbus pads them to whole bytes; an answer of
    another length is returned whole, and found the wrong length by its decoding)."""
    if table not in BIT_TABLES:
        return response.registers  # type: ignore[no-any-return]
    bits = response.bits
    if len(bits) in (count, -(-count // 8) * 8):
        bits = bits[:count]
    return [1 if b else 0 for b in bits]


class Outcome(Enum):
    """How one request went, for the poller's bookkeeping (its rows say more)."""

    ANSWERED = "answered"  # values, or a Modbus exception response: the device is there
    TIMEOUT = "timeout"  # nothing answered
    LOST = "lost"  # the connection went down (``Wire.lost`` says how)
    FAILED = "failed"  # an answer that is no good (bad frame, bad response), or a bug
    FALLBACK = "fallback"  # a merged read rejected with exception 2; no samples (asked for)
    STEP_DOWN = "step down"  # a merged read timed out or came back garbled; no samples (asked for)


# What a request came to: the response (an exception response too) or None, the outcome of a
# failure, its kind and text (None, None when answered), the request's and the answer's time.
Answer = tuple[Any, Outcome, ErrorKind | None, str | None, datetime, datetime]


class Wire:
    """The requests of one bus, one at a time on the client its link gives.

    ``reads`` counts the requests sent and ``errors`` the planned reads that became error
    rows since the poller last set them to 0 (once per tick). ValueError at construction
    for a read of a register table there is no read for.
    """

    def __init__(
        self,
        bus: Bus,
        link: BusLink,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        for device in bus.devices:
            for read in device.reads:
                _read_name(read.table)
        self._bus, self._link, self._clock, self._sleep = bus, link, clock, sleep
        self._client: Client | None = None
        self._reads: dict[str, Callable[..., Awaitable[Any]]] = {}  # table -> the client's read
        gap = frame_gap_s(bus.url.baudrate) if bus.url.scheme == "rtu" else 0.0
        # Each device's timeout and retries, and the silence its requests keep before them:
        # looked up once per request.
        self._settings = {
            d.name: (d.timing(bus), max(gap, bus.pause_s, d.pause_s)) for d in bus.devices
        }
        self._timing = (bus.timeout_s, bus.retries)  # the client's timeout and retries now
        self._idle_since = -math.inf  # when the last transaction ended (monotonic)
        self._resync = False
        self.descriptions = {
            d.name: Description(bus.name, d.name, d.parameters, d.describe, d.pinned)
            for d in bus.devices
            if d.describe
        }
        self._rows = Readings(bus)
        self.lost: str | None = None  # how the connection went down in the last request
        self.hung_up = False  # closed by hang_up(), not lost; until the next connect
        self.reads = 0
        self.errors = 0

    def connected(self) -> bool:
        """Whether the client is open (the link's client is taken on the first call)."""
        if self._client is None:
            client = self._client = self._link.client()
            self._reads = {table: read_call(client, table) for table in _READS}
        return self._client.connected

    async def connect(self) -> str | None:
        """Open the client with the bus's timeout and retries; None when open, else the error
        text of the rows not sent (``connection failed: ...``)."""
        bus, client = self._bus, self._client
        assert client is not None, "connected() first"
        set_timing(client, timeout=bus.timeout_s, retries=bus.retries)
        self._timing = (bus.timeout_s, bus.retries)
        try:
            ok = await client.connect()
        except (ModbusException, OSError) as exc:
            return f"connection failed: {exc}"
        if not ok:
            return f"connection failed: cannot open {self._link.url}"
        if not self.hung_up:  # a new connection, not our own hang-up: ask the devices again
            for desc in self.descriptions.values():
                desc.due = True
        self.hung_up = False
        return None

    def hang_up(self) -> None:
        """Close the connection on purpose (a bus with ``close_after_tick``); the next tick
        connects again without asking the devices how to read them again."""
        if self._client is not None and self._client.connected:
            self._client.close()
            self.hung_up = True

    async def _quiet(self, need: float) -> None:
        """Keep the bus silent for ``need`` seconds since the last transaction ended (the RTU
        inter-frame gap and the pauses), or longer after a bad frame."""
        if self._resync:  # after a bad frame, let the line fall silent before talking
            need, self._resync = max(need, _RESYNC_S), False
        # A stop request wakes the sleep early; the silence is kept all the same.
        while (wait := self._idle_since + need - time.monotonic()) > 0:
            await self._sleep(wait)

    async def call(
        self, device: Device, table: str, address: int, count: int, *, counted: bool = True
    ) -> Answer:
        """Send one read (counted in :attr:`reads` unless not ``counted``) and wait for its
        :data:`Answer`; the response may be an exception response. :meth:`took` makes a
        read's Samples of it."""
        timing, need = self._settings[device.name]
        if timing != self._timing:
            set_timing(self._client, timeout=timing[0], retries=timing[1])
            self._timing = timing
        if need > 0 or self._resync:
            await self._quiet(need)
        call = self._reads[table]  # connected() first
        requested = self._clock()
        self.reads += counted
        outcome, response = Outcome.FAILED, None
        try:
            response = await call(address, count=count, device_id=device.address)
        except Exception as exc:
            kind, error = read_failure(exc)
            if kind is ErrorKind.INTERNAL:
                log.exception("bus %s device %s: read failed", self._bus.name, device.name)
            outcome, kind, error = self._settle(kind, error)
        else:
            kind = error = None
        received = self._clock()
        self._idle_since = time.monotonic()
        return response, outcome, kind, error, requested, received

    async def describe(
        self, device: Device, first: Read | None, tick: int, out: list[Sample]
    ) -> Outcome | None:
        """Ask ``device`` how to read it (its describing registers, connectors.describe),
        before its first data read of the connection. None when it answered (values or an
        exception: what it said is kept, or the profile's settings with a WARNING); else
        the failure, whose rows are those of ``first``, the read it stands for this tick.
        Only then is it counted in :attr:`reads` (a request without rows is not)."""
        desc = self.descriptions[device.name]
        for table, address, count in desc.spans():
            response, outcome, kind, error, requested, received = await self.call(
                device, table, address, count, counted=False
            )
            code = None
            if kind is None and response.isError():
                code = getattr(response, "exception_code", 0)
                why = f"answered {exception_text(code)}"
                for d in desc.describers:
                    if d.within(table, address, count):
                        desc.unknown(d, None, why)
                continue
            if kind is None and len(response.registers) != count:
                kind = ErrorKind.BAD_RESPONSE
                error = f"bad response: {count} registers asked, {len(response.registers)} given"
            if kind is not None:
                if first is not None:
                    self.reads += 1
                    self.errors += 1
                    self._rows.errors(
                        device,
                        first.parameters,
                        tick,
                        requested,
                        received,
                        (kind, error, code),
                        out,
                    )
                return outcome
            desc.take(table, address, response.registers)
        desc.due, desc.asked_at = False, time.monotonic()
        return None

    def took(
        self,
        device: Device,
        read: Read,
        answer: Answer,
        tick: int,
        out: list[Sample],
        *,
        fallback: bool = False,
        step_down: bool = False,
    ) -> Outcome:
        """Append the samples (values or error rows) of ``answer``, :meth:`call`'s to ``read``,
        to ``out``; with ``fallback``, a rejection with exception 2 returns FALLBACK instead,
        and with ``step_down`` a timeout or a bad frame returns STEP_DOWN (no samples for
        either). Not a coroutine, nor is the poller's loop over a device's reads nested deeper
        than it must be: an answer resumes every coroutine that awaits it, and six levels more
        cost a bare paced pymodbus loop 4.7 us a read (docs/benchmarks.md)."""
        response, outcome, kind, error, requested, received = answer
        code = None
        if step_down and (outcome is Outcome.TIMEOUT or kind is ErrorKind.BAD_FRAME):
            self.errors += 1  # it failed on the wire all the same
            return Outcome.STEP_DOWN
        if kind is None:
            if response.isError():
                code = getattr(response, "exception_code", 0)
                if fallback and code == 2:
                    return Outcome.FALLBACK
                outcome, kind, error = Outcome.ANSWERED, ErrorKind.EXCEPTION, exception_text(code)
            else:
                words = answer_words(read.table, response, read.count)
                try:
                    data = pack_read(read, words)
                except ValueError as exc:
                    kind, error = ErrorKind.BAD_RESPONSE, f"bad response: {exc}"
                else:
                    desc = self.descriptions.get(device.name)
                    # A read with values out of range counts once in errors, as any failed one.
                    self.errors += self._rows.values(
                        device, desc, read, data, tick, requested, received, out
                    )
                    if desc is not None:
                        desc.take(read.table, read.address, words)
                    return Outcome.ANSWERED
        self.errors += 1
        self._rows.errors(
            device, read.parameters, tick, requested, received, (kind, error, code), out
        )
        return outcome

    def _settle(self, kind: ErrorKind, error: str) -> tuple[Outcome, ErrorKind, str]:
        """The outcome of a raised failure, given the state the client is left in: a lost
        connection is closed and noted in :attr:`lost`; a timeout with bytes received is a
        bad frame."""
        client = self._client
        assert client is not None
        if kind is ErrorKind.BAD_FRAME:
            self._resync = True
            return Outcome.FAILED, kind, error
        if kind is ErrorKind.INTERNAL:
            return Outcome.FAILED, kind, error
        if kind is ErrorKind.CONNECTION_LOST or not client.connected:
            if client.connected:
                client.close()
            self.lost = "connection lost" if kind is ErrorKind.TIMEOUT else error
            return Outcome.LOST, ErrorKind.CONNECTION_LOST, self.lost
        if kind is ErrorKind.TIMEOUT:
            pending = pending_bytes(client)
            if pending:
                self._resync = True
                return (
                    Outcome.FAILED,
                    ErrorKind.BAD_FRAME,
                    (f"bad frame: {pending} bytes received, no valid response"),
                )
            return Outcome.TIMEOUT, kind, error
        return Outcome.FAILED, kind, error

    def not_sent(
        self,
        device: Device,
        reads: Sequence[Read],
        tick: int,
        failure: tuple[ErrorKind, str],
        out: list[Sample],
    ) -> None:
        """Error rows for reads not sent (their time is now). Reads kept from a down
        connection count as errors; reads held back by backoff do not (nothing was asked)."""
        kind, error = failure
        now = self._clock()
        if kind is not ErrorKind.BACKOFF:
            self.errors += len(reads)
        for read in reads:
            self._rows.errors(device, read.parameters, tick, now, now, (kind, error, None), out)
