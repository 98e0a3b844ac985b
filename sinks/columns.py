"""Column formatting shared by the backends: timestamps as ISO 8601 text, and any
column rewritten for a backend in one pass."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sinks.base import ColumnType, Schema, SinkError, SinkValueError

__all__ = [
    "ColumnFormatter",
    "format_column_lists",
    "format_columns",
    "format_timestamp",
    "per_run",
    "timestamp_column",
]


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds, e.g. ``2026-11-22T05:01:54.123456+00:00``.

    Aware datetimes in another zone are converted to UTC; naive ones raise SinkValueError,
    since their instant is unknown, and so do those whose UTC day is before year 1 or after
    9999, which a datetime cannot hold.
    """
    if not isinstance(value, datetime):
        raise SinkValueError(f"{value!r} is not a datetime: a timestamp column takes datetimes")
    if value.tzinfo is None or value.utcoffset() is None:
        raise SinkValueError(
            f"naive datetime {value.isoformat()!r}: timestamps must be timezone-aware"
        )
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:
        raise SinkValueError(
            f"timestamp {value.isoformat()!r} is out of range in UTC (years 1 to 9999)"
        ) from None
    return utc.isoformat(timespec="microseconds")


def per_run(values: Sequence[Any], convert: Callable[[Any], Any]) -> list[Any]:
    """``convert`` over a column, None kept as None: a value equal to the one before it takes
    that one's result, so ``convert`` runs once per run of equal values.

    The parameters of one Modbus read share their timestamps, so a timestamp column is a few
    runs: converting each instant once is what makes it cheap. Equal instants in other zones
    compare equal, so ``convert`` must give them the same result."""
    out: list[Any] = []
    append = out.append
    last: Any = None
    result: Any = None
    for v in values:
        if v is None:
            append(None)
            continue
        if v != last:
            result, last = convert(v), v
        append(result)
    return out


def _iso(value: Any) -> str:
    if type(value) is datetime and value.tzinfo is timezone.utc:
        return value.isoformat(timespec="microseconds")  # what format_timestamp gives
    return format_timestamp(value)


def timestamp_column(values: Sequence[Any]) -> list[str | None]:
    """:func:`format_timestamp` over a column, once per run of equal instants
    (:func:`per_run`); a UTC datetime is formatted without the checks it needs no more."""
    return per_run(values, _iso)


ColumnFormatter = Callable[[Sequence[Any]], Sequence[Any]]


def format_column_lists(
    schema: Schema,
    columns: list[Sequence[Any]],
    formatters: Mapping[ColumnType, ColumnFormatter],
    where: str = "",
) -> bool:
    """Rewrite, in place, the columns (one value sequence per column of ``schema``) whose
    type has a formatter: ``columns[i] = formatters[type](columns[i])``; whether any changed
    (a formatter that returns its column itself leaves it as is). A SinkError of a formatter
    comes out as the same class, prefixed with ``where`` (the target) and the column."""
    changed = False
    for i, column in enumerate(schema.columns):
        fmt = formatters.get(column.type)
        if fmt is None:
            continue
        try:
            cells = fmt(columns[i])
        except SinkError as exc:
            prefix = f"{where}: " if where else ""
            raise type(exc)(f"{prefix}column {column.name!r} ({column.type}): {exc}") from exc
        if cells is not columns[i]:
            columns[i], changed = cells, True
    return changed


def format_columns(
    schema: Schema,
    values: list[tuple[Any, ...]],
    formatters: Mapping[ColumnType, ColumnFormatter],
    where: str = "",
) -> list[tuple[Any, ...]]:
    """:func:`format_column_lists` over rows (value tuples in column order).

    Works column by column (transpose, convert, transpose back): a Python call per cell
    would cost several times more than the write itself. When no formatter changes its
    column, ``values`` come back untouched.
    """
    if not values or not any(c.type in formatters for c in schema.columns):
        return values
    columns: list[Sequence[Any]] = list(zip(*values, strict=True))
    if not format_column_lists(schema, columns, formatters, where):
        return values
    return list(zip(*columns, strict=True))
