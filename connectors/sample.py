"""The Sample: one parameter read from one device at one tick."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["Sample", "TickStats", "Value"]

Value = float | int | bool | str | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One parameter of one device, read once at one tick.

    A failed read is a Sample with ``value=None`` and ``error`` set; it is
    recorded, never dropped and never raised.
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


@dataclass(frozen=True, slots=True)
class TickStats:
    """How one tick of one bus went: one per tick polled, emitted with its samples.

    ``reads`` counts requests sent, ``errors`` the requests that failed (timeout, exception
    response, bad frame, no connection); ``late`` the slots skipped after this tick because
    it overran; ``drift_s`` how long after its scheduled start the tick began.
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
