"""The end-of-run summary, the live status line and the metrics of one worker.

IntoSummary's partition counts the worker's Samples and TickStats (flows.observe.figures),
logs the status line every interval (flows.observe.status), exposes the counts to Prometheus
(flows.observe.metrics) and, when the run ends, prints per device: rows, error rows, error
rate, its bus's late ticks and the p50/p99 latency (received_at - requested_at); per bus:
ticks and late ticks, with the tick duration (p50, p99) and largest drift when the bus
statistics are there; (with windows) the window rows and the late samples; and per spooled sink
partition of the worker (sinks.spooled.states(), see :func:`sink_line`): rows written, rows
that went through the spool, retries, how long the last outage took to drain, and the rows
still spooled or why the sink failed.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.sample import Sample, TickStats
from flows.observe.figures import BusFigures, Figures, counted_percentile, sink_states
from flows.observe.metrics import COLLECTOR
from flows.observe.page import PAGE, StatusPage
from flows.observe.status import StatusLine
from sinks.spooled import SpoolState, states

__all__ = ["IntoSummary", "percentile", "sink_line"]


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


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} kB" if n < 2**20 else f"{n / 2**20:.1f} MB"


def sink_line(s: SpoolState) -> str:
    """One spooled sink partition's summary line: ``  <where>: N rows written`` for a sink that
    never needed its spool, else ``  <where>: N rows written, N through the spool (peak X kB),
    N retries``, then ``, last outage drained in X s`` when one did,
    ``; N rows still spooled in <path> (the next run writes them first)`` when any wait,
    ``; failed: <last error>`` when it failed."""
    text = f"  {s.where}: {s.rows_written} rows written"
    if not (s.rows_spooled_total or s.retries or s.rows_spooled or s.state == "failed"):
        return text  # it never needed its spool
    text += f", {s.rows_spooled_total} through the spool"
    if s.peak_bytes:
        text += f" (peak {_size(s.peak_bytes)})"
    text += f", {s.retries} retries"
    if s.drain_s is not None:
        text += f", last outage drained in {s.drain_s:.1f} s"
    if s.rows_spooled:
        text += (
            f"; {s.rows_spooled} rows still spooled in {s.path} (the next run writes them first)"
        )
    if s.state == "failed":
        text += f"; failed: {s.last_error}"
    return text


def _active(s: SpoolState) -> bool:
    """Whether the partition did anything worth a line (every worker has one of each sink)."""
    return bool(s.rows_written or s.rows_spooled_total or s.rows_spooled or s.retries) or (
        s.state == "failed"
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
        spools: Callable[[], Sequence[SpoolState]],
        page: StatusPage | None = None,
    ) -> None:
        self._out = out
        self._worker, self._spools = worker_index, spools
        self._label = f" (worker {worker_index + 1}/{worker_count})" if worker_count > 1 else ""
        self.figures = Figures()
        self._status = (
            None
            if status_s is None
            else StatusLine(self.figures, status_s, clock, worker_index, worker_count, spools)
        )
        self._metrics = metrics
        if metrics:
            COLLECTOR.add(self.figures)
        self._page = page
        if page is not None:
            PAGE.add(self.figures, worker_index, page)
        self._closed = False

    def write_batch(self, items: list[Item]) -> None:
        self.figures.add(items)
        if self._status is not None:
            self._status.maybe_log()

    def _lines(self, sinks: list[SpoolState]) -> list[str]:
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
        lines.extend(sink_line(s) for s in sinks)
        return lines

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._metrics:
            COLLECTOR.remove(self.figures)
        if self._page is not None:
            PAGE.remove(self.figures)
        f = self.figures
        sinks = sink_states(self._spools(), self._worker)
        if not (f.devices or f.streams or f.buses or any(_active(s) for s in sinks)):
            if self._worker == 0:  # one line for the run, not one per worker
                self._print("run summary: nothing polled (the run stopped before its first tick)")
            return
        # One write, so summaries of workers sharing stdout do not interleave.
        self._print("\n".join(self._lines(sinks)))

    def _print(self, text: str) -> None:
        try:
            self._out.write(text + "\n")
            self._out.flush()
        except (OSError, ValueError) as exc:  # stdout closed (a pipe whose reader left)
            with contextlib.suppress(OSError, ValueError):
                print(f"run summary not printed: stdout is closed ({exc})", file=sys.stderr)


@dataclass(frozen=True)
class IntoSummary(DynamicSink[Item]):
    """Counts Samples per device, TickStats per bus (and tagged window and late rows) and
    prints a summary when the run ends, one per worker, about that worker's buses.

    Without TickStats for a bus, its ticks and late ticks are counted from its samples.
    ``status_s``: log a status line (flows.observe.status) every that many seconds of ``clock``;
    None: none. ``metrics``: expose the counts through flows.observe.metrics.COLLECTOR while the
    partition is open. ``spools``: where the status line and the summary take the sinks'
    states from (flows.acquire.build_flow makes the summary its last step: Bytewax closes it
    after the sinks, so its lines say what they left). ``page``: serve the counts on the
    status page (flows.observe.page.PAGE) while the partition is open.
    """

    out: TextIO | None = None  # None: sys.stdout as it is when the run starts
    status_s: float | None = None
    metrics: bool = True
    clock: Callable[[], float] = time.monotonic
    spools: Callable[[], Sequence[SpoolState]] = states
    page: StatusPage | None = None

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SummaryPartition:
        return _SummaryPartition(
            self.out or sys.stdout,
            worker_index,
            worker_count,
            self.status_s,
            self.clock,
            self.metrics,
            self.spools,
            self.page,
        )
