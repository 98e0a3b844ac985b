"""IntoPostgres through replays, killed connections and retries: a replayed batch adds no
rows, connections killed between or during writes lose and duplicate nothing, concurrent
partitions write each row once, retries run out with a clear error, and bad data is not
retried.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from urllib.parse import urlsplit

import asyncpg
import pytest

from bench.machine import free_ports
from sinks.base import SinkUnavailableError, SinkValueError
from sinks.postgres import IntoPostgres
from tests.faults.proxy import FaultProxy
from tests.sinks.keyed import SCHEMA, row
from tests.sinks.pg import DSN, FAST, count, query, terminate
from tests.sinks.pg import app as app  # the fixture, used by name
from tests.sinks.pg import dsn as dsn  # the fixture
from tests.sinks.pg import table as table  # the fixture


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


def test_a_failover_that_strands_the_pool_costs_one_timeout_not_one_per_connection(
    table: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The server's address moved to another host (or a firewall lost its state): every pooled
    # connection hangs, new ones work. The first write times out once; its retry must not take
    # the next stranded connection from the pool (another whole timeout each), but a new one.
    with FaultProxy(("127.0.0.1", urlsplit(DSN).port or 5432)) as proxy:
        sink = IntoPostgres(
            proxy.dsn(DSN), table=table, schema=SCHEMA, create_table=True, min_pool_size=4,
            max_pool_size=4, command_timeout_s=0.5, retries=1, connect_timeout_s=2.0, **FAST,
        )  # fmt: skip
        part = sink.build_partition(0, 1)
        part.write_batch([row(i) for i in range(10)])
        assert proxy.connections >= 4
        proxy.mode = "strand"
        with caplog.at_level(logging.WARNING, logger="sinks.postgres"):
            part.write_batch([row(i) for i in range(10, 20)])
            part.close()
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 1 and "TimeoutError" in retries[0], retries
    assert count(table) == 20


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
    (port,) = free_ports(1)
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
