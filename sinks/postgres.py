"""PostgreSQL sink (asyncpg, DDL from SQLAlchemy Core): idempotent, pooled, retried.

Types: float -> double precision, int -> bigint, text -> text, bool -> boolean, timestamp ->
timestamp with time zone (microseconds kept, read back in UTC); non-nullable and key columns
are NOT NULL; the key is the PRIMARY KEY. ``create_table=True`` creates the table if missing;
otherwise (the default) it must exist. Either way it is checked before the first write: every
column present with the type above (text also takes an unbounded ``character varying``) and,
with a key, a unique index on exactly the key columns.

Each batch is one transaction: binary COPY into a temporary table dropped at commit, then
``INSERT ... SELECT ... ON CONFLICT (key) DO NOTHING`` (``use_copy=False``: a prepared
``executemany`` of ``INSERT ... ON CONFLICT (key) DO NOTHING``). So a replayed batch adds
nothing, and a transaction re-run after a lost connection neither loses nor duplicates rows.
Without a key rows are inserted as they come. Messages and log lines name the target as
``host:port/database.schema.table`` and never show the password or the DSN. A value
PostgreSQL cannot hold (text with a NUL character or a lone surrogate, an integer outside 64
bits, a timestamp outside years 1-9999 in UTC) rejects the batch with SinkValueError naming
the column; NaN and infinities are kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio
from anyio.from_thread import start_blocking_portal

from sinks.base import (
    ColumnType,
    IntoSink,
    LockedPartition,
    Schema,
    SchemaLock,
    SinkDependencyError,
    SinkError,
    SinkSchemaError,
    SinkValueError,
    SinkWriteError,
    check_identifier,
)
from sinks.columns import ColumnFormatter, format_columns, format_timestamp
from sinks.values import longest_key_text, misfit

if TYPE_CHECKING:
    import asyncpg

__all__ = ["IntoPostgres"]

logger = logging.getLogger(__name__)

_PG_TYPES: dict[ColumnType, str] = {
    "float": "double precision",
    "int": "bigint",
    "text": "text",
    "timestamp": "timestamp with time zone",
    "bool": "boolean",
}
_DISCRETE = ("host", "port", "user", "password", "database")
_ALSO: dict[ColumnType, str] = {"text": "character varying"}  # unbounded varchar is text
_STAGE = "_daq_stage"
_COLUMNS = """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
a.atthasdef OR a.attidentity <> ''
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2
AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped"""
# Asyncpg errors worth re-running a transaction for: the connection or the server went away,
# or the server chose this transaction as a deadlock or serialization victim.
_TRANSIENT = (
    "PostgresConnectionError",  # and ConnectionDoesNotExistError, a subclass
    "AdminShutdownError",
    "CrashShutdownError",
    "CannotConnectNowError",
    "TooManyConnectionsError",
    "DeadlockDetectedError",
    "SerializationError",
)


def _quote(name: str) -> str:
    # Names are checked identifiers; quoting keeps their case and guards reserved words.
    return f'"{name}"'


def _number(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    # The comparison is False for NaN, so NaN is refused too.
    typed = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not typed or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"IntoPostgres.{name}: {value!r} is not {kind} in [{low}, {high}]")


def _text(value: Any) -> Any:
    # Inferred schemas make mixed columns text; render the others as the CSV sink does.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_timestamp(value)
    return repr(value) if isinstance(value, float) else str(value)


def _whole(value: Any) -> Any:
    if isinstance(value, float):
        if not value.is_integer():  # asyncpg would silently truncate it
            raise SinkValueError(f"{value!r} is not a whole number but its column is int")
        return int(value)
    return value


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.utcoffset() is None:
        format_timestamp(value)  # raises the naive-datetime SinkError
    return value


def _exact(kinds: frozenset[type], convert: Callable[[Any], Any]) -> ColumnFormatter:
    """A column formatter that leaves a column of exact types alone (checked in C) and
    converts the other values with ``convert``."""

    def column(values: Sequence[Any]) -> Sequence[Any]:
        if kinds.issuperset(map(type, values)):
            return values
        return [v if type(v) in kinds else convert(v) for v in values]

    return column


def _utc_column(values: Sequence[Any]) -> Sequence[Any]:
    try:
        if set(map(attrgetter("tzinfo"), values)) == {timezone.utc}:
            return values
    except AttributeError:  # None or not a datetime: checked one by one
        pass
    return [_aware(v) for v in values]


_EXACT: dict[ColumnType, frozenset[type]] = {
    "text": frozenset({str, type(None)}),
    "int": frozenset({int, type(None)}),
}


def _all_exact(schema: Schema, records: list[tuple[Any, ...]]) -> bool:
    """Whether every value already has its column's exact type (and timestamps are UTC), so
    the records go out as they are. One C-level pass per column, no transpose."""
    for i, column in enumerate(schema.columns):
        cells = map(itemgetter(i), records)
        if column.type == "timestamp":
            try:
                if set(map(attrgetter("tzinfo"), cells)) != {timezone.utc}:
                    return False
            except AttributeError:  # None or not a datetime
                return False
        elif column.type in _EXACT and not _EXACT[column.type].issuperset(map(type, cells)):
            return False
    return True


# Column-wise: a call per cell would cost more than the COPY itself.
_FORMATTERS: dict[ColumnType, ColumnFormatter] = {
    "text": _exact(frozenset({str, type(None)}), _text),
    "int": _exact(frozenset({int, type(None)}), _whole),
    "timestamp": _utc_column,
}


def _create_table_sql(schema: Schema, schema_name: str, table: str) -> str:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    types: dict[ColumnType, Any] = {
        "float": postgresql.DOUBLE_PRECISION(),
        "int": sa.BigInteger(),
        "text": sa.Text(),
        "timestamp": sa.TIMESTAMP(timezone=True),
        "bool": sa.Boolean(),
    }
    # autoincrement=False: a lone bigint key would otherwise become BIGSERIAL.
    columns = [
        sa.Column(c.name, types[c.type], nullable=not schema.required(c), autoincrement=False)
        for c in schema.columns
    ]
    key = [sa.PrimaryKeyConstraint(*schema.key)] if schema.key else []
    target = sa.Table(table, sa.MetaData(schema=schema_name), *columns, *key)
    return str(CreateTable(target, if_not_exists=True).compile(dialect=postgresql.dialect()))


@dataclass(frozen=True)
class IntoPostgres(IntoSink):
    """Write rows to table ``schema_name.table`` of a PostgreSQL database.

    Connection: ``dsn`` (``postgresql://user:password@host:5432/database``) or ``host``,
    ``port`` (5432), ``user``, ``password`` (None: asyncpg reads ``PGPASSWORD``), ``database``,
    not both. ``schema``: the columns (and key); None locks them from the first non-empty batch
    (no key, so no deduplication). ``create_table``: create the table if missing instead of
    failing. ``use_copy``: binary COPY through a staging table, else a prepared executemany.
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
                raise ValueError(
                    f"IntoPostgres.dsn and IntoPostgres.{given[0]} are mutually exclusive: give a "
                    f"DSN or the discrete fields ({', '.join(_DISCRETE)})"
                )
            dsn = self.dsn if isinstance(self.dsn, str) else ""
            # An unescaped / ? or # in the password ends the authority early: refuse the DSN
            # rather than show part of the password as the host.
            if not re.match(r"postgres(ql)?://", dsn) or (
                "@" in dsn.partition("://")[2] and "@" not in urlsplit(dsn).netloc
            ):
                raise ValueError(
                    "IntoPostgres.dsn: not a postgresql://user:password@host:port/database URL "
                    "(percent-encode special characters of the password)"
                )
        else:
            if not isinstance(self.host, str) or not self.host:
                raise ValueError("IntoPostgres.host: give a host name (or a dsn)")
            object.__setattr__(self, "port", 5432 if self.port is None else self.port)
            _number("port", self.port, 1, 65535, integer=True)
        for name in ("user", "database"):
            text = getattr(self, name)
            if text is not None and (not isinstance(text, str) or not text or "\0" in text):
                raise ValueError(f"IntoPostgres.{name}: {text!r} is not a non-empty string")
        if self.password is not None and not isinstance(self.password, str):
            # The value is left out: it may be a password after all.
            raise ValueError("IntoPostgres.password: not a string")
        for name in ("create_table", "use_copy"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"IntoPostgres.{name}: {getattr(self, name)!r} is not a bool")
        check_identifier(self.schema_name, "IntoPostgres.schema_name")
        check_identifier(self.table, "IntoPostgres.table")
        if self.schema is not None and not isinstance(self.schema, Schema):
            raise ValueError(f"IntoPostgres.schema: {self.schema!r} is not a Schema or None")
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
            raise ValueError(f"IntoPostgres.application_name: {name!r} is not 0-63 ASCII chars")

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

    def __repr__(self) -> str:
        return f"IntoPostgres({self.location})"

    def _secrets(self) -> tuple[str, ...]:
        """The password as it may appear in texts: as given, in the DSN (raw and decoded), or
        in ``PGPASSWORD``, which asyncpg reads when no password is given."""
        found = [self.password, os.environ.get("PGPASSWORD")]
        if self.dsn is not None:
            parts = urlsplit(self.dsn)
            found += [parts.password, unquote(parts.password or "")]
            found += [v for k, v in parse_qsl(parts.query) if k == "password"]
        return tuple(sorted({s for s in found if s}, key=len, reverse=True))

    def build_partition(self, worker_index: int, worker_count: int) -> _PostgresPartition:
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
        return _PostgresPartition(self, asyncpg)


class _PostgresPartition(LockedPartition):
    """One worker's pool, driven from the worker's thread through a private event loop."""

    def __init__(self, sink: IntoPostgres, pg: Any) -> None:
        self._sink = sink
        self._pg = pg
        self._where = f"PostgreSQL table {sink.location}"
        self._target = f"{_quote(sink.schema_name)}.{_quote(sink.table)}"
        self._secrets = sink._secrets()
        self._lock = SchemaLock(sink.schema, self._where)
        self._transient = (
            *(getattr(pg.exceptions, name) for name in _TRANSIENT),
            OSError,
            asyncio.TimeoutError,  # not an OSError before Python 3.11
        )
        self._pool: asyncpg.Pool | None = None
        self._sql: tuple[str, str, str] | None = None  # insert, stage, merge; once checked
        self._closed = False
        self._stack = ExitStack()
        self._portal = self._stack.enter_context(start_blocking_portal("asyncio"))
        try:
            self._portal.call(self._run, "opening", self._check_table)
        except BaseException:
            self.close()
            raise

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(self, message: str, exc: BaseException) -> NoReturn:
        error = SinkWriteError(
            self._scrub(f"{self._where}: {message}: {type(exc).__name__}: {exc}")
        )
        if any(s in str(exc) for s in self._secrets):
            with suppress(AttributeError, TypeError):
                exc.args = tuple(self._scrub(a) if isinstance(a, str) else a for a in exc.args)
            if any(s in str(exc) for s in self._secrets):  # in a detail, say: leave it out
                raise error from None
        raise error from exc

    async def _run(self, what: str, work: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
        """Run ``work`` on a pooled connection, again after transient failures (with backoff)."""
        sink = self._sink
        for attempt in range(sink.retries + 1):
            lost = False
            try:
                if self._pool is None:
                    self._pool = await self._connect()
                conn = await self._pool.acquire()
                try:
                    await work(conn)
                except BaseException:
                    try:
                        lost = conn.is_closed()
                    except self._pg.InterfaceError:  # asyncpg detaches a closed connection
                        lost = True
                    lost = not await self._release(conn) or lost
                    raise
                await self._release(conn)  # the work is committed whatever the release says
                return
            except SinkError:
                raise
            except Exception as exc:
                # Among InterfaceErrors (misuse, bad data too) only a closed connection is a loss.
                if not (lost or isinstance(exc, self._transient)):
                    self._fail(f"{what} failed", exc)
                if attempt == sink.retries:
                    tries = f"{attempt + 1} attempts" if attempt else "1 attempt (retries=0)"
                    self._fail(f"{what} failed after {tries}, giving up", exc)
                delay = min(sink.retry_backoff_s * 2**attempt, sink.retry_backoff_max_s)
                error = self._scrub(f"{type(exc).__name__}: {exc}")
                logger.warning(
                    "%s: %s failed (%s); retry %d of %d in %.2f s",
                    *(self._where, what, error, attempt + 1, sink.retries, delay),
                )
                await anyio.sleep(delay)

    async def _release(self, conn: asyncpg.Connection) -> bool:
        """Give ``conn`` back to the pool; False if it was lost on the way. A connection the
        server dropped mid-operation may not look closed yet: the pool's reset then fails,
        and the pool terminates it."""
        assert self._pool is not None
        try:
            await self._pool.release(conn)
        except Exception as exc:
            logger.debug("%s: connection dropped on release (%s)", self._where, exc)
            return False
        return True

    async def _connect(self) -> asyncpg.Pool:
        sink = self._sink
        settings = {"application_name": sink.application_name}
        if sink.statement_timeout_s is not None:
            settings["statement_timeout"] = str(max(1, round(sink.statement_timeout_s * 1000)))
        target = {"dsn": sink.dsn} if sink.dsn else {f: getattr(sink, f) for f in _DISCRETE}
        pool = await self._pg.create_pool(
            **target,
            min_size=sink.min_pool_size,
            max_size=sink.max_pool_size,
            command_timeout=sink.command_timeout_s,
            timeout=sink.connect_timeout_s,
            server_settings=settings,
        )
        logger.debug("%s: pool open with %d connections", self._where, pool.get_size())
        return pool

    async def _check_table(self, conn: asyncpg.Connection) -> None:
        """Create the table if asked, then raise SinkSchemaError unless it takes the rows."""
        schema, sink = self._lock.schema, self._sink
        if schema is None or self._sql is not None:
            return
        if sink.create_table:
            async with conn.transaction():
                # Workers creating the one table at once would collide in the catalog.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._target)
                await conn.execute(_create_table_sql(schema, sink.schema_name, sink.table))
        found = {r[0]: r for r in await conn.fetch(_COLUMNS, sink.schema_name, sink.table)}
        if not found:
            raise SinkSchemaError(f"{self._where} does not exist; create it or set create_table")
        for column in schema.columns:
            expected, row = _PG_TYPES[column.type], found.get(column.name)
            if row is None or row[1] not in (expected, _ALSO.get(column.type)):
                raise SinkSchemaError(
                    f"{self._where}: column {column.name!r} cannot hold {column.type} values "
                    f"(expected {expected}, found {row[1] if row else 'no such column'})"
                )
        for name, (_, _, not_null, has_default) in found.items():
            if name not in schema.names and not_null and not has_default:
                raise SinkSchemaError(
                    f"{self._where}: column {name!r} is NOT NULL without a default but is not "
                    "in the schema (expected it nullable or absent, found NOT NULL)"
                )
        names = ", ".join(_quote(n) for n in schema.names)
        marks = ", ".join(f"${i}" for i in range(1, len(schema.names) + 1))
        key = ", ".join(_quote(k) for k in schema.key)
        head = f"INSERT INTO {self._target} ({names})"
        tail = f" ON CONFLICT ({key}) DO NOTHING" if key else ""
        insert = f"{head} VALUES ({marks}){tail}"
        try:
            # Planning it makes the server look for the unique index ON CONFLICT needs.
            await conn.execute(
                f"EXPLAIN {head} SELECT {names} FROM {self._target} WHERE false{tail}"
            )
        except self._pg.exceptions.InvalidColumnReferenceError as exc:
            raise SinkSchemaError(
                f"{self._where}: no unique index on the key, so replays would duplicate rows "
                f"(expected PRIMARY KEY ({key}), found {exc})"
            ) from exc
        stage = f"SELECT {names} FROM {self._target} WITH NO DATA"
        self._sql = (
            insert,
            f"CREATE TEMP TABLE {_quote(_STAGE)} ON COMMIT DROP AS {stage}",
            f"{head} SELECT {names} FROM pg_temp.{_quote(_STAGE)}{tail}",
        )

    async def _write(self, records: list[tuple[Any, ...]], conn: asyncpg.Connection) -> None:
        await self._check_table(conn)
        schema, sink = self._lock.schema, self._sink
        assert schema is not None and self._sql is not None
        insert, stage, merge = self._sql
        async with conn.transaction():
            if not sink.use_copy:
                await conn.executemany(insert, records)
            elif not schema.key:
                await conn.copy_records_to_table(
                    sink.table, schema_name=sink.schema_name, records=records, columns=schema.names
                )
            else:
                try:
                    # Fast path: straight into the table, as fast as a bare COPY. A key that is
                    # already there (a replayed batch) undoes it whole, back to this savepoint.
                    async with conn.transaction():
                        await conn.copy_records_to_table(
                            sink.table,
                            schema_name=sink.schema_name,
                            records=records,
                            columns=schema.names,
                        )
                except self._pg.exceptions.UniqueViolationError:
                    await conn.execute(stage)
                    await conn.copy_records_to_table(
                        _STAGE, schema_name="pg_temp", records=records, columns=schema.names
                    )
                    await conn.execute(merge)

    def write_batch(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` in one transaction; rows whose key exists are ignored. Bad values
        reject the batch before anything is sent."""
        if self._closed:
            raise SinkError(f"{self._where}: write_batch after close")
        if not rows:
            return
        projected = self._lock.project(rows)
        schema = self._lock.lock(rows)
        exact = _all_exact(schema, projected)
        records = (
            projected if exact else format_columns(schema, projected, _FORMATTERS, self._where)
        )
        try:
            self._portal.call(self._run, f"writing {len(rows)} rows", partial(self._write, records))
        except SinkWriteError as exc:
            # Looked for only after a failure, at no cost to good batches: a value that can
            # never be written is the caller's to fix, whatever the server said.
            problem = misfit(schema, records, nul="PostgreSQL text", int64=True)
            if problem is None and isinstance(exc.__cause__, self._pg.ProgramLimitExceededError):
                problem = longest_key_text(schema, records)  # btree entries: 2704 bytes at most
            if problem is None:
                raise
            raise SinkValueError(
                f"{self._where}: {problem}; none of the {len(rows)} rows was written"
            ) from exc

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                with anyio.fail_after(self._sink.connect_timeout_s):
                    await pool.close()
            except Exception as exc:
                pool.terminate()  # nothing is buffered, so a dead server loses nothing here
                error = self._scrub(f"{type(exc).__name__}: {exc}")
                logger.warning("%s: closing the pool failed (%s)", self._where, error)

    def close(self) -> None:
        """Close the pool and stop the event-loop thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self._close_pool)
        finally:
            self._stack.close()
