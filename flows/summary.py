"""The end-of-run summary: rows, error rows and error rate per device; ticks and late ticks
per bus, with the tick duration (p50, p99) and the largest drift when the bus statistics
are there; and (with windows) the window rows and the late samples."""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.sample import Sample, TickStats

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


def _bucket(duration_s: float) -> float:
    """``duration_s`` to 0.1 ms below 100 ms (as the summary prints it), else to 3
    significant digits: at most about 1000 distinct values per bus below 100 ms and 900 per
    decade above, however long the run."""
    return round(duration_s, 4) if duration_s < 0.1 else float(f"{duration_s:.3g}")


def _counted_percentile(counts: Counter[float], q: float) -> float:
    """The nearest-rank ``q`` percentile of the values counted in ``counts`` (value ->
    how many times), NaN when empty; the same as :func:`percentile` of them all."""
    rank = max(1, math.ceil(q / 100 * sum(counts.values())))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    return math.nan


class _BusFigures:
    """What the TickStats of one bus add up to, in memory that does not grow with the run."""

    def __init__(self) -> None:
        self.ticks = 0
        self.late = 0
        self.reads = 0
        self.errors = 0
        # Counted per bucket: a list of every duration grew by about 120 bytes per bus and
        # tick, 0.5 GB a day for 64 buses at 1 Hz.
        self.durations: Counter[float] = Counter()
        self.max_drift = 0.0

    def add(self, s: TickStats) -> None:
        self.ticks += 1
        self.late += s.late
        self.reads += s.reads
        self.errors += s.errors
        self.durations[_bucket(s.duration_s)] += 1
        self.max_drift = max(self.max_drift, s.drift_s)

    def line(self, bus: str) -> str:
        p50, p99 = (_counted_percentile(self.durations, q) * 1000 for q in (50, 99))
        return (
            f"  bus {bus}: {self.ticks} ticks, {self.late} late; tick p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, max drift {self.max_drift * 1000:.1f} ms; "
            f"{self.reads} reads, {self.errors} failed"
        )


class _SummaryPartition(StatelessSinkPartition[Item]):
    def __init__(self, out: TextIO, worker_index: int, worker_count: int) -> None:
        self._out = out
        self._label = f" (worker {worker_index + 1}/{worker_count})" if worker_count > 1 else ""
        self._rows: Counter[tuple[str, str]] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._ticks: dict[str, set[int]] = {}
        self._buses: dict[str, _BusFigures] = {}
        self._streams: Counter[str] = Counter()
        self._closed = False

    def write_batch(self, items: list[Item]) -> None:
        for s in items:
            if isinstance(s, Sample):
                key = (s.bus, s.device)
                self._rows[key] += 1
                if s.error is not None:
                    self._errors[key] += 1
                if s.bus not in self._buses:  # else its TickStats count its ticks
                    self._ticks.setdefault(s.bus, set()).add(s.tick)
            elif isinstance(s, TickStats):
                self._ticks.pop(s.bus, None)  # a set of every tick would grow with the run
                self._buses.setdefault(s.bus, _BusFigures()).add(s)
            else:
                self._streams[s[0]] += 1

    def _bus_lines(self) -> list[str]:
        lines = []
        for bus in sorted(set(self._ticks) | set(self._buses)):
            figures = self._buses.get(bus)
            if figures is not None:
                lines.append(figures.line(bus))
                continue
            ticks = self._ticks[bus]
            late = max(ticks) - min(ticks) + 1 - len(ticks)
            lines.append(f"  bus {bus}: {len(ticks)} ticks, {late} late")
        return lines

    def close(self) -> None:
        if self._closed or not (self._rows or self._streams or self._buses):
            self._closed = True
            return
        self._closed = True
        lines = [f"run summary{self._label}:"]
        width = max((len(f"{b}/{d}") for b, d in self._rows), default=10)
        if self._rows:
            lines.append(f"  {'bus/device':<{width}}  {'rows':>7}  {'errors':>7}  {'error %':>7}")
        for (bus, device), n in sorted(self._rows.items()):
            errors = self._errors[(bus, device)]
            lines.append(
                f"  {bus + '/' + device:<{width}}  {n:>7}  {errors:>7}  {100 * errors / n:>7.1f}"
            )
        lines.extend(self._bus_lines())
        if self._rows:
            total, errors = sum(self._rows.values()), sum(self._errors.values())
            lines.append(f"  total: {total} rows, {errors} error rows")
        if self._streams:
            lines.append(
                f"  windows: {self._streams['windows']} window rows, "
                f"{self._streams['late']} late samples (kept in the raw rows)"
            )
        # One write, so summaries of workers sharing stdout do not interleave.
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()


@dataclass(frozen=True)
class IntoSummary(DynamicSink[Item]):
    """Counts Samples per device, TickStats per bus (and tagged window and late rows) and
    prints a summary when the run ends, one per worker.

    Without TickStats for a bus, its ticks and late ticks are counted from its samples.
    """

    out: TextIO | None = None  # None: sys.stdout as it is when the run starts

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SummaryPartition:
        return _SummaryPartition(self.out or sys.stdout, worker_index, worker_count)
