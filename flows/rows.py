"""Sample -> long-format row, and the declared row schema.

One row per Sample, with exactly DESIGN.md's columns in its order. ``value``
is a float (ints and bools become floats) or None; strings go to
``value_text``, and so does an enum label (``Sample.text``) next to its numeric
value. Natural key: (device, parameter, instance, requested_at).
"""

from __future__ import annotations

from typing import Any

from connectors.sample import Sample
from sinks.base import Column, Schema

__all__ = ["SAMPLE_SCHEMA", "to_row"]

SAMPLE_SCHEMA = Schema(
    columns=(
        Column("bus", "text", nullable=False),
        Column("device", "text", nullable=False),
        Column("address", "int", nullable=False),
        Column("protocol", "text", nullable=False),
        Column("parameter", "text", nullable=False),
        Column("parameter_id", "int"),
        Column("instance", "int", nullable=False),
        Column("value", "float"),
        Column("value_text", "text"),
        Column("unit", "text"),
        Column("requested_at", "timestamp", nullable=False),
        Column("received_at", "timestamp", nullable=False),
        Column("midpoint_at", "timestamp", nullable=False),
        Column("latency_s", "float", nullable=False),
        Column("error", "text"),
    ),
    key=("device", "parameter", "instance", "requested_at"),
)


def to_row(s: Sample) -> dict[str, Any]:
    """Flatten one Sample into one row (a dict in SAMPLE_SCHEMA's column order)."""
    value, text = s.value, s.text
    if isinstance(value, str):
        value, text = None, value
    elif value is not None:
        value = float(value)
    latency = s.received_at - s.requested_at
    return {
        "bus": s.bus,
        "device": s.device,
        "address": s.address,
        "protocol": s.protocol,
        "parameter": s.parameter,
        "parameter_id": s.parameter_id,
        "instance": s.instance,
        "value": value,
        "value_text": text,
        "unit": s.unit,
        "requested_at": s.requested_at,
        "received_at": s.received_at,
        "midpoint_at": s.requested_at + latency / 2,
        "latency_s": latency.total_seconds(),
        "error": s.error,
    }
