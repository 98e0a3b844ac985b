"""PostgreSQL sink (asyncpg, DDL from SQLAlchemy Core): idempotent, pooled, retried.

Types: float -> double precision, int -> bigint, text -> text, bool -> boolean, timestamp ->
timestamp with time zone (microseconds kept, read back in UTC); non-nullable and key columns
are NOT NULL; the key is the PRIMARY KEY. ``create_table=True`` creates the table if missing;
otherwise (the default) it must exist. Either way it is checked before the first write: every
column present with the type above (text also takes an unbounded ``character varying``) and,
with a key, a unique index on exactly the key columns.

Each batch is one transaction: binary COPY straight into the table under a savepoint; when a
key is already there (a replayed batch), back to the savepoint, then binary COPY into a
temporary table dropped at commit and ``INSERT ... SELECT ... ON CONFLICT (key) DO NOTHING``
(``use_copy=False``: a prepared ``executemany`` of ``INSERT ... ON CONFLICT (key) DO
NOTHING``). So a replayed batch adds nothing, and a transaction re-run after a lost
connection neither loses nor duplicates rows. The rows are projected and formatted for the
COPY a thousand at a time while the server takes the ones before. Without a key rows are
inserted as they come. Messages and log lines name the target as
``host:port/database.schema.table`` and never show the password or the DSN. A value
PostgreSQL cannot hold (text with a NUL character or a lone surrogate, an integer outside 64
bits, a timestamp outside years 1-9999 in UTC) rejects the batch with SinkValueError naming
the column; NaN and infinities are kept. A server that stays unreachable through the retries
raises SinkUnavailableError.

This module holds the settings; the partition is in :mod:`sinks.postgres_writer`, the types,
value formatting and SQL in :mod:`sinks.postgres_sql`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sinks.base import (
    IntoSink,
    Schema,
    SinkConfigError,
    SinkDependencyError,
    SinkTarget,
    identifier_problem,
)
from sinks.postgres_writer import PostgresPartition

__all__ = ["IntoPostgres"]

_DISCRETE = ("host", "port", "user", "password", "database")


def _number(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    # The comparison is False for NaN, so NaN is refused too.
    typed = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not typed or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise SinkConfigError("IntoPostgres", name, f"{value!r} is not {kind} in [{low}, {high}]")


@dataclass(frozen=True)
class IntoPostgres(IntoSink):
    """Write rows to table ``schema_name.table`` of a PostgreSQL database.

    Connection: ``dsn`` (``postgresql://user:password@host:5432/database``) or ``host``,
    ``port`` (5432), ``user``, ``password`` (None: asyncpg reads ``PGPASSWORD``), ``database``,
    not both. ``schema``: the columns (and key); None locks them from the first non-empty batch
    (no key, so no deduplication). ``create_table``: create the table if missing instead of
    failing. ``use_copy``: binary COPY (a replayed batch through a staging table), else a
    prepared executemany.
    Each partition has a pool of ``min_pool_size`` to ``max_pool_size`` connections named
    ``application_name``, with the server's ``statement_timeout`` and asyncpg's
    ``command_timeout`` (seconds, None: no limit). A lost connection, a server restart, a
    deadlock or a client-side timeout (not the server's statement_timeout) re-runs the whole
    transaction up to ``retries`` times, after ``retry_backoff_s`` doubled at each retry up to
    ``retry_backoff_max_s``. The repr shows only ``host:port/database.schema.table``.
    """

    dsn: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    schema_name: str = "public"
    table: str = "samples"
    schema: Schema | None = None
    create_table: bool = False
    use_copy: bool = True
    min_pool_size: int = 1
    max_pool_size: int = 2
    statement_timeout_s: float | None = 60.0
    command_timeout_s: float | None = 120.0
    connect_timeout_s: float = 10.0
    retries: int = 5
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 30.0
    application_name: str = "bytewax-daq"

    def __post_init__(self) -> None:
        if self.dsn is not None:
            given = [f for f in _DISCRETE if getattr(self, f) is not None]
            if given:
                raise SinkConfigError(
                    "IntoPostgres",
                    None,
                    f"IntoPostgres.dsn and IntoPostgres.{given[0]} are mutually exclusive: give a "
                    f"DSN or the discrete fields ({', '.join(_DISCRETE)})",
                )
            dsn = self.dsn if isinstance(self.dsn, str) else ""
            # An unescaped / ? or # in the password ends the authority early: refuse the DSN
            # rather than show part of the password as the host.
            if not re.match(r"postgres(ql)?://", dsn) or (
                "@" in dsn.partition("://")[2] and "@" not in urlsplit(dsn).netloc
            ):
                raise SinkConfigError(
                    "IntoPostgres",
                    "dsn",
                    "not a postgresql://user:password@host:port/database URL "
                    "(percent-encode special characters of the password)",
                )
        else:
            if not isinstance(self.host, str) or not self.host:
                raise SinkConfigError("IntoPostgres", "host", "give a host name (or a dsn)")
            object.__setattr__(self, "port", 5432 if self.port is None else self.port)
            _number("port", self.port, 1, 65535, integer=True)
        for name in ("user", "database"):
            text = getattr(self, name)
            if text is not None and (not isinstance(text, str) or not text or "\0" in text):
                raise SinkConfigError("IntoPostgres", name, f"{text!r} is not a non-empty string")
        if self.password is not None and not isinstance(self.password, str):
            # The value is left out: it may be a password after all.
            raise SinkConfigError("IntoPostgres", "password", "not a string")
        for name in ("create_table", "use_copy"):
            if not isinstance(getattr(self, name), bool):
                raise SinkConfigError(
                    "IntoPostgres", name, f"{getattr(self, name)!r} is not a bool"
                )
        for name in ("schema_name", "table"):
            if (problem := identifier_problem(getattr(self, name))) is not None:
                raise SinkConfigError("IntoPostgres", name, problem)
        if self.schema is not None and not isinstance(self.schema, Schema):
            raise SinkConfigError(
                "IntoPostgres", "schema", f"{self.schema!r} is not a Schema or None"
            )
        _number("min_pool_size", self.min_pool_size, 0, 100, integer=True)
        _number("max_pool_size", self.max_pool_size, max(1, self.min_pool_size), 100, integer=True)
        for name in ("statement_timeout_s", "command_timeout_s"):
            if getattr(self, name) is not None:
                _number(name, getattr(self, name), 0.001, 86400.0)
        _number("connect_timeout_s", self.connect_timeout_s, 0.001, 3600.0)
        _number("retries", self.retries, 0, 100, integer=True)
        _number("retry_backoff_max_s", self.retry_backoff_max_s, 0.0, 3600.0)
        _number("retry_backoff_s", self.retry_backoff_s, 0.0, self.retry_backoff_max_s)
        name = self.application_name
        if not isinstance(name, str) or not re.fullmatch(r"[ -~]{0,63}", name):
            raise SinkConfigError(
                "IntoPostgres", "application_name", f"{name!r} is not 0-63 ASCII chars"
            )

    @property
    def location(self) -> str:
        """``host:port/database.schema.table``: the target, without user or password."""
        if self.dsn is None:
            where = f"{self.host}:{self.port}/{self.database or ''}"
        else:
            parts = urlsplit(self.dsn)
            hosts = parts.netloc.rpartition("@")[2] or "localhost"
            port = "" if re.search(r":\d+$", hosts) else ":5432"
            where = f"{hosts}{port}/{unquote(parts.path.lstrip('/'))}"
        return f"{where}.{self.schema_name}.{self.table}"

    @property
    def idempotent(self) -> bool:
        """True with a key: its primary key makes a replayed batch add no rows."""
        return self.schema is not None and bool(self.schema.key)

    @property
    def target(self) -> SinkTarget:
        """The table at :attr:`location`, blamed on the ``table`` setting."""
        return SinkTarget("database", self.location, "table")

    def __repr__(self) -> str:
        return f"IntoPostgres({self.location})"

    def connection(self) -> dict[str, Any]:
        """The connection arguments of ``asyncpg.connect``: the DSN or the discrete fields."""
        if self.dsn:
            return {"dsn": self.dsn}
        return {f: getattr(self, f) for f in _DISCRETE}

    def secrets(self) -> tuple[str, ...]:
        """The password as it may appear in texts: as given, in the DSN (raw and decoded), or
        in ``PGPASSWORD``, which asyncpg reads when no password is given."""
        found = [self.password, os.environ.get("PGPASSWORD")]
        if self.dsn is not None:
            parts = urlsplit(self.dsn)
            found += [parts.password, unquote(parts.password or "")]
            found += [v for k, v in parse_qsl(parts.query) if k == "password"]
        return tuple(sorted({s for s in found if s}, key=len, reverse=True))

    def build_partition(self, worker_index: int, worker_count: int) -> PostgresPartition:
        """Start this worker's event-loop thread and pool (asyncpg and SQLAlchemy are imported
        here) and, if the schema is given, create or check the table. All workers write the one
        table; the key keeps their replays from duplicating rows."""
        try:
            import asyncpg
            import sqlalchemy  # noqa: F401
        except ImportError as exc:
            raise SinkDependencyError(
                f'IntoPostgres needs asyncpg and SQLAlchemy ({exc}): pip install ".[postgres]"'
            ) from exc
        return PostgresPartition(self, asyncpg)
