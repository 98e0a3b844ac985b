"""IntoPostgres against a real server: exact round trip, DDL and checks, idempotence,
connections killed mid-run, secrets kept out of texts, and a real dataflow.

The server is ``TEST_POSTGRES_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
Without one answering the tests skip, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from flows.rows import SAMPLE_SCHEMA
from sinks.base import (
    SinkError,
    SinkPartition,
    SinkSchemaError,
    SinkUnavailableError,
    SinkValueError,
    SinkWriteError,
)
from sinks.postgres import IntoPostgres
from tests.sinks.keyed import SCHEMA, T0, row

DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "Pw-7f3kQ9zX-s3cr3t"
FAST = {"retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05}


def query(sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(DSN)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def count(table: str) -> int:
    return query(f'SELECT COUNT(*) FROM public."{table}"')[0][0]


def terminate(application_name: str) -> int:
    """Kill every backend of the sink's connections; return how many there were."""
    killed = query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = $1 AND pid <> pg_backend_pid()",
        application_name,
    )
    return len(killed)


def with_password(dsn: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dsn() -> str:
    async def ping() -> None:
        conn = await asyncpg.connect(DSN, timeout=5)
        await conn.close()

    try:
        asyncio.run(ping())
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        where = urlsplit(DSN).netloc.rpartition("@")[2]
        reason = f"no PostgreSQL server answers at {where} (TEST_POSTGRES_DSN): {exc!r}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    return DSN


@pytest.fixture
def table(dsn: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex}"
    yield name
    query(f'DROP TABLE IF EXISTS public."{name}"')


@pytest.fixture
def app() -> str:
    return f"daq-test-{uuid.uuid4().hex[:12]}"


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
def test_replayed_batch_adds_no_rows(table: str, use_copy: bool) -> None:
    sink = IntoPostgres(DSN, table=table, schema=SCHEMA, create_table=True, use_copy=use_copy)
    batch = [row(i) for i in range(10)]
    part = sink.build_partition(0, 1)
    part.write_batch([*batch, batch[0]])  # a duplicate within the batch, too
    part.write_batch(batch)
    part.close()
    again = sink.build_partition(0, 1)
    again.write_batch([*batch[5:], row(10)])
    again.close()
    assert count(table) == 11


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


@pytest.mark.parametrize("use_copy", [True, False], ids=["copy", "executemany"])
def test_connections_killed_between_batches_lose_and_duplicate_nothing(
    table: str, app: str, use_copy: bool
) -> None:
    sink = IntoPostgres(
        DSN, table=table, schema=SCHEMA, create_table=True, use_copy=use_copy,
        application_name=app, **FAST,
    )  # fmt: skip
    part = sink.build_partition(0, 1)
    part.write_batch([row(i) for i in range(10)])
    assert terminate(app) >= 1
    part.write_batch([row(i) for i in range(10, 20)])
    assert terminate(app) >= 1
    part.write_batch([row(i) for i in range(15, 25)])  # half replayed
    part.close()
    assert count(table) == 25
    assert query(f'SELECT COUNT(DISTINCT requested_at) FROM "{table}"') == [(25,)]


@pytest.mark.parametrize("use_copy", [True, False], ids=["copy", "executemany"])
def test_connection_killed_during_a_write_is_retried_once_and_lands_once(
    table: str, app: str, use_copy: bool, caplog: pytest.LogCaptureFixture
) -> None:
    sink = IntoPostgres(
        DSN, table=table, schema=SCHEMA, create_table=True, use_copy=use_copy,
        application_name=app, **FAST,
    )  # fmt: skip
    part = sink.build_partition(0, 1)
    batch = [row(i) for i in range(100)]

    async def kill_mid_write() -> None:
        other, watch = await asyncpg.connect(DSN), await asyncpg.connect(DSN)
        try:
            async with other.transaction():
                # Row 50, inserted and not committed yet, makes the sink's write wait on it.
                await other.execute(
                    f'INSERT INTO "{table}" VALUES ($1, $2, $3, $4, $5, $6, $7)',
                    *row(50, value=-1.0).values(),
                )
                write = asyncio.ensure_future(asyncio.to_thread(part.write_batch, batch))
                for _ in range(1000):
                    # Outside a transaction: pg_stat_activity is read once per transaction.
                    waiting = await watch.fetch(
                        "SELECT pid, query FROM pg_stat_activity "
                        "WHERE application_name = $1 AND wait_event_type = 'Lock'",
                        app,
                    )
                    if waiting or write.done():
                        break
                    await asyncio.sleep(0.01)
                # COPY straight into the table, or the executemany's INSERT, waits on row 50.
                assert [w["query"].split()[0] for w in waiting] == [
                    "COPY" if use_copy else "INSERT"
                ]
                await watch.execute("SELECT pg_terminate_backend($1)", waiting[0]["pid"])
            await write  # retried once the other transaction committed: row 50 is kept
        finally:
            await other.close()
            await watch.close()

    with caplog.at_level(logging.WARNING, logger="sinks.postgres"):
        asyncio.run(kill_mid_write())
    part.close()
    assert count(table) == 100
    assert query(
        f'SELECT value FROM "{table}" WHERE requested_at = $1', row(50)["requested_at"]
    ) == [(-1.0,)]
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 1 and "retry 1 of 5" in retries[0] and table in retries[0]


def test_backends_terminated_at_any_moment_lose_and_duplicate_nothing(table: str, app: str) -> None:
    # A backend terminated just before or during a write can leave asyncpg's protocol mid-
    # operation, so that the pool's reset on release fails (InternalClientError, "cannot switch
    # to state 15"); that connection is lost too, and the write must be retried, not failed.
    sink = IntoPostgres(
        DSN, table=table, schema=SCHEMA, create_table=True, application_name=app,
        min_pool_size=4, max_pool_size=4, retry_backoff_s=0.0, retry_backoff_max_s=0.0,
    )  # fmt: skip
    part = sink.build_partition(0, 1)
    batches = 200
    for b in range(batches):
        killer = threading.Thread(target=terminate, args=(app,))
        killer.start()
        time.sleep(0.001 * (b % 10))  # from before the write to well into it
        part.write_batch([row(9 * b + i) for i in range(9)])
        killer.join()
    part.close()
    assert count(table) == 9 * batches
    assert query(f'SELECT COUNT(DISTINCT requested_at) FROM "{table}"') == [(9 * batches,)]


def test_concurrent_partitions_with_overlapping_keys_write_each_row_once(table: str) -> None:
    sink = IntoPostgres(DSN, table=table, schema=SCHEMA, create_table=True, **FAST)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            part = sink.build_partition(index, 3)
            for batch in range(10):
                rows = [row(batch * 20 + i) for i in range(20)]
                part.write_batch(rows[::-1] if index % 2 else rows)
            part.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert count(table) == 200


def test_retries_run_out_with_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    sink = IntoPostgres(f"postgresql://postgres@127.0.0.1:{port}/test", retries=2, **FAST)
    # Unreachable: transient, the one kind a later retry of the same batch may fix.
    with caplog.at_level(logging.WARNING), pytest.raises(SinkUnavailableError) as info:
        sink.build_partition(0, 1)
    message = str(info.value)
    assert f"127.0.0.1:{port}/test.public.samples" in message
    assert "after 3 attempts" in message
    assert isinstance(info.value.__cause__, OSError)
    retries = [r.getMessage() for r in caplog.records if r.name == "sinks.postgres"]
    assert len(retries) == 2 and "retry 1 of 2" in retries[0] and "retry 2 of 2" in retries[1]


@pytest.mark.parametrize("use_copy", [True, False], ids=["copy", "executemany"])
def test_bad_data_is_not_retried_and_rolls_back(
    table: str, use_copy: bool, caplog: pytest.LogCaptureFixture
) -> None:
    sink = IntoPostgres(DSN, table=table, schema=SCHEMA, create_table=True, use_copy=use_copy)
    part = sink.build_partition(0, 1)
    with caplog.at_level(logging.WARNING), pytest.raises(SinkValueError) as info:
        part.write_batch([row(0), row(1, value="hot")])
    assert "writing 2 rows failed" in str(info.value) and table in str(info.value)
    assert "real number" in str(info.value) and info.value.__cause__ is not None
    assert [r for r in caplog.records if "retry" in r.getMessage()] == []
    part.write_batch([row(0), row(1)])  # the partition is still usable
    part.close()
    assert count(table) == 2


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


def test_close_is_idempotent_and_write_after_close_raises(dsn: str) -> None:
    part = IntoPostgres(dsn).build_partition(0, 1)
    part.write_batch([])
    part.close()
    part.close()
    with pytest.raises(SinkError, match="after close"):
        part.write_batch([row(0)])


def test_the_password_never_shows(
    dsn: str, table: str, app: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = urlsplit(dsn).password or SECRET  # trust auth ignores a password it did not ask
    parts = urlsplit(dsn)
    sinks = [
        IntoPostgres(with_password(dsn, secret), table=table, create_table=True, **FAST),
        IntoPostgres(
            host=parts.hostname, port=parts.port or 5432, user=parts.username,
            password=secret, database=parts.path.lstrip("/"), table=table, application_name=app,
        ),
    ]  # fmt: skip
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for sink in sinks:
            texts += [repr(sink), str(sink)]
            part = sink.build_partition(0, 1)
            part.write_batch([{"a": 1}])
            terminate(app)
            part.write_batch([{"a": 2}])
            part.close()
    where = f"{parts.hostname}:{parts.port or 5432}{parts.path}.public.{table}"
    assert texts[0] == f"IntoPostgres({where})"
    texts += [r.getMessage() for r in caplog.records]
    texts += [r.exc_text or "" for r in caplog.records]
    assert count(table) == 4
    for text in texts:
        assert secret not in text and "postgresql://" not in text


@pytest.mark.parametrize(
    "sink",
    [
        pytest.param(lambda p: IntoPostgres(f"postgresql://u:{SECRET}@127.0.0.1:{p}/db"), id="dsn"),
        pytest.param(
            lambda p: IntoPostgres(f"postgresql://u:{SECRET.replace('-', '%2D')}@127.0.0.1:{p}/db"),
            id="encoded",
        ),
        pytest.param(
            lambda p: IntoPostgres(f"postgresql://u@127.0.0.1:{p}/db?password={SECRET}"), id="query"
        ),
        pytest.param(
            lambda p: IntoPostgres(host="127.0.0.1", port=p, password=SECRET, database="db"),
            id="discrete",
        ),
    ],
)
def test_the_password_never_shows_in_errors(sink: Any, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    texts = []
    for retries in (0, 1):
        into = replace(sink(port), retries=retries, **FAST)
        with caplog.at_level(logging.DEBUG), pytest.raises(SinkWriteError) as info:
            into.build_partition(0, 1)
        assert isinstance(info.value.__cause__, OSError)
        texts += [repr(into), str(into), str(info.value), repr(info.value)]
        texts += [str(info.value.__cause__), repr(info.value.__cause__)]
    assert "opening failed after 1 attempt (retries=0)" in texts[2]
    assert len([r for r in caplog.records if r.name == "sinks.postgres"]) == 1  # one retry
    texts += [r.getMessage() for r in caplog.records]
    assert f"127.0.0.1:{port}/db.public.samples" in texts[0]
    for text in texts:
        assert SECRET not in text and SECRET.replace("-", "%2D") not in text
    with pytest.raises(ValueError) as conflict:
        IntoPostgres(f"postgresql://u:{SECRET}@h/db", password=SECRET)
    assert SECRET not in str(conflict.value)


def test_a_backend_error_showing_the_password_is_scrubbed(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = urlsplit(dsn).password or SECRET
    monkeypatch.setenv("PGPASSWORD", "Env-Pw-0b5f")  # what asyncpg would send without one
    part = IntoPostgres(with_password(dsn, secret)).build_partition(0, 1)
    cases = [
        (OSError(5, f"no route via {secret}"), secret),
        (ValueError(f"bad {secret}"), secret),
        (ValueError("bad Env-Pw-0b5f"), "Env-Pw-0b5f"),
    ]
    try:
        for cause, shown in cases:
            with pytest.raises(SinkWriteError) as info:
                part._fail("writing 1 rows failed", cause)
            assert shown not in str(info.value) and "***" in str(info.value)
            kept = info.value.__cause__
            assert kept is None or (kept is cause and shown not in str(cause))
            assert kept is not None or isinstance(cause, OSError)  # str() ignores OSError.args
    finally:
        part.close()


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
            "parameter": "process_value",
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
