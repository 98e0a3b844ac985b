"""SQLite sink (stdlib sqlite3): idempotent, WAL-journaled, safe for several workers per file.

The table is created (IF NOT EXISTS) from the schema as soon as the schema is known: at build
when it is given, else at the first batch, and checked (its types and the rules in
:mod:`sinks.sqlite_sql`). Values: bool -> 0/1, timestamp -> TEXT holding ISO 8601 UTC with
microseconds (``2026-11-22T05:01:54.123456+00:00``).

Each batch is one ``BEGIN IMMEDIATE`` transaction of ``INSERT ... ON CONFLICT DO NOTHING``
rows, so a replayed batch adds nothing and writers sharing the file queue for the lock (up to
``busy_timeout_s``) instead of failing with "database is locked". A failing batch is rolled
back whole. Only a key conflict is ignored: ``INSERT OR IGNORE`` would also drop, silently,
a row that breaks NOT NULL.

Durability: WAL with ``synchronous = NORMAL``. A committed batch survives a crash of the
process; a power cut or an OS crash may roll back the batches committed since the last
checkpoint (one every 4,000 WAL pages, 16 MiB), and never corrupts the file. Closing
checkpoints and truncates the WAL.

SQLite's own rules for values: NaN is stored as NULL (SQLite has no NaN), so a NaN in a
column that takes no NULL rejects the batch; -0.0 reads back as 0.0. A value SQLite cannot
hold (text with a lone surrogate, an integer outside 64 bits) rejects the batch with
SinkValueError naming the column. A database still locked after ``busy_timeout_s``, a full
or read-only disk, a file that cannot be opened raise SinkUnavailableError.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sinks.base import (
    ColumnType,
    IntoSink,
    Schema,
    SinkConfigError,
    SinkError,
    SinkTarget,
    SinkUnavailableError,
    SinkValueError,
    SinkWriteError,
    identifier_problem,
)
from sinks.columns import ColumnFormatter, format_column_lists, timestamp_column
from sinks.files import check_path, file_target
from sinks.partition import LockedPartition
from sinks.sqlite_sql import check_table, create_table_sql, insert_sql, quote
from sinks.values import misfit

__all__ = ["IntoSqlite"]

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # result codes; the named constants need Python 3.11
# Primary result codes (https://www.sqlite.org/rescode.html) a later retry may clear: another
# writer holding the lock, no memory, a read-only or full disk, an I/O error, a file that
# cannot be opened, a lock protocol race, no permission.
_TRANSIENT_CODES = frozenset({3, _SQLITE_BUSY, _SQLITE_LOCKED, 7, 8, 10, 13, 14, 15})
# Page cache per connection. Each (device, parameter, instance) has its own insertion point
# in the key's index, a leaf page every batch touches: SQLite's default 2 MiB (500 pages)
# evicted them between batches from a few hundred parameters on, and every insert read its
# leaf again (bench/sinks.py: 400 parameters, 40 % of the write).
_CACHE_KIB = 16 * 1024
# WAL pages after which a commit copies them into the database (SQLite's default: 1,000).
# A batch of 10,000 acquisition rows dirties about 1,100 pages, so the default made every
# commit a checkpoint with its two fsyncs and rewrote the same hot pages each time; 4,000
# (16 MiB at 4 KiB pages) checkpoints every few batches: 12 % less time per batch (bench/
# sinks.py's rows). It bounds what a power cut may roll back, see _SqlitePartition.
_CHECKPOINT_PAGES = 4000


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _failure(exc: BaseException) -> type[SinkWriteError]:
    """The class of a failure of the file or the database: SinkUnavailableError when a retry
    may fix it, else SinkWriteError."""
    if isinstance(exc, OSError):
        return SinkUnavailableError
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
        if code is None:  # Python 3.10: those codes (and SQL errors) are OperationalErrors
            transient = isinstance(exc, sqlite3.OperationalError)
        else:
            transient = code & 0xFF in _TRANSIENT_CODES
        if transient:
            return SinkUnavailableError
    return SinkWriteError


def _bool_column(values: Sequence[Any]) -> list[int | None]:
    return [None if v is None else int(v) for v in values]


_FORMATTERS: dict[ColumnType, ColumnFormatter] = {
    "timestamp": timestamp_column,
    "bool": _bool_column,
}


@dataclass(frozen=True)
class IntoSqlite(IntoSink):
    """Write rows to table ``table`` of the SQLite database at ``path``.

    ``schema``: the columns (and key) of the table; None locks them from the first non-empty
    batch (no key, so no deduplication). ``busy_timeout_s``: how long a writer waits for the
    write lock held by another worker or process.
    """

    path: str | Path
    table: str = "samples"
    schema: Schema | None = None
    busy_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", check_path(self.path, "IntoSqlite"))
        if (problem := identifier_problem(self.table)) is not None:
            raise SinkConfigError("IntoSqlite", "table", problem)
        if self.schema is not None and not isinstance(self.schema, Schema):
            raise SinkConfigError(
                "IntoSqlite", "schema", f"{self.schema!r} is not a Schema or None"
            )
        timeout = self.busy_timeout_s
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise SinkConfigError(
                "IntoSqlite",
                "busy_timeout_s",
                f"{timeout!r} is not a finite number of seconds >= 0",
            )

    @property
    def idempotent(self) -> bool:
        """True with a key: its primary key makes a replayed batch add no rows."""
        return self.schema is not None and bool(self.schema.key)

    @property
    def target(self) -> SinkTarget:
        """Table ``table`` of the database file at ``path``."""
        return file_target(Path(self.path), self.table)

    def build_partition(self, worker_index: int, worker_count: int) -> _SqlitePartition:
        """Open a connection (creating the directory), set WAL, and create or check the
        table if the schema is given. Every worker shares the one database file."""
        return _SqlitePartition(Path(self.path), self.table, self.schema, self.busy_timeout_s)


class _SqlitePartition(LockedPartition):
    """One worker's connection; used only from the thread that built it."""

    layout = "columns"  # timestamps are formatted column by column

    def __init__(
        self, path: Path, table: str, schema: Schema | None, busy_timeout_s: float
    ) -> None:
        super().__init__(schema, f"SQLite table {table!r} in {str(path)!r}")
        self._path = path
        self._table = table
        self._insert: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are opened explicitly with BEGIN IMMEDIATE.
            self._conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            message = f"cannot open SQLite database {str(path)!r}: {exc}"
            raise _failure(exc)(message) from exc
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._set_wal(busy_timeout_s)
            # WAL with synchronous NORMAL: a committed batch survives a crash of the process;
            # a power cut may roll back the batches since the last checkpoint (at most
            # _CHECKPOINT_PAGES of WAL), never corrupt the file.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
            if schema is not None:
                self._prepare(schema)
        except BaseException as exc:
            self._conn.close()
            self._closed = True
            if isinstance(exc, sqlite3.Error):
                raise _failure(exc)(f"cannot set up {self._where}: {exc}") from exc
            raise

    def _set_wal(self, busy_timeout_s: float) -> None:
        deadline = time.monotonic() + busy_timeout_s
        delay = 0.001
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                # Switching a new file to WAL fails at once, without the busy handler, while
                # another worker's connection is switching it: retry until the busy timeout.
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _prepare(self, schema: Schema) -> None:
        """Create the table if missing, check it, and build the INSERT."""
        # Under the write lock: a deferred transaction would fail at once (SQLITE_BUSY, no
        # busy handler) when another worker creates the table between our read and write.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(create_table_sql(schema, self._table))
            info = self._conn.execute(f"PRAGMA table_info({quote(self._table)})").fetchall()
            check_table(self._where, schema, info)
        except BaseException:
            self._conn.rollback()
            raise
        self._conn.execute("COMMIT")
        self._insert = insert_sql(schema, self._table)

    def _write(self, schema: Schema, values: list[list[Any]]) -> None:
        """Insert the batch (one value list per column) in one transaction; rows whose key
        exists are ignored."""
        format_column_lists(schema, values, _FORMATTERS, self._where)
        try:
            if self._insert is None:
                self._prepare(schema)
            assert self._insert is not None
            self._conn.execute("BEGIN IMMEDIATE")
            # Zipped into rows as they are bound: no list of row tuples is kept.
            self._conn.executemany(self._insert, zip(*values, strict=True))
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                self._conn.rollback()
            if isinstance(exc, SinkError):
                raise
            # A driver refusing a value (UnicodeEncodeError, OverflowError) or NOT NULL
            # refusing a NaN: name the column; looked for only now, at no cost to good batches.
            data_error = (ValueError, OverflowError, sqlite3.IntegrityError)
            rows = len(values[0])
            if isinstance(exc, data_error) and (
                problem := misfit(
                    schema, list(zip(*values, strict=True)), int64=True, nan_is_null=True
                )
            ):
                raise SinkValueError(
                    f"{self._where}: {problem}; none of the {rows} rows was written"
                ) from exc
            if isinstance(exc, Exception):
                raise _failure(exc)(f"{self._where}: writing {rows} rows failed: {exc}") from exc
            raise

    def _close(self) -> None:
        """Checkpoint and truncate the WAL, then close."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            message = f"{self._where}: WAL checkpoint at close failed: {exc}"
            raise _failure(exc)(message) from exc
        finally:
            self._conn.close()
