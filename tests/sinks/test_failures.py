"""Each failure kind, produced for real, raises its class: SinkUnavailableError where a retry
may fix it (a directory that cannot be made, a full disk, a locked database, an unreachable
server), SinkValueError or SinkSchemaError where none can. And what each backend targets."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.machine import free_ports
from sinks.base import (
    Column,
    IntoSink,
    Schema,
    SinkError,
    SinkSchemaError,
    SinkTarget,
    SinkUnavailableError,
    SinkValueError,
    SinkWriteError,
)
from sinks.csv import IntoCsv
from sinks.jsonl import IntoJsonl
from sinks.memory import IntoMemory
from sinks.parquet import IntoParquet
from sinks.postgres import IntoPostgres
from sinks.sqlite import IntoSqlite
from tests.sinks.keyed import SCHEMA, row
from tests.sinks.pg import DSN, FAST, query
from tests.sinks.pg import dsn as dsn  # the fixture, used by name
from tests.sinks.pg import table as table  # the fixture

FILE_SINKS: dict[str, Callable[[Path], IntoSink]] = {
    "csv": lambda p: IntoCsv(p / "x.csv", schema=SCHEMA),
    "jsonl": lambda p: IntoJsonl(p / "x.jsonl", schema=SCHEMA),
    "sqlite": lambda p: IntoSqlite(p / "x.db", schema=SCHEMA),
    "parquet": lambda p: IntoParquet(p / "ds", schema=SCHEMA),
}
FULL = Path("/dev/full")  # every write fails with ENOSPC, as on a full disk


def transient(info: pytest.ExceptionInfo[SinkError]) -> None:
    """A retry may fix it: a SinkWriteError with the backend's exception as its cause."""
    assert isinstance(info.value, SinkUnavailableError)
    assert isinstance(info.value, SinkWriteError)
    assert info.value.__cause__ is not None


def permanent(info: pytest.ExceptionInfo[SinkError]) -> None:
    assert not isinstance(info.value, SinkUnavailableError)


@pytest.mark.parametrize("kind", FILE_SINKS)
def test_a_directory_that_cannot_be_made_is_transient(tmp_path: Path, kind: str) -> None:
    (tmp_path / "blocker").write_text("a file where the directory should be")
    with pytest.raises(SinkError) as info:
        FILE_SINKS[kind](tmp_path / "blocker").build_partition(0, 1)
    transient(info)
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")
def test_a_full_disk_is_transient() -> None:
    with pytest.raises(SinkError) as info:
        IntoCsv(FULL, schema=SCHEMA).build_partition(0, 1)  # the header is written at once
    transient(info)
    part = IntoJsonl(FULL).build_partition(0, 1)
    with pytest.raises(SinkError) as info:
        part.write_batch([row(0)])
    transient(info)
    assert "No space left" in str(info.value)
    part.close()  # nothing is buffered: a batch is written whole or not at all


def test_a_sqlite_database_locked_past_the_busy_timeout_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    part = IntoSqlite(path, schema=SCHEMA, busy_timeout_s=0).build_partition(0, 1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(SinkError) as info:
            part.write_batch([row(0)])
        transient(info)
    finally:
        holder.rollback()
        holder.close()
    part.write_batch([row(0)])  # the lock is gone: the same batch goes in
    part.close()


def test_a_file_that_is_not_a_sqlite_database_is_permanent(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(SinkWriteError) as info:
        IntoSqlite(path).build_partition(0, 1)
    permanent(info)


def test_a_parquet_directory_removed_mid_run_is_transient(tmp_path: Path) -> None:
    part = IntoParquet(tmp_path / "ds").build_partition(0, 1)
    (tmp_path / "ds").rmdir()
    with pytest.raises(SinkError) as info:
        part.write_batch([{"a": 1}])
    transient(info)
    part.close()


def test_an_unreachable_postgres_is_transient() -> None:
    (port,) = free_ports(1)
    sink = IntoPostgres(f"postgresql://postgres@127.0.0.1:{port}/test", retries=0, **FAST)
    with pytest.raises(SinkError) as info:
        sink.build_partition(0, 1)
    transient(info)
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize(
    ("kind", "bad"),
    [
        ("csv", {"unit": "\ud800"}),
        ("jsonl", {"unit": "\ud800"}),
        ("sqlite", {"instance": 2**70}),
        ("parquet", {"value": "hot"}),
        ("memory", {"device": None}),
    ],
)
def test_a_value_the_schema_cannot_hold_is_permanent(
    tmp_path: Path, kind: str, bad: dict[str, Any]
) -> None:
    sink = IntoMemory(schema=SCHEMA) if kind == "memory" else FILE_SINKS[kind](tmp_path)
    part = sink.build_partition(0, 1)
    with pytest.raises(SinkValueError) as info:
        part.write_batch([row(0), row(1, **bad)])
    permanent(info)
    part.write_batch([row(0)])  # the partition is still usable
    part.close()


@pytest.mark.parametrize("bad", [{"value": "hot"}, {"instance": 2**70}, {"unit": "a\0b"}])
@pytest.mark.parametrize("use_copy", [True, False], ids=["copy", "executemany"])
def test_a_value_postgres_cannot_hold_is_permanent(
    table: str,
    use_copy: bool,
    bad: dict[str, Any],
) -> None:
    sink = IntoPostgres(
        DSN,
        table=table,
        schema=SCHEMA,
        create_table=True,
        use_copy=use_copy,
    )
    part = sink.build_partition(0, 1)
    try:
        with pytest.raises(SinkValueError) as info:
            part.write_batch([row(0), row(1, **bad)])
        permanent(info)
    finally:
        part.close()


def test_incompatible_targets_are_permanent(tmp_path: Path, table: str) -> None:
    (tmp_path / "x.csv").write_text("other,header\r\n")
    with pytest.raises(SinkSchemaError) as info:
        IntoCsv(tmp_path / "x.csv", schema=SCHEMA).build_partition(0, 1)
    permanent(info)
    with sqlite3.connect(tmp_path / "x.db") as db:
        db.execute("CREATE TABLE samples (device BLOB, parameter TEXT)")
    with pytest.raises(SinkSchemaError) as info:
        IntoSqlite(tmp_path / "x.db", schema=SCHEMA).build_partition(0, 1)
    permanent(info)
    query(f'CREATE TABLE public."{table}" (device text)')
    with pytest.raises(SinkSchemaError) as info:
        IntoPostgres(DSN, table=table, schema=SCHEMA).build_partition(0, 1)
    permanent(info)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_each_backend_declares_its_target(here: Path) -> None:
    rows: list[dict[str, Any]] = []
    targets = {
        "csv": IntoCsv("out/x.csv").target,
        "jsonl": IntoJsonl(here / "x.jsonl").target,
        "sqlite": IntoSqlite("x.db", table="t").target,
        "parquet": IntoParquet("ds").target,
        "postgres": IntoPostgres(host="db", database="daq", table="t").target,
        "postgres-dsn": IntoPostgres("postgresql://u:pw@db/daq", schema_name="s").target,
        "memory": IntoMemory(rows).target,
    }
    assert targets == {
        "csv": SinkTarget("file", str(here / "out" / "x.csv"), "path"),
        "jsonl": SinkTarget("file", str(here / "x.jsonl"), "path"),
        "sqlite": SinkTarget("file", str(here / "x.db"), "table", "t"),
        "parquet": SinkTarget("directory", str(here / "ds"), "path"),
        "postgres": SinkTarget("database", "db:5432/daq.public.t", "table"),
        "postgres-dsn": SinkTarget("database", "db:5432/daq.s.samples", "table"),
        "memory": SinkTarget("memory", f"list at {id(rows):#x}", "rows"),
    }
    for target in targets.values():
        assert "pw" not in target.location


def test_targets_overlap_on_one_location_and_table(here: Path) -> None:
    sqlite = IntoSqlite("x.db", table="a").target
    assert sqlite.overlaps(IntoSqlite(here / "x.db", table="a").target)
    assert not sqlite.overlaps(IntoSqlite("x.db", table="b").target)
    assert sqlite.overlaps(IntoCsv("x.db").target)  # the whole file
    assert not IntoCsv("x.csv").target.overlaps(IntoCsv("y.csv").target)
    rows: list[dict[str, Any]] = []
    assert IntoMemory(rows).target.overlaps(IntoMemory(rows).target)
    assert not IntoMemory(rows).target.overlaps(IntoMemory([]).target)


def test_schema_checks_are_schema_errors_of_the_shared_path() -> None:
    with pytest.raises(SinkSchemaError):
        IntoMemory().build_partition(0, 1).write_batch([{}])
    schema = Schema((Column("a", "int", nullable=False),))
    with pytest.raises(SinkValueError):
        IntoMemory(schema=schema).build_partition(0, 1).write_batch([{"a": None}])
