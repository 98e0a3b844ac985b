"""Rows shared by the sink tests: with a four-column natural key (:func:`row`, for the
idempotent sinks) and without the parameter column (:func:`plain_row`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sinks.base import Column, Schema

T0 = datetime(2026, 11, 22, 5, 1, 54, 123456, tzinfo=timezone.utc)
SCHEMA = Schema(
    (
        Column("device", "text", nullable=False),
        Column("parameter", "text", nullable=False),
        Column("instance", "int", nullable=False),
        Column("requested_at", "timestamp", nullable=False),
        Column("value", "float"),
        Column("ok", "bool"),
        Column("unit", "text"),
    ),
    key=("device", "parameter", "instance", "requested_at"),
)


def row(i: int, device: str = "pm1", **extra: Any) -> dict[str, Any]:
    """Row ``i`` of device ``device``, one second after row ``i - 1``; ``extra`` overrides."""
    base = {
        "device": device,
        "parameter": "analog_input_value",
        "instance": 1,
        "requested_at": T0 + timedelta(seconds=i),
        "value": 20.0 + i / 10,
        "ok": i % 2 == 0,
        "unit": "C",
    }
    return {**base, **extra}


def plain_row(i: int, **extra: Any) -> dict[str, Any]:
    """Row ``i`` of device pm1 without a parameter column: instance ``i``, one second after
    row ``i - 1``; ``extra`` overrides."""
    base = {
        "device": "pm1",
        "instance": i,
        "requested_at": T0 + timedelta(seconds=i),
        "value": 20.0 + i / 10,
        "ok": i % 2 == 0,
        "unit": "°C",
    }
    return {**base, **extra}
