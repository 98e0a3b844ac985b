"""The PostgreSQL test server and its fixtures, shared by the tests of IntoPostgres, the
hostile-input and failure tests, the fault suite and the recovery test.

The server is ``TEST_POSTGRES_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
Without one answering, the ``dsn`` fixture skips its tests, except under CI (``CI=true``),
where it fails them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

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
