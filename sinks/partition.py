"""The write path every partition shares: the schema lock and the base partition.

A backend's partition derives from :class:`LockedPartition` and implements only what its
backend does with a batch already checked and projected (``_write``) and how it lets go
(``_close``), so a new backend or a wrapper needs no special case.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, ClassVar, Literal

from bytewax.outputs import StatelessSinkPartition

from sinks.base import Schema, SinkError, SinkSchemaError, SinkValueError, infer_schema

__all__ = ["LockedPartition", "SchemaLock"]

logger = logging.getLogger(__name__)


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
        complete = True
        try:
            # Fast path: every row has every column (acquisition rows do).
            getter = itemgetter(*names)
            out = [getter(row) for row in rows] if len(names) > 1 else [(getter(r),) for r in rows]
        except KeyError:
            complete = False
            out = [tuple(row.get(name) for name in names) for row in rows]
        self._check(schema, rows, complete, lambda i: map(itemgetter(i), out))
        return out

    def project_columns(self, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """:meth:`project` laid out as one list of values per column, in schema order."""
        schema = self.lock(rows)
        complete = True
        # Straight from the rows, one C-level pass per column: no row tuple is built (a
        # batch of them would set off CPython's cyclic GC, whose full collections walk the
        # caller's whole heap) and nothing is transposed.
        columns: list[list[Any]] = []
        for name in schema.names:
            try:
                columns.append(list(map(itemgetter(name), rows)))
            except KeyError:
                complete = False
                columns.append([row.get(name) for row in rows])
        self._check(schema, rows, complete, columns.__getitem__)
        return columns

    def _check(
        self,
        schema: Schema,
        rows: Sequence[Mapping[str, Any]],
        complete: bool,
        column: Callable[[int], Iterable[Any]],
    ) -> None:
        """Warn of keys outside the schema and refuse NULL in a required column; ``complete``
        says every row has every column, ``column(i)`` gives the values of column ``i``."""
        # With every column in every row, only a longer row has unknown keys.
        if not complete or max(map(len, rows), default=0) > len(schema.columns):
            known = frozenset(schema.names)
            for row in rows:
                if not known.issuperset(row):
                    self._warn_unknown(row.keys() - known)
        for i, c in enumerate(schema.columns):
            # One C-level scan per required column; the row is looked up only for the message.
            if schema.required(c) and None in column(i):
                row = next(r for r, v in zip(rows, column(i), strict=True) if v is None)
                raise SinkValueError(
                    f"{self._target}: column {c.name!r} takes no NULL (not nullable or "
                    f"part of the key) but a row has none: {dict(row)!r}"
                )

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
    """The write path every backend's partition shares.

    ``write_batch`` refuses a write after ``close`` (SinkError), ignores an empty batch, locks
    the schema (given, or inferred from the first batch), projects the rows onto it with
    :meth:`SchemaLock.project` (missing keys None, unknown keys dropped with a warning, NULL
    in a required column refused with SinkValueError) and hands the result to the backend's
    :meth:`_write`, unless ``layout`` leaves the projection to the backend (below).
    ``close`` is idempotent and calls :meth:`_close` once. ``where`` names the target in
    messages and log lines.

    ``layout`` says what ``_write`` receives: ``"rows"``, a list of value tuples in column
    order; ``"columns"``, a list of column value lists in schema order
    (:meth:`SchemaLock.project_columns`); ``"dicts"``, the rows as they came, which the
    backend projects itself (a part at a time, say, while the previous part is sent) with
    the same methods of ``self._lock``, whose refusals it raises as they are.
    """

    layout: ClassVar[Literal["rows", "columns", "dicts"]] = "rows"

    def __init__(self, schema: Schema | None, where: str) -> None:
        self._where = where
        self._lock = SchemaLock(schema, where)
        self._closed = False

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The column names written, in order; None until the schema is locked."""
        schema = self._lock.schema
        return schema.names if schema is not None else None

    def write_batch(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` through the schema lock; see the class docstring."""
        if self._closed:
            raise SinkError(f"{self._where}: write_batch after close")
        if not rows:
            return
        schema = self._lock.lock(rows)
        if self.layout == "columns":
            self._write(schema, self._lock.project_columns(rows))
        elif self.layout == "rows":
            self._write(schema, self._lock.project(rows))
        else:
            self._write(schema, rows)

    def close(self) -> None:
        """Release the backend (:meth:`_close`) once; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close()

    @abstractmethod
    def _write(self, schema: Schema, values: list[Any]) -> None:
        """Write one non-empty batch, projected onto ``schema`` as ``layout`` says. Raise
        SinkValueError for a value the backend cannot hold (naming the column),
        SinkUnavailableError when a retry may succeed, another SinkWriteError (with the
        backend's exception as ``__cause__``) when the backend refuses otherwise."""

    def _close(self) -> None:
        """Flush and release the backend; called once, by the first ``close``."""
