"""The end-of-run summary counts rows, error rows and late ticks."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from connectors.sample import Sample
from flows.summary import IntoSummary


def sample(bus: str, device: str, tick: int, error: str | None = None) -> Sample:
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return Sample(
        bus=bus, device=device, address=1, protocol="modbus-tcp", parameter="p",
        parameter_id=None, instance=1, value=None if error else 1.0, unit=None,
        requested_at=t, received_at=t, tick=tick, error=error,
    )  # fmt: skip


def test_summary_counts_rows_errors_and_late_ticks() -> None:
    out = io.StringIO()
    part = IntoSummary(out).build("summary", 0, 1)
    part.write_batch([sample("a", "d1", 1), sample("a", "d2", 1, "timeout: no response")])
    part.write_batch([sample("a", "d1", 2), sample("a", "d2", 2)])
    part.write_batch([sample("a", "d1", 5), sample("b", "d3", 7)])
    part.close()
    part.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "run summary:"
    assert lines[2].split() == ["a/d1", "3", "0"]
    assert lines[3].split() == ["a/d2", "2", "1"]
    assert lines[4].split() == ["b/d3", "1", "0"]
    assert lines[5] == "  bus a: 3 ticks, 2 late"
    assert lines[6] == "  bus b: 1 ticks, 0 late"
    assert lines[7] == "  total: 6 rows, 1 error rows"
    assert len(lines) == 8


def test_worker_without_rows_prints_nothing() -> None:
    out = io.StringIO()
    part = IntoSummary(out).build("summary", 1, 2)
    part.close()
    assert out.getvalue() == ""
