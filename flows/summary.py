"""The end-of-run summary: samples and error samples per device, late ticks per bus, and
(with windows) the window rows and the late samples."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, TextIO

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.sample import Sample

__all__ = ["IntoSummary"]


# What the summary takes: Samples, and ("windows" | "late", row) for the window streams.
Item = Sample | tuple[str, Any]


class _SummaryPartition(StatelessSinkPartition[Item]):
    def __init__(self, out: TextIO, worker_index: int, worker_count: int) -> None:
        self._out = out
        self._label = f" (worker {worker_index + 1}/{worker_count})" if worker_count > 1 else ""
        self._rows: Counter[tuple[str, str]] = Counter()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._ticks: dict[str, set[int]] = {}
        self._streams: Counter[str] = Counter()
        self._closed = False

    def write_batch(self, items: list[Item]) -> None:
        for s in items:
            if isinstance(s, tuple):
                self._streams[s[0]] += 1
                continue
            key = (s.bus, s.device)
            self._rows[key] += 1
            if s.error is not None:
                self._errors[key] += 1
            self._ticks.setdefault(s.bus, set()).add(s.tick)

    def close(self) -> None:
        if self._closed or not (self._rows or self._streams):
            self._closed = True
            return
        self._closed = True
        lines = [f"run summary{self._label}:"]
        width = max((len(f"{b}/{d}") for b, d in self._rows), default=10)
        if self._rows:
            lines.append(f"  {'bus/device':<{width}}  {'rows':>7}  {'errors':>7}")
        for (bus, device), n in sorted(self._rows.items()):
            lines.append(
                f"  {bus + '/' + device:<{width}}  {n:>7}  {self._errors[(bus, device)]:>7}"
            )
        for bus, ticks in sorted(self._ticks.items()):
            late = max(ticks) - min(ticks) + 1 - len(ticks)
            lines.append(f"  bus {bus}: {len(ticks)} ticks, {late} late")
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
    """Counts samples per device (and tagged window and late rows) and prints a summary when
    the run ends, one per worker."""

    out: TextIO | None = None  # None: sys.stdout as it is when the run starts

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SummaryPartition:
        return _SummaryPartition(self.out or sys.stdout, worker_index, worker_count)
