"""In-memory sink: rows appended to a Python list, for tests and notebooks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sinks.base import IntoSink, LockedPartition, Schema, SchemaLock, SinkError

__all__ = ["IntoMemory"]


@dataclass(frozen=True, eq=False)
class IntoMemory(IntoSink):
    """Append every worker's rows to ``rows``, each a dict in the schema's column order.

    Rows go through the same schema lock as every sink: missing keys become None, unknown
    keys are dropped with one warning per name, None in a key column is rejected.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    schema: Schema | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.rows, list):
            raise ValueError(f"IntoMemory.rows: {self.rows!r} is not a list")
        if self.schema is not None and not isinstance(self.schema, Schema):
            raise ValueError(f"IntoMemory.schema: {self.schema!r} is not a Schema or None")

    def build_partition(self, worker_index: int, worker_count: int) -> _MemoryPartition:
        """A writer appending to ``rows`` (shared by the workers of this process)."""
        return _MemoryPartition(self, worker_index)


class _MemoryPartition(LockedPartition):
    def __init__(self, sink: IntoMemory, worker_index: int) -> None:
        self._sink = sink
        self._lock = SchemaLock(sink.schema, f"memory sink (worker {worker_index})")
        self._closed = False

    def write_batch(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows``, projected onto the schema."""
        if self._closed:
            raise SinkError("memory sink: write_batch after close")
        if not rows:
            return
        values = self._lock.project(rows)
        names = self._lock.lock(rows).names
        projected = [dict(zip(names, row, strict=True)) for row in values]
        with self._sink._guard:
            self._sink.rows.extend(projected)

    def close(self) -> None:
        """Nothing to release; idempotent."""
        self._closed = True
