"""Sinks: everything that writes rows (CSV, SQLite, and the other backends).

Each backend lives in its own module (``sinks.csv``, ``sinks.sqlite``, ...) and is imported
explicitly, so importing this package never loads pyarrow, asyncpg or sqlite3. The shared
contract (schema, errors, targets, ``IntoSink``, ``SinkPartition``) is re-exported from
``sinks.base``; the write path partitions share is in ``sinks.partition``.
"""

from sinks.base import (
    Column,
    ColumnType,
    IntoSink,
    Schema,
    SinkConfigError,
    SinkDependencyError,
    SinkError,
    SinkPartition,
    SinkSchemaError,
    SinkTarget,
    SinkUnavailableError,
    SinkValueError,
    SinkWriteError,
    infer_schema,
)

__all__ = [
    "Column",
    "ColumnType",
    "IntoSink",
    "Schema",
    "SinkConfigError",
    "SinkDependencyError",
    "SinkError",
    "SinkPartition",
    "SinkSchemaError",
    "SinkTarget",
    "SinkUnavailableError",
    "SinkValueError",
    "SinkWriteError",
    "infer_schema",
]
