"""The shared write path: a sink written only against sinks.base and sinks.partition gets the
closed check, the schema lock, the projection and its checks without a line of its own."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from sinks.base import (
    Column,
    IntoSink,
    Schema,
    SinkError,
    SinkSchemaError,
    SinkTarget,
    SinkValueError,
)
from sinks.partition import LockedPartition

KEYED = Schema((Column("k", "int"), Column("v", "text")), key=("k",))


class _ListPartition(LockedPartition):
    """The minimal backend: it only says what writing a checked batch means."""

    def __init__(self, sink: IntoList) -> None:
        super().__init__(sink.schema, "list sink")
        self.sink = sink

    def _write(self, schema: Schema, values: list[Any]) -> None:
        self.sink.batches.append((schema.names, values))

    def _close(self) -> None:
        self.sink.closes.append(1)


class _ColumnPartition(_ListPartition):
    layout = "columns"


@dataclass(frozen=True, eq=False)
class IntoList(IntoSink):
    """Batches as the backend receives them: (column names, values)."""

    batches: list[tuple[tuple[str, ...], list[Any]]] = field(default_factory=list)
    schema: Schema | None = None
    columnar: bool = False
    closes: list[int] = field(default_factory=list)

    @property
    def target(self) -> SinkTarget:
        return SinkTarget("memory", f"list at {id(self.batches):#x}", "batches")

    def build_partition(self, worker_index: int, worker_count: int) -> _ListPartition:
        return (_ColumnPartition if self.columnar else _ListPartition)(self)


def test_rows_come_projected_in_column_order_with_the_schema_locked() -> None:
    sink = IntoList()
    part = sink.build_partition(0, 1)
    assert part.columns is None
    part.write_batch([{"b": 1, "a": "x"}, {"a": "y"}])
    part.write_batch([{"a": "z", "b": 2, "c": 3.5}])  # locked: "c" is dropped
    assert part.columns == ("b", "a")
    assert sink.batches == [(("b", "a"), [(1, "x"), (None, "y")]), (("b", "a"), [(2, "z")])]


def test_a_columnar_backend_gets_columns() -> None:
    sink = IntoList(columnar=True)
    part = sink.build_partition(0, 1)
    rows = [{"k": i, "v": str(i)} for i in range(1200)]  # more than one projection chunk
    part.write_batch(rows)
    ((names, columns),) = sink.batches
    assert names == ("k", "v")
    assert columns == [list(range(1200)), [str(i) for i in range(1200)]]


def test_an_empty_batch_writes_nothing_and_locks_nothing() -> None:
    sink = IntoList()
    part = sink.build_partition(0, 1)
    part.write_batch([])
    assert sink.batches == [] and part.columns is None


@pytest.mark.parametrize("columnar", [False, True], ids=["rows", "columns"])
def test_null_in_a_key_column_refuses_the_whole_batch(columnar: bool) -> None:
    sink = IntoList(schema=KEYED, columnar=columnar)
    part = sink.build_partition(0, 1)
    with pytest.raises(SinkValueError, match="list sink: column 'k' takes no NULL"):
        part.write_batch([{"k": 1, "v": "a"}, {"v": "b"}])
    assert sink.batches == []


def test_rows_without_columns_are_a_schema_error() -> None:
    part = IntoList().build_partition(0, 1)
    with pytest.raises(SinkSchemaError, match="list sink: cannot infer"):
        part.write_batch([{}])


def test_unknown_keys_are_dropped_with_one_warning_each(caplog: pytest.LogCaptureFixture) -> None:
    part = IntoList(schema=KEYED).build_partition(0, 1)
    with caplog.at_level(logging.WARNING):
        part.write_batch([{"k": 1, "x": 1}])
        part.write_batch([{"k": 2, "x": 2}])
    assert [r.getMessage() for r in caplog.records] == [
        "list sink: dropping key 'x', which is not a column of the schema ('k', 'v')"
    ]


def test_close_is_idempotent_and_a_write_after_it_is_refused() -> None:
    sink = IntoList()
    part = sink.build_partition(0, 1)
    part.close()
    part.close()
    assert sink.closes == [1]
    with pytest.raises(SinkError, match="list sink: write_batch after close"):
        part.write_batch([{"a": 1}])


def test_the_sink_declares_its_schema_settings_and_target() -> None:
    sink = IntoList()
    assert sink.schema is None
    assert sink.with_schema(KEYED).schema == KEYED
    assert IntoList.settings() == {"batches": False, "columnar": False, "closes": False}
    assert sink.target.overlaps(sink.target)
    assert not sink.target.overlaps(IntoList().target)
