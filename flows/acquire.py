"""The acquisition dataflow: ``python -m bytewax.run flows.acquire``.

The module-level ``flow`` is built on first access from ``$ACQUIRE_CONFIG``
(else ``./acquire.toml``). A bad config ends the run with its one-line error
and exit code 2. SIGINT and SIGTERM end the run the same way: every bus
finishes its tick in progress, the sinks are closed and the summary printed;
a second signal aborts. Run with Bytewax recovery (``-r DIR -s SNAPSHOT_S -b BACKUP_S``),
every bus is journaled in ``DIR/journal`` (flows.recovery): after a crash, the resumed run
emits again what was polled since the snapshot it resumes from.

The steps are plain functions on Bytewax streams, so they compose into
bigger dataflows: ``acquire`` -> ``to_rows`` -> ``windows`` -> ``write``, and
``acquire_with_stats`` -> ``to_stats_rows`` -> ``write`` for the bus statistics.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterable
from datetime import timedelta
from types import FrameType
from typing import Any, NamedTuple, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from connectors.sample import Sample, TickStats
from connectors.source import ControllerSource, Item
from flows import recovery
from flows.config import Config, ConfigError, Windows, load_config
from flows.observe.busstats import BUS_STATS_SCHEMA, to_stats_row
from flows.observe.status import log_to_stderr
from flows.observe.summary import IntoSummary
from flows.rows import SAMPLE_SCHEMA, to_row
from flows.windows import WINDOW_SCHEMA, WindowStreams, window_stats
from sinks.base import IntoSink, Schema

__all__ = [
    "Acquired",
    "acquire",
    "acquire_with_stats",
    "build_flow",
    "command_line_config",
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
    return ControllerSource(
        config.buses,
        rate_hz=config.acquisition.rate_hz,
        duration_s=config.acquisition.duration_s,
        stop=stop,
        stats=stats,
        journal_dir=journal_dir,
    )


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
    the acquisition row schema; None locks it from the first rows)."""
    for i, sink in enumerate(sinks):
        if sink.schema is None and schema is not None:
            sink = sink.with_schema(schema)
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
    stats rows -> stats sinks; with windows, rows -> window rows -> window sinks and late
    rows -> late sinks; and the run summary, with the status line every
    ``config.status`` interval and the Prometheus metrics (flows.observe.metrics).
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
    summary: list[Stream[Any]] = [samples, tick_stats]
    if config.windows is not None:
        stats = windows(rows, config.windows)
        write(stats.rows, config.window_sinks, schema=WINDOW_SCHEMA, name="windows")
        write(stats.late, config.late_sinks, name="late")
        summary.append(op.map("tag_windows", stats.rows, lambda r: ("windows", r)))
        summary.append(op.map("tag_late", stats.late, lambda r: ("late", r)))
    summary_sink = IntoSummary(status_s=config.status.every_s)
    op.output("summary", op.merge("summary_items", *summary), summary_sink)
    return flow


def stop_on_signals(stop: threading.Event) -> None:
    """Make SIGINT and SIGTERM set ``stop`` (a graceful end); a second signal aborts."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop.set()
        name = signal.Signals(signum).name
        print(f"{name}: finishing the tick in progress (again to abort)", file=sys.stderr)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)


def command_line_config() -> Config:
    """The config of a command-line run (``$ACQUIRE_CONFIG`` or ``./acquire.toml``); a bad
    one ends the process with its one-line error and exit code 2."""
    try:
        return load_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


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
        raise SystemExit(2)
    log_to_stderr()
    stop = threading.Event()
    stop_on_signals(stop)
    flow = build_flow(config, stop=stop, journal_dir=journal)
    globals()["flow"] = flow
    return flow
