"""The shared sink contract: identifiers, schemas, inference, timestamps and the schema lock."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from sinks.base import (
    IDENTIFIER,
    Column,
    IntoSink,
    Schema,
    SinkConfigError,
    SinkDependencyError,
    SinkError,
    SinkSchemaError,
    SinkTarget,
    SinkUnavailableError,
    SinkValueError,
    SinkWriteError,
    check_identifier,
    infer_schema,
)
from sinks.columns import format_timestamp
from sinks.partition import SchemaLock

T0 = datetime(2026, 11, 22, 5, 1, 54, 123456, tzinfo=timezone.utc)


def test_check_identifier_accepts_and_returns_valid_names() -> None:
    for name in ("samples", "_x", "A1_b2", "a" * 63):
        assert check_identifier(name, "table") == name


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "samples; DROP TABLE x", "a" * 64, 3])
def test_check_identifier_rejects_with_a_message_naming_what_and_the_rule(name: Any) -> None:
    with pytest.raises(ValueError) as info:
        check_identifier(name, "table")
    message = str(info.value)
    assert message.startswith(f"table: {name!r} is not a valid identifier")
    assert IDENTIFIER.pattern in message


def test_column_validates_name_and_type() -> None:
    assert Column("v", "float") == Column("v", "float", nullable=True)
    with pytest.raises(ValueError, match="'decimal'"):
        Column("v", "decimal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="column name"):
        Column("bad name", "text")


def test_schema_names_key_and_coercion_to_tuples() -> None:
    schema = Schema([Column("a", "int"), Column("b", "text")], key=["a"])  # type: ignore[arg-type]
    assert schema.names == ("a", "b")
    assert schema.columns == (Column("a", "int"), Column("b", "text"))
    assert schema.key == ("a",)
    assert schema.required(schema.columns[0])  # key column
    assert not schema.required(schema.columns[1])
    assert Schema((Column("c", "int", nullable=False),)).required(Column("c", "int", False))


@pytest.mark.parametrize(
    ("columns", "key", "match"),
    [
        ((Column("a", "int"), Column("a", "text")), (), "appears twice"),
        ((Column("a", "int"), Column("A", "text")), (), "appears twice"),
        ((Column("a", "int"),), ("b",), "key column 'b'"),
        ((Column("a", "int"),), ("a", "a"), "twice"),
        ((), (), "at least one column"),
        (("a",), (), "is not a Column"),
    ],
)
def test_schema_rejects_invalid_definitions(columns: Any, key: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Schema(columns, key)


def test_infer_orders_columns_by_first_appearance_across_rows() -> None:
    schema = infer_schema([{"b": 1, "a": "x"}, {"c": 1.5, "a": "y"}, {"d": None}])
    assert schema.names == ("b", "a", "c", "d")
    assert schema.key == ()
    assert all(column.nullable for column in schema.columns)


def test_infer_maps_each_python_type() -> None:
    row = {"b": True, "i": 3, "f": 2.5, "s": "x", "t": T0}
    assert infer_schema([row]).columns == (
        Column("b", "bool"),
        Column("i", "int"),
        Column("f", "float"),
        Column("s", "text"),
        Column("t", "timestamp"),
    )


def test_infer_uses_the_first_non_null_value() -> None:
    schema = infer_schema([{"x": None}, {"x": 4}, {"x": None}])
    assert schema.columns == (Column("x", "int"),)


def test_infer_int_mixed_with_float_is_float() -> None:
    assert infer_schema([{"x": 1}, {"x": 2.5}, {"x": 3}]).columns == (Column("x", "float"),)


@pytest.mark.parametrize(
    "values",
    [[True, 1], [1, "a"], [2.5, "a"], [T0, "a"], [True, 1.0], [T0, 1]],
    ids=["bool+int", "int+text", "float+text", "timestamp+text", "bool+float", "timestamp+int"],
)
def test_infer_any_other_mix_is_text(values: list[Any]) -> None:
    assert infer_schema([{"x": v} for v in values]).columns == (Column("x", "text"),)


def test_infer_all_null_is_text() -> None:
    assert infer_schema([{"x": None}, {"x": None}]).columns == (Column("x", "text"),)


def test_infer_rejects_rows_without_columns_or_with_bad_names() -> None:
    with pytest.raises(ValueError, match="no columns"):
        infer_schema([{}, {}])
    with pytest.raises(ValueError, match="not a valid identifier"):
        infer_schema([{"temp (C)": 1.0}])


def test_format_timestamp_is_iso_utc_with_microseconds() -> None:
    assert format_timestamp(T0) == "2026-11-22T05:01:54.123456+00:00"
    assert format_timestamp(T0.replace(microsecond=0)) == "2026-11-22T05:01:54.000000+00:00"
    cet = T0.astimezone(timezone(timedelta(hours=1)))
    assert format_timestamp(cet) == "2026-11-22T05:01:54.123456+00:00"
    assert datetime.fromisoformat(format_timestamp(T0)) == T0


def test_format_timestamp_rejects_naive_datetimes() -> None:
    with pytest.raises(SinkError, match="naive"):
        format_timestamp(datetime(2026, 1, 1))


def test_error_hierarchy() -> None:
    for error in (SinkSchemaError, SinkWriteError, SinkDependencyError, SinkValueError):
        assert issubclass(error, SinkError)
    assert issubclass(SinkError, Exception)
    # Transient failures are the one kind a retry may fix, and they are backend failures.
    assert issubclass(SinkUnavailableError, SinkWriteError)
    for permanent in (SinkSchemaError, SinkValueError, SinkDependencyError):
        assert not issubclass(permanent, SinkWriteError)


def test_config_errors_carry_their_field_as_data() -> None:
    error = SinkConfigError("IntoX", "table", "'a b' is not a valid identifier")
    assert isinstance(error, ValueError)
    assert str(error) == "IntoX.table: 'a b' is not a valid identifier"
    assert (error.sink, error.field, error.reason) == ("IntoX", "table", error.reason)
    combined = SinkConfigError("IntoX", None, "IntoX.a and IntoX.b are mutually exclusive")
    assert str(combined) == combined.reason and combined.field is None


def test_schema_lock_infers_once_and_projects_in_column_order() -> None:
    lock = SchemaLock(None, "target")
    assert lock.schema is None
    assert lock.project([{"a": 1, "b": "x"}]) == [(1, "x")]
    assert lock.schema == Schema((Column("a", "int"), Column("b", "text")))
    # Locked: a later batch of another shape does not change it; missing keys become None.
    assert lock.project([{"b": "y"}, {"b": "z", "a": 2.5}]) == [(None, "y"), (2.5, "z")]
    assert lock.schema.names == ("a", "b")


def test_schema_lock_warns_once_per_unknown_column(caplog: pytest.LogCaptureFixture) -> None:
    lock = SchemaLock(Schema((Column("a", "int"),)), "my-target")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            rows = [{"a": i, "extra": i, "other": "x"} for i in range(10)]
            assert lock.project(rows) == [(i,) for i in range(10)]
        lock.project([{"a": 1, "third": 1}])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(r.getMessage() for r in warnings) == [
        "my-target: dropping key 'extra', which is not a column of the schema ('a',)",
        "my-target: dropping key 'other', which is not a column of the schema ('a',)",
        "my-target: dropping key 'third', which is not a column of the schema ('a',)",
    ]


def test_schema_lock_rejects_null_in_key_or_non_nullable_columns() -> None:
    schema = Schema((Column("k", "text"), Column("n", "int", nullable=False)), key=("k",))
    lock = SchemaLock(schema, "target")
    with pytest.raises(SinkError, match="target: column 'k'"):
        lock.project([{"k": None, "n": 1}])
    with pytest.raises(SinkError, match="target: column 'n'"):
        lock.project([{"k": "a"}])


def test_schema_lock_reports_uninferable_rows_as_schema_errors() -> None:
    with pytest.raises(SinkSchemaError, match="target: cannot infer"):
        SchemaLock(None, "target").lock([{}])


@dataclass
class _ListPartition:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def write_batch(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class _IntoList(IntoSink):
    built: list[tuple[int, int]] = field(default_factory=list)

    @property
    def target(self) -> SinkTarget:
        return SinkTarget("memory", f"list at {id(self.built):#x}", "built")

    def build_partition(self, worker_index: int, worker_count: int) -> _ListPartition:
        self.built.append((worker_index, worker_count))
        return _ListPartition()


def test_into_sink_build_calls_build_partition() -> None:
    sink = _IntoList()
    partition = sink.build("step", 1, 3)
    assert isinstance(partition, _ListPartition)
    assert sink.built == [(1, 3)]


def test_with_schema_copies_the_schema_field_or_keeps_a_sink_without_one() -> None:
    from sinks.memory import IntoMemory

    schema = Schema((Column("a", "int"),))
    memory = IntoMemory()
    assert memory.with_schema(schema).schema == schema and memory.schema is None
    assert memory.with_schema(schema).rows is memory.rows
    plain = _IntoList()
    assert plain.schema is None and plain.with_schema(schema) is plain


def test_into_sink_is_abstract() -> None:
    with pytest.raises(TypeError):
        IntoSink()  # type: ignore[abstract]


def test_importing_sinks_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, sinks, sinks.base, sinks.csv\n"
        "heavy = {'pyarrow', 'asyncpg', 'sqlalchemy', 'sqlite3', 'connectors', 'flows'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_partitions_expose_their_columns(tmp_path) -> None:
    from sinks.csv import IntoCsv
    from sinks.sqlite import IntoSqlite

    for sink in (IntoCsv(path=tmp_path / "c.csv"), IntoSqlite(path=tmp_path / "s.db")):
        part = sink.build_partition(0, 1)
        assert part.columns is None
        part.write_batch([{"b": 1, "a": "x"}])
        assert part.columns == ("b", "a")
        part.close()


def test_timestamp_column_formats_each_instant_in_utc() -> None:
    from datetime import datetime, timedelta, timezone

    import pytest

    from sinks.base import SinkError
    from sinks.columns import timestamp_column

    utc = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    zoned = utc.astimezone(timezone(timedelta(hours=-5)))
    assert timestamp_column([utc, None, zoned, utc]) == [
        "2026-01-02T03:04:05.000006+00:00",
        None,
        "2026-01-02T03:04:05.000006+00:00",
        "2026-01-02T03:04:05.000006+00:00",
    ]
    with pytest.raises(SinkError, match="naive"):
        timestamp_column([datetime(2026, 1, 1)])
    with pytest.raises(SinkError, match="is not a datetime"):
        timestamp_column(["2026-01-01"])
    with pytest.raises(SinkError, match="is not a datetime"):
        timestamp_column([[1]])
