"""What one worker's Samples and TickStats add up to, per bus and per device, in memory that
does not grow with the run: the one place the summary, the status line, the metrics and the
status page read.

Updated once per batch by :meth:`Figures.add` (a few attribute and dict operations per
sample); read by the status line, the end-of-run summary and, from their servers' threads,
by flows.observe.metrics and flows.observe.page. The sinks' figures are not counted here:
each spooled sink partition keeps its own (sinks.spooled.states()), and :func:`sink_states`
picks them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from connectors.sample import ErrorKind, Sample, TickStats
from sinks.spooled import SpoolState

__all__ = [
    "NOT_SENT",
    "BusFigures",
    "DeviceFigures",
    "Figures",
    "counted_percentile",
    "kind_name",
    "sink_states",
]

# Error kinds whose rows sent no request, so they have no latency.
NOT_SENT = frozenset({ErrorKind.BACKOFF, ErrorKind.CONNECTION_FAILED})


def kind_name(kind: ErrorKind | None) -> str:
    """The name an error row's kind is counted under (the metrics' ``kind`` label): the
    kind's value (``timeout``, ``exception``, ``backoff``, ...), ``unknown`` for a row
    journaled before rows had kinds."""
    return "unknown" if kind is None else kind.value


def latency_key(latency_s: float) -> int:
    """``latency_s`` floored to its bin, in units of 0.1 ms: 0.1 ms bins below 100 ms, 1 ms
    bins below 1 s, 10 ms below 10 s, 100 ms above; at most about 3000 bins per device."""
    if latency_s < 0.1:
        return max(0, int(latency_s * 1e4))
    if latency_s < 1:
        return int(latency_s * 1e3) * 10
    if latency_s < 10:
        return int(latency_s * 1e2) * 100
    return int(latency_s * 10) * 1000


def counted_percentile(counts: Counter[Any], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of the values counted in ``counts``
    (value -> how many times), NaN when empty."""
    rank = max(1, math.ceil(q / 100 * sum(counts.values())))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return float(value)
    return math.nan


def sink_states(states: Iterable[SpoolState], worker: int | None = None) -> list[SpoolState]:
    """The state of each spooled sink partition in ``states`` (of ``worker`` only, when
    given), one per sink and worker, in the order they were opened: a later state of the
    same ``where`` and worker (the flow built again in one process) replaces the earlier."""
    latest: dict[tuple[str, int], SpoolState] = {}
    for s in states:
        if worker is None or s.worker == worker:
            latest[(s.where, s.worker)] = s
    return list(latest.values())


def _bucket(duration_s: float) -> float:
    """``duration_s`` to 0.1 ms below 100 ms, else to 3 significant digits."""
    return round(duration_s, 4) if duration_s < 0.1 else float(f"{duration_s:.3g}")


class DeviceFigures:
    """One device's rows, error rows (by kind), last error, last values and latency bins.

    ``kinds`` counts error rows by kind (None: journaled before rows had kinds).
    ``last_error`` is the text of its last failed request (a row not sent, such as a
    backoff row, only until there is one), ``last_kind`` its kind and ``error_at`` when it
    came; ``latency`` counts the rows of requests sent (not those of a kind in
    :data:`NOT_SENT`). ``last`` holds the last Sample with a value of each parameter (a
    device has one instance), for the status page: a reference, nothing is copied per row.
    """

    __slots__ = ("address", "answering", "bus", "device", "error_at", "errors", "kinds")
    __slots__ += ("last", "last_error", "last_kind", "latency", "latency_sum", "rows")

    def __init__(self, bus: str, device: str, address: int = 0) -> None:
        self.bus, self.device, self.address = bus, device, address
        self.rows = 0
        self.errors = 0
        self.kinds: Counter[ErrorKind | None] = Counter()
        self.last_error: str | None = None
        self.last_kind: ErrorKind | None = None
        self.error_at: datetime | None = None
        self.last: dict[str, Sample] = {}
        self.answering = False  # its last row was not an error
        self.latency: Counter[int] = Counter()  # latency_key -> rows
        self.latency_sum = 0.0

    def latency_percentile(self, q: float) -> float:
        """The ``q`` percentile latency in seconds (to its bin's lower edge), NaN if none."""
        return counted_percentile(self.latency, q) / 1e4


class BusFigures:
    """What the TickStats of one bus add up to."""

    __slots__ = ("durations", "errors", "late", "max_drift", "reads", "ticks", "up")

    def __init__(self) -> None:
        self.ticks = 0
        self.late = 0
        self.reads = 0
        self.errors = 0
        # Counted per bucket: a list of every duration grew by about 120 bytes per bus and
        # tick, 0.5 GB a day for 64 buses at 1 Hz.
        self.durations: Counter[float] = Counter()
        self.max_drift = 0.0
        self.up = False  # its last tick had a read that did not fail

    def add(self, s: TickStats) -> None:
        self.ticks += 1
        self.late += s.late
        self.reads += s.reads
        self.errors += s.errors
        self.durations[_bucket(s.duration_s)] += 1
        self.max_drift = max(self.max_drift, s.drift_s)
        self.up = s.reads > s.errors


class Figures:
    """Per-device and per-bus figures of one worker, and the tagged window stream counts.

    ``devices`` is keyed by device name (unique across a config); ``buses`` holds the buses
    that sent TickStats; ``ticks`` the ticks seen of buses that sent only Samples.
    """

    def __init__(self) -> None:
        self.devices: dict[str, DeviceFigures] = {}
        self.buses: dict[str, BusFigures] = {}
        self.ticks: dict[str, set[int]] = {}
        self.streams: Counter[str] = Counter()

    def add(self, items: list[Any]) -> None:
        """Count a batch of Samples, TickStats and ``(stream, row)`` tuples."""
        devices = self.devices
        for s in items:
            if isinstance(s, Sample):
                if s.bus not in self.buses:  # else its TickStats count its ticks
                    self.ticks.setdefault(s.bus, set()).add(s.tick)
                d = devices.get(s.device)
                if d is None:
                    d = devices[s.device] = DeviceFigures(s.bus, s.device, s.address)
                d.rows += 1
                error = s.error
                if error is None:
                    d.answering = True
                    d.last[s.parameter] = s  # one instance per device
                    lat = (s.received_at - s.requested_at).total_seconds()
                else:
                    d.answering = False
                    d.errors += 1
                    kind = s.error_kind
                    d.kinds[kind] += 1
                    if kind in NOT_SENT:
                        # "backoff: not sent ..." says less than the failure behind it.
                        if d.last_error is None:
                            d.last_error, d.last_kind, d.error_at = error, kind, s.received_at
                        continue
                    d.last_error, d.last_kind, d.error_at = error, kind, s.received_at
                    lat = (s.received_at - s.requested_at).total_seconds()
                d.latency[latency_key(lat)] += 1
                d.latency_sum += lat
            elif isinstance(s, TickStats):
                self.ticks.pop(s.bus, None)  # a set of every tick would grow with the run
                bus = self.buses.get(s.bus)
                if bus is None:
                    bus = self.buses[s.bus] = BusFigures()
                bus.add(s)
            else:
                self.streams[s[0]] += 1

    def bus_names(self) -> list[str]:
        """Every bus seen, sorted."""
        return sorted({d.bus for d in self.devices.values()} | set(self.buses) | set(self.ticks))

    def bus_late(self, bus: str) -> int:
        """The late ticks of ``bus``: from its TickStats, else from the gaps in its ticks."""
        figures = self.buses.get(bus)
        if figures is not None:
            return figures.late
        ticks = self.ticks.get(bus)
        return max(ticks) - min(ticks) + 1 - len(ticks) if ticks else 0
