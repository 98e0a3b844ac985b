"""The field's workarounds for real devices, against simulated ones: the step-down of merged
reads a device does not answer, max_registers, one request per parameter, a pause after
connecting and a hang-up after every tick."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

import pytest

from connectors.bus import Bus, Device
from connectors.registers import load_profile
from connectors.sim import SimulatedDevice
from tests.conftest import poll_bus, sim_bus

STEP = "reading it in smaller pieces from now on"


def with_devices(bus: Bus, **fields: object) -> Bus:
    devices = tuple(dataclasses.replace(d, **fields) for d in bus.devices)  # type: ignore[arg-type]
    return dataclasses.replace(bus, devices=devices)


def rows_per_tick(ticks: list) -> list[Counter[str]]:
    return [Counter(s.parameter for s in samples) for samples, _ in ticks]


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
def test_a_device_that_ignores_long_reads_is_read_after_the_step_down(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The Servomex profile's contiguous registers merge into reads of up to 56 registers;
    the device answers none longer than 8 (a timeout, not exception 2). Every parameter gets
    its value in every tick, the first included, and the log says so once."""
    device = SimulatedDevice(address=1, profile="servomex_4100", max_read=8)
    bus = with_devices(sim_bus("s", kind, [device], timeout_s=0.1), max_gap=0)
    assert max(r.count for r in bus.devices[0].reads) > 8
    names = {p.name for p in bus.devices[0].parameters}
    with caplog.at_level(logging.INFO, logger="connectors.poller"):
        ticks = poll_bus(bus, rate_hz=2, ticks=3)
    for samples, _ in ticks:
        assert Counter(s.parameter for s in samples) == Counter(names)  # one row each
        assert [s for s in samples if s.error is not None] == []
    assert sum(STEP in r.message for r in caplog.records) == 1, caplog.text
    # After the first tick the plan holds the smaller reads only: no timeout any more.
    first, later = ticks[0][1], ticks[-1][1]
    assert first.errors > 0 and later.errors == 0 and later.reads > len(bus.devices[0].reads)


@pytest.mark.parametrize("kind", ["rtu", "ascii"])
def test_a_device_that_garbles_long_reads_is_read_after_the_step_down(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As above, but the device answers a read longer than 8 registers with a frame whose
    check is wrong (a bad frame) instead of keeping silent."""
    device = SimulatedDevice(address=1, profile="servomex_4100", max_read=8, garbage=True)
    bus = with_devices(sim_bus("s", kind, [device], timeout_s=0.1), max_gap=0)
    with caplog.at_level(logging.INFO, logger="connectors.poller"):
        ticks = poll_bus(bus, rate_hz=2, ticks=2)
    assert all(s.error is None for samples, _ in ticks for s in samples)
    assert ticks[0][1].errors > 0 and ticks[-1][1].errors == 0
    assert sum(STEP in r.message for r in caplog.records) == 1, caplog.text


def test_a_silent_device_is_not_stepped_down(caplog: pytest.LogCaptureFixture) -> None:
    bus = sim_bus("s", "tcp", [SimulatedDevice(address=1, profile="servomex_4100", dead=True)])
    bus = dataclasses.replace(bus, timeout_s=0.05)
    names = {p.name for p in bus.devices[0].parameters}
    with caplog.at_level(logging.INFO, logger="connectors.poller"):
        ticks = poll_bus(bus, rate_hz=5, ticks=2)
    for counts in rows_per_tick(ticks):
        assert counts == Counter(names)
    assert STEP not in caplog.text
    assert ticks[1][1].reads == 1  # one timeout, the rest skipped: as without step_down


def test_step_down_off_leaves_a_long_read_failing() -> None:
    device = SimulatedDevice(address=1, profile="servomex_4100", max_read=8)
    bus = with_devices(sim_bus("s", "tcp", [device], timeout_s=0.05), step_down=False, max_gap=0)
    ticks = poll_bus(bus, rate_hz=5, ticks=2)
    assert all(s.error is not None for samples, _ in ticks for s in samples)


def test_max_registers_and_one_request_per_parameter_shape_the_plan() -> None:
    params = load_profile("servomex_4100").parameters
    plain = Device(name="a", address=1, parameters=params)
    capped = Device(name="b", address=1, parameters=params, max_registers=8)
    single = Device(name="c", address=1, parameters=params, one_request_per_parameter=True)
    assert max(r.count for r in plain.reads) > 8
    assert max(r.count for r in capped.reads) <= 8
    assert {p for r in capped.reads for p in r.parameters} == set(params)
    assert [len(r.parameters) for r in single.reads] == [1] * len(set(params))


def test_max_registers_is_what_the_device_answers(caplog: pytest.LogCaptureFixture) -> None:
    device = SimulatedDevice(address=1, profile="servomex_4100", max_read=8)
    bus = with_devices(sim_bus("s", "tcp", [device], timeout_s=0.1), max_registers=8, max_gap=0)
    with caplog.at_level(logging.INFO, logger="connectors.poller"):
        ticks = poll_bus(bus, rate_hz=5, ticks=2)
    assert all(s.error is None for samples, _ in ticks for s in samples)
    assert STEP not in caplog.text and ticks[0][1].errors == 0


@pytest.mark.parametrize("close", [False, True])
def test_a_pause_after_connecting_and_a_hang_up_after_each_tick(close: bool) -> None:
    device = SimulatedDevice(address=1, profile="watlow_pm")
    bus = dataclasses.replace(
        sim_bus("w", "tcp", [device]), pause_after_connect_s=0.08, close_after_tick=close
    )
    ticks = poll_bus(bus, rate_hz=4, ticks=3)
    assert all(s.error is None for samples, _ in ticks for s in samples)
    paused = [stats.duration_s >= 0.08 for _, stats in ticks]
    # Connecting (and so the pause) comes with the first tick, and with every tick after a
    # hang-up.
    assert paused == [True, close, close]
