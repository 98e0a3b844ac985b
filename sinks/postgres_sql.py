"""PostgreSQL's side of the Postgres sink: column types, values made ready for asyncpg, and
the SQL (DDL, the catalog check, the write statements). Pure: no connection, no asyncpg.

Types: float -> double precision, int -> bigint, text -> text (an existing unbounded
``character varying`` column also takes it), bool -> boolean, timestamp -> timestamp with
time zone.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sinks.base import ColumnType, Schema, SinkSchemaError, SinkValueError
from sinks.columns import ColumnFormatter, format_timestamp, per_run

__all__ = [
    "COLUMNS_QUERY",
    "FORMATTERS",
    "STAGE_TABLE",
    "TIMESTAMPTZ_CODEC",
    "Statements",
    "check_columns",
    "create_table_sql",
    "quote",
    "timestamptz_column",
]

_PG_TYPES: dict[ColumnType, str] = {
    "float": "double precision",
    "int": "bigint",
    "text": "text",
    "timestamp": "timestamp with time zone",
    "bool": "boolean",
}
_ALSO: dict[ColumnType, str] = {"text": "character varying"}  # unbounded varchar is text
STAGE_TABLE = "_daq_stage"  # in pg_temp
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_FIRST = datetime.min.replace(tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_INT64 = struct.Struct(">q")
# One row per column of table $2 in schema $1: name, type, NOT NULL, has a default.
COLUMNS_QUERY = """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
a.atthasdef OR a.attidentity <> ''
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2
AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped"""


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    # Names are checked identifiers; quoting keeps their case and guards reserved words.
    return f'"{name}"'


def _text(value: Any) -> Any:
    # Inferred schemas make mixed columns text; render the others as the CSV sink does.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_timestamp(value)
    return repr(value) if isinstance(value, float) else str(value)


def _whole(value: Any) -> Any:
    if isinstance(value, float):
        if not value.is_integer():  # asyncpg would silently truncate it
            raise SinkValueError(f"{value!r} is not a whole number but its column is int")
        return int(value)
    return value


def _exact(kinds: frozenset[type], convert: Callable[[Any], Any]) -> ColumnFormatter:
    """A column formatter that leaves a column of exact types alone (checked in C) and
    converts the other values with ``convert``."""

    def column(values: Sequence[Any]) -> Sequence[Any]:
        if kinds.issuperset(map(type, values)):
            return values
        return [v if type(v) in kinds else convert(v) for v in values]

    return column


def _timestamptz(value: Any) -> bytes:
    if type(value) is not datetime or value.tzinfo is not timezone.utc:
        format_timestamp(value)  # the SinkValueError of a naive, out-of-range or other value
    return _INT64.pack((value - _PG_EPOCH) // _MICROSECOND)


def timestamptz_column(values: Sequence[Any]) -> list[bytes | None]:
    """Aware datetimes as PostgreSQL's binary ``timestamptz`` (microseconds since
    2000-01-01 UTC, a big-endian int64), which :data:`TIMESTAMPTZ_CODEC` sends as they are;
    SinkValueError for a naive datetime, one outside years 1-9999 in UTC, or another value.

    asyncpg's own encoder costs about 0.6 us a value (an ``astimezone`` and a subtraction
    through Python objects: more than the rest of an acquisition row's COPY together); the
    parameters of one read share their instants, so each run of equal ones is encoded once
    (:func:`~sinks.columns.per_run`).
    """
    return per_run(values, _timestamptz)


def _decode_timestamptz(data: bytes) -> datetime:
    micros = _INT64.unpack(data)[0]
    try:
        return _PG_EPOCH + micros * _MICROSECOND
    except OverflowError:  # PostgreSQL's infinity, or a year beyond datetime's
        return datetime.max.replace(tzinfo=timezone.utc) if micros > 0 else _FIRST


# How the sink's connections exchange timestamptz (asyncpg's Connection.set_type_codec): as
# the bytes of timestamptz_column, read back as aware UTC datetimes.
TIMESTAMPTZ_CODEC: dict[str, Any] = {
    "schema": "pg_catalog",
    "encoder": bytes,  # the bytes as they are: a C call, no Python frame
    "decoder": _decode_timestamptz,
    "format": "binary",
}


# The formatters of sinks.columns.format_column_lists that make values ready for asyncpg:
# text columns render other scalars as text, int columns take whole floats, timestamps must
# be aware. Column-wise: a call per cell would cost more than the COPY itself.
FORMATTERS: dict[ColumnType, ColumnFormatter] = {
    "text": _exact(frozenset({str, type(None)}), _text),
    "int": _exact(frozenset({int, type(None)}), _whole),
    "timestamp": timestamptz_column,
}


def create_table_sql(schema: Schema, schema_name: str, table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``schema`` (SQLAlchemy Core, imported here)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    types: dict[ColumnType, Any] = {
        "float": postgresql.DOUBLE_PRECISION(),
        "int": sa.BigInteger(),
        "text": sa.Text(),
        "timestamp": sa.TIMESTAMP(timezone=True),
        "bool": sa.Boolean(),
    }
    # autoincrement=False: a lone bigint key would otherwise become BIGSERIAL.
    columns = [
        sa.Column(c.name, types[c.type], nullable=not schema.required(c), autoincrement=False)
        for c in schema.columns
    ]
    key = [sa.PrimaryKeyConstraint(*schema.key)] if schema.key else []
    target = sa.Table(table, sa.MetaData(schema=schema_name), *columns, *key)
    return str(CreateTable(target, if_not_exists=True).compile(dialect=postgresql.dialect()))


def check_columns(where: str, schema: Schema, found: Mapping[str, Sequence[Any]]) -> None:
    """Raise SinkSchemaError unless the table ``where``, whose columns are ``found`` (name ->
    a row of :data:`COLUMNS_QUERY`), takes the rows of ``schema``."""
    if not found:
        raise SinkSchemaError(f"{where} does not exist; create it or set create_table")
    for column in schema.columns:
        expected, row = _PG_TYPES[column.type], found.get(column.name)
        if row is None or row[1] not in (expected, _ALSO.get(column.type)):
            raise SinkSchemaError(
                f"{where}: column {column.name!r} cannot hold {column.type} values "
                f"(expected {expected}, found {row[1] if row else 'no such column'})"
            )
    for name, (_, _, not_null, has_default) in found.items():
        if name not in schema.names and not_null and not has_default:
            raise SinkSchemaError(
                f"{where}: column {name!r} is NOT NULL without a default but is not "
                "in the schema (expected it nullable or absent, found NOT NULL)"
            )


@dataclass(frozen=True, slots=True)
class Statements:
    """The SQL of one table's writes. ``insert``: a row as ``$1...`` (``ON CONFLICT (key) DO
    NOTHING`` with a key); ``explain``: plans the same conflict clause, so the server looks
    for the unique index it needs; ``stage``: a temporary table of the same columns dropped
    at commit (:data:`STAGE_TABLE`); ``merge``: the staged rows into the table, under the
    same conflict clause."""

    insert: str
    explain: str
    stage: str
    merge: str

    @classmethod
    def of(cls, schema: Schema, schema_name: str, table: str) -> Statements:
        """The statements writing ``schema``'s columns to ``schema_name.table``."""
        target = f"{quote(schema_name)}.{quote(table)}"
        names = ", ".join(quote(n) for n in schema.names)
        marks = ", ".join(f"${i}" for i in range(1, len(schema.names) + 1))
        key = ", ".join(quote(k) for k in schema.key)
        head = f"INSERT INTO {target} ({names})"
        tail = f" ON CONFLICT ({key}) DO NOTHING" if key else ""
        stage = f"SELECT {names} FROM {target} WITH NO DATA"
        return cls(
            insert=f"{head} VALUES ({marks}){tail}",
            explain=f"EXPLAIN {head} SELECT {names} FROM {target} WHERE false{tail}",
            stage=f"CREATE TEMP TABLE {quote(STAGE_TABLE)} ON COMMIT DROP AS {stage}",
            merge=f"{head} SELECT {names} FROM pg_temp.{quote(STAGE_TABLE)}{tail}",
        )
