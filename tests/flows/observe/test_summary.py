"""The end-of-run summary counts rows, error rows and late ticks, and sums up the bus
statistics: tick duration percentiles, drift, late ticks and error rates."""

from __future__ import annotations

import io
import math

from connectors.sample import Sample, TickStats
from flows.observe.summary import IntoSummary, percentile
from tests.conftest import make_sample, make_stats


def sample(bus: str, device: str, tick: int, error: str | None = None) -> Sample:
    return make_sample(bus=bus, device=device, tick=tick, value=None if error else 1.0, error=error)


def test_summary_counts_rows_errors_and_late_ticks() -> None:
    out = io.StringIO()
    part = IntoSummary(out, spools=list).build("summary", 0, 1)
    part.write_batch([sample("a", "d1", 1), sample("a", "d2", 1, "timeout: no response")])
    part.write_batch([sample("a", "d1", 2), sample("a", "d2", 2)])
    part.write_batch([sample("a", "d1", 5), sample("b", "d3", 7)])
    part.close()
    part.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "run summary:"
    assert lines[1].split() == [
        "bus/device", "rows", "errors", "error", "%", "late", "p50", "ms", "p99", "ms"
    ]  # fmt: skip
    assert lines[2].split() == ["a/d1", "3", "0", "0.0", "2", "0.0", "0.0"]
    assert lines[3].split() == ["a/d2", "2", "1", "50.0", "2", "0.0", "0.0"]
    assert lines[4].split() == ["b/d3", "1", "0", "0.0", "0", "0.0", "0.0"]
    assert lines[5] == "  bus a: 3 ticks, 2 late"
    assert lines[6] == "  bus b: 1 ticks, 0 late"
    assert lines[7] == "  total: 6 rows, 1 error rows"
    assert len(lines) == 8


def test_worker_without_rows_prints_nothing() -> None:
    out = io.StringIO()
    part = IntoSummary(out, spools=list).build("summary", 1, 2)
    part.close()
    assert out.getvalue() == ""


def tick_stats(
    bus: str, tick: int, duration_ms: float, drift_ms: float, late: int = 0
) -> TickStats:
    return make_stats(
        bus=bus, tick=tick, duration_s=duration_ms / 1000, drift_s=drift_ms / 1000,
        errors=tick % 2, late=late,
    )  # fmt: skip


def test_summary_prints_bus_statistics() -> None:
    out = io.StringIO()
    part = IntoSummary(out, spools=list).build("summary", 0, 1)
    # 100 ticks of bus a lasting 1..100 ms: p50 = 50 ms, p99 = 99 ms; one overran by 3 slots.
    stats = [
        tick_stats("a", t, t, drift_ms=t / 10, late=3 if t == 40 else 0) for t in range(1, 101)
    ]
    part.write_batch([sample("a", "d1", 1), sample("a", "d2", 1, "timeout: no response")])
    part.write_batch(stats)
    part.write_batch([sample("b", "d3", 7)])  # bus b: samples only, counted as before
    part.close()
    lines = out.getvalue().splitlines()
    assert lines[2].split() == ["a/d1", "1", "0", "0.0", "3", "0.0", "0.0"]
    assert lines[3].split() == ["a/d2", "1", "1", "100.0", "3", "0.0", "0.0"]
    assert lines[5] == (
        "  bus a: 100 ticks, 3 late; tick p50 50.0 ms, p99 99.0 ms, max drift 10.0 ms; "
        "200 reads, 50 failed"
    )
    assert lines[6] == "  bus b: 1 ticks, 0 late"
    assert lines[7] == "  total: 3 rows, 1 error rows"


def test_percentile_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0
    assert percentile([5.0], 1) == 5.0
    assert math.isnan(percentile([], 50))
