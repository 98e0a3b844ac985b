"""TickStats -> bus statistics row, and the declared ``bus_stats`` row schema.

One row per bus and tick polled: how many devices were polled, how many requests were sent
(``reads``) and how many of them failed (``errors``), how many slots were skipped after the
tick because it overran (``late``), how long after its scheduled start the tick began
(``drift_s``) and how long it took (``duration_s``). Natural key: (bus, tick); the sinks
that are idempotent on their key write a replayed tick once.
"""

from __future__ import annotations

from typing import Any

from connectors.sample import TickStats
from sinks.base import Column, Schema

__all__ = ["BUS_STATS_SCHEMA", "to_stats_row"]

BUS_STATS_SCHEMA = Schema(
    columns=(
        Column("bus", "text", nullable=False),
        Column("tick", "int", nullable=False),
        Column("started_at", "timestamp", nullable=False),
        Column("duration_s", "float", nullable=False),
        Column("drift_s", "float", nullable=False),
        Column("devices", "int", nullable=False),
        Column("reads", "int", nullable=False),
        Column("errors", "int", nullable=False),
        Column("late", "int", nullable=False),
    ),
    key=("bus", "tick"),
)


def to_stats_row(s: TickStats) -> dict[str, Any]:
    """One TickStats as one row (a dict in BUS_STATS_SCHEMA's column order)."""
    return {
        "bus": s.bus,
        "tick": s.tick,
        "started_at": s.started_at,
        "duration_s": float(s.duration_s),
        "drift_s": float(s.drift_s),
        "devices": s.devices,
        "reads": s.reads,
        "errors": s.errors,
        "late": s.late,
    }
