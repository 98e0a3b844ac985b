"""Example of composition: tag every acquisition row with the batch running on its device.

Batch (recipe) labels arrive on their own, independent stream, e.g. from a MES or an
operator's CSV file: ``device,batch,started_at``. They are joined per device with the rows,
so each row carries the batch that had started on its device at the row's ``midpoint_at``.
The tagged rows reach the same sinks as plain rows, with one more column, ``batch``.

Run it on the default config with a labels file::

    ACQUIRE_BATCHES=batches.csv python -m bytewax.run flows.batches
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import bytewax.operators as op
from bytewax.connectors.files import CSVSource
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source

from flows.acquire import acquire, command_line_config, stop_on_signals, to_rows, write
from flows.config import Config
from flows.rows import SAMPLE_SCHEMA
from sinks.base import Column, Schema

__all__ = ["TAGGED_SCHEMA", "BatchLabel", "build_batch_flow", "tag_with_batches"]

TAGGED_SCHEMA = Schema((*SAMPLE_SCHEMA.columns, Column("batch", "text")), key=SAMPLE_SCHEMA.key)


@dataclass(frozen=True, slots=True)
class BatchLabel:
    """Batch ``batch`` started on ``device`` at ``started_at`` (UTC)."""

    device: str
    batch: str
    started_at: datetime


def label_from_csv(line: dict[str, str]) -> BatchLabel:
    """A CSVSource line (``device,batch,started_at`` with an ISO 8601 time) as a BatchLabel."""
    return BatchLabel(line["device"], line["batch"], datetime.fromisoformat(line["started_at"]))


class _Batches:
    """Per device: the batches seen so far, by start time."""

    def __init__(self) -> None:
        self.starts: list[datetime] = []
        self.names: list[str] = []

    def add(self, label: BatchLabel) -> None:
        i = bisect.bisect(self.starts, label.started_at)
        self.starts.insert(i, label.started_at)
        self.names.insert(i, label.batch)

    def at(self, when: datetime) -> str | None:
        i = bisect.bisect(self.starts, when)
        return self.names[i - 1] if i else None


def _join(
    state: _Batches | None, item: tuple[str, Any]
) -> tuple[_Batches, Iterable[dict[str, Any]]]:
    batches = state or _Batches()
    kind, value = item
    if kind == "label":
        batches.add(value)
        return batches, ()
    return batches, ({**value, "batch": batches.at(value["midpoint_at"])},)


def tag_with_batches(
    rows: Stream[dict[str, Any]], labels: Stream[BatchLabel]
) -> Stream[dict[str, Any]]:
    """Rows with a ``batch`` column: the label that had started on the row's device at its
    ``midpoint_at`` (None before the first). A label arriving after rows it covers does not
    re-tag them."""
    keyed_rows = op.map("row_by_device", rows, lambda r: (r["device"], ("row", r)))
    keyed_labels = op.map("label_by_device", labels, lambda b: (b.device, ("label", b)))
    joined = op.stateful_flat_map(
        "join_batches", op.merge("rows_and_labels", keyed_rows, keyed_labels), _join
    )
    return op.map("drop_device_key", joined, lambda kv: kv[1])


def _label(item: BatchLabel | dict[str, str]) -> BatchLabel:
    return item if isinstance(item, BatchLabel) else label_from_csv(item)


def build_batch_flow(
    config: Config,
    labels: Source[BatchLabel] | Source[dict[str, str]],
    *,
    stop: threading.Event | None = None,
) -> Dataflow:
    """Acquisition rows tagged with the batch labels of ``labels`` (BatchLabels, or CSV lines
    as CSVSource gives them), written to the config's sinks with the ``batch`` column."""
    flow = Dataflow("acquire_batches")
    rows = to_rows(acquire(flow, config, stop=stop))
    label_stream = op.map("parse_label", op.input("batch_labels", flow, labels), _label)
    write(tag_with_batches(rows, label_stream), config.sinks, schema=TAGGED_SCHEMA)
    return flow


def __getattr__(name: str) -> Dataflow:
    if name != "flow":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    config = command_line_config()
    stop = threading.Event()
    stop_on_signals(stop)
    labels = CSVSource(os.environ.get("ACQUIRE_BATCHES", "batches.csv"))
    flow = build_batch_flow(config, labels, stop=stop)
    globals()["flow"] = flow
    return flow
