"""The Sample: one parameter read from one device at one tick."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["Sample", "TickStats", "Value"]

Value = float | int | bool | str | None


@dataclass(slots=True)
class Sample:
    """One parameter of one device, read once at one tick.

    A failed read is a Sample with ``value=None`` and ``error`` set; it is
    recorded, never dropped and never raised. ``text`` is the enum label of ``value``
    for parameters that have labels (the numeric value is kept).

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
    value: Value
    unit: str | None
    requested_at: datetime
    received_at: datetime
    tick: int
    error: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class TickStats:
    """How one tick of one bus went: one per tick polled, emitted with its samples.

    ``devices`` counts the devices of the bus (backed-off ones too); ``reads`` the
    requests sent; ``errors`` the requests that failed (timeout, exception response, bad
    frame) plus the reads not sent because the connection is down. Reads held back by
    backoff (error rows starting ``backoff:``) count in neither. A merged read rejected
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
