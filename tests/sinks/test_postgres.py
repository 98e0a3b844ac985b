"""IntoPostgres against a real server: the exact round trip, the DDL and the table checks,
an inferred schema, values refused before writing, its settings, and a real dataflow.

Replays, killed connections and retries are in test_postgres_outages.py, the password in
test_postgres_secrets.py; the server and the fixtures in pg.py.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from flows.rows import SAMPLE_SCHEMA
from sinks.base import SinkError, SinkPartition, SinkSchemaError
from sinks.postgres import IntoPostgres
from tests.sinks.keyed import SCHEMA, T0, row
from tests.sinks.pg import DSN, query
from tests.sinks.pg import dsn as dsn  # the fixture, used by name
from tests.sinks.pg import table as table  # the fixture


def test_round_trip_is_exact_across_batches(table: str) -> None:
    cet = timezone(timedelta(hours=1))
    rows = [
        row(0),
        row(1, value=None, ok=None, unit=None),
        row(2, device="Ofen-ÄÖÜ-温度-🌡", unit="°C", value=1 / 3),
        row(3, unit="'\"; DROP TABLE x; --", value=-1e308),
        row(4, unit="x" * 1_000_000, instance=2**62),
        row(5, requested_at=(T0 + timedelta(seconds=5, microseconds=1)).astimezone(cet)),
    ]
    part = IntoPostgres(DSN, table=table, schema=SCHEMA, create_table=True).build_partition(0, 1)
    assert isinstance(part, SinkPartition)
    assert part.columns == SCHEMA.names
    part.write_batch(rows[:3])
    part.write_batch(rows[3:])
    part.close()
    part.close()
    back = [dict(r) for r in query(f'SELECT * FROM "{table}" ORDER BY requested_at')]
    assert back == rows  # datetimes compare as instants
    assert all(r["requested_at"].tzinfo == timezone.utc for r in back)
    assert back[5]["requested_at"] == datetime(2026, 11, 22, 5, 1, 59, 123457, tzinfo=timezone.utc)
    assert len(back[4]["unit"]) == 1_000_000


def test_created_table_has_types_not_null_and_the_key_as_primary_key(table: str) -> None:
    part = IntoPostgres(DSN, table=table, schema=SCHEMA, create_table=True).build_partition(0, 1)
    part.close()  # created at build, since the schema is given
    columns = query(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    assert [tuple(c) for c in columns] == [
        ("device", "text", "NO"),
        ("parameter", "text", "NO"),
        ("instance", "bigint", "NO"),
        ("requested_at", "timestamp with time zone", "NO"),
        ("value", "double precision", "YES"),
        ("ok", "boolean", "YES"),
        ("unit", "text", "YES"),
    ]
    key = query(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey::int2[], a.attnum)",
        f'public."{table}"',
    )
    assert tuple(k[0] for k in key) == SCHEMA.key


def test_existing_compatible_table_is_introspected_and_used(table: str) -> None:
    query(
        f'CREATE TABLE "{table}" (device varchar, parameter text NOT NULL, instance bigint, '
        "requested_at timestamptz, value double precision, ok boolean, unit text, "
        "note text NOT NULL DEFAULT 'x', site text, id bigint GENERATED ALWAYS AS IDENTITY, "
        "PRIMARY KEY (requested_at, instance, parameter, device))"
    )
    part = IntoPostgres(DSN, table=table, schema=SCHEMA).build_partition(0, 1)
    part.write_batch([row(0), row(0), row(1)])
    part.write_batch([row(1)])
    part.close()
    back = query(f'SELECT value, note, site FROM "{table}" ORDER BY requested_at')
    assert [tuple(r) for r in back] == [(20.0, "x", None), (20.1, "x", None)]


def test_missing_table_is_a_schema_error_unless_created(table: str) -> None:
    with pytest.raises(SinkSchemaError, match=f"public.{table} does not exist"):
        IntoPostgres(DSN, table=table, schema=SCHEMA).build_partition(0, 1)
    part = IntoPostgres(DSN, table=table).build_partition(0, 1)  # no schema: checked at write
    with pytest.raises(SinkSchemaError, match="create_table"):
        part.write_batch([row(0)])
    part.close()
    assert query("SELECT to_regclass($1)", f'public."{table}"') == [(None,)]


@pytest.mark.parametrize(
    ("change", "extra", "expected"),
    [
        ({"value": "text"}, "", ["'value'", "expected double precision", "found text"]),
        ({"requested_at": None}, "",
         ["'requested_at'", "expected timestamp with time zone", "found no such column"]),
        ({"instance": "integer"}, "", ["'instance'", "expected bigint", "found integer"]),
        ({"value": "real"}, "", ["'value'", "expected double precision", "found real"]),
        ({"unit": "varchar(20)"}, "",
         ["'unit'", "expected text", "found character varying(20)"]),
        ({"requested_at": "timestamp"}, "",
         ["'requested_at'", "expected timestamp with time zone", "found timestamp without"]),
        ({}, ", site text NOT NULL",
         ["'site'", "expected it nullable or absent", "found NOT NULL"]),
        ({}, ", PRIMARY KEY (device, parameter)",
         ["unique index on the key", "expected PRIMARY KEY", "found there is no unique"]),
        ({}, "", ["unique index on the key", "expected PRIMARY KEY", "found there is no unique"]),
    ],
    ids=["float-in-text", "missing", "int4", "real", "short-varchar", "naive-timestamp",
         "extra-not-null", "other-primary-key", "no-key"],
)  # fmt: skip
def test_existing_incompatible_table_is_a_schema_error(
    table: str, change: dict[str, str | None], extra: str, expected: list[str]
) -> None:
    types = {
        "device": "text", "parameter": "text", "instance": "bigint", "requested_at": "timestamptz",
        "value": "double precision", "ok": "boolean", "unit": "text", **change,
    }  # fmt: skip
    ddl = ", ".join(f"{name} {kind}" for name, kind in types.items() if kind is not None)
    query(f'CREATE TABLE "{table}" ({ddl}{extra})')
    for create in (False, True):
        with pytest.raises(SinkSchemaError) as info:
            IntoPostgres(DSN, table=table, schema=SCHEMA, create_table=create).build_partition(0, 1)
        message = str(info.value)
        assert f"{urlsplit(DSN).path}.public.{table}" in message
        for part in expected:
            assert part in message


@pytest.mark.parametrize("use_copy", [True, False], ids=["copy", "executemany"])
def test_inferred_schema_without_key_inserts_as_it_comes(
    table: str, use_copy: bool, caplog: pytest.LogCaptureFixture
) -> None:
    sink = IntoPostgres(DSN, table=table, create_table=True, use_copy=use_copy)
    part = sink.build_partition(0, 1)
    assert part.columns is None
    with caplog.at_level(logging.WARNING):
        part.write_batch([{"a": 1, "b": True, "t": T0, "m": "x"}, {"a": 2.5, "m": 5}])
        part.write_batch([{"a": 3, "x": 1}, {"x": 2, "b": False}])
        part.write_batch([{"a": 3}])  # no key: a replay is a second copy
    part.close()
    assert part.columns == ("a", "b", "t", "m")
    types = query(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 "
        "ORDER BY ordinal_position",
        table,
    )
    assert [tuple(t) for t in types] == [
        ("a", "double precision"),
        ("b", "boolean"),
        ("t", "timestamp with time zone"),
        ("m", "text"),
    ]
    back = query(f'SELECT a, b, t, m FROM "{table}" ORDER BY a NULLS LAST, b')
    assert [tuple(r) for r in back] == [
        (1.0, True, T0, "x"),
        (2.5, None, None, "5"),
        (3.0, None, None, None),
        (3.0, None, None, None),
        (None, False, None, None),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'x'" in warnings[0] and table in warnings[0]


def test_bad_values_reject_the_batch_before_writing(table: str) -> None:
    part = IntoPostgres(DSN, table=table, schema=SCHEMA, create_table=True).build_partition(0, 1)
    with pytest.raises(SinkError, match="naive"):
        part.write_batch([row(0), row(1, requested_at=datetime(2026, 1, 1))])
    with pytest.raises(SinkError, match="'device'"):
        part.write_batch([row(0), row(1, device=None)])
    with pytest.raises(SinkError, match=r"2\.5 is not a whole number"):
        part.write_batch([row(0), row(1, instance=2.5)])
    part.write_batch([row(0, instance=3.0)])
    part.close()
    assert query(f'SELECT instance FROM "{table}"') == [(3,)]


@pytest.mark.parametrize("use_copy", [True, False], ids=["copy", "executemany"])
def test_a_bad_value_deep_in_a_batch_rolls_back_the_rows_sent_before_it(
    table: str, use_copy: bool
) -> None:
    # Rows are formatted a thousand at a time as they are sent: one bad value in the third
    # thousand must still leave none of the batch, and the connection fit for the next one.
    sink = IntoPostgres(DSN, table=table, schema=SCHEMA, create_table=True, use_copy=use_copy)
    part = sink.build_partition(0, 1)
    part.write_batch([row(i) for i in range(10)])  # keys that the bad batch replays
    rows = [row(i) for i in range(3000)]
    rows[2500] = row(2500, requested_at=datetime(2026, 1, 1))
    with pytest.raises(SinkError, match="naive") as raised:
        part.write_batch(rows)
    assert "column 'requested_at'" in str(raised.value)
    rows[2500] = row(2500, device=None)  # a NULL in the key, refused as the part is projected
    with pytest.raises(SinkError, match="'device' takes no NULL"):
        part.write_batch(rows)
    assert query(f'SELECT count(*) FROM "{table}"') == [(10,)]
    part.write_batch([row(i) for i in range(3000)])
    part.close()
    assert query(f'SELECT count(*), count(DISTINCT requested_at) FROM "{table}"') == [(3000, 3000)]


def test_close_is_idempotent_and_write_after_close_raises(dsn: str) -> None:
    part = IntoPostgres(dsn).build_partition(0, 1)
    part.write_batch([])
    part.close()
    part.close()
    with pytest.raises(SinkError, match="after close"):
        part.write_batch([row(0)])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dsn": DSN, "host": "127.0.0.1"}, r"dsn and IntoPostgres\.host"),
        ({"dsn": DSN, "password": "x"}, r"dsn and IntoPostgres\.password"),
        ({"dsn": DSN, "port": 5433}, r"dsn and IntoPostgres\.port"),
        ({}, "host"),
        ({"dsn": "mysql://u:p@h/db"}, "dsn"),
        ({"dsn": "postgresql://u:pa/ss@h/db"}, "dsn"),
        ({"host": "h", "table": "samples; DROP TABLE x"}, "table"),
        ({"host": "h", "table": 'x"y'}, "table"),
        ({"host": "h", "schema_name": "public; DROP TABLE x"}, "schema_name"),
        ({"host": "h", "schema_name": ""}, "schema_name"),
        ({"host": "h", "port": 0}, "port"),
        ({"host": "h", "retries": -1}, "retries"),
        ({"host": "h", "retries": 101}, "retries"),
        ({"host": "h", "retries": 1.5}, "retries"),
        ({"host": "h", "retries": True}, "retries"),
        ({"host": "h", "retry_backoff_s": 5.0, "retry_backoff_max_s": 1.0}, "retry_backoff_s"),
        ({"host": "h", "retry_backoff_max_s": float("inf")}, "retry_backoff_max_s"),
        ({"host": "h", "retry_backoff_s": float("nan")}, "retry_backoff_s"),
        ({"host": "h", "min_pool_size": 3, "max_pool_size": 2}, "max_pool_size"),
        ({"host": "h", "max_pool_size": 0}, "max_pool_size"),
        ({"host": "h", "statement_timeout_s": 0}, "statement_timeout_s"),
        ({"host": "h", "command_timeout_s": "60"}, "command_timeout_s"),
        ({"host": "h", "application_name": "x" * 64}, "application_name"),
        ({"host": "h", "schema": "not a schema"}, "schema"),
    ],
)
def test_bad_settings_are_rejected_at_construction(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"IntoPostgres\.{field}"):
        IntoPostgres(**kwargs)


def test_defaults() -> None:
    sink = IntoPostgres(host="db.example", database="daq", user="daq", password="x")
    assert (sink.port, sink.schema_name, sink.table, sink.create_table, sink.use_copy) == (
        5432, "public", "samples", False, True,
    )  # fmt: skip
    assert repr(sink) == "IntoPostgres(db.example:5432/daq.public.samples)"
    assert IntoPostgres(DSN).port is None  # the DSN carries it


@pytest.mark.parametrize("blocked", ["asyncpg", "sqlalchemy"])
def test_missing_extra_raises_at_build_not_import(blocked: str) -> None:
    code = f"""
import sys
sys.modules[{blocked!r}] = None
import sinks.postgres
from sinks.base import SinkDependencyError
assert "asyncpg" not in sys.modules or sys.modules["asyncpg"] is None
sink = sinks.postgres.IntoPostgres(host="127.0.0.1", database="test")
try:
    sink.build_partition(0, 1)
except SinkDependencyError as exc:
    print(exc)
"""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert 'pip install ".[postgres]"' in out.stdout


def test_as_the_sink_of_a_dataflow(table: str) -> None:
    def sample(i: int) -> dict[str, Any]:
        at = T0 + timedelta(seconds=i)
        return {
            "bus": "bus1",
            "device": "pm-1",
            "address": 1,
            "protocol": "tcp",
            "parameter": "analog_input_value",
            "parameter_id": 4001,
            "instance": 1,
            "value": 20.0 + i,
            "value_text": None,
            "unit": "C",
            "requested_at": at,
            "received_at": at + timedelta(milliseconds=5),
            "midpoint_at": at + timedelta(microseconds=2500),
            "latency_s": 0.005,
            "error": None,
        }

    batch = [sample(i) for i in range(5)]
    flow = Dataflow("postgres_sink")
    stream = op.input("in", flow, TestingSource(batch + batch))  # replayed rows are ignored
    sink = IntoPostgres(DSN, table=table, schema=SAMPLE_SCHEMA, create_table=True)
    op.output("out", stream, sink)
    run_main(flow)
    back = [dict(r) for r in query(f'SELECT * FROM "{table}" ORDER BY requested_at')]
    assert back == batch
