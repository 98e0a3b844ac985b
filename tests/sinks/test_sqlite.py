"""IntoSqlite against a real database file: DDL, idempotence, concurrency, rollback, WAL."""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from sinks.base import SinkError, SinkPartition, SinkSchemaError, SinkWriteError
from sinks.sqlite import IntoSqlite
from tests.sinks.keyed import SCHEMA, T0, row


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_table_created_with_types_not_null_and_the_key_as_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "db" / "daq.sqlite"
    part = IntoSqlite(path, schema=SCHEMA).build_partition(0, 1)
    assert isinstance(part, SinkPartition)
    # Created at build, since the schema is given.
    info = query(path, 'PRAGMA table_info("samples")')
    assert [(r[1], r[2], r[3], r[5]) for r in info] == [
        ("device", "TEXT", 1, 1),
        ("parameter", "TEXT", 1, 2),
        ("instance", "INTEGER", 1, 3),
        ("requested_at", "TEXT", 1, 4),
        ("value", "REAL", 0, 0),
        ("ok", "INTEGER", 0, 0),
        ("unit", "TEXT", 0, 0),
    ]
    part.close()
    assert query(path, "PRAGMA journal_mode") == [("wal",)]


def test_values_are_stored_as_documented(tmp_path: Path) -> None:
    path = tmp_path / "daq.sqlite"
    part = IntoSqlite(path, schema=SCHEMA).build_partition(0, 1)
    cet = (T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=1)))
    part.write_batch([row(0), row(1, value=None, ok=None, unit=None, requested_at=cet)])
    part.close()
    assert query(path, "SELECT * FROM samples ORDER BY requested_at") == [
        ("pm1", "analog_input_value", 1, "2026-11-22T05:01:54.123456+00:00", 20.0, 1, "C"),
        ("pm1", "analog_input_value", 1, "2026-11-22T05:01:55.123456+00:00", None, None, None),
    ]


def test_replayed_batch_adds_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "daq.sqlite"
    sink = IntoSqlite(path, schema=SCHEMA)
    batch = [row(i) for i in range(10)]
    part = sink.build_partition(0, 1)
    part.write_batch(batch)
    part.write_batch(batch)
    part.close()
    again = sink.build_partition(0, 1)
    again.write_batch([*batch[5:], row(10)])
    again.close()
    assert query(path, "SELECT COUNT(*) FROM samples") == [(11,)]


def test_three_concurrent_partitions_write_every_row_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    sink = IntoSqlite(path, schema=SCHEMA)
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            part = sink.build_partition(index, 3)
            start.wait(timeout=60)
            for batch in range(20):
                part.write_batch([row(batch * 25 + i, device=f"dev{index}") for i in range(25)])
            part.close()
        except BaseException as exc:
            errors.append(exc)
            start.abort()  # release the others rather than hang

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = query(path, "SELECT device, COUNT(*), COUNT(DISTINCT requested_at) FROM samples "
                   "GROUP BY device ORDER BY device")  # fmt: skip
    assert counts == [("dev0", 500, 500), ("dev1", 500, 500), ("dev2", 500, 500)]


@pytest.mark.parametrize(
    ("ddl", "column", "found"),
    [
        ("CREATE TABLE samples (device TEXT, parameter TEXT, instance INTEGER)", "requested_at",
         "no such column"),
        ("CREATE TABLE samples (device TEXT, parameter TEXT, instance INTEGER, requested_at TEXT,"
         " value TEXT, ok INTEGER, unit TEXT)", "value", "'TEXT'"),
        ("CREATE TABLE samples (device TEXT, parameter TEXT, instance REAL, requested_at TEXT,"
         " value REAL, ok INTEGER, unit TEXT)", "instance", "'REAL'"),
        ("CREATE TABLE samples (device TEXT, parameter TEXT, instance INTEGER, requested_at TEXT,"
         " value REAL, ok INTEGER, unit TEXT, site TEXT NOT NULL)", "site", "NOT NULL"),
        ("CREATE TABLE samples (device TEXT, parameter TEXT, instance INTEGER, requested_at TEXT,"
         " value REAL, ok INTEGER, unit TEXT, PRIMARY KEY (device))", "primary key", "('device',)"),
    ],
    ids=["missing", "float-in-text", "int-in-real", "extra-not-null", "other-primary-key"],
)  # fmt: skip
def test_existing_incompatible_table_is_a_schema_error(
    tmp_path: Path, ddl: str, column: str, found: str
) -> None:
    path = tmp_path / "daq.sqlite"
    query(path, ddl)
    with pytest.raises(SinkSchemaError) as info:
        IntoSqlite(path, schema=SCHEMA).build_partition(0, 1)
    message = str(info.value)
    assert "'samples'" in message and str(path) in message
    assert column in message and found in message and "expected" in message


def test_existing_compatible_table_is_used(tmp_path: Path) -> None:
    path = tmp_path / "daq.sqlite"
    query(
        path,
        "CREATE TABLE samples (device VARCHAR(20), parameter TEXT, instance INT, requested_at, "
        "value DOUBLE, ok BOOLEAN, unit TEXT, note TEXT DEFAULT 'x', "
        "PRIMARY KEY (device, parameter, instance, requested_at))",
    )
    part = IntoSqlite(path, schema=SCHEMA).build_partition(0, 1)
    part.write_batch([row(0), row(0)])
    part.close()
    assert query(path, "SELECT value, ok, note FROM samples") == [(20.0, 1, "x")]


@pytest.mark.parametrize("table", ["samples; DROP TABLE x", "1x", "a b", "", 'x"y'])
def test_bad_table_name_is_rejected_at_construction(tmp_path: Path, table: str) -> None:
    with pytest.raises(ValueError, match=r"IntoSqlite\.table"):
        IntoSqlite(tmp_path / "x.sqlite", table=table)


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), "30", True])
def test_bad_busy_timeout_is_rejected(tmp_path: Path, timeout: Any) -> None:
    with pytest.raises(ValueError, match=r"IntoSqlite\.busy_timeout_s"):
        IntoSqlite(tmp_path / "x.sqlite", busy_timeout_s=timeout)


def test_failing_batch_is_rolled_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "daq.sqlite"
    part = IntoSqlite(path, schema=SCHEMA).build_partition(0, 1)
    query(
        path,
        "CREATE TRIGGER refuse BEFORE INSERT ON samples WHEN NEW.unit = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END",
    )
    with pytest.raises(SinkWriteError, match="refused by trigger") as info:
        part.write_batch([row(0), row(1), row(2, unit="boom"), row(3)])
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert query(path, "SELECT COUNT(*) FROM samples") == [(0,)]
    part.write_batch([row(0), row(1)])  # the partition is still usable
    part.close()
    assert query(path, "SELECT COUNT(*) FROM samples") == [(2,)]


def test_bad_values_reject_the_batch_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "daq.sqlite"
    part = IntoSqlite(path, schema=SCHEMA).build_partition(0, 1)
    with pytest.raises(SinkError, match="naive"):
        part.write_batch([row(0), row(1, requested_at=datetime(2026, 1, 1))])
    with pytest.raises(SinkError, match="'device'"):
        part.write_batch([row(0), row(1, device=None)])
    part.close()
    assert query(path, "SELECT COUNT(*) FROM samples") == [(0,)]


def test_wal_truncated_after_close(tmp_path: Path) -> None:
    path = tmp_path / "daq.sqlite"
    wal = tmp_path / "daq.sqlite-wal"
    part = IntoSqlite(path, schema=SCHEMA).build_partition(0, 1)
    part.write_batch([row(i) for i in range(100)])
    assert wal.stat().st_size > 0
    part.close()
    assert not wal.exists() or wal.stat().st_size == 0
    assert query(path, "SELECT COUNT(*) FROM samples") == [(100,)]


def test_close_is_idempotent_and_write_after_close_raises(tmp_path: Path) -> None:
    part = IntoSqlite(tmp_path / "daq.sqlite").build_partition(0, 1)
    part.write_batch([])
    part.close()
    part.close()
    with pytest.raises(SinkError, match="after close"):
        part.write_batch([row(0)])
    assert query(tmp_path / "daq.sqlite", "SELECT name FROM sqlite_master") == []


def test_inferred_schema_and_unknown_keys_dropped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "free.sqlite"
    part = IntoSqlite(path, table="free").build_partition(0, 1)
    with caplog.at_level(logging.WARNING):
        part.write_batch([{"a": 1, "b": True, "t": T0}, {"a": 2.5}])
        part.write_batch([{"a": 3, "x": 1}, {"x": 2, "b": False}])
    part.close()
    info = query(path, 'PRAGMA table_info("free")')
    assert [(r[1], r[2], r[5]) for r in info] == [
        ("a", "REAL", 0),
        ("b", "INTEGER", 0),
        ("t", "TEXT", 0),
    ]
    assert query(path, "SELECT * FROM free ORDER BY rowid") == [
        (1.0, 1, "2026-11-22T05:01:54.123456+00:00"),
        (2.5, None, None),
        (3.0, None, None),
        (None, 0, None),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'x'" in warnings[0] and "'free'" in warnings[0]


def test_as_the_sink_of_a_dataflow(tmp_path: Path) -> None:
    path = tmp_path / "flow.sqlite"
    flow = Dataflow("sqlite_sink")
    batch = [row(i) for i in range(5)]
    stream = op.input("in", flow, TestingSource(batch + batch))  # replayed rows are ignored
    op.output("out", stream, IntoSqlite(path, schema=SCHEMA))
    run_main(flow)
    assert query(path, "SELECT requested_at, value FROM samples ORDER BY requested_at") == [
        ((T0 + timedelta(seconds=i)).isoformat(), 20.0 + i / 10) for i in range(5)
    ]
    assert not (tmp_path / "flow.sqlite-wal").exists()
