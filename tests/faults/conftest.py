"""Fixtures of the fault suite: the simulators' loop and the store a run writes to.

``store`` runs a test once with SQLite and once with PostgreSQL; the PostgreSQL run skips
when no server answers at ``TEST_POSTGRES_DSN``, except under CI (``CI=true``), where it
fails (the ``dsn`` fixture of tests/sinks/pg.py decides).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.rig import SimLoop
from tests.faults.stores import PostgresStore, SqliteStore, Store
from tests.sinks.pg import dsn  # noqa: F401 (the fixture, used by name)


@pytest.fixture
def sims() -> Iterator[SimLoop]:
    loop = SimLoop()
    yield loop
    loop.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield SqliteStore(tmp_path)
        return
    pg = PostgresStore(request.getfixturevalue("dsn"))
    yield pg
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
