"""SQLite's side of the SQLite sink: column types and affinities, the DDL, the INSERT and the
check of an existing table. Pure: no connection.

Types: float -> REAL, int -> INTEGER, bool -> INTEGER, text -> TEXT, timestamp -> TEXT;
non-nullable and key columns are NOT NULL; the key is the PRIMARY KEY. An existing table
takes the rows when every column is there with an affinity that keeps its values as
written, no other column is NOT NULL without a default, and its primary key is the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sinks.base import ColumnType, Schema, SinkSchemaError

__all__ = ["check_table", "create_table_sql", "insert_sql", "quote"]

_SQL_TYPES: dict[ColumnType, str] = {
    "float": "REAL",
    "int": "INTEGER",
    "bool": "INTEGER",
    "text": "TEXT",
    "timestamp": "TEXT",
}

# Column affinities (https://www.sqlite.org/datatype3.html#affinity) that keep each type's
# values as written; "BLOB" is the no-affinity of an untyped column. NUMERIC would turn text
# like "42" into a number, REAL would turn ints into floats, INTEGER would turn 2.0 into 2.
_ACCEPTED: dict[ColumnType, frozenset[str]] = {
    "float": frozenset({"REAL", "NUMERIC", "BLOB"}),
    "int": frozenset({"INTEGER", "NUMERIC", "BLOB"}),
    "bool": frozenset({"INTEGER", "NUMERIC", "BLOB"}),
    "text": frozenset({"TEXT", "BLOB"}),
    "timestamp": frozenset({"TEXT", "BLOB"}),
}


def _affinity(declared: str) -> str:
    """SQLite's rules for the affinity of a declared column type, in their order."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper:
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    # Names are checked identifiers; quoting only guards against reserved words.
    return f'"{name}"'


def create_table_sql(schema: Schema, table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``schema``."""
    columns = []
    for column in schema.columns:
        spec = f"{quote(column.name)} {_SQL_TYPES[column.type]}"
        if schema.required(column):
            spec += " NOT NULL"
        columns.append(spec)
    if schema.key:
        columns.append(f"PRIMARY KEY ({', '.join(quote(k) for k in schema.key)})")
    return f"CREATE TABLE IF NOT EXISTS {quote(table)} ({', '.join(columns)})"


def insert_sql(schema: Schema, table: str) -> str:
    """The INSERT of one row; a row whose key exists is ignored (only a key conflict:
    ``INSERT OR IGNORE`` would also drop a row that breaks NOT NULL)."""
    names = ", ".join(quote(n) for n in schema.names)
    marks = ", ".join("?" for _ in schema.columns)
    return f"INSERT INTO {quote(table)} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"


def check_table(where: str, schema: Schema, info: Sequence[Sequence[Any]]) -> None:
    """Raise SinkSchemaError unless table ``where``, whose ``PRAGMA table_info`` rows are
    ``info``, can take the rows of ``schema``."""
    # table_info rows: (cid, name, type, notnull, dflt_value, pk)
    found = {row[1].lower(): row for row in info}
    for column in schema.columns:
        row = found.get(column.name.lower())
        expected = _SQL_TYPES[column.type]
        if row is None:
            raise SinkSchemaError(
                f"{where}: column {column.name!r} is missing "
                f"(expected {expected}, found no such column)"
            )
        if _affinity(row[2]) not in _ACCEPTED[column.type]:
            raise SinkSchemaError(
                f"{where}: column {column.name!r} cannot hold {column.type} values "
                f"(expected {expected}, found {row[2] or 'no type'!r})"
            )
    wanted = {n.lower() for n in schema.names}
    for name, row in found.items():
        # Every row would break the constraint, as none of them has the column.
        if name not in wanted and row[3] and row[4] is None:
            raise SinkSchemaError(
                f"{where}: column {row[1]!r} is NOT NULL without a default but is "
                f"not in the schema (expected it nullable or absent, found NOT NULL)"
            )
    if schema.key:
        pk = [row[1].lower() for row in sorted(info, key=lambda r: r[5]) if row[5]]
        if pk != [k.lower() for k in schema.key]:
            raise SinkSchemaError(
                f"{where}: the primary key differs, so replays would duplicate rows "
                f"(expected PRIMARY KEY {schema.key!r}, found {tuple(pk)!r})"
            )
