"""Devices that describe themselves, against the project's simulator set to either word order
and either unit (its ``word_order``/``units`` knobs), over TCP, RTU on a pty and in process; and
the description read of a dead device costing no more than the read it stands for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connectors import describe
from connectors.bus import Bus
from connectors.sample import ErrorKind
from connectors.sim import BusSimulator, SimulatedDevice
from connectors.transport import parse_bus_url
from flows.config import load_config
from tests.conftest import SIM_URLS, poll_bus, write_config
from tests.connectors.pmserver import by_name, pm_device

TEMPERATURES = ("analog_input_value", "analog_input_2", "set_point", "closed_loop_set_point")


def sim_pm(kind: str, **knobs: object) -> Bus:
    """A simulated bus with one self-described PM at unit 1, played with ``knobs``."""
    device = dataclasses.replace(
        pm_device(),
        simulation=SimulatedDevice(address=1, profile="watlow_pm", **knobs).simulation(),
    )
    return Bus(
        name="b", url=parse_bus_url(SIM_URLS[kind]), devices=(device,), timeout_s=0.1,
        simulate=True,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["tcp", "sim"])
def test_a_silent_device_costs_one_timeout_a_tick_description_or_not(kind: str) -> None:
    """The description read of a device that does not answer stands for its first read: its
    rows carry the timeout, the rest are not sent (as for a device that is not asked)."""
    bus = sim_pm(kind, dead=True)
    ticks = poll_bus(bus, rate_hz=4, ticks=2)
    # The first read of a tick is the one covering the units register (display_units, 2490).
    reads = bus.devices[0].reads
    first = next(r for r in reads if r.address <= 2490 < r.address + r.count).parameters
    for samples, stats in ticks:
        assert stats.reads == 1 and stats.errors == 1
        kinds = [s.error_kind for s in samples]
        rest = len(samples) - len(first)
        assert kinds == [ErrorKind.TIMEOUT] * len(first) + [ErrorKind.BACKOFF] * rest
        assert samples[0].parameter == first[0].name and samples[0].value is None
        assert samples[0].error == "timeout: no response"


@pytest.mark.parametrize("kind", ["tcp", "rtu", "sim"])
@pytest.mark.parametrize(("word_order", "units"), [("high_low", "F"), ("low_high", "C")])
def test_the_simulator_in_either_word_order_and_units(
    kind: str, word_order: str, units: str
) -> None:
    bus = sim_pm(kind, word_order=word_order, units=units, set_point=100.0)
    ticks = poll_bus(bus, rate_hz=10, ticks=3)
    unit = {"C": "degC", "F": "degF"}[units]
    for samples, _ in ticks:
        got = by_name(samples)
        assert all(s.error is None for s in samples), [s.error for s in samples]
        assert {got[n].unit for n in TEMPERATURES} == {unit}
        assert got["display_units"].text == units
        # The model's set point (degC) as the controller shows it, exactly.
        assert got["set_point"].value == {"C": 100.0, "F": 212.0}[units]
        assert got["set_point"].unit == unit
        assert 0 < got["analog_input_value"].value < 250


CONFIG = """
[[bus]]
name = "b"
url = "{url}"
simulate = true
timeout_s = 0.2

  [[bus.device]]
  name = "pm"
  profile = "watlow_pm"
  address = 1
  simulate = {{ word_order = "{word_order}", units = "{units}", set_point = 100.0 }}

    [bus.device.override.closed_loop_set_point]
    unit = "K"

[[sink]]
kind = "csv"
path = "out/x.csv"
"""


@pytest.mark.parametrize("kind", ["tcp", "sim"])
@pytest.mark.parametrize(("word_order", "units"), [("high_low", "F"), ("low_high", "C")])
def test_a_config_with_no_override_stores_what_the_simulated_pm_says(
    tmp_path: Path, kind: str, word_order: str, units: str
) -> None:
    """Through load_config: the device's description comes from its profile, the simulator
    plays the knobs, and only the overridden parameter keeps the config's unit."""
    text = CONFIG.format(url=SIM_URLS[kind], word_order=word_order, units=units)
    (bus,) = load_config(write_config(tmp_path, text)).buses
    ticks = poll_bus(bus, rate_hz=10, ticks=3)
    unit = {"C": "degC", "F": "degF"}[units]
    for samples, _ in ticks:
        got = by_name(samples)
        assert all(s.error is None for s in samples)
        assert got["set_point"].value == {"C": 100.0, "F": 212.0}[units]
        assert {got[n].unit for n in TEMPERATURES if n != "closed_loop_set_point"} == {unit}
        assert got["closed_loop_set_point"].unit == "K"  # the override wins
        assert got["closed_loop_set_point"].value == got["set_point"].value


@pytest.mark.parametrize("kind", ["tcp", "rtu+tcp"])  # a restarted pty would be a new one
def test_the_simulator_reset_while_away_is_asked_again(kind: str) -> None:
    """The simulated bus stops, its PM is set to High_Low and degF, and it comes back: the
    reconnect reads the description again and the values stay exact."""
    bus = sim_pm(kind, set_point=100.0)

    async def reset(i: int, sim: BusSimulator) -> None:
        if i == 2:
            await sim.stop()
            sim.set_fault(1, word_order="high_low", units="F")
            await sim.start()

    def on_tick(i: int, sim: BusSimulator) -> object:
        return reset(i, sim)

    ticks = poll_bus(bus, rate_hz=10, ticks=20, on_tick=on_tick)
    set_points = [(s.value, s.unit) for samples, _ in ticks for s in samples
                  if s.parameter == "set_point" and s.error is None]  # fmt: skip
    assert set_points[0] == (100.0, "degC") and set_points[-1] == (212.0, "degF")
    assert set(set_points) == {(100.0, "degC"), (212.0, "degF")}  # never a garbled one


def test_units_set_while_polling_follow_on_the_next_tick() -> None:
    bus = sim_pm("tcp", set_point=100.0)

    def to_fahrenheit(i: int, sim: BusSimulator) -> None:
        if i == 1:
            sim.set_fault(1, units="F")

    ticks = poll_bus(bus, rate_hz=10, ticks=6, on_tick=to_fahrenheit)
    pairs = [(by_name(s)["set_point"].value, by_name(s)["set_point"].unit) for s, _ in ticks]
    # The read covering the units register comes first in each tick: never 212 in degC.
    assert set(pairs) == {(100.0, "degC"), (212.0, "degF")}, pairs
    assert pairs[:2] == [(100.0, "degC")] * 2 and pairs[-1] == (212.0, "degF")


def test_a_word_order_changed_while_polling_is_followed_without_a_reconnect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The PM is set to High_Low at its panel while it is polled: the first value read in the
    old order decodes as garbage (100.0 as 2.4e-41), which is an error row, never a stored
    value, and makes the device be asked again; from the next tick on its values are exact in
    the new order, with no reconnect."""
    monkeypatch.setattr(describe, "RECHECK_S", 3600.0)  # the garbage alone triggers it
    bus = sim_pm("tcp", set_point=100.0)

    def to_high_low(i: int, sim: BusSimulator) -> None:
        if i == 2:
            sim.set_fault(1, word_order="high_low")

    ticks = poll_bus(bus, rate_hz=10, ticks=12, on_tick=to_high_low)
    set_points = [by_name(s)["set_point"] for s, _ in ticks]
    good = [s.value for s in set_points if s.error is None]
    assert good[:2] == [100.0, 100.0] and set_points[-1].value == 100.0
    assert set(good) == {100.0}, good
    bad = [s for s in set_points if s.error is not None]
    assert 1 <= len(bad) <= 2, bad
    assert all(s.error_kind is ErrorKind.BAD_RESPONSE for s in bad), bad
    assert bad[0].error == (
        "bad response: 2.39566e-41 in byte order CDAB, which the device said; asking it again"
    ), bad[0].error


def test_the_description_is_asked_again_every_recheck_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """While polling, the description read is sent again once RECHECK_S has passed."""
    monkeypatch.setattr(describe, "RECHECK_S", 0.25)
    bus = sim_pm("tcp", set_point=100.0)
    asked: list[int] = []

    def count(i: int, sim: BusSimulator) -> None:
        asked.append(sim.answered()[1, "holding", 2488, 3])

    poll_bus(bus, rate_hz=10, ticks=12, on_tick=count)
    # At connect, then about every 0.25 s of a 1.2 s run: 4 or 5 in all, not one a tick.
    assert 3 <= asked[-1] <= 6, asked
