"""What every sink shares: the schema, its inference, the errors, the target and the sink
protocols (the shared write path of the partitions is in :mod:`sinks.partition`).

A row is a plain ``dict[str, Any]`` whose values are None, bool, int, float, str or a
timezone-aware ``datetime``. Sinks write any rows, not only acquisition rows, so this
package never imports ``connectors`` or ``flows``.

Every backend is a frozen dataclass ``IntoX`` deriving from :class:`IntoSink`: it holds its
settings, builds one :class:`SinkPartition` per worker with ``build_partition`` and, being a
bytewax ``DynamicSink`` itself, can be handed straight to ``bytewax.operators.output``.
"""

from __future__ import annotations

import dataclasses
import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, cast, get_args, runtime_checkable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

__all__ = [
    "IDENTIFIER",
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
    "check_identifier",
    "identifier_problem",
    "infer_schema",
]

ColumnType = Literal["float", "int", "text", "timestamp", "bool"]
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def identifier_problem(name: object) -> str | None:
    """Why ``name`` is not a valid identifier (:data:`IDENTIFIER`), or None if it is one."""
    if isinstance(name, str) and IDENTIFIER.fullmatch(name):
        return None
    return (
        f"{name!r} is not a valid identifier ({IDENTIFIER.pattern}: a letter or "
        "underscore, then up to 62 letters, digits or underscores)"
    )


def check_identifier(name: str, what: str) -> str:
    """Return ``name`` if it matches :data:`IDENTIFIER`, else raise ValueError naming ``what``."""
    problem = identifier_problem(name)
    if problem is not None:
        raise ValueError(f"{what}: {problem}")
    return name


class SinkError(Exception):
    """Base of every error a sink raises.

    Transient and permanent failures are told apart by class: only a
    :class:`SinkUnavailableError` may go away if the same batch is written again later; every
    other SinkError is permanent for that batch (a :class:`SinkValueError`, a
    :class:`SinkSchemaError`, a :class:`SinkDependencyError`, any other
    :class:`SinkWriteError`) or a misuse (``write_batch`` after ``close``).
    """


class SinkSchemaError(SinkError):
    """Permanent: the target (table or file) exists with columns incompatible with the
    schema, or no schema can be inferred from the rows."""


class SinkWriteError(SinkError):
    """The backend failed; the backend's exception is the ``__cause__``. Permanent unless it
    is a :class:`SinkUnavailableError`: the backend refused the batch for a reason a retry is
    not known to fix (a trigger, a constraint, a permission the server denies)."""


class SinkUnavailableError(SinkWriteError):
    """Transient: the backend is down, unreachable, full or not writable (a lost connection,
    a server restart, a locked database, a full disk, a missing or read-only directory). The
    batch was not committed (a file sink may hold a cut last line, as after a crash) and the
    same batch may succeed when the backend is back."""


class SinkDependencyError(SinkError):
    """Permanent: an optional dependency of a backend is not installed."""


class SinkValueError(SinkError):
    """Permanent: a value the backend cannot hold, or NULL where the schema takes none. The
    message names the column and the kind of value; nothing of the batch was written."""


class SinkConfigError(ValueError):
    """A setting an ``IntoX`` refuses when it is built. ``field`` is the setting to blame (None
    when the fault is in how settings combine) and ``reason`` says why; the message is
    ``IntoX.field: reason``, or ``reason`` alone without a field."""

    def __init__(self, sink: str, field: str | None, reason: str) -> None:
        super().__init__(reason if field is None else f"{sink}.{field}: {reason}")
        self.sink = sink
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SinkTarget:
    """What a sink writes, so that two sinks writing one thing can be refused.

    ``kind``: ``file`` (one file, or one per worker beside it), ``directory`` (a dataset of
    files), ``database`` or ``memory``. ``location``: the absolute path, or the database as
    ``host:port/database.schema.table``, or the memory list. ``table``: the table inside the
    file, or None when the sink writes all of ``location``. ``key``: the setting that names
    the target, to blame when two sinks write it.
    """

    kind: Literal["file", "directory", "database", "memory"]
    location: str
    key: str
    table: str | None = None

    def overlaps(self, other: SinkTarget) -> bool:
        """Whether writing both would interleave or clobber rows: one location, and one
        table (or all of it)."""
        return self.location == other.location and (
            self.table is None or other.table is None or self.table == other.table
        )


@dataclass(frozen=True, slots=True)
class Column:
    """One column: a valid identifier, one of :data:`ColumnType`, and whether NULL is allowed."""

    name: str
    type: ColumnType
    nullable: bool = True

    def __post_init__(self) -> None:
        check_identifier(self.name, "column name")
        if self.type not in COLUMN_TYPES:
            raise ValueError(
                f"column {self.name!r}: type {self.type!r} is not one of {', '.join(COLUMN_TYPES)}"
            )


@dataclass(frozen=True)
class Schema:
    """The columns a sink writes, in order, and the natural key.

    Column names are unique identifiers and every key column is a column. Idempotent sinks
    make the key their primary key, so a key column never takes NULL, whatever its
    ``nullable`` says. Lists are accepted for ``columns`` and ``key`` and stored as tuples.
    """

    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "key", tuple(self.key))
        if not self.columns:
            raise ValueError("schema: a schema needs at least one column")
        seen: set[str] = set()
        for column in self.columns:
            if not isinstance(column, Column):
                raise ValueError(f"schema: {column!r} is not a Column")
            # SQL identifiers are case-insensitive, so "Value" and "value" would collide.
            folded = column.name.lower()
            if folded in seen:
                raise ValueError(f"schema: column name {column.name!r} appears twice")
            seen.add(folded)
        if len(set(self.key)) != len(self.key):
            raise ValueError(f"schema: key {self.key!r} names a column twice")
        for name in self.key:
            if name not in self.names:
                raise ValueError(f"schema: key column {name!r} is not a column of the schema")

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in order."""
        return tuple(column.name for column in self.columns)

    def required(self, column: Column) -> bool:
        """Whether ``column`` refuses NULL: declared not nullable, or part of the key."""
        return not column.nullable or column.name in self.key


def _kind(value: Any) -> ColumnType:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, datetime):
        return "timestamp"
    return "text"


def infer_schema(rows: Sequence[Mapping[str, Any]]) -> Schema:
    """Infer the schema of rows of unknown shape (the schema lock).

    Columns come in order of first appearance across the rows. A column's type is the kind of
    its non-null values: bool -> "bool", int -> "int", float -> "float", str -> "text",
    datetime -> "timestamp"; int mixed with float is "float", any other mix is "text", and an
    all-null column is "text". Every column is nullable and there is no key. Raises ValueError
    when the rows have no columns or a key is not a valid identifier.
    """
    kinds: dict[str, set[ColumnType]] = {}
    for row in rows:
        for name, value in row.items():
            found = kinds.setdefault(name, set())
            if value is not None:
                found.add(_kind(value))
    columns = []
    for name, found in kinds.items():
        if len(found) == 1:
            (kind,) = found
        elif found == {"int", "float"}:
            kind = "float"
        else:
            kind = "text"
        columns.append(Column(name, kind))
    if not columns:
        raise ValueError("cannot infer a schema: the rows have no columns")
    return Schema(tuple(columns))


@runtime_checkable
class SinkPartition(Protocol):
    """One worker's writer.

    ``write_batch([])`` is a no-op; ``close()`` is idempotent and safe when nothing was
    written; ``write_batch`` after ``close`` raises SinkError; a backend failure raises
    SinkWriteError with the backend exception as ``__cause__``: SinkUnavailableError when a
    retry may fix it, SinkValueError or SinkSchemaError when none can (see SinkError).
    """

    def write_batch(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows``."""
        ...

    def close(self) -> None:
        """Flush and release the backend."""
        ...


class IntoSink(DynamicSink[dict[str, Any]]):
    """Base of every IntoX dataclass: a bytewax DynamicSink whose build() calls build_partition().

    Subclasses are frozen dataclasses holding their settings (validated in ``__post_init__``;
    a bad value raises :class:`SinkConfigError` naming the field) and implement
    :meth:`build_partition` and :attr:`target`. ``schema`` is the schema the sink writes,
    None to infer it from the first batch (a dataclass field of every backend).
    """

    schema: Schema | None = None

    @property
    @abstractmethod
    def target(self) -> SinkTarget:
        """What this sink writes; two sinks of one flow must not overlap."""

    @property
    def idempotent(self) -> bool:
        """Whether a batch written again is stored once (a key the backend enforces), so a
        write may be repeated when it is not known whether it was committed."""
        return False

    @classmethod
    def settings(cls) -> dict[str, bool]:
        """The settings a config may give, in order, each mapped to whether it is required:
        the dataclass fields taken by ``__init__``, less ``schema``, which the flow gives."""
        return {
            f.name: f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.init and f.name != "schema"
        }

    def with_schema(self, schema: Schema | None) -> IntoSink:
        """This sink writing ``schema``: a copy with that ``schema`` field; the sink itself if
        it has no such field (it takes rows as they come). A wrapper passes it on."""
        if not any(f.name == "schema" for f in dataclasses.fields(self)):  # type: ignore[arg-type]
            return self
        return dataclasses.replace(self, schema=schema)  # type: ignore[type-var]

    @abstractmethod
    def build_partition(self, worker_index: int, worker_count: int) -> SinkPartition:
        """Open the writer of worker ``worker_index`` out of ``worker_count``."""

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[dict[str, Any]]:
        """Bytewax entry point: the partition of this worker (``step_id`` is not used)."""
        return cast(
            StatelessSinkPartition[dict[str, Any]],
            self.build_partition(worker_index, worker_count),
        )
