"""Fixtures of the fault suite: the simulators' loop and the store a run writes to.

``store`` has a run write to SQLite and PostgreSQL at once, and reading it back asserts
that both hold the same rows. Where no PostgreSQL answers at ``TEST_POSTGRES_DSN`` the run
writes to SQLite alone, except under CI (``CI=true``), where that fails (the ``dsn``
fixture of tests/sinks/pg.py decides).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.rig import SimLoop
from tests.faults.stores import BothStores, PostgresStore, SqliteStore, Store
from tests.sinks.pg import dsn  # noqa: F401 (the fixture, used by name)


@pytest.fixture
def sims() -> Iterator[SimLoop]:
    loop = SimLoop()
    yield loop
    loop.close()


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    try:
        dsn = request.getfixturevalue("dsn")
    except pytest.skip.Exception:
        yield SqliteStore(tmp_path)
        return
    pg = PostgresStore(dsn)
    yield BothStores(SqliteStore(tmp_path), pg)
    pg.drop()


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresStore]:
    pg = PostgresStore(request.getfixturevalue("dsn"))
    yield pg
    pg.drop()


@pytest.fixture(autouse=True)
def _collected_heap() -> None:
    """Collect the garbage of the tests before, so a full collection of their heap does not
    land inside the measured run as a 100 ms pause (a late tick at 5 Hz)."""
    gc.collect()
