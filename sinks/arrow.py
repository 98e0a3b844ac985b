"""Rows' columns as Arrow arrays (pyarrow is passed in, imported by the sink that uses it).

Types: timestamp -> ``timestamp[us, tz=UTC]`` (aware datetimes converted to UTC, naive ones
rejected), float -> float64 (ints widened), int -> int64, text -> string, bool -> bool;
non-nullable and key columns are not nullable. A text column stores other scalars as the CSV
sink writes them (``true``/``false``, ``repr`` of floats, ISO 8601 UTC), so a column inferred
as text from mixed kinds takes its own batch. Any other misfit, e.g. a float in an int
column, rejects the whole batch with SinkValueError naming the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from types import ModuleType, NoneType
from typing import TYPE_CHECKING, Any

from sinks.base import ColumnType, Schema, SinkValueError
from sinks.columns import per_run

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["arrow_schema", "arrow_table"]

# bool is an int subclass, but infer_schema keeps bools and numbers apart, and so do we.
_PLAIN: dict[ColumnType, tuple[type, ...]] = {"float": (int, float), "int": (int,), "bool": (bool,)}
_EXACT: dict[ColumnType, frozenset[type]] = {
    kind: frozenset({exact, NoneType})
    for kind, exact in (("float", float), ("int", int), ("bool", bool), ("text", str))
} | {"timestamp": frozenset({datetime, NoneType})}
_TZINFO = attrgetter("tzinfo")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{value!r} ({type(value).__name__}) is not a timestamp")
    # The rule of format_timestamp: a naive datetime's instant is unknown.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()!r}: timestamps must be timezone-aware")
    return value.astimezone(timezone.utc)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return _utc(value).isoformat(timespec="microseconds")
    raise TypeError(f"{value!r} ({type(value).__name__}) is not text")


class _NotUtc(Exception):
    """A timestamp column holds something other than UTC datetimes and None."""


def _utc_micros(value: Any) -> int:
    if type(value) is not datetime or value.tzinfo is not timezone.utc:
        raise _NotUtc
    return (value - _EPOCH) // _MICROSECOND


def _micros(values: Sequence[Any]) -> list[int | None] | None:
    """A timestamp column of UTC datetimes and None as microseconds since the epoch; None if
    any other value is there (the general path then converts or refuses it).

    pa.array asks each aware datetime's tzinfo for its offset, a Python call per value; the
    parameters of one read share their instants, so each run of equal ones is converted once
    (:func:`~sinks.columns.per_run`).
    """
    try:
        return per_run(values, _utc_micros)
    except _NotUtc:
        return None


def _cells(kind: ColumnType, values: Sequence[Any]) -> Sequence[Any]:
    """One column's values ready for ``pa.array``; TypeError or ValueError on a misfit."""
    # The common case, kept cheap: exact types that pa.array converts as they are.
    if set(map(type, values)) <= _EXACT[kind] and (
        kind != "timestamp" or set(map(_TZINFO, filter(None, values))) <= {timezone.utc}
    ):
        return values
    if kind == "timestamp":
        return [None if v is None else _utc(v) for v in values]
    if kind == "text":
        return [None if v is None else _text(v) for v in values]
    allowed = _PLAIN[kind]
    for v in values:
        if v is not None and (
            not isinstance(v, allowed) or isinstance(v, bool) != (kind == "bool")
        ):
            raise TypeError(f"{v!r} ({type(v).__name__}) is not a {kind} value")
    return values


def arrow_schema(lib: ModuleType, schema: Schema) -> pa.Schema:
    """The Arrow schema of ``schema`` (``lib`` is the pyarrow module)."""
    types = {
        "timestamp": lib.timestamp("us", tz="UTC"),
        "float": lib.float64(),
        "int": lib.int64(),
        "text": lib.string(),
        "bool": lib.bool_(),
    }
    required = schema.required
    return lib.schema([lib.field(c.name, types[c.type], not required(c)) for c in schema.columns])


def arrow_table(
    lib: ModuleType, arrow: pa.Schema, schema: Schema, columns: list[list[Any]], where: str
) -> pa.Table:
    """The batch, one value list per column of ``schema``, as a table of ``arrow`` (its
    :func:`arrow_schema`); SinkValueError naming ``where`` and the column if a value misfits."""
    arrays = []
    for column, field, cells in zip(schema.columns, arrow, columns, strict=True):
        try:
            if column.type == "timestamp" and (micros := _micros(cells)) is not None:
                arrays.append(lib.array(micros, type=lib.int64()).view(field.type))
                continue
            arrays.append(lib.array(_cells(column.type, cells), type=field.type))
        except (lib.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise SinkValueError(
                f"{where}: column {column.name!r} ({column.type}) cannot take a value "
                f"of the batch, so none of it was written: {exc}"
            ) from exc
    return lib.Table.from_arrays(arrays, schema=arrow)
