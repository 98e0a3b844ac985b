"""The Sample: one parameter read from one device at one tick."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["Sample", "Value"]

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
