"""Event-time window statistics: real Bytewax runs of flows.windows.window_stats."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.codec import Value
from connectors.sample import Sample
from flows.rows import SAMPLE_SCHEMA, to_row
from flows.windows import WINDOW_SCHEMA, window_stats
from sinks.memory import IntoMemory

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
TEN_S = timedelta(seconds=10)


def row(
    device: str,
    at_s: float,
    value: Value | None,
    *,
    parameter: str = "analog_input_value",
    instance: int = 1,
    unit: str | None = "C",
    error: str | None = None,
    t0: datetime = T0,
) -> dict[str, Any]:
    """An acquisition row whose midpoint_at is ``t0 + at_s`` (a read taking 20 ms)."""
    requested = t0 + timedelta(seconds=at_s) - timedelta(milliseconds=10)
    return to_row(
        Sample(
            bus="bus-1", device=device, address=1, protocol="modbus-tcp", parameter=parameter,
            parameter_id=None, instance=instance, value=None if error else value, unit=unit,
            requested_at=requested, received_at=requested + timedelta(milliseconds=20), tick=0,
            error=error,
        )
    )  # fmt: skip


def run(
    rows: Sequence[dict[str, Any]], **kwargs: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run window_stats over ``rows``; the window rows (through IntoMemory with WINDOW_SCHEMA,
    which rejects rows that break it) and the late rows."""
    flow = Dataflow("test_windows")
    streams = window_stats("windows", op.input("in", flow, TestingSource(rows)), **kwargs)
    windows = IntoMemory(schema=WINDOW_SCHEMA)
    late: list[dict[str, Any]] = []
    op.output("windows_out", streams.rows, windows)
    op.output("late_out", streams.late, TestingSink(late))
    run_main(flow)
    return windows.rows, late


def by_key(windows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    keyed = {(w["device"], w["parameter"], w["instance"], w["window_start"]): w for w in windows}
    assert len(keyed) == len(windows), "two window rows share a key"
    return keyed


def stats(w: dict[str, Any]) -> tuple[Any, ...]:
    return (w["count"], w["error_count"], w["mean"], w["min"], w["max"], w["first"], w["last"])


def test_statistics_per_key_and_window_whatever_the_arrival_order() -> None:
    pv1 = dict(parameter="analog_input_value", instance=1)
    pv2 = dict(parameter="analog_input_value", instance=2)
    rows = [
        row("pm-1", 8, 26.0, **pv1), row("pm-1", 2, 100.0, **pv2), row("pm-1", 1, 20.0, **pv1),
        row("pm-1", 5, 30.0, **pv1), row("pm-1", 11, 90.0, **pv2), row("pm-1", 3, 22.0, **pv1),
        row("pm-1", 19, 80.0, **pv2), row("pm-1", 12, 31.0, **pv1), row("pm-1", 14, 70.0, **pv2),
        row("pm-1", 15, 33.0, **pv1),
    ]  # fmt: skip
    windows, late = run(rows, length=TEN_S, lateness=TEN_S, align_to=T0)
    assert late == []
    got = by_key(windows)
    w1 = T0 + TEN_S
    assert set(got) == {
        ("pm-1", "analog_input_value", 1, T0),
        ("pm-1", "analog_input_value", 1, w1),
        ("pm-1", "analog_input_value", 2, T0),
        ("pm-1", "analog_input_value", 2, w1),
    }
    # Instance 1, window 0 arrived as 8, 1, 5, 3 s: first is the 1 s value, last the 8 s one.
    assert stats(got["pm-1", "analog_input_value", 1, T0]) == (4, 0, 24.5, 20.0, 30.0, 20.0, 26.0)
    assert stats(got["pm-1", "analog_input_value", 1, w1]) == (2, 0, 32.0, 31.0, 33.0, 31.0, 33.0)
    assert stats(got["pm-1", "analog_input_value", 2, T0]) == (
        1,
        0,
        100.0,
        100.0,
        100.0,
        100.0,
        100.0,
    )
    # Arrived as 11, 19, 14 s.
    assert stats(got["pm-1", "analog_input_value", 2, w1]) == (3, 0, 80.0, 70.0, 90.0, 90.0, 80.0)
    for (_, _, _, start), w in got.items():
        assert w["window_end"] == start + TEN_S
        assert w["window_start"].tzinfo == timezone.utc
        assert w["unit"] == "C"


def test_errors_and_text_values_stay_out_of_the_numeric_statistics() -> None:
    rows = [
        row("pm-1", 1, 10.0),
        row("pm-1", 2, None, error="timeout: no response"),
        row("pm-1", 3, 20.0),
        row("pm-1", 4, "O2"),  # a text value: counted, not averaged
        row("pm-1", 5, math.nan),  # a float32 fault pattern: counted, not averaged
        row("pm-1", 6, None, error="exception code 2"),
        row("pm-2", 1, None, error="timeout: no response"),
        row("pm-2", 7, None, error="timeout: no response"),
        row("gas-1", 2, "O2", parameter="measurement_1_name", unit=None),
        row("gas-1", 9, "O2", parameter="measurement_1_name", unit=None),
    ]
    windows, late = run(rows, length=TEN_S, align_to=T0)
    assert late == []
    got = by_key(windows)
    assert len(got) == 3
    pm1 = got["pm-1", "analog_input_value", 1, T0]
    assert stats(pm1) == (4, 2, 15.0, 10.0, 20.0, 10.0, 20.0)
    # A device that only timed out: no readings at all, and no statistics.
    pm2 = got["pm-2", "analog_input_value", 1, T0]
    assert stats(pm2) == (0, 2, None, None, None, None, None)
    assert pm2["unit"] == "C"
    gas = got["gas-1", "measurement_1_name", 1, T0]
    assert stats(gas) == (2, 0, None, None, None, None, None)
    assert gas["unit"] is None


def test_a_row_for_a_closed_window_comes_out_late_unchanged() -> None:
    lateness = timedelta(seconds=2)
    too_late = row("pm-1", 8, 8.0)
    rows = [
        row("pm-1", 1, 1.0),
        row("pm-1", 5, 5.0),
        row("pm-1", 13, 13.0),  # watermark 11 s: window [0 s, 10 s) closes
        row("pm-1", 11.5, 11.5),  # behind the newest row but within lateness: not late
        too_late,
        row("pm-2", 3, 3.0),  # each key has its own watermark: pm-2 is on time
    ]
    expected_late = copy.deepcopy(too_late)
    windows, late = run(rows, length=TEN_S, lateness=lateness, align_to=T0)
    assert late == [expected_late]
    got = by_key(windows)
    assert stats(got["pm-1", "analog_input_value", 1, T0]) == (2, 0, 3.0, 1.0, 5.0, 1.0, 5.0)
    w1 = got["pm-1", "analog_input_value", 1, T0 + TEN_S]
    assert stats(w1) == (2, 0, 12.25, 11.5, 13.0, 11.5, 13.0)
    assert stats(got["pm-2", "analog_input_value", 1, T0]) == (1, 0, 3.0, 3.0, 3.0, 3.0, 3.0)
    assert len(got) == 3


def test_window_rows_follow_the_window_schema() -> None:
    assert WINDOW_SCHEMA.names == (
        "device", "parameter", "instance", "unit", "window_start", "window_end", "count",
        "error_count", "mean", "min", "max", "first", "last",
    )  # fmt: skip
    assert WINDOW_SCHEMA.key == ("device", "parameter", "instance", "window_start")
    flow = Dataflow("test_windows_schema")
    rows = [row("pm-1", 1, 1.0), row("pm-1", 2, None, error="timeout"), row("pm-1", 12, 2.0)]
    streams = window_stats("windows", op.input("in", flow, TestingSource(rows)), length=TEN_S)
    raw: list[dict[str, Any]] = []
    memory = IntoMemory(schema=WINDOW_SCHEMA)
    op.output("raw", streams.rows, TestingSink(raw))
    op.output("memory", streams.rows, memory)
    run_main(flow)
    assert len(raw) == 2
    assert all(tuple(w) == WINDOW_SCHEMA.names for w in raw)
    assert sorted(memory.rows, key=lambda w: w["window_start"]) == sorted(
        raw, key=lambda w: w["window_start"]
    )


def test_the_input_rows_schema_is_the_acquisition_schema() -> None:
    assert tuple(row("pm-1", 1, 1.0)) == SAMPLE_SCHEMA.names


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(length=timedelta(0)), "length must be positive"),
        (dict(length=TEN_S, lateness=timedelta(seconds=-1)), "lateness must not be negative"),
        (dict(length=TEN_S, align_to=datetime(2024, 1, 1)), "align_to must be timezone-aware"),
    ],
)
def test_bad_parameters_raise_value_error(kwargs: dict[str, Any], message: str) -> None:
    flow = Dataflow("test_windows_bad")
    with pytest.raises(ValueError, match=message):
        window_stats("windows", op.input("in", flow, TestingSource([])), **kwargs)


class _QuietDevice(StatelessSourcePartition[dict[str, Any]]):
    """Rows stamped with the wall clock: devices A and B, then only B (A stopped answering).

    Once A's last window row has reached ``windows`` the source sends one more A row, stamped
    inside that closed window, then ends a little later. It ends anyway after ``give_up``.
    """

    TICK = timedelta(milliseconds=20)

    def __init__(self, windows: list[dict[str, Any]], length: timedelta) -> None:
        self.windows = windows
        self.length = length
        self.start = datetime.now(timezone.utc)
        self.give_up = self.start + timedelta(seconds=3)
        self.a_stops = self.start + timedelta(milliseconds=300)
        self.last_a: datetime | None = None
        self.a_window_start: datetime | None = None
        self.seen_at: datetime | None = None
        self.late_row: dict[str, Any] | None = None
        self.end_at: datetime | None = None
        self.wake = self.start

    def next_batch(self) -> list[dict[str, Any]]:
        now = datetime.now(timezone.utc)
        self.wake = now + self.TICK
        if now >= self.give_up or (self.end_at is not None and now >= self.end_at):
            raise StopIteration
        batch = [row("pm-b", 0, 1.0, t0=now)]
        if now < self.a_stops:
            batch.append(row("pm-a", 0, 2.0, t0=now))
            self.last_a = now
            since = now - datetime(1970, 1, 1, tzinfo=timezone.utc)
            self.a_window_start = now - since % self.length
        elif self.seen_at is None and any(
            w["device"] == "pm-a" and w["window_start"] == self.a_window_start for w in self.windows
        ):
            self.seen_at = now
            assert self.last_a is not None
            self.late_row = row("pm-a", 0, 99.0, t0=self.last_a)
            batch.append(self.late_row)
            self.end_at = now + timedelta(milliseconds=200)
        return batch

    def next_awake(self) -> datetime:
        return self.wake


class _Once(DynamicSource[dict[str, Any]]):
    def __init__(self, part: _QuietDevice) -> None:
        self.part = part

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _QuietDevice:
        return self.part


def test_a_quiet_devices_last_window_closes_on_wall_clock_time_while_input_is_open() -> None:
    length = timedelta(milliseconds=200)
    lateness = timedelta(milliseconds=300)
    windows = IntoMemory(schema=WINDOW_SCHEMA)
    source = _QuietDevice(windows.rows, length)
    flow = Dataflow("test_windows_live")
    streams = window_stats("windows", op.input("in", flow, _Once(source)), length=length,
                           lateness=lateness)  # fmt: skip
    late: list[dict[str, Any]] = []
    op.output("windows_out", streams.rows, windows)
    op.output("late_out", streams.late, TestingSink(late))
    wall, cpu = time.monotonic(), time.process_time()
    run_main(flow)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu

    assert source.seen_at is not None, "A's last window was only emitted at the end of input"
    assert source.a_window_start is not None
    # The watermark passes the window's end `lateness` after it; allow for a loaded machine.
    closed_after = source.seen_at - (source.a_window_start + length)
    assert lateness <= closed_after + _QuietDevice.TICK
    assert closed_after < lateness + timedelta(milliseconds=700)
    # A row for A's closed window, even after A went quiet, is late, and reopens nothing.
    assert late == [source.late_row]
    a_windows = by_key([w for w in windows.rows if w["device"] == "pm-a"])
    assert all(w["max"] == 2.0 for w in a_windows.values())
    # B kept windows coming; nothing spun while waiting for watermarks (bytewax issue 578).
    assert sum(w["device"] == "pm-b" for w in windows.rows) >= 3
    assert cpu < 0.5 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s"
