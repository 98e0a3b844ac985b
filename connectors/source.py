"""ControllerSource: a Bytewax source with one partition per bus."""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TypedDict

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.bus import Bus
from connectors.journal import Journal
from connectors.link import BusLink
from connectors.loopthread import LoopThread, settle_gc
from connectors.poller import BusPoller
from connectors.sample import Sample, TickStats

__all__ = ["BusState", "ControllerSource", "Item"]

log = logging.getLogger(__name__)

# What a source with ``stats=True`` emits: each tick's Samples, then that tick's TickStats.
Item = Sample | TickStats

# Longest a partition sleeps between looks at its stop event, so Ctrl-C on
# a slow schedule still ends the run within about a second.
_MAX_SLEEP_S = 1.0
_GRID_S = 0.005
# First wait before looking again for samples that are later than expected; it doubles.
_FIRST_PATIENCE_S = 0.002


class BusState(TypedDict):
    """What a resumed partition needs: the first tick it has not emitted (journaled ticks from
    there on are emitted again) and the end of a finite run's schedule."""

    next_tick: int
    end_tick: int | None


class _BusPartition(StatefulSourcePartition[Item, BusState]):
    """Runs one bus's poller as a task on the shared loop; ``next_batch`` only drains a queue.

    With ``stats`` each tick's :class:`TickStats` follows that tick's samples in the batch.
    """

    def __init__(
        self,
        bus: Bus,
        rate_hz: float,
        state: BusState,
        stop: threading.Event,
        *,
        fresh: bool,
        stats: bool = False,
        journal: Journal | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self._bus = bus
        self._on_fatal = on_fatal
        self._stats = stats
        self._stop = stop
        self._state = state
        self._queue: queue.SimpleQueue[tuple[int, list[Sample], TickStats]] = queue.SimpleQueue()
        self._journal = journal
        emit = self._emit if journal is None else self._emit_journaled
        # Made here, on the worker thread: a simulated bus's simulator and a sim:// bus's
        # client are built with it, not on the loop the running buses share.
        self._link = BusLink(bus)
        self._poller = BusPoller(bus, link=self._link, rate_hz=rate_hz, emit=emit)
        self._period = 1.0 / rate_hz
        self._stopping = False
        self._closed = False
        self._reported = False
        self._fresh = fresh
        self._start = state["next_tick"]
        self._patience = _FIRST_PATIENCE_S
        # Polling starts at the first next_batch, once the worker has built all its partitions.
        self._done: concurrent.futures.Future[None] | None = None
        self._replay: list[tuple[int, list[Sample], TickStats]] = []
        self._journal_next: int | None = None  # the tick after the last one journaled
        if journal is not None:
            # Fresh (no snapshot yet): everything journaled may be missing downstream.
            entries = journal.resume(None if fresh else state["next_tick"])
            self._replay = [(e.tick, e.samples, e.stats) for e in entries]
            self._journal_next = journal.next_tick()
            if self._replay:
                log.warning(
                    "bus %r: resumed %s; emitting %d journaled ticks again (%d to %d)",
                    bus.name, "without a snapshot" if fresh else f"at tick {state['next_tick']}",
                    len(self._replay), self._replay[0][0], self._replay[-1][0],
                )  # fmt: skip
            if self._replay and fresh:
                # Until they are emitted, a snapshot must not claim past the replayed ticks.
                self._state = {"next_tick": self._replay[0][0], "end_tick": state["end_tick"]}

    def _emit(self, tick: int, samples: list[Sample], stats: TickStats) -> None:
        self._queue.put((tick, samples, stats))

    def _emit_journaled(self, tick: int, samples: list[Sample], stats: TickStats) -> None:
        # Journaled before it is queued: whatever next_batch may emit survives a crash.
        self._journal.append(tick, samples, stats)  # type: ignore[union-attr]
        self._queue.put((tick, samples, stats))

    async def _run(self) -> None:
        start, end = self._start, self._state["end_tick"]
        finished = (
            not self._fresh and end is not None and max(start, self._journal_next or 0) >= end
        )
        if not finished:  # a finished run resumed: nothing to poll, nothing to serve
            await self._link.start()
        if self._fresh:
            # Setting up may have taken a while: a new run starts with the next slot, so the
            # start-up does not count as late ticks. A resumed one keeps its schedule.
            shift = max(0, math.floor(time.time() / self._period) + 1 - start)
            start, end = start + shift, None if end is None else end + shift
            first = self._replay[0][0] if self._replay else start
            self._state = {"next_tick": min(first, start), "end_tick": end}
        if self._journal_next is not None:
            start = max(start, self._journal_next)  # the journaled ticks are polled already
        for entry in self._replay:
            self._queue.put(entry)
        self._replay = []
        try:
            await self._poller.run(start, end)
        finally:
            await self._link.close()

    def next_batch(self) -> list[Item]:
        if self._stop.is_set() and not self._stopping:
            self._stopping = True
            self._poller.request_stop()
        if self._done is None:
            settle_gc()  # the worker has built its partitions: their heap stays
            self._done = LoopThread.submit(self._run())
        batch: list[Item] = []
        while True:
            try:
                tick, samples, stats = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.extend(samples)
            if self._stats:
                batch.append(stats)
            self._state = {"next_tick": tick + 1 + stats.late, "end_tick": self._state["end_tick"]}
        if not batch and self._done.done():
            self._crashed()
            raise StopIteration
        return batch

    def _crashed(self) -> None:
        """Report a poller that ended with an error (its journal could not be written, a
        bug): with ``on_fatal``, one line naming the bus, and this partition ends; else the
        error is raised."""
        exc = self._done.exception() if self._done is not None else None
        if exc is None:
            return
        if self._on_fatal is None:
            raise exc
        if not self._reported:
            self._reported = True
            self._on_fatal(f"bus {self._bus.name!r}: polling stopped: {_one_line(exc)}")

    def next_awake(self) -> datetime | None:
        if self._done is None or not self._queue.empty() or self._done.done():
            return None
        now = time.time()
        schedule = self._poller.schedule
        due = schedule.due
        if due > now:
            self._patience = _FIRST_PATIENCE_S
            wake = due + schedule.duration + 0.002
        elif (expected := due + schedule.duration * 1.1 + 0.002) > now:
            wake = expected  # samples arrive at the end of the tick: about as long as the last
        else:
            # Later than expected: the shared loop may still be busy with other buses. Look
            # again after a wait that doubles, so hundreds of partitions do not keep taking
            # the GIL from the loop that is polling them.
            wake = now + self._patience
            self._patience = min(self._patience * 2, self._period / 10)
        # On a shared grid, so partitions due about together are woken by one activation of
        # the input operator (each one walks every partition of the worker).
        cap = (math.floor(now / _MAX_SLEEP_S) + 1) * _MAX_SLEEP_S
        wake = min(math.ceil(wake / _GRID_S) * _GRID_S, cap)
        return datetime.fromtimestamp(wake, timezone.utc)

    def snapshot(self) -> BusState:
        state: BusState = dict(self._state)  # type: ignore[assignment]
        if self._journal is not None:
            self._journal.snapshot_taken(state["next_tick"])
        return state

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._poller.request_stop()
        try:
            if self._done is not None:
                try:
                    concurrent.futures.wait([self._done])
                    self._crashed()
                finally:
                    LoopThread.release()
        finally:
            if self._journal is not None:
                self._journal.close()


class ControllerSource(FixedPartitionedSource[Item, BusState]):
    """Polls every device of every bus once per tick; one partition per bus, keyed by bus name.

    ``rate_hz`` sets the tick rate; with ``duration_s`` each partition ends
    after its last tick, else it runs until ``stop`` is set (the flow sets it
    on SIGINT/SIGTERM), finishing the tick in progress so nothing acquired
    is lost. Modbus I/O runs as tasks on one event loop in a background
    thread shared by all buses of the process, never inside ``next_batch``.

    It emits :class:`Sample` items only; with ``stats=True`` each tick's samples are
    followed, in the same batch, by one :class:`TickStats` for that bus and tick
    (``flows.acquire.acquire_with_stats`` splits the two).

    Recovery: ``snapshot()`` is the first tick not emitted and the schedule's end. With
    ``journal_dir``, each bus's ticks are journaled (connectors.journal) before they are
    emitted; a resumed partition emits the journaled ticks from its snapshot on again, the
    same Samples and TickStats, then polls on after the last one (built without a snapshot,
    it emits the whole journal first), so sinks keyed on the natural key lose only what a
    crash interrupts mid-tick. Without it there is no journal at all, and a resume loses
    what was polled in the epoch Bytewax replays.
    """

    def __init__(
        self,
        buses: Sequence[Bus],
        *,
        rate_hz: float,
        duration_s: float | None = None,
        stop: threading.Event | None = None,
        hostname: str | None = None,
        stats: bool = False,
        journal_dir: str | os.PathLike[str] | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        """``hostname`` (default: this machine's) decides which buses with a ``host`` are local;
        ``stats`` adds a TickStats item after each tick's samples; ``journal_dir`` keeps a
        :class:`~connectors.journal.Journal` per bus there (see the class docstring).
        ``on_fatal``: called with one line naming the bus when a bus cannot start or its
        polling ends with an error (its journal cannot be written); that bus's partition then
        ends, and the caller decides about the run. None: the error is raised."""
        names = [b.name for b in buses]
        if len(set(names)) != len(names):
            raise ValueError(f"bus names must be unique, got {names}")
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.buses = {b.name: b for b in buses}
        self.rate_hz = rate_hz
        self.duration_s = duration_s
        self.stop = stop if stop is not None else threading.Event()
        self.hostname = hostname or socket.gethostname()
        self.stats = stats
        self.journal_dir = None if journal_dir is None else Path(journal_dir)
        self.on_fatal = on_fatal

    def list_parts(self) -> list[str]:
        return [
            name
            for name, bus in self.buses.items()
            if bus.host is None or bus.host == self.hostname
        ]

    def build_part(
        self, step_id: str, for_part: str, resume_state: BusState | None
    ) -> _BusPartition:
        state = resume_state or self._fresh_state()
        bus = self.buses[for_part]
        journal = None
        fresh = resume_state is None
        try:
            if self.journal_dir is not None:
                journal = Journal(self.journal_dir, for_part)
            return _BusPartition(
                bus, self.rate_hz, state, self.stop, fresh=fresh, stats=self.stats,
                journal=journal, on_fatal=self.on_fatal,
            )  # fmt: skip
        except Exception as exc:
            if journal is not None:
                journal.close()
            if self.on_fatal is None:
                raise
            self.on_fatal(f"bus {for_part!r}: cannot start: {_one_line(exc)}")
            return _EndedPartition(state)

    def _fresh_state(self) -> BusState:
        first = math.floor(time.time() * self.rate_hz) + 1
        end = None
        if self.duration_s is not None:
            end = first + max(1, math.ceil(self.duration_s * self.rate_hz - 1e-9))
        return {"next_tick": first, "end_tick": end}

    def __repr__(self) -> str:
        return f"ControllerSource(buses={list(self.buses)}, rate_hz={self.rate_hz})"


class _EndedPartition(StatefulSourcePartition[Item, BusState]):
    """A bus that could not start (reported through ``on_fatal``): it emits nothing and
    keeps its state, so a resume after the fault is fixed starts where this run was."""

    def __init__(self, state: BusState) -> None:
        self._state = state

    def next_batch(self) -> list[Item]:
        raise StopIteration

    def snapshot(self) -> BusState:
        return self._state


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
