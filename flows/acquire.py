"""The acquisition dataflow: ``python -m bytewax.run flows.acquire``.

The module-level ``flow`` is built on first access from ``$ACQUIRE_CONFIG``
(else ``./acquire.toml``). A bad config ends the run with its one-line error
and exit code 2. SIGINT and SIGTERM end the run the same way: every bus
finishes its tick in progress, the sinks are closed and the summary printed;
a second signal aborts.

The steps are plain functions on Bytewax streams, so they compose into
bigger dataflows: ``acquire`` -> ``to_rows`` -> ``windows`` -> ``write``.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from collections.abc import Iterable
from datetime import timedelta
from types import FrameType
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from connectors.sample import Sample
from connectors.source import ControllerSource
from flows.config import Config, ConfigError, Windows, load_config
from flows.rows import SAMPLE_SCHEMA, to_row
from flows.summary import IntoSummary
from flows.windows import WINDOW_SCHEMA, WindowStreams, window_stats
from sinks.base import IntoSink, Schema

__all__ = [
    "acquire",
    "build_flow",
    "command_line_config",
    "stop_on_signals",
    "to_rows",
    "windows",
    "write",
]


def acquire(
    flow: Dataflow, config: Config, *, stop: threading.Event | None = None
) -> Stream[Sample]:
    """Add the controller source to ``flow``: one Sample per device, parameter and tick."""
    source = ControllerSource(
        config.buses,
        rate_hz=config.acquisition.rate_hz,
        duration_s=config.acquisition.duration_s,
        stop=stop,
    )
    return op.input("controllers", flow, source)


def to_rows(samples: Stream[Sample]) -> Stream[dict[str, Any]]:
    """Flatten Samples into long-format rows (flows.rows.SAMPLE_SCHEMA)."""
    return op.map("to_row", samples, to_row)


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
        if hasattr(sink, "schema") and sink.schema is None and schema is not None:
            sink = dataclasses.replace(sink, schema=schema)
        op.output(f"{name}_{i}_{type(sink).__name__}", rows, sink)


def windows(rows: Stream[dict[str, Any]], config: Windows) -> WindowStreams:
    """Window statistics of acquisition rows as configured (see flows.windows.window_stats)."""
    return window_stats(
        "windows",
        rows,
        length=timedelta(seconds=config.length_s),
        lateness=timedelta(seconds=config.lateness_s),
    )


def build_flow(config: Config, *, stop: threading.Event | None = None) -> Dataflow:
    """The whole acquisition flow for ``config``: source -> rows -> sinks; with windows,
    rows -> window rows -> window sinks and late rows -> late sinks; and the run summary."""
    flow = Dataflow("acquire")
    samples = acquire(flow, config, stop=stop)
    rows = to_rows(samples)
    write(rows, config.sinks)
    summary: Stream[Any] = samples
    if config.windows is not None:
        stats = windows(rows, config.windows)
        write(stats.rows, config.window_sinks, schema=WINDOW_SCHEMA, name="windows")
        write(stats.late, config.late_sinks, name="late")
        tagged_windows = op.map("tag_windows", stats.rows, lambda r: ("windows", r))
        tagged_late = op.map("tag_late", stats.late, lambda r: ("late", r))
        summary = op.merge("summary_items", samples, tagged_windows, tagged_late)
    op.output("summary", summary, IntoSummary())
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
    stop = threading.Event()
    stop_on_signals(stop)
    flow = build_flow(config, stop=stop)
    globals()["flow"] = flow
    return flow
