"""Prometheus metrics of the acquisition, read at scrape time from the workers' Figures.

:data:`COLLECTOR` is registered once in prometheus_client's default ``REGISTRY``, which
Bytewax's dataflow API server (``BYTEWAX_DATAFLOW_API_ENABLED=true``, port
``BYTEWAX_DATAFLOW_API_PORT``, default 3030) serves at ``/metrics`` next to its own metrics.
Nothing is done per sample: each summary partition adds its Figures here, and collect()
turns their counts into metric families when scraped.

Families: ``daq_polls_total`` and ``daq_errors_total`` (rows and error rows, per bus and
device; errors also per ``kind``, see flows.observe.figures.kind_name), ``daq_latency_seconds``
(histogram per bus and device of received_at - requested_at, to 0.1 ms below 100 ms),
``daq_ticks_total``, ``daq_late_ticks_total``, ``daq_bus_reads_total``,
``daq_bus_read_errors_total`` and ``daq_bus_up`` per bus. Per spooled sink partition
(labels ``sink``, its ``where``, and ``worker``), read from sinks.spooled.states():
``daq_sink_state`` (1 for its ``state`` label's state, 0 for the others),
``daq_sink_rows_written_total``, ``daq_sink_spooled_rows_total``, ``daq_sink_retries_total``,
``daq_sink_rows_spooled``, ``daq_sink_spool_bytes``, ``daq_sink_spool_peak_bytes``,
``daq_sink_oldest_spooled_seconds`` (0 when none waits) and ``daq_sink_drain_seconds`` (the
last outage, once one drained). They are served while a summary partition is open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import REGISTRY
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from flows.observe.figures import Figures, kind_name, sink_states
from sinks.spooled import SpoolState, states

__all__ = ["BUCKETS", "COLLECTOR", "SINK_STATES", "Collector"]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SINK_STATES = ("writing", "spooling", "failed", "closed")


class Collector:
    """A prometheus_client collector of every Figures added and not yet removed, and, while
    there is one, of the spooled sink partitions' states in ``spools()``."""

    def __init__(self, spools: Callable[[], Sequence[SpoolState]] = states) -> None:
        self._figures: list[Figures] = []
        self._registered = False
        self._spools = spools

    def add(self, figures: Figures) -> None:
        """Expose ``figures`` (registering this collector in REGISTRY the first time)."""
        if not self._registered:
            REGISTRY.register(self)
            self._registered = True
        self._figures.append(figures)

    def remove(self, figures: Figures) -> None:
        """Stop exposing ``figures`` (a closed partition's)."""
        self._figures = [f for f in self._figures if f is not figures]

    def describe(self) -> Iterator[Metric]:
        yield from self._families(())
        yield from _sink_families(())

    def collect(self) -> Iterator[Metric]:
        all_figures = tuple(self._figures)
        yield from self._families(all_figures)
        yield from _sink_families(sink_states(self._spools()) if all_figures else ())

    def _families(self, all_figures: tuple[Figures, ...]) -> Iterator[Metric]:
        polls = CounterMetricFamily("daq_polls", "Rows polled", labels=("bus", "device"))
        errors = CounterMetricFamily("daq_errors", "Error rows", labels=("bus", "device", "kind"))
        latency = HistogramMetricFamily(
            "daq_latency_seconds", "received_at - requested_at", labels=("bus", "device")
        )
        ticks = CounterMetricFamily("daq_ticks", "Ticks polled", labels=("bus",))
        late = CounterMetricFamily("daq_late_ticks", "Slots skipped", labels=("bus",))
        reads = CounterMetricFamily("daq_bus_reads", "Requests sent", labels=("bus",))
        failed = CounterMetricFamily("daq_bus_read_errors", "Requests failed", labels=("bus",))
        up = GaugeMetricFamily("daq_bus_up", "Last tick had a good read", labels=("bus",))
        for figures in all_figures:
            # The worker thread updates these while the server thread reads them: list() and
            # dict() copy under the GIL in one C call each, so no lock costs the worker.
            for d in list(figures.devices.values()):
                polls.add_metric((d.bus, d.device), d.rows)
                for kind, n in dict(d.kinds).items():
                    errors.add_metric((d.bus, d.device, kind_name(kind)), n)
                bins = sorted(dict(d.latency).items())
                cumulative, i, buckets = 0, 0, []
                for le in BUCKETS:
                    edge = round(le * 1e4)
                    while i < len(bins) and bins[i][0] < edge:
                        cumulative += bins[i][1]
                        i += 1
                    buckets.append((repr(le), cumulative))
                buckets.append(("+Inf", sum(n for _, n in bins)))
                latency.add_metric((d.bus, d.device), buckets, d.latency_sum)
            for name, b in list(figures.buses.items()):
                ticks.add_metric((name,), b.ticks)
                late.add_metric((name,), b.late)
                reads.add_metric((name,), b.reads)
                failed.add_metric((name,), b.errors)
                up.add_metric((name,), int(b.up))
        yield from (polls, errors, latency, ticks, late, reads, failed, up)


def _sink_families(sinks: Iterable[SpoolState]) -> Iterator[Metric]:
    labels = ("sink", "worker")
    state = GaugeMetricFamily(
        "daq_sink_state", "1 for the sink's current state", labels=(*labels, "state")
    )
    per_sink = {
        "rows_written": CounterMetricFamily(
            "daq_sink_rows_written", "Rows the backend committed", labels=labels
        ),
        "rows_spooled_total": CounterMetricFamily(
            "daq_sink_spooled_rows", "Rows that went through the spool", labels=labels
        ),
        "retries": CounterMetricFamily(
            "daq_sink_retries", "Backend attempts that failed", labels=labels
        ),
        "rows_spooled": GaugeMetricFamily(
            "daq_sink_rows_spooled", "Rows waiting in the spool", labels=labels
        ),
        "spool_bytes": GaugeMetricFamily(
            "daq_sink_spool_bytes", "Bytes waiting in the spool", labels=labels
        ),
        "peak_bytes": GaugeMetricFamily(
            "daq_sink_spool_peak_bytes", "The most bytes waiting at once", labels=labels
        ),
    }
    oldest = GaugeMetricFamily(
        "daq_sink_oldest_spooled_seconds", "Age of the oldest batch waiting", labels=labels
    )
    drain = GaugeMetricFamily(
        "daq_sink_drain_seconds",
        "Last outage: from its first spooled batch to the spool empty",
        labels=labels,
    )
    for s in sinks:
        key = (s.where, str(s.worker))
        for name in SINK_STATES:
            state.add_metric((*key, name), int(s.state == name))
        for field, family in per_sink.items():
            family.add_metric(key, getattr(s, field))
        oldest.add_metric(key, s.oldest_age_s or 0.0)
        if s.drain_s is not None:
            drain.add_metric(key, s.drain_s)
    yield from (state, *per_sink.values(), oldest, drain)


COLLECTOR = Collector()
