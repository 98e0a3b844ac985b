"""The end-of-run summary, the live status line and the metrics of one worker.

IntoSummary's partition counts the worker's Samples and TickStats (flows.observe.figures),
logs the status line every interval (flows.observe.status), exposes the counts to Prometheus
(flows.observe.metrics) and, when the run ends, prints per device: rows, error rows, error
rate, its bus's late ticks and the p50/p99 latency (received_at - requested_at); per bus:
ticks and late ticks, with the tick duration (p50, p99) and largest drift when the bus
statistics are there; and
(with windows) the window rows and the late samples.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.sample import Sample, TickStats
from flows.observe.figures import BusFigures, Figures, counted_percentile
from flows.observe.metrics import COLLECTOR
from flows.observe.status import StatusLine

__all__ = ["IntoSummary", "percentile"]


# What the summary takes: Samples, TickStats, and ("windows" | "late", row) for the window
# streams.
Item = Sample | TickStats | tuple[str, Any]


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values`` (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def _bus_line(bus: str, b: BusFigures) -> str:
    p50, p99 = (counted_percentile(b.durations, q) * 1000 for q in (50, 99))
    return (
        f"  bus {bus}: {b.ticks} ticks, {b.late} late; tick p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms, max drift {b.max_drift * 1000:.1f} ms; "
        f"{b.reads} reads, {b.errors} failed"
    )


class _SummaryPartition(StatelessSinkPartition[Item]):
    def __init__(
        self,
        out: TextIO,
        worker_index: int,
        worker_count: int,
        status_s: float | None,
        clock: Callable[[], float],
        metrics: bool,
    ) -> None:
        self._out = out
        self._label = f" (worker {worker_index + 1}/{worker_count})" if worker_count > 1 else ""
        self.figures = Figures()
        self._status = (
            None
            if status_s is None
            else StatusLine(self.figures, status_s, clock, worker_index, worker_count)
        )
        self._metrics = metrics
        if metrics:
            COLLECTOR.add(self.figures)
        self._closed = False

    def write_batch(self, items: list[Item]) -> None:
        self.figures.add(items)
        if self._status is not None:
            self._status.maybe_log()

    def _lines(self) -> list[str]:
        f = self.figures
        lines = [f"run summary{self._label}:"]
        devices = sorted(f.devices.values(), key=lambda d: (d.bus, d.device))
        width = max((len(f"{d.bus}/{d.device}") for d in devices), default=10)
        if devices:
            lines.append(
                f"  {'bus/device':<{width}}  {'rows':>7}  {'errors':>7}  {'error %':>7}  "
                f"{'late':>5}  {'p50 ms':>7}  {'p99 ms':>7}"
            )
        for d in devices:
            lines.append(
                f"  {d.bus + '/' + d.device:<{width}}  {d.rows:>7}  {d.errors:>7}  "
                f"{100 * d.errors / d.rows:>7.1f}  {f.bus_late(d.bus):>5}  "
                f"{_ms(d.latency_percentile(50)):>7}  {_ms(d.latency_percentile(99)):>7}"
            )
        for bus in f.bus_names():
            if bus in f.buses:
                lines.append(_bus_line(bus, f.buses[bus]))
            elif bus in f.ticks:
                lines.append(f"  bus {bus}: {len(f.ticks[bus])} ticks, {f.bus_late(bus)} late")
        if devices:
            total, errors = sum(d.rows for d in devices), sum(d.errors for d in devices)
            lines.append(f"  total: {total} rows, {errors} error rows")
        if f.streams:
            lines.append(
                f"  windows: {f.streams['windows']} window rows, "
                f"{f.streams['late']} late samples (kept in the raw rows)"
            )
        return lines

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._metrics:
            COLLECTOR.remove(self.figures)
        f = self.figures
        if not (f.devices or f.streams or f.buses):
            return
        # One write, so summaries of workers sharing stdout do not interleave.
        self._out.write("\n".join(self._lines()) + "\n")
        self._out.flush()


@dataclass(frozen=True)
class IntoSummary(DynamicSink[Item]):
    """Counts Samples per device, TickStats per bus (and tagged window and late rows) and
    prints a summary when the run ends, one per worker, about that worker's buses.

    Without TickStats for a bus, its ticks and late ticks are counted from its samples.
    ``status_s``: log a status line (flows.observe.status) every that many seconds of ``clock``;
    None: none. ``metrics``: expose the counts through flows.observe.metrics.COLLECTOR while the
    partition is open.
    """

    out: TextIO | None = None  # None: sys.stdout as it is when the run starts
    status_s: float | None = None
    metrics: bool = True
    clock: Callable[[], float] = time.monotonic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SummaryPartition:
        return _SummaryPartition(
            self.out or sys.stdout,
            worker_index,
            worker_count,
            self.status_s,
            self.clock,
            self.metrics,
        )
