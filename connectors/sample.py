"""The Sample: one parameter read from one device at one tick."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from connectors.codec import Value

__all__ = ["ErrorKind", "Sample", "TickStats"]


class ErrorKind(Enum):
    """What failed, set on an error Sample where the failure happens (its ``error`` text says
    more). The value is the name the metrics and the summary give the kind."""

    TIMEOUT = "timeout"  # the request was sent, nothing answered
    CONNECTION_LOST = "connection lost"  # the connection went down during or before the read
    CONNECTION_FAILED = "connection failed"  # not sent: the connection cannot be (re)opened
    BACKOFF = "backoff"  # not sent: the device is backed off after timeouts
    EXCEPTION = "exception"  # the device answered with a Modbus exception code
    BAD_FRAME = "bad frame"  # an answer that failed its CRC or did not decode
    BAD_RESPONSE = "bad response"  # a well-formed answer that is not the one asked for
    INTERNAL = "internal error"  # a bug: the request raised something unforeseen
    OUT_OF_RANGE = "out of range"  # an answer whose value is outside its parameter's range


@dataclass(slots=True)
class Sample:
    """One parameter of one device, read once at one tick.

    A failed read is a Sample with ``value=None`` and ``error`` set; it is
    recorded, never dropped and never raised; ``error_kind`` says what failed and, for
    :attr:`ErrorKind.EXCEPTION`, ``exception_code`` is the device's Modbus exception code
    (an error Sample journaled before kinds existed has ``error_kind`` None). ``text`` is
    the enum label of ``value`` for parameters that have labels (the numeric value is kept).

    Treat a Sample as read-only: one goes to every step downstream of the source. (It is
    not a frozen dataclass because a frozen one takes four times as long to build, and
    the poller builds one per value read.)
    """

    bus: str
    device: str
    address: int
    protocol: str
    parameter: str
    parameter_id: int | None
    instance: int
    value: Value | None
    unit: str | None
    requested_at: datetime
    received_at: datetime
    tick: int
    error: str | None = None
    text: str | None = None
    error_kind: ErrorKind | None = None
    exception_code: int | None = None


@dataclass(frozen=True, slots=True)
class TickStats:
    """How one tick of one bus went: one per tick polled, emitted with its samples.

    ``devices`` counts the devices of the bus (backed-off ones too); ``reads`` the
    requests sent (a device's description read only when it failed and its failure stands
    for the first read, see connectors.describe); ``errors`` the requests that failed
    (timeout, exception response, bad frame), the reads not sent because the connection is
    down, and the reads that gave a value out of its parameter's range. Reads held back by
    backoff (error rows of kind :attr:`ErrorKind.BACKOFF`) count in neither. A merged read rejected
    with exception 2 and replaced by one read per parameter counts in ``reads`` only.
    ``late`` counts the slots skipped after this tick because it overran; ``drift_s`` how
    long after its scheduled start the tick began.
    """

    bus: str
    tick: int
    started_at: datetime
    duration_s: float
    drift_s: float
    devices: int
    reads: int
    errors: int
    late: int
