"""The acquisition dataflow: ``python -m bytewax.run flows.acquire``.

The module-level ``flow`` is built on first access from ``$ACQUIRE_CONFIG``
(else ``./acquire.toml``). Run from the command line, SIGINT and SIGTERM are
caught from the moment this module starts loading (before its heavy imports):
the first one ends the run gracefully (every bus finishes its tick in progress,
the sinks are closed and the summary printed; caught during start-up, nothing is
polled); a second one aborts at once with one line. Run with Bytewax recovery
(``-r DIR -s SNAPSHOT_S -b BACKUP_S``), every bus is journaled in ``DIR/journal``
(flows.recovery): after a crash, the resumed run emits again what was polled since
the snapshot it resumes from.

Exit codes of ``python -m bytewax.run flows.acquire``:

- 0: the run ended (``duration_s`` reached, or one SIGINT/SIGTERM); the summary.
- 1: an unexpected error (a bug): Bytewax's traceback.
- 2 (:data:`EXIT_CONFIG`): a bad config or a refused resume; one line, nothing polled.
- 3 (:data:`EXIT_SINK`): a sink failed for good (a permanent error, or its spool full);
  one line naming the sink, then the graceful end and the summary (:func:`end_run`).
- 4 (:data:`EXIT_BUS`): a bus could not start or stopped polling for a reason no retry
  fixes (its recovery journal cannot be written); one line naming the bus, then the
  graceful end and the summary.
- 5 (flows.cluster.EXIT_CLUSTER): a run over several processes (``-i``/``-a``) broke: a
  peer did not join within ``ACQUIRE_JOIN_TIMEOUT_S``, or a peer was lost; one line.
- 128 + N: a second signal N aborted the run (130 SIGINT, 143 SIGTERM); one line.

The steps are plain functions on Bytewax streams, so they compose into
bigger dataflows: ``acquire`` -> ``to_rows`` -> ``windows`` -> ``write``, and
``acquire_with_stats`` -> ``to_stats_rows`` -> ``write`` for the bus statistics.
"""

# ruff: noqa: E402
from __future__ import annotations

# Only light standard-library modules before the handlers are in: a signal that comes while
# the rest is imported is caught too.
import atexit
import contextlib
import os
import signal
import sys
import threading
import weakref
from types import FrameType
from typing import Any, ClassVar, NamedTuple, cast

EXIT_CONFIG = 2
EXIT_SINK = 3
EXIT_BUS = 4

_STOP = threading.Event()  # the command-line flow's stop event
_MAIN = getattr(sys.modules.get("__main__"), "__spec__", None)


class _Run:
    """What the signal handler, :func:`end_run` and the process's exit share."""

    command_line = _MAIN is not None and _MAIN.name == "bytewax.run"
    lock = threading.Lock()
    stops: ClassVar[list[weakref.ref[threading.Event]]] = [weakref.ref(_STOP)]
    signals = 0
    signum: int | None = None  # the last signal caught
    stopping = False  # a signal or end_run asked the run to stop
    code: int | None = None  # the exit code end_run recorded first

    @classmethod
    def add(cls, stop: threading.Event) -> None:
        """Make ``stop`` one of the events a signal or end_run sets."""
        cls.stops = [r for r in cls.stops if r() not in (None, stop)] + [weakref.ref(stop)]
        if cls.stopping and (cls.command_line or cls.signals):
            stop.set()

    @classmethod
    def stop(cls) -> None:
        cls.stopping = True
        for ref in list(cls.stops):
            if (event := ref()) is not None:
                event.set()


def _flush(*streams: Any) -> None:
    for stream in streams:
        with contextlib.suppress(Exception):  # closed, or a reentrant call from a handler
            stream.flush()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    _Run.signals += 1
    _Run.signum = signum
    _flush(sys.stderr)  # not stdout: a stalled reader of a pipe must not hold the abort
    if _Run.signals > 1:
        # One unbuffered write, then out: a Python exception here would surface inside
        # Bytewax's run loop as a Rust panic.
        line = (
            f"{name} again: aborting now, without closing the sinks; rows not yet written are "
            "lost unless the recovery journal or a sink's spool holds them\n"
        )
        os.write(2, line.encode())
        os._exit(128 + signum)
    os.write(2, f"{name}: finishing the tick in progress (again to abort)\n".encode())
    _Run.stop()


def _install_handlers() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)


def _exit_with_code() -> None:
    # bytewax.run's main returns normally when the flow has ended and nothing after it sets
    # the status. Registered before any other atexit hook, this one runs last.
    if _Run.code is not None and not hasattr(sys, "last_value"):  # a traceback keeps its 1
        _flush(sys.stdout, sys.stderr)
        os._exit(_Run.code)


if _Run.command_line:
    _install_handlers()
    atexit.register(_exit_with_code)

# The rest is imported once the handlers are in (hence the file-wide E402 waiver above).
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from connectors.sample import Sample, TickStats
from connectors.source import ControllerSource, Item
from flows import cluster as _cluster
from flows import recovery
from flows.changes import Deadband, changes
from flows.config import Config, ConfigError, Windows, load_config
from flows.observe.busstats import BUS_STATS_SCHEMA, to_stats_row
from flows.observe.page import StatusPage
from flows.observe.status import log_to_stderr
from flows.observe.summary import IntoSummary
from flows.rows import SAMPLE_SCHEMA, to_row
from flows.windows import WINDOW_SCHEMA, WindowStreams, window_stats
from sinks.base import IntoSink, Schema
from sinks.spooled import IntoSpooled

__all__ = [
    "EXIT_BUS",
    "EXIT_CONFIG",
    "EXIT_SINK",
    "Acquired",
    "acquire",
    "acquire_with_stats",
    "build_flow",
    "command_line_config",
    "end_run",
    "stop_on_signals",
    "to_rows",
    "to_stats_rows",
    "windows",
    "write",
]


JournalDir = str | os.PathLike[str] | None


def _source(
    config: Config, stop: threading.Event | None, journal_dir: JournalDir, *, stats: bool
) -> ControllerSource:
    source = ControllerSource(
        config.buses,
        rate_hz=config.acquisition.rate_hz,
        duration_s=config.acquisition.duration_s,
        stop=stop,
        stats=stats,
        journal_dir=journal_dir,
        on_fatal=_bus_failed,
    )
    _Run.add(source.stop)  # end_run stops it
    return source


def acquire(
    flow: Dataflow,
    config: Config,
    *,
    stop: threading.Event | None = None,
    journal_dir: JournalDir = None,
) -> Stream[Sample]:
    """Add the controller source to ``flow``: one Sample per device, parameter and tick.

    The stream holds Samples only (no bus statistics: see :func:`acquire_with_stats`).
    ``stop`` set ends the run after the tick in progress. ``journal_dir`` journals every bus
    there, so that a run with Bytewax recovery replays what a crash interrupted (see
    connectors.source.ControllerSource); None: no journal.
    """
    return op.input("controllers", flow, _source(config, stop, journal_dir, stats=False))


class Acquired(NamedTuple):
    """The two streams of :func:`acquire_with_stats`."""

    samples: Stream[Sample]
    """One Sample per device, parameter and tick, exactly as :func:`acquire` gives them."""
    stats: Stream[TickStats]
    """One TickStats per bus and tick polled, on the same worker as that bus's samples."""


def acquire_with_stats(
    flow: Dataflow,
    config: Config,
    *,
    stop: threading.Event | None = None,
    journal_dir: JournalDir = None,
) -> Acquired:
    """Add the controller source to ``flow`` and split what it polls into two streams:
    ``(samples, stats)``. Every tick of every bus gives its Samples and one TickStats
    (devices polled, reads sent, failed reads, late slots skipped after it, drift of its
    start, duration). The source step is the same as :func:`acquire`'s (step id
    ``controllers``), so a recovery store can switch between the two. ``journal_dir`` as for
    :func:`acquire`."""
    source = _source(config, stop, journal_dir, stats=True)
    items: Stream[Item] = op.input("controllers", flow, source)
    split = op.branch("split_stats", items, lambda item: isinstance(item, Sample))
    return Acquired(
        samples=cast(Stream[Sample], split.trues), stats=cast(Stream[TickStats], split.falses)
    )


def to_rows(samples: Stream[Sample]) -> Stream[dict[str, Any]]:
    """Flatten Samples into long-format rows (flows.rows.SAMPLE_SCHEMA)."""
    return op.map("to_row", samples, to_row)


def to_stats_rows(stats: Stream[TickStats]) -> Stream[dict[str, Any]]:
    """Flatten TickStats into bus statistics rows (flows.observe.busstats.BUS_STATS_SCHEMA)."""
    return op.map("to_stats_row", stats, to_stats_row)


def write(
    rows: Stream[dict[str, Any]],
    sinks: Iterable[IntoSink],
    *,
    schema: Schema | None = SAMPLE_SCHEMA,
    name: str = "rows",
) -> None:
    """Write ``rows`` to every sink; a sink without its own schema gets ``schema`` (by default
    the acquisition row schema; None locks it from the first rows). A spooled sink
    (sinks.spooled.IntoSpooled) without an ``on_fatal`` of its own ends the run through
    :func:`end_run` with :data:`EXIT_SINK` when it fails for good."""
    for i, sink in enumerate(sinks):
        if sink.schema is None and schema is not None:
            sink = sink.with_schema(schema)
        if isinstance(sink, IntoSpooled) and sink.on_fatal is None:
            sink = replace(sink, on_fatal=_sink_failed)
        op.output(f"{name}_{i}_{type(sink).__name__}", rows, sink)


def windows(rows: Stream[dict[str, Any]], config: Windows) -> WindowStreams:
    """Window statistics of acquisition rows as configured (see flows.windows.window_stats)."""
    return window_stats(
        "windows",
        rows,
        length=timedelta(seconds=config.length_s),
        lateness=timedelta(seconds=config.lateness_s),
    )


def build_flow(
    config: Config, *, stop: threading.Event | None = None, journal_dir: JournalDir = None
) -> Dataflow:
    """The whole acquisition flow for ``config``: source -> rows -> sinks; bus statistics ->
    stats rows -> stats sinks; rows -> changes (report by exception, flows.changes) -> change
    sinks; with windows, rows -> window rows -> window sinks and late
    rows -> late sinks; and the run summary, with the status line every
    ``config.status`` interval, the Prometheus metrics (flows.observe.metrics) and, with
    ``[status] http``, the status page (flows.observe.page).
    ``journal_dir``: see :func:`acquire`."""
    flow = Dataflow("acquire")
    samples, tick_stats = acquire_with_stats(flow, config, stop=stop, journal_dir=journal_dir)
    rows = to_rows(samples)
    write(rows, config.sinks)
    if config.stats_sinks:
        write(
            to_stats_rows(tick_stats),
            config.stats_sinks,
            schema=BUS_STATS_SCHEMA,
            name="bus_stats",
        )
    if config.change_sinks:
        bands = {
            (d.name, p.name): Deadband(p.deadband, p.deadband_pct, p.heartbeat_s)
            for bus in config.buses
            for d in bus.devices
            for p in d.parameters
        }
        write(changes(rows, bands), config.change_sinks, name="changes")
    summary: list[Stream[Any]] = [samples, tick_stats]
    if config.windows is not None:
        stats = windows(rows, config.windows)
        write(stats.rows, config.window_sinks, schema=WINDOW_SCHEMA, name="windows")
        write(stats.late, config.late_sinks, name="late")
        summary.append(op.map("tag_windows", stats.rows, lambda r: ("windows", r)))
        summary.append(op.map("tag_late", stats.late, lambda r: ("late", r)))
    http = config.status.http
    order = tuple(
        (d.name, tuple(p.name for p in d.parameters)) for bus in config.buses for d in bus.devices
    )
    rate = config.acquisition.rate_hz
    page = None if http is None else StatusPage(*http, config.source, rate, order)
    summary_sink = IntoSummary(status_s=config.status.every_s, page=page)
    op.output("summary", op.merge("summary_items", *summary), summary_sink)
    return flow


def stop_on_signals(stop: threading.Event) -> None:
    """Make SIGINT and SIGTERM set ``stop`` (a graceful end); a second signal aborts the
    process at once with one line and exit code 128 + N. A command-line run has the handlers
    from the start, and ``stop`` is set at once if a signal came before this call."""
    _Run.add(stop)
    _install_handlers()


def end_run(line: str, code: int) -> None:
    """End the run because of a failure that no retry fixes: log ``line`` on stderr, record
    ``code`` as the exit code (the first one recorded wins) and stop the run as one signal
    does (every bus finishes its tick, the sinks close, the summary is printed). Never raises,
    from any thread.

    A command-line run then exits with the recorded code. Used as a library (a flow built with
    :func:`build_flow` or :func:`acquire` and run from Python), it logs the line and sets the
    stop event of every acquisition source built so far in this process (the run in progress
    ends as with its ``stop`` set); the code only decides a command-line run's exit status.
    """
    with _Run.lock:
        if _Run.code is None:
            _Run.code = code
    with contextlib.suppress(Exception):  # stderr gone: the stop below matters more
        print(line, file=sys.stderr, flush=True)
    _Run.stop()


def _sink_failed(line: str) -> None:
    end_run(line, EXIT_SINK)


def _bus_failed(line: str) -> None:
    end_run(line, EXIT_BUS)


def command_line_config() -> Config:
    """The config of a command-line run (``$ACQUIRE_CONFIG`` or ``./acquire.toml``); a bad
    one ends the process with its one-line error and exit code 2 (:data:`EXIT_CONFIG`)."""
    try:
        return load_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def __getattr__(name: str) -> Dataflow:
    if name != "flow":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    config = command_line_config()
    journal = recovery.journal_dir()
    problem = None if journal is None else recovery.store_problem(journal.parent)
    if problem is None and journal is not None:
        buses = [b.name for b in config.buses]
        rate = config.acquisition.rate_hz
        problem = recovery.resume_problem(journal.parent, rate_hz=rate, buses=buses)
    if problem is not None:
        print(problem, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    if _Run.command_line and (peers := _cluster.command_line_cluster()) is not None:
        try:
            timeout_s = _cluster.join_timeout()
        except ValueError as exc:
            print(exc, file=sys.stderr)
            raise SystemExit(EXIT_CONFIG) from None
        _cluster.on_peer_lost(peers)
        _cluster.watch_join(peers, timeout_s, lambda: _Run.signum)
    log_to_stderr()
    stop_on_signals(_STOP)
    flow = build_flow(config, stop=_STOP, journal_dir=journal)
    globals()["flow"] = flow
    return flow
