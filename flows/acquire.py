"""The acquisition dataflow: ``python -m bytewax.run flows.acquire``.

The module-level ``flow`` is built on first access from ``$ACQUIRE_CONFIG``
(else ``./acquire.toml``). A bad config ends the run with its one-line error
and exit code 2. SIGINT and SIGTERM end the run the same way: every bus
finishes its tick in progress, the sinks are closed and the summary printed;
a second signal aborts.

The steps are plain functions on Bytewax streams, so they compose into
bigger dataflows: ``acquire`` -> ``to_rows`` -> ``write``.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from connectors.sample import Sample
from connectors.source import ControllerSource
from flows.config import Config, ConfigError, load_config
from flows.rows import SAMPLE_SCHEMA, to_row
from flows.summary import IntoSummary
from sinks.base import IntoSink

__all__ = ["acquire", "build_flow", "stop_on_signals", "to_rows", "write"]


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


def write(rows: Stream[dict[str, Any]], sinks: Iterable[IntoSink], *, name: str = "rows") -> None:
    """Write ``rows`` to every sink; sinks without a schema get the acquisition row schema."""
    for i, sink in enumerate(sinks):
        if hasattr(sink, "schema") and sink.schema is None:
            sink = dataclasses.replace(sink, schema=SAMPLE_SCHEMA)
        op.output(f"{name}_{i}_{type(sink).__name__}", rows, sink)


def build_flow(config: Config, *, stop: threading.Event | None = None) -> Dataflow:
    """The whole acquisition flow for ``config``: source -> rows -> every sink, plus the summary."""
    flow = Dataflow("acquire")
    samples = acquire(flow, config, stop=stop)
    write(to_rows(samples), config.sinks)
    op.output("summary", samples, IntoSummary())
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


def __getattr__(name: str) -> Dataflow:
    if name != "flow":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        config = load_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    stop = threading.Event()
    stop_on_signals(stop)
    flow = build_flow(config, stop=stop)
    globals()["flow"] = flow
    return flow
