"""Event-time window statistics over acquisition rows: :func:`window_stats`.

Tumbling windows on ``midpoint_at`` per (device, parameter, instance), closed by Bytewax's
EventClock watermark, so a quiet device's last window still closes on wall-clock time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Any, NamedTuple

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators.windowing import (
    Clock,
    ClockLogic,
    EventClock,
    TumblingWindower,
    Windower,
    WindowerLogic,
    WindowMetadata,
    fold_window,
)

from sinks.base import Column, Schema

__all__ = ["WINDOW_SCHEMA", "WindowStreams", "window_stats"]

Row = dict[str, Any]

WINDOW_SCHEMA = Schema(
    columns=(
        Column("device", "text", nullable=False),
        Column("parameter", "text", nullable=False),
        Column("instance", "int", nullable=False),
        Column("unit", "text"),
        Column("window_start", "timestamp", nullable=False),
        Column("window_end", "timestamp", nullable=False),
        Column("count", "int", nullable=False),
        Column("error_count", "int", nullable=False),
        *(Column(name, "float") for name in ("mean", "min", "max", "first", "last")),
    ),
    key=("device", "parameter", "instance", "window_start"),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Floor for a requested wake-up: never ask Bytewax for an instant already past.
_MIN_WAIT = timedelta(milliseconds=10)


class WindowStreams(NamedTuple):
    """The two outputs of :func:`window_stats`."""

    rows: Stream[Row]
    """One window row (a dict in WINDOW_SCHEMA's column order) per key per closed window."""
    late: Stream[Row]
    """Input rows that arrived after their window had closed, unchanged."""


def window_stats(
    step_id: str,
    rows: Stream[Row],
    *,
    length: timedelta,
    lateness: timedelta = timedelta(0),
    align_to: datetime = _EPOCH,
) -> WindowStreams:
    """Tumbling event-time window statistics of acquisition rows (flows.rows.SAMPLE_SCHEMA).

    Windows are ``length`` long, aligned to ``align_to`` (an aware datetime), on each row's
    ``midpoint_at``, one set per (device, parameter, instance). Per key and window:

    - ``error_count``: rows with ``error`` set; they count nowhere else.
    - ``count``: rows without error, numeric or not.
    - ``mean``/``min``/``max``: over the numeric values (``value`` not None and not NaN) of
      those rows; ``first``/``last``: the numeric values with the smallest/largest
      ``midpoint_at``, whatever the arrival order. All None when there is no numeric value.
    - ``unit``: the non-None unit of the latest row (by ``midpoint_at``) that has one.
    - ``window_start``/``window_end``: the window's bounds in UTC, end exclusive.

    A window closes once the key's watermark passes its end: the largest ``midpoint_at`` seen
    for the key, less ``lateness``, plus the system time elapsed since it was seen. So a live
    window closes about ``lateness`` after its end even if its device goes quiet, and at the
    end of a finite input every open window closes. A row whose ``midpoint_at`` is below its
    key's watermark when it arrives is late: it goes to ``late`` and into no window.

    Raises ValueError for a ``length`` that is not positive, a negative ``lateness`` or a
    naive ``align_to``.
    """
    if length <= timedelta(0):
        raise ValueError(f"window length must be positive, got {length}")
    if lateness < timedelta(0):
        raise ValueError(f"window lateness must not be negative, got {lateness}")
    if align_to.tzinfo is None or align_to.utcoffset() is None:
        raise ValueError(f"window align_to must be timezone-aware, got {align_to.isoformat()}")
    out = _windows(step_id, rows, length, lateness, align_to)
    return WindowStreams(out.down, out.late)


@dataclass(frozen=True)
class _Out:
    down: Stream[Row]
    late: Stream[Row]


@operator
def _windows(
    step_id: str, up: Stream[Row], length: timedelta, lateness: timedelta, align_to: datetime
) -> _Out:
    keyed = op.key_on("key", up, _key)
    out = fold_window(
        "fold",
        keyed,
        _WallClock(lateness),
        _Kept(TumblingWindower(length, align_to)),
        _Stats,
        _fold,
        _merge,
        # The statistics do not depend on the order of the rows: no need to hold rows back
        # until the watermark passes them.
        ordered=False,
    )
    stats = op.map("stats_by_window", out.down, _by_window)
    metas = op.map("meta_by_window", out.meta, _by_window)
    joined = op.join("join_meta", stats, metas)
    return _Out(
        op.map("window_row", joined, _window_row),
        op.map("late_row", out.late, lambda key_wid_row: key_wid_row[1][1]),
    )


def _key(row: Row) -> str:
    return repr((row["device"], row["parameter"], row["instance"]))


def _by_window(item: tuple[str, tuple[int, Any]]) -> tuple[str, Any]:
    key, (window_id, value) = item
    return f"{key}@{window_id}", value


@dataclass(slots=True)
class _Stats:
    """Running statistics of one key in one window (the fold state)."""

    device: str | None = None
    parameter: str | None = None
    instance: int | None = None
    unit: str | None = None
    unit_at: datetime | None = None
    count: int = 0
    error_count: int = 0
    numeric: int = 0
    total: float = 0.0
    min: float | None = None
    max: float | None = None
    first: float | None = None
    first_at: datetime | None = None
    last: float | None = None
    last_at: datetime | None = None


def _fold(stats: _Stats, row: Row) -> _Stats:
    at = row["midpoint_at"]
    one = _Stats(row["device"], row["parameter"], row["instance"])
    if row["unit"] is not None:
        one.unit, one.unit_at = row["unit"], at
    value = row["value"]
    if row["error"] is not None:
        one.error_count = 1
    else:
        one.count = 1
        # NaN (a float32 fault pattern) would make min/max depend on arrival order.
        if value is not None and not math.isnan(value):
            value = float(value)
            one.numeric, one.total = 1, value
            one.min = one.max = one.first = one.last = value
            one.first_at = one.last_at = at
    return _merge(stats, one)


def _merge(into: _Stats, other: _Stats) -> _Stats:
    """Add ``other`` to ``into``; on equal timestamps ``other`` is taken as the later one."""
    if into.device is None:
        into.device, into.parameter, into.instance = other.device, other.parameter, other.instance
    if other.unit_at is not None and (into.unit_at is None or other.unit_at >= into.unit_at):
        into.unit, into.unit_at = other.unit, other.unit_at
    into.count += other.count
    into.error_count += other.error_count
    if not other.numeric:
        return into
    if not into.numeric:
        into.total, into.min, into.max = other.total, other.min, other.max
        into.first, into.first_at = other.first, other.first_at
        into.last, into.last_at = other.last, other.last_at
    else:
        into.total += other.total
        into.min = min(into.min, other.min)  # type: ignore[type-var]
        into.max = max(into.max, other.max)  # type: ignore[type-var]
        if other.first_at < into.first_at:  # type: ignore[operator]
            into.first, into.first_at = other.first, other.first_at
        if other.last_at >= into.last_at:  # type: ignore[operator]
            into.last, into.last_at = other.last, other.last_at
    into.numeric += other.numeric
    return into


def _window_row(item: tuple[str, tuple[_Stats, WindowMetadata]]) -> Row:
    _, (s, meta) = item
    return {
        "device": s.device,
        "parameter": s.parameter,
        "instance": s.instance,
        "unit": s.unit,
        "window_start": meta.open_time.astimezone(timezone.utc),
        "window_end": meta.close_time.astimezone(timezone.utc),
        "count": s.count,
        "error_count": s.error_count,
        "mean": s.total / s.numeric if s.numeric else None,
        "min": s.min,
        "max": s.max,
        "first": s.first,
        "last": s.last,
    }


class _WallClock(Clock[Row, Any]):
    """Bytewax's EventClock on ``midpoint_at``, waking when its watermark will pass a time."""

    def __init__(self, lateness: timedelta) -> None:
        self._event = EventClock(itemgetter("midpoint_at"), wait_for_system_duration=lateness)

    def build(self, resume_state: Any) -> _WallClockLogic:
        return _WallClockLogic(self._event.build(resume_state))


class _WallClockLogic(ClockLogic[Row, Any]):
    """EventClock's logic, with wake-up times that follow its watermark.

    EventClock's default wakes at a window's end read as system time, but its watermark only
    gets there ``lateness`` plus the read-to-processing lag later. A wake-up in the past makes
    Bytewax re-activate the step at once, again and again until then (bytewax issue 578). The
    watermark grows one for one with system time between rows, so the last (system time,
    watermark) seen tells when it passes a given time.
    """

    def __init__(self, inner: ClockLogic[Row, Any]) -> None:
        self._inner = inner
        self._seen_at: datetime | None = None
        self._watermark: datetime | None = None

    def before_batch(self) -> None:
        self._inner.before_batch()
        # Read after the inner clock's own reading: estimates err late, never early.
        self._seen_at = datetime.now(timezone.utc)

    def on_item(self, value: Row) -> tuple[datetime, datetime]:
        timestamp, self._watermark = self._inner.on_item(value)
        return timestamp, self._watermark

    def on_notify(self) -> datetime:
        self._watermark = self._inner.on_notify()
        self._seen_at = datetime.now(timezone.utc)
        return self._watermark

    def on_eof(self) -> datetime:
        return self._inner.on_eof()

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        if self._watermark is None or self._seen_at is None:
            self.on_notify()  # resumed from a snapshot: no reading yet
        floor = datetime.now(timezone.utc) + _MIN_WAIT
        try:
            return max(self._seen_at + (timestamp - self._watermark), floor)  # type: ignore[operator]
        except OverflowError:  # beyond year 9999: nothing to wake for
            return None

    def snapshot(self) -> Any:
        return self._inner.snapshot()


@dataclass
class _Kept(Windower[Any]):
    """A windower whose per-key state outlives the key's last open window.

    Bytewax drops a key's clock together with its last window. A row for that closed window
    would then find a fresh clock, reopen the window and emit a second row with the same key
    instead of coming out late. Keys are bounded by the config, so keeping them is cheap.
    """

    inner: Windower[Any]

    def build(self, resume_state: Any) -> _KeptLogic:
        return _KeptLogic(self.inner.build(resume_state))


class _KeptLogic(WindowerLogic[Any]):
    def __init__(self, inner: WindowerLogic[Any]) -> None:
        self._inner = inner

    def open_for(self, timestamp: datetime) -> Any:
        return self._inner.open_for(timestamp)

    def late_for(self, timestamp: datetime) -> Any:
        return self._inner.late_for(timestamp)

    def merged(self) -> Any:
        return self._inner.merged()

    def close_for(self, watermark: datetime) -> Any:
        return self._inner.close_for(watermark)

    def notify_at(self) -> datetime | None:
        return self._inner.notify_at()

    def is_empty(self) -> bool:
        return False

    def snapshot(self) -> Any:
        return self._inner.snapshot()
