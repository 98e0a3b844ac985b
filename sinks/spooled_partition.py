"""The spooled sink's partition: its backend thread, the spool, and the states of every
partition of the run. See :mod:`sinks.spooled`."""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bytewax.outputs import StatelessSinkPartition

from sinks.base import SinkError, SinkPartition, SinkUnavailableError
from sinks.spool import Spool, SpoolCorruptError

if TYPE_CHECKING:
    from sinks.spooled import IntoSpooled

__all__ = ["SpoolState", "SpooledPartition", "states"]

# The sink's one logger, whichever of its modules logs.
logger = logging.getLogger("sinks.spooled")

_PARTITIONS: list[SpooledPartition] = []
_PARTITIONS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class SpoolState:
    """What one spooled partition is doing, for the status line, summary and metrics."""

    where: str
    name: str
    worker: int
    state: str  # "writing" | "spooling" | "failed" | "closed"
    rows_written: int
    rows_spooled: int
    rows_spooled_total: int
    spool_bytes: int
    peak_bytes: int
    oldest_age_s: float | None
    retries: int
    last_error: str | None
    drain_s: float | None
    path: str


def states() -> list[SpoolState]:
    """The state of every spooled partition of this process's run (closed ones included), in
    the order opened; the partitions of an earlier run in the process are forgotten when the
    first of the next is opened."""
    with _PARTITIONS_LOCK:
        partitions = list(_PARTITIONS)
    return [p.state() for p in partitions]


class SpooledPartition(StatelessSinkPartition[dict[str, Any]]):
    def __init__(self, into: IntoSpooled, worker_index: int, worker_count: int) -> None:
        self._into, self._index, self._count = into, worker_index, worker_count
        self._where = into.where or repr(into.sink)
        self._timeout = into.write_timeout_s if into.idempotent else None
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._inner: SinkPartition | None = None
        self._closed = self._abandoned = False
        self._rows_written = self._rows_spooled_total = self._retries = self._peak = 0
        self._last_error: str | None = None
        self._drain_s: float | None = None
        self._outage_since: float | None = None
        self._backoff = into.backoff_s
        self._retry_at = 0.0
        self._state = "writing"
        self._spool = self._open_spool(into.directory / f"{into.name}-w{worker_index}")
        if self._spool:
            self._state = "spooling"
        if self._spool:
            self._outage_since = time.monotonic()
            logger.warning(
                "%s: %d rows left spooled by an earlier run in %s; forwarding them first",
                self._where,
                self._spool.rows,
                self._spool.path,
            )
        self._peak = self._spool.bytes
        self._thread = threading.Thread(
            target=self._run, name=f"spool {into.name}-w{worker_index}", daemon=True
        )
        self._thread.start()
        with _PARTITIONS_LOCK:
            # Every one listed is closed: they were an earlier run's, in this process.
            if all(p._closed for p in _PARTITIONS):
                _PARTITIONS.clear()
            _PARTITIONS.append(self)
        if self._state == "writing":
            self._call(self._open_backend, [])

    # ----- the worker's side

    def write_batch(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` to the backend, or to the spool while it cannot take them."""
        if not rows:
            return
        with self._lock:
            if self._closed:
                raise SinkError(f"{self._where}: write_batch after close")
            if self._state != "writing":
                self._spool_batch(rows)
                return
        self._call(lambda: self._backend_write(rows), rows)

    def close(self) -> None:
        """Give the backend a last chance at the spool, close it, stop the thread; never
        raises (what stays spooled is logged and written by the next run)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        done = self._submit(self._finish)
        self._jobs.put(None)
        try:
            done.result(timeout=self._timeout)
        except FutureTimeout:
            logger.warning("%s: its backend did not close within %s s", self._where, self._timeout)
        except Exception as exc:
            logger.warning("%s: closing its backend failed: %s", self._where, _line(exc))
        with self._lock:
            self._abandoned = True
            if self._spool:
                logger.warning(
                    "%s: %d rows stay spooled in %s; the next run writes them first",
                    self._where,
                    self._spool.rows,
                    self._spool.path,
                )
            self._spool.close()
            if self._state == "writing":
                self._state = "closed"

    def state(self) -> SpoolState:
        """What this partition is doing now."""
        with self._lock:
            oldest = self._spool.oldest
            return SpoolState(
                where=self._where,
                name=self._into.name,
                worker=self._index,
                state=self._state,
                rows_written=self._rows_written,
                rows_spooled=self._spool.rows,
                rows_spooled_total=self._rows_spooled_total,
                spool_bytes=self._spool.bytes,
                peak_bytes=self._peak,
                oldest_age_s=None if oldest is None else max(0.0, time.time() - oldest),
                retries=self._retries,
                last_error=self._last_error,
                drain_s=self._drain_s,
                path=str(self._spool.path),
            )

    def _call(self, job: Callable[[], None], rows: list[dict[str, Any]]) -> None:
        """Run ``job`` on the backend thread and wait for it (up to the write timeout of an
        idempotent sink); spool ``rows`` if the backend is unavailable or too slow."""
        done = self._submit(job)
        try:
            done.result(timeout=self._timeout)
        except FutureTimeout:
            self._start_spooling(rows, f"no answer within write_timeout_s = {self._timeout}")
        except SinkUnavailableError as exc:
            self._start_spooling(rows, _line(exc))
        except Exception as exc:
            self._fail(f"{_line(exc)}", rows, rejected=True)
        else:
            if rows:
                with self._lock:
                    self._rows_written += len(rows)

    def _start_spooling(self, rows: list[dict[str, Any]], why: str) -> None:
        with self._lock:
            if self._state == "writing":
                self._state = "spooling"
                self._outage_since = time.monotonic()
                self._backoff = self._into.backoff_s
                self._retry_at = time.monotonic() + self._backoff
                logger.warning(
                    "%s: %s; spooling to %s and retrying (acquisition goes on)",
                    self._where,
                    why,
                    self._spool.path,
                )
            self._retries += 1
            self._last_error = why
            if rows:
                self._spool_batch(rows)
        self._jobs.put(lambda: None)  # the thread waits for a job: make it time its retry

    def _spool_batch(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` to the spool (the lock held); fail the sink at its bound."""
        try:
            self._spool.append(rows)
        except OSError as exc:
            # The last resort: the backend and the spool both refuse. Never silent.
            if self._state == "failed":
                logger.error(
                    "%s: cannot spool %d rows (%s): they are lost", self._where, len(rows), exc
                )
                return
            self._fail_locked(
                f"cannot spool a batch of {len(rows)} rows to {self._spool.path} ({exc}) while "
                f"its backend is unavailable ({self._last_error}): those rows are lost"
            )
            return
        self._rows_spooled_total += len(rows)
        self._peak = max(self._peak, self._spool.bytes)
        limit = self._into.max_mb * 1024 * 1024
        if self._spool.bytes > limit and self._state != "failed":
            self._fail_locked(
                f"its spool {self._spool.path} holds {self._spool.bytes / 2**20:.3g} MB, above "
                f"spool_max_mb = {self._into.max_mb:g}, while its backend stays unavailable "
                f"({self._last_error}); stopping the run, the next run writes the spool first"
            )

    def _fail(self, why: str, rows: list[dict[str, Any]], *, rejected: bool) -> None:
        with self._lock:
            if rows and rejected:
                stem = f"{self._into.name}-w{self._index}-rejected"
                try:
                    kept = Spool.open(self._into.directory / stem)
                    kept.append(rows)
                    kept.close()
                    why += f"; the {len(rows)} rows of that batch are kept in {kept.path}"
                except (OSError, SpoolCorruptError) as exc:
                    why += f"; the {len(rows)} rows of that batch are lost ({exc})"
            self._fail_locked(why)

    def _fail_locked(self, why: str) -> None:
        self._state = "failed"
        self._last_error = why
        line = f"{self._where}: {why}"
        if self._into.on_fatal is None:
            raise SinkError(line)
        self._into.on_fatal(line)

    # ----- the backend thread

    def _run(self) -> None:
        while True:
            with self._lock:
                wait = None
                if self._state == "spooling" and not self._closed:
                    wait = max(0.0, self._retry_at - time.monotonic())
            try:
                job = self._jobs.get(timeout=wait)
            except queue.Empty:
                self._drain()
                continue
            if job is None:
                return
            job()

    def _submit(self, job: Callable[[], None]) -> Future[None]:
        """Queue ``job`` for the backend thread; the future holds its outcome."""
        done: Future[None] = Future()
        self._jobs.put(lambda: self._run_job(done, job))
        return done

    @staticmethod
    def _run_job(done: Future[None], job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)

    def _open_backend(self) -> None:
        if self._inner is None:
            try:
                self._inner = self._into.sink.build_partition(self._index, self._count)
            except OSError as exc:
                raise SinkUnavailableError(f"cannot open: {exc}") from exc

    def _backend_write(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._open_backend()
            assert self._inner is not None
            self._inner.write_batch(rows)
        except SinkUnavailableError:
            self._drop_backend()
            raise

    def _drop_backend(self) -> None:
        """Let go of a backend that failed; the next attempt opens it afresh."""
        inner, self._inner = self._inner, None
        if inner is not None:
            # It already failed, and that failure was reported.
            with contextlib.suppress(Exception):
                inner.close()

    def _drain(self) -> None:
        """Forward the spool in order, then writing again once the backend is open and the
        spool empty; back off when the backend fails."""
        while True:
            with self._lock:
                if self._abandoned or self._state != "spooling":
                    return
                first = self._spool.first()
            try:
                if first is None:
                    self._open_backend()  # nothing waits, but the backend must be there
                else:
                    self._backend_write(first[1])
            except SinkUnavailableError as exc:
                with self._lock:
                    self._retries += 1
                    self._last_error = _line(exc)
                    self._backoff = min(self._backoff * 2, self._into.backoff_max_s)
                    self._retry_at = time.monotonic() + self._backoff
                return
            except Exception as exc:
                if first is not None:
                    with self._lock:
                        self._spool.forwarded(first[0])
                self._fail_quietly(_line(exc), first[1] if first else [])
                return
            with self._lock:
                if self._abandoned:
                    return
                if first is not None:
                    self._spool.forwarded(first[0])
                    self._rows_written += first[0].rows
                elif not self._spool:  # still empty: nothing came in the meantime
                    self._back_to_writing()
                    return

    def _back_to_writing(self) -> None:
        """The spool is written and the backend open (the lock held)."""
        self._state = "writing"
        self._backoff = self._into.backoff_s
        if self._outage_since is not None:
            self._drain_s = time.monotonic() - self._outage_since
            self._outage_since = None
        logger.warning(
            "%s: its backend is back; the spool is written (%.1f s after it began)",
            self._where,
            self._drain_s or 0.0,
        )

    def _fail_quietly(self, why: str, rows: list[dict[str, Any]]) -> None:
        """:meth:`_fail` from the backend thread, where nobody could catch its SinkError."""
        try:
            self._fail(why, rows, rejected=True)
        except SinkError as exc:
            logger.error("%s", exc)

    def _finish(self) -> None:
        """The close job: one last forward of the spool if the backend is there, then close."""
        with self._lock:
            spooling = self._state == "spooling"
        if spooling:
            self._retry_at = 0.0
            self._drain()
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()

    def _open_spool(self, stem: Path) -> Spool:
        """This worker's spool with what earlier runs left. A damaged one is set aside (kept
        for a look, named in a WARNING) and a new one begun; one that cannot be opened at all
        fails the sink."""
        try:
            spool = Spool.open(stem)
        except SpoolCorruptError as exc:
            aside = stem.with_name(f"{stem.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            Path(f"{stem}.spool").rename(aside)
            Path(f"{stem}.done").unlink(missing_ok=True)
            logger.warning("%s: %s; set aside as %s, a new spool begun", self._where, exc, aside)
            spool = Spool.open(stem)
        except OSError as exc:
            self._fail_locked(f"cannot open its spool {stem}.spool: {exc}")
            return Spool(stem)
        try:
            self._adopt_leftovers(spool)
        except (OSError, SpoolCorruptError) as exc:
            logger.warning("%s: cannot take over another worker's spool: %s", self._where, exc)
        return spool

    def _adopt_leftovers(self, spool: Spool) -> None:
        pattern = re.compile(rf"{re.escape(self._into.name)}-w(\d+)\.spool")
        for path in sorted(self._into.directory.glob(f"{self._into.name}-w*.spool")):
            match = pattern.fullmatch(path.name)
            if match is None:
                continue
            worker = int(match[1])
            if worker >= self._count and worker % self._count == self._index:
                spool.take_from(Spool.open(path.with_name(path.name[: -len(".spool")])))


def _line(exc: BaseException) -> str:
    """An exception as one line: its message (its class when it has none), cut to 300."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
