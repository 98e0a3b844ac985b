"""Where a fault run writes its rows, and reading them back: SQLite or PostgreSQL.

Each store takes the raw rows (``samples``) and the bus statistics rows (``bus_stats``, one
per bus and tick run), so a run can be audited tick by tick.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from tests.sinks.pg import query

__all__ = ["BothStores", "PostgresStore", "SqliteStore", "Store", "Stored", "TickRow"]


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored raw row, the columns the audit needs."""

    device: str
    parameter: str
    instance: int
    requested_at: datetime
    value: float | None
    error: str | None
    latency_s: float


@dataclass(frozen=True, slots=True)
class TickRow:
    """One stored bus statistics row: a tick that ran."""

    bus: str
    tick: int
    started_at: datetime
    late: int


class Store(Protocol):
    name: str

    def sinks(self) -> str:
        """The ``[[sink]]`` tables of the config."""

    def samples(self) -> list[Stored]: ...

    def ticks(self) -> list[TickRow]: ...


_SAMPLES = "SELECT device, parameter, instance, requested_at, value, error, latency_s FROM {}"
_TICKS = "SELECT bus, tick, started_at, late FROM {}"


class SqliteStore:
    """An SQLite file in the test's directory, tables ``samples`` and ``bus_stats``."""

    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "store.sqlite"

    def sinks(self) -> str:
        return (
            f'[[sink]]\nkind = "sqlite"\npath = "{self.path}"\n\n'
            f'[[sink]]\nkind = "sqlite"\npath = "{self.path}"\ntable = "bus_stats"\n'
            'stream = "bus_stats"\n'
        )

    def _fetch(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.path) as db:
            return db.execute(sql).fetchall()

    def samples(self) -> list[Stored]:
        rows = self._fetch(_SAMPLES.format("samples"))
        return [Stored(d, p, i, datetime.fromisoformat(at), *rest) for d, p, i, at, *rest in rows]

    def ticks(self) -> list[TickRow]:
        rows = self._fetch(_TICKS.format("bus_stats"))
        return [TickRow(b, t, datetime.fromisoformat(at), late) for b, t, at, late in rows]


class PostgresStore:
    """Two fresh tables in the test database; the sink's connections carry an application
    name of their own, so a test can terminate exactly them."""

    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        tag = uuid.uuid4().hex[:12]
        self.table, self.stats_table = f"fault_{tag}", f"fault_{tag}_stats"
        self.application_name = f"daq-fault-{tag}"

    def sinks(self) -> str:
        common = (
            f'kind = "postgres"\ndsn = "{self.dsn}"\ncreate_table = true\n'
            f'application_name = "{self.application_name}"\n'
            "retry_backoff_s = 0.02\nretry_backoff_max_s = 0.2\n"
        )
        return (
            f'[[sink]]\n{common}table = "{self.table}"\n\n'
            f'[[sink]]\n{common}table = "{self.stats_table}"\nstream = "bus_stats"\n'
        )

    def samples(self) -> list[Stored]:
        return [Stored(*r) for r in query(_SAMPLES.format(f'public."{self.table}"'))]

    def ticks(self) -> list[TickRow]:
        return [TickRow(*r) for r in query(_TICKS.format(f'public."{self.stats_table}"'))]

    def drop(self) -> None:
        for table in (self.table, self.stats_table):
            query(f'DROP TABLE IF EXISTS public."{table}"')


class BothStores:
    """SQLite and PostgreSQL written by the same run. Read back, each must hold exactly the
    rows the other holds (the assertion is in :meth:`samples` and :meth:`ticks`), so the audit
    of the one the methods return is the audit of both, for the cost of one run."""

    name = "sqlite+postgres"

    def __init__(self, sqlite: SqliteStore, postgres: PostgresStore) -> None:
        self.sqlite, self.postgres = sqlite, postgres

    def sinks(self) -> str:
        return f"{self.sqlite.sinks()}\n{self.postgres.sinks()}"

    def samples(self) -> list[Stored]:
        rows = self.sqlite.samples()
        assert sorted(self.postgres.samples(), key=repr) == sorted(rows, key=repr), (
            "PostgreSQL and SQLite hold different rows"
        )
        return rows

    def ticks(self) -> list[TickRow]:
        rows = self.sqlite.ticks()
        assert sorted(self.postgres.ticks(), key=repr) == sorted(rows, key=repr), (
            "PostgreSQL and SQLite hold different bus statistics"
        )
        return rows
