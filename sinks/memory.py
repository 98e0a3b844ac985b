"""In-memory sink: rows appended to a Python list, for tests and notebooks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sinks.base import IntoSink, Schema, SinkConfigError, SinkTarget
from sinks.partition import LockedPartition

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
            raise SinkConfigError("IntoMemory", "rows", f"{self.rows!r} is not a list")
        if self.schema is not None and not isinstance(self.schema, Schema):
            raise SinkConfigError(
                "IntoMemory", "schema", f"{self.schema!r} is not a Schema or None"
            )

    @property
    def target(self) -> SinkTarget:
        """The list ``rows`` (by identity: two sinks sharing one list overlap)."""
        return SinkTarget("memory", f"list at {id(self.rows):#x}", "rows")

    def build_partition(self, worker_index: int, worker_count: int) -> _MemoryPartition:
        """A writer appending to ``rows`` (shared by the workers of this process)."""
        return _MemoryPartition(self, worker_index)


class _MemoryPartition(LockedPartition):
    def __init__(self, sink: IntoMemory, worker_index: int) -> None:
        super().__init__(sink.schema, f"memory sink (worker {worker_index})")
        self._sink = sink

    def _write(self, schema: Schema, values: list[tuple[Any, ...]]) -> None:
        """Append the rows, as dicts in column order."""
        names = schema.names
        projected = [dict(zip(names, row, strict=True)) for row in values]
        with self._sink._guard:
            self._sink.rows.extend(projected)
