"""Per-row cost of the summary partition (figures, status line, metrics) in write_batch.

Feeds batches of 10,000 Samples of 64 devices on 8 buses (1 in 20 an error row) and 8
TickStats per batch to IntoSummary's partition, with the status line due every batch, and
prints the microseconds per row; last line: the ratio to a bare loop over the same batch.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

# The project first: bench/ (this script's directory) holds a sinks.py of its own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.sample import ErrorKind, Sample, TickStats
from flows.observe.summary import IntoSummary

ROWS = 10_000


def batch() -> list[Sample | TickStats]:
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    items: list[Sample | TickStats] = []
    for i in range(ROWS):
        error = "timeout: no response" if i % 20 == 0 else None
        kind = ErrorKind.TIMEOUT if error else None
        s = Sample(
            bus=f"bus-{i % 8}", device=f"dev-{i % 64}", address=1, protocol="modbus-tcp",
            parameter="p", parameter_id=None, instance=1, value=None if error else 1.0,
            unit=None, requested_at=t, received_at=t + timedelta(microseconds=i % 5000),
            tick=i // 64, error=error, error_kind=kind,
        )  # fmt: skip
        items.append(s)
    for b in range(8):
        items.append(TickStats(f"bus-{b}", 0, t, 0.01, 0.001, 8, 8, 0, 0))
    return items


def best(fn: object, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    logging.getLogger("flows.status").addHandler(logging.NullHandler())
    items = batch()
    part = IntoSummary(io.StringIO(), status_s=0.0001).build("summary", 0, 1)
    cost = best(lambda: part.write_batch(items))
    part.close()

    def bare() -> None:
        for s in items:
            isinstance(s, Sample)

    floor = best(bare)
    print(f"write_batch: {cost / len(items) * 1e6:.2f} us/row")
    print(f"bare loop:   {floor / len(items) * 1e6:.2f} us/row")
    print(f"ratio: {cost / floor:.1f}")


if __name__ == "__main__":
    main()
