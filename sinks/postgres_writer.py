"""The Postgres sink's partition: one worker's pool on a private event loop, retried
transactions, the table check before the first write. See :mod:`sinks.postgres`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, suppress
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
from anyio.from_thread import start_blocking_portal

from sinks.base import (
    Schema,
    SinkError,
    SinkSchemaError,
    SinkUnavailableError,
    SinkValueError,
    SinkWriteError,
)
from sinks.columns import format_column_lists
from sinks.partition import LockedPartition
from sinks.postgres_sql import (
    COLUMNS_QUERY,
    FORMATTERS,
    STAGE_TABLE,
    TIMESTAMPTZ_CODEC,
    Statements,
    check_columns,
    create_table_sql,
    quote,
)
from sinks.values import longest_key_text, misfit

if TYPE_CHECKING:
    import asyncpg

    from sinks.postgres import IntoPostgres

__all__ = ["PostgresPartition"]

# The sink's one logger, whichever of its modules logs.
logger = logging.getLogger("sinks.postgres")
# Rows projected and formatted at a time while the server takes the ones before (about
# 200 KB of COPY): preparing the whole batch first left the server idle for a fifth of the
# write. A replayed batch (the staging path) is prepared a second time, for its second COPY.
_CHUNK = 1000

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


async def _init_connection(conn: asyncpg.Connection) -> None:
    """Each new connection of the pool takes timestamps as the sink encodes them."""
    await conn.set_type_codec("timestamptz", **TIMESTAMPTZ_CODEC)


class PostgresPartition(LockedPartition):
    """One worker's pool, driven from the worker's thread through a private event loop."""

    layout = "dicts"  # projected and formatted a part at a time as the COPY takes them

    def __init__(self, sink: IntoPostgres, pg: Any) -> None:
        super().__init__(sink.schema, f"PostgreSQL table {sink.location}")
        self._sink = sink
        self._pg = pg
        self._target = f"{quote(sink.schema_name)}.{quote(sink.table)}"
        self._secrets = sink.secrets()
        self._transient = (
            *(getattr(pg.exceptions, name) for name in _TRANSIENT),
            OSError,
            asyncio.TimeoutError,  # not an OSError before Python 3.11
        )
        # What a driver or the server says of a value it cannot take: asyncpg's encoders
        # raise TypeError, ValueError (UnicodeEncodeError) or OverflowError under COPY and
        # DataError under executemany, as the server does (SQLSTATE class 22).
        self._refused = (pg.exceptions.DataError, TypeError, ValueError, OverflowError)
        self._pool: asyncpg.Pool | None = None
        self._sql: Statements | None = None  # once the table is checked
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

    def _fail(
        self, message: str, exc: BaseException, kind: type[SinkError] = SinkWriteError
    ) -> NoReturn:
        """Raise ``kind`` for ``exc``, with every form of the password scrubbed."""
        error = kind(self._scrub(f"{self._where}: {message}: {type(exc).__name__}: {exc}"))
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
                    refused = isinstance(exc, self._refused)
                    self._fail(f"{what} failed", exc, SinkValueError if refused else SinkWriteError)
                if attempt == sink.retries:
                    tries = f"{attempt + 1} attempts" if attempt else "1 attempt (retries=0)"
                    message = f"{what} failed after {tries}, giving up"
                    self._fail(message, exc, SinkUnavailableError)
                if self._pool is not None:
                    # What took this connection (a restart, a failover) may have taken every
                    # pooled one, unseen until used: the retry gets a new connection, not one
                    # dead one after another (a whole command timeout each when they hang;
                    # asyncpg's pool prefers connections that look alive).
                    await self._pool.expire_connections()
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
        pool = await self._pg.create_pool(
            **sink.connection(),
            min_size=sink.min_pool_size,
            max_size=sink.max_pool_size,
            command_timeout=sink.command_timeout_s,
            timeout=sink.connect_timeout_s,
            server_settings=settings,
            init=_init_connection,
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
                await conn.execute(create_table_sql(schema, sink.schema_name, sink.table))
        found = {r[0]: r for r in await conn.fetch(COLUMNS_QUERY, sink.schema_name, sink.table)}
        check_columns(self._where, schema, found)
        sql = Statements.of(schema, sink.schema_name, sink.table)
        try:
            # Planning it makes the server look for the unique index ON CONFLICT needs.
            await conn.execute(sql.explain)
        except self._pg.exceptions.InvalidColumnReferenceError as exc:
            key = ", ".join(quote(k) for k in schema.key)
            raise SinkSchemaError(
                f"{self._where}: no unique index on the key, so replays would duplicate rows "
                f"(expected PRIMARY KEY ({key}), found {exc})"
            ) from exc
        self._sql = sql

    def _records(
        self, schema: Schema, rows: list[dict[str, Any]], bad: list[SinkError]
    ) -> Iterator[tuple[Any, ...]]:
        """The batch's records, projected and made ready for asyncpg ``_CHUNK`` rows at a
        time as the statement takes them, so the server works on the first rows while the
        next ones are prepared. A row or value that cannot be written ends the records early
        and is put in ``bad``: the caller raises it once the statement is over, inside the
        transaction, which rolls back what was sent (an exception out of the records would
        abort the COPY with a cancel request to the server instead)."""
        for start in range(0, len(rows), _CHUNK):
            try:
                part = self._lock.project_columns(rows[start : start + _CHUNK])
                format_column_lists(schema, part, FORMATTERS, self._where)
            except SinkError as exc:
                bad.append(exc)
                return
            yield from zip(*part, strict=True)

    async def _write_records(self, rows: list[dict[str, Any]], conn: asyncpg.Connection) -> None:
        """Write ``rows`` in one transaction. Each statement projects, formats and zips them
        into records as it sends them (:meth:`_records`); a bad row or value rolls it back."""
        await self._check_table(conn)
        schema, sink = self._lock.schema, self._sink
        assert schema is not None and self._sql is not None
        sql = self._sql
        bad: list[SinkError] = []
        async with conn.transaction():
            if not sink.use_copy:
                await conn.executemany(sql.insert, self._records(schema, rows, bad))
            elif not schema.key:
                await conn.copy_records_to_table(
                    sink.table,
                    schema_name=sink.schema_name,
                    records=self._records(schema, rows, bad),
                    columns=schema.names,
                )
            else:
                try:
                    # Fast path: straight into the table, as fast as a bare COPY. A key that is
                    # already there (a replayed batch) undoes it whole, back to this savepoint.
                    async with conn.transaction():
                        await conn.copy_records_to_table(
                            sink.table,
                            schema_name=sink.schema_name,
                            records=self._records(schema, rows, bad),
                            columns=schema.names,
                        )
                except self._pg.exceptions.UniqueViolationError:
                    await conn.execute(sql.stage)
                    await conn.copy_records_to_table(
                        STAGE_TABLE,
                        schema_name="pg_temp",
                        records=self._records(schema, rows, bad),
                        columns=schema.names,
                    )
                    await conn.execute(sql.merge)
            if bad:
                raise bad[0]

    def _write(self, schema: Schema, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` in one transaction; rows whose key exists are ignored. A bad row or
        value rejects the whole batch: what was sent before it was found is rolled back."""
        write = partial(self._write_records, rows)
        try:
            self._portal.call(self._run, f"writing {len(rows)} rows", write)
        except (SinkWriteError, SinkValueError) as exc:
            records = self._lock.project(rows)
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

    def _close(self) -> None:
        """Close the pool and stop the event-loop thread."""
        try:
            self._portal.call(self._close_pool)
        finally:
            self._stack.close()
