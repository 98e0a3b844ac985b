"""Sinks: everything that writes rows (CSV, SQLite, and the other backends).

Each backend lives in its own module (``sinks.csv``, ``sinks.sqlite``, ...) and is imported
explicitly, so importing this package never loads pyarrow, asyncpg or sqlite3. The shared
contract (schema, errors, ``IntoSink``, ``SinkPartition``) is re-exported from ``sinks.base``.
"""

from sinks.base import (
    Column,
    ColumnType,
    IntoSink,
    Schema,
    SinkDependencyError,
    SinkError,
    SinkPartition,
    SinkSchemaError,
    SinkValueError,
    SinkWriteError,
    infer_schema,
)

__all__ = [
    "Column",
    "ColumnType",
    "IntoSink",
    "Schema",
    "SinkDependencyError",
    "SinkError",
    "SinkPartition",
    "SinkSchemaError",
    "SinkValueError",
    "SinkWriteError",
    "infer_schema",
]
