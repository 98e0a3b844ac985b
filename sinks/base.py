"""What every sink shares: the schema, its inference, the errors and the sink protocols.

A row is a plain ``dict[str, Any]`` whose values are None, bool, int, float, str or a
timezone-aware ``datetime``. Sinks write any rows, not only acquisition rows, so this
package never imports ``connectors`` or ``flows``.

Every backend is a frozen dataclass ``IntoX`` deriving from :class:`IntoSink`: it holds its
settings, builds one :class:`SinkPartition` per worker with ``build_partition`` and, being a
bytewax ``DynamicSink`` itself, can be handed straight to ``bytewax.operators.output``.
"""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Literal, Protocol, cast, get_args, runtime_checkable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

__all__ = [
    "IDENTIFIER",
    "Column",
    "ColumnType",
    "IntoSink",
    "LockedPartition",
    "Schema",
    "SchemaLock",
    "SinkDependencyError",
    "SinkError",
    "SinkPartition",
    "SinkSchemaError",
    "SinkValueError",
    "SinkWriteError",
    "check_identifier",
    "infer_schema",
]

logger = logging.getLogger(__name__)

ColumnType = Literal["float", "int", "text", "timestamp", "bool"]
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(name: str, what: str) -> str:
    """Return ``name`` if it matches :data:`IDENTIFIER`, else raise ValueError naming ``what``."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what}: {name!r} is not a valid identifier ({IDENTIFIER.pattern}: a letter or "
            "underscore, then up to 62 letters, digits or underscores)"
        )
    return name


class SinkError(Exception):
    """Base of every error a sink raises."""


class SinkSchemaError(SinkError):
    """The target (table or file) exists with columns incompatible with the schema."""


class SinkWriteError(SinkError):
    """The backend failed; the backend's exception is the ``__cause__``."""


class SinkDependencyError(SinkError):
    """An optional dependency of a backend is not installed."""


class SinkValueError(SinkError):
    """A value the backend cannot hold, or NULL where the schema takes none. The message
    names the column and the kind of value; nothing of the batch was written."""


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


class SchemaLock:
    """The schema one partition writes, fixed once known, and the projection of rows onto it.

    Given a schema it is used as is; otherwise it is inferred from the first non-empty batch
    and kept. :meth:`project` turns rows into value tuples in column order: missing keys
    become None, keys outside the schema are dropped with one warning per name, and None in a
    required column (see :meth:`Schema.required`) rejects the whole batch with SinkError.
    ``target`` names the table or file in messages.
    """

    def __init__(self, schema: Schema | None, target: str) -> None:
        self._schema = schema
        self._target = target
        self._warned: set[str] = set()

    @property
    def schema(self) -> Schema | None:
        """The locked schema, or None while no schema was given and no row was seen."""
        return self._schema

    def lock(self, rows: Sequence[Mapping[str, Any]]) -> Schema:
        """Return the locked schema, inferring it from ``rows`` if it is not known yet."""
        if self._schema is None:
            try:
                self._schema = infer_schema(rows)
            except ValueError as exc:
                raise SinkSchemaError(f"{self._target}: {exc}") from exc
        return self._schema

    def project(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Values of each row in the schema's column order (locking the schema if needed)."""
        schema = self.lock(rows)
        names = schema.names
        width = len(names)
        complete = True
        try:
            # Fast path: every row has every column (acquisition rows do).
            getter = itemgetter(*names)
            out = [getter(row) for row in rows] if width > 1 else [(getter(r),) for r in rows]
        except KeyError:
            complete = False
            out = [tuple(row.get(name) for name in names) for row in rows]
        # With every column in every row, only a longer row has unknown keys.
        if not complete or max(map(len, rows), default=0) > width:
            known = frozenset(names)
            for row in rows:
                if not known.issuperset(row):
                    self._warn_unknown(row.keys() - known)
        for i, column in enumerate(schema.columns):
            # Column-wise, one C-level scan per required column; the row is looked up only
            # for the message.
            if schema.required(column) and None in map(itemgetter(i), out):
                row = next(r for r, v in zip(rows, out, strict=True) if v[i] is None)
                raise SinkValueError(
                    f"{self._target}: column {column.name!r} takes no NULL (not nullable or "
                    f"part of the key) but a row has none: {dict(row)!r}"
                )
        return out

    def _warn_unknown(self, names: set[str]) -> None:
        for name in sorted(names - self._warned, key=str):
            self._warned.add(name)
            logger.warning(
                "%s: dropping key %r, which is not a column of the schema %s",
                self._target,
                name,
                self._schema.names if self._schema else (),
            )


class LockedPartition(StatelessSinkPartition[dict[str, Any]]):
    """Base of the backends' partitions: rows go through ``self._lock``, a :class:`SchemaLock`."""

    _lock: SchemaLock

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The column names written, in order; None until the schema is locked."""
        schema = self._lock.schema
        return schema.names if schema is not None else None


@runtime_checkable
class SinkPartition(Protocol):
    """One worker's writer.

    ``write_batch([])`` is a no-op; ``close()`` is idempotent and safe when nothing was
    written; ``write_batch`` after ``close`` raises SinkError; a backend failure raises
    SinkWriteError with the backend exception as ``__cause__``.
    """

    def write_batch(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows``."""
        ...

    def close(self) -> None:
        """Flush and release the backend."""
        ...


class IntoSink(DynamicSink[dict[str, Any]]):
    """Base of every IntoX dataclass: a bytewax DynamicSink whose build() calls build_partition().

    Subclasses are frozen dataclasses holding their settings (validated in ``__post_init__``,
    bad values raise ValueError naming the field) and implement :meth:`build_partition`.
    """

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
