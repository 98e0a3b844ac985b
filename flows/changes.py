"""Report by exception: of the acquisition rows, those that say something new.

A row of a parameter passes into the ``changes`` stream when its value moved beyond the
parameter's deadband since the last row that passed (``deadband``: absolute; ``deadband_pct``:
percent of that last value's magnitude; neither: any change), when its error state changed (a
value after an error row, or an error row after a value), or when ``heartbeat_s`` has passed
since the last row that passed (by the rows' ``requested_at``, so a quiet value still proves
its device alive). The first row of a parameter always passes. A text value passes when its
text changed.

The last row passed per (device, parameter, instance) is Bytewax state, kept per device: a
run resumed after a crash neither sends every row again nor leaves a gap longer than the
heartbeat, and every row of one device leaves this step on one worker (a Sparkplug B sink's
edge node births each device it publishes, so one device must not span two of them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream

__all__ = ["Deadband", "changes", "passes"]


@dataclass(frozen=True, slots=True)
class Deadband:
    """One parameter's report-by-exception settings (all None: any change passes)."""

    absolute: float | None = None
    percent: float | None = None
    heartbeat_s: float | None = None


@dataclass(frozen=True, slots=True)
class _Sent:
    """What the last row that passed said."""

    value: float | None
    text: str | None
    failed: bool
    at: datetime


def _moved(band: Deadband, last: _Sent, value: float | None, text: str | None) -> bool:
    if value is None or last.value is None:
        return value != last.value or text != last.text
    step = abs(value - last.value)
    if band.absolute is not None:
        return step > band.absolute
    if band.percent is not None:
        return step > band.percent / 100 * abs(last.value)
    return value != last.value or text != last.text


def passes(band: Deadband, last: _Sent | None, row: Mapping[str, Any]) -> bool:
    """Whether ``row`` goes into the changes stream after ``last`` (None: nothing yet)."""
    if last is None:
        return True
    failed = row["error"] is not None
    if failed != last.failed:
        return True
    quiet_s = (row["requested_at"] - last.at).total_seconds()
    if band.heartbeat_s is not None and quiet_s >= band.heartbeat_s:
        return True
    return not failed and _moved(band, last, row["value"], row["value_text"])


def changes(
    rows: Stream[dict[str, Any]], bands: Mapping[tuple[str, str], Deadband]
) -> Stream[dict[str, Any]]:
    """The rows of ``rows`` that pass their parameter's deadband (``bands`` by (device,
    parameter); a parameter without an entry passes on any change)."""
    default = Deadband()

    Sent = dict[tuple[str, int], _Sent]  # the device's last row passed per (parameter, instance)

    def step(sent: Sent | None, row: dict[str, Any]) -> tuple[Sent, dict[str, Any] | None]:
        sent = {} if sent is None else sent
        band = bands.get((row["device"], row["parameter"]), default)
        at = (row["parameter"], row["instance"])
        if not passes(band, sent.get(at), row):
            return sent, None
        sent[at] = _Sent(
            row["value"], row["value_text"], row["error"] is not None, row["requested_at"]
        )
        return sent, row

    keyed = op.key_on("changes_key", rows, lambda row: row["device"])
    # Not "changes", the id of the per-parameter state of earlier versions: a store that
    # holds that is not read as this.
    kept = op.stateful_map("changes_by_device", keyed, step)
    return op.filter_map("changes_kept", kept, lambda kv: kv[1])
