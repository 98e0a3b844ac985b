"""Poll groups (connectors.groups): every tick, every N ticks with a phase, once per
connection; a parameter not due gives no request and no row."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest

from connectors.bus import Bus, Device
from connectors.groups import poll_groups, ticks_of
from connectors.registers import load_profile
from connectors.sim import BusSimulator, SimulatedDevice
from tests.conftest import poll_bus, sim_bus

PM = load_profile("watlow_pm")
RATE_HZ = 10


def grouped(
    bus: Bus, every: dict[str, float | str], device_every: float | str | None = None
) -> Bus:
    (device,) = bus.devices
    params = tuple(
        dataclasses.replace(p, every_s=every[p.name]) if p.name in every else p
        for p in device.parameters
    )
    device = dataclasses.replace(device, parameters=params, every_s=device_every)
    return dataclasses.replace(bus, devices=(device,))


def counts(ticks: list) -> list[Counter[str]]:
    return [Counter(s.parameter for s in samples) for samples, _ in ticks]


def test_ticks_of() -> None:
    assert ticks_of(0.2, 10) == 2 and ticks_of(1, 10) == 10 and ticks_of(3.0, 1) == 3
    assert ticks_of(0.25, 10) is None and ticks_of(0.05, 10) is None


def test_groups_their_periods_and_phases() -> None:
    params = tuple(
        dataclasses.replace(p, every_s={"set_point": 2.0, "display_units": "connect"}.get(p.name))
        for p in PM.parameters
    )
    device = Device(name="pm", address=1, parameters=params, describe=PM.describe)
    groups = poll_groups(device, 1.0)
    assert [g.every for g in groups] == [None, 1, 2]  # connect first, then by period
    names = [{p.name for r in g.plan for p in r.parameters} for g in groups]
    assert names[0] == {"display_units"} and names[2] == {"set_point"}
    assert "set_point" not in names[1] and "analog_input_value" in names[1]
    slow = groups[2]
    assert [slow.due(t) for t in range(4)].count(True) == 2  # every other tick, a fixed phase
    # Another run (a resume after a crash, another process) reads it in the same ticks:
    # the phase comes from the device's name and the tick numbers are absolute.
    again = poll_groups(dataclasses.replace(device), 1.0)[2]
    assert [again.due(t) for t in range(10**9, 10**9 + 6)] == [
        slow.due(t) for t in range(10**9, 10**9 + 6)
    ]
    # The device's own every_s is the default of its parameters.
    every_other = poll_groups(dataclasses.replace(device, every_s=2.0, parameters=PM.parameters), 1)
    assert [g.every for g in every_other] == [2]
    with pytest.raises(ValueError, match="whole number of ticks"):
        poll_groups(dataclasses.replace(device, every_s=1.5, parameters=PM.parameters), 1.0)


@pytest.mark.parametrize("close", [False, True])
def test_one_row_per_parameter_per_due_tick(close: bool) -> None:
    """At 10 Hz for 6 ticks: the process value every tick, the set point every 0.2 s (every
    other tick), the units once (a hang-up after each tick is not a new connection)."""
    bus = sim_bus(
        "g", "tcp", [SimulatedDevice(address=1, profile="watlow_pm")],
        parameters={1: ["analog_input_value", "set_point", "display_units"]},
    )  # fmt: skip
    bus = dataclasses.replace(
        grouped(bus, {"set_point": 0.2, "display_units": "connect"}), close_after_tick=close
    )
    ticks = poll_bus(bus, rate_hz=RATE_HZ, ticks=6)
    assert all(s.error is None for samples, _ in ticks for s in samples)
    per_tick = counts(ticks)
    assert [c["analog_input_value"] for c in per_tick] == [1] * 6
    assert [c["display_units"] for c in per_tick] == [1, 0, 0, 0, 0, 0]
    set_points = [c["set_point"] for c in per_tick]
    assert set_points in ([1, 0] * 3, [0, 1] * 3), set_points
    # Nothing due was merged with what was not: a tick without the set point asks less.
    reads = [stats.reads for _, stats in ticks]
    assert max(reads[1:]) > min(reads[1:])


def test_the_connect_group_is_read_again_after_a_reconnect() -> None:
    bus = sim_bus(
        "g", "tcp", [SimulatedDevice(address=1, profile="watlow_pm")],
        parameters={1: ["analog_input_value", "display_units"]}, timeout_s=0.1,
    )  # fmt: skip
    bus = grouped(bus, {"display_units": "connect"})

    def outage(i: int, sim: BusSimulator) -> Any:
        return sim.stop() if i == 1 else sim.start() if i == 2 else None

    ticks = poll_bus(bus, rate_hz=RATE_HZ, ticks=12, on_tick=outage)
    units = [
        s for samples, _ in ticks for s in samples if s.parameter == "display_units" and not s.error
    ]
    assert len(units) == 2, counts(ticks)  # at the first connection and after the reconnect
