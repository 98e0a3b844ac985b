"""Devices that describe themselves (connectors.describe), read by a real BusPoller from a PM
served by a plain pymodbus server the test loads (tests/connectors/pmserver.py): both word
orders and both units at connect, an override winning, a reconnect asking again, units changed
while polling, unknown descriptions; values out of their range as error rows; the one warning
for implausible floats of a device that does not say its word order."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from connectors.describe import Describer, Description
from connectors.registers import ProfileError, load_profile
from connectors.sample import ErrorKind
from flows.rows import to_row
from tests.connectors.pmserver import PM, VALUES, PMServer, by_name, pm_device, poll

TEMPERATURES = ("analog_input_value", "analog_input_2", "set_point", "closed_loop_set_point")
WORD_ORDER = PM.describe[0]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings logged, but for a tick that overran (a loaded machine's, not the test's)."""
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [w for w in warned if " overran," not in w]


def test_the_pm_profile_describes_word_order_and_units_as_watlow_numbers_them() -> None:
    word_order, units = PM.describe
    assert (word_order.sets, word_order.table, word_order.address, word_order.count) == (
        "byte_order", "holding", 2488, 2
    )  # fmt: skip
    assert dict(word_order.values) == {1331: "CDAB", 1330: "ABCD"}  # Low_High, High_Low
    assert (units.sets, units.address, units.count, units.quantity) == (
        "unit",
        2490,
        1,
        "temperature",
    )
    assert dict(units.values) == {15: "degC", 30: "degF"}
    assert [p.name for p in PM.parameters if p.quantity == "temperature"] == list(TEMPERATURES)
    assert {PM.parameter(n).range for n in TEMPERATURES} == {(-1999, 9999)}
    assert PM.parameter("heat_power").range == PM.parameter("cool_power").range == (0, 100)


@pytest.mark.parametrize(
    ("words", "order"),
    [
        ([1331, 0], "CDAB"),  # a 32-bit Low_High, low word first
        ([0, 1330], "ABCD"),  # a 32-bit High_Low, high word first
        ([1330, 4242], "ABCD"),  # one 16-bit register, anything after it
        ([1331, 4242], "CDAB"),
        ([0, 0], None),
        ([1332, 7], None),
    ],
)
def test_word_order_is_recognised_in_either_word(words: list[int], order: str | None) -> None:
    assert WORD_ORDER.recognise(words) == order


def test_description_pins_and_governs() -> None:
    desc = Description("b", "pm", PM.parameters, PM.describe, frozenset({("set_point", "unit")}))
    assert desc.take("holding", 2488, [0, 1330, 30]) is True
    now = desc.parameters()
    assert now["analog_input_value"].codec.byte_order == "ABCD"
    assert now["analog_input_value"].unit == "degF"
    assert now["set_point"].unit == "degC"  # pinned by an override
    assert now["heat_power"].unit == "%" and now["heat_power"].codec.byte_order == "ABCD"
    assert now["display_units"].codec == PM.parameter("display_units").codec  # one register
    assert desc.take("holding", 2480, [0] * 8 + [0, 1330, 30]) is False  # same again
    assert desc.take("holding", 2490, [15]) is True  # a polled display_units read
    assert desc.parameters()["analog_input_value"].unit == "degC"
    assert desc.summary() == "byte order ABCD, unit degC"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[describe.x]\nsets = "colour"\naddress = 1\nvalues = { 1 = "ABCD" }\n',
         "describe.x.sets: 'colour' is not one of ('byte_order', 'unit')"),
        ('[describe.x]\nsets = "unit"\naddress = 1\nvalues = { 1 = "degC" }\n',
         "describe.x.quantity: needed for sets = 'unit'"),
        ('[describe.x]\nsets = "byte_order"\naddress = 1\nvalues = { 1 = "big" }\n',
         "describe.x.values.1: 'big' is not one of ABCD, CDAB, BADC, DCBA"),
        ('[describe.x]\nsets = "byte_order"\naddress = 1\nvalues = { x = "ABCD" }\n',
         "describe.x.values.x: 'x' is not a register value 0..65535"),
        ('[describe.x]\nsets = "byte_order"\naddress = 65535\ncount = 2\nvalues = { 1 = "ABCD" }\n',
         "describe.x.count: 65535+2 registers run past 65535"),
        ('[describe.x]\nsets = "byte_order"\nadress = 1\n',
         "describe.x.adress: unknown key; expected one of sets, table, address, count, values, "
         "quantity"),
    ],
)  # fmt: skip
def test_broken_describe_tables(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'name = "t"\n{table}[[parameter]]\nname = "v"\ntable = "holding"\n'
                    'address = 0\ntype = "float32"\n')  # fmt: skip
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value) == f"{path.resolve()}: {message}"


@pytest.mark.parametrize("units", ["C", "F"])
@pytest.mark.parametrize("word_order", ["low_high", "high_low"])
def test_word_order_and_units_are_read_at_connect(
    word_order: str, units: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "connectors.poller")
    ticks = asyncio.run(poll(PMServer(word_order, units), pm_device(), ticks=3))
    unit = {"C": "degC", "F": "degF"}[units]
    for samples, _ in ticks:
        got = by_name(samples)
        assert {n: got[n].value for n in VALUES} == VALUES  # exactly what was loaded
        assert {got[n].unit for n in TEMPERATURES} == {unit}
        assert got["heat_power"].unit == "%" and got["display_units"].text == units
        assert all(s.error is None for s in samples)
    # The description is one read (2488 x3) before the first data read of the connection,
    # not counted in the reads (the requests that gave rows).
    plan = len(pm_device().reads)
    assert [st.reads for _, st in ticks] == [plan, plan, plan]
    order = {"low_high": "CDAB", "high_low": "ABCD"}[word_order]
    assert f"bus b device pm: read as it says: byte order {order}, unit {unit}" in caplog.messages
    assert warnings(caplog) == []
    assert not [r for r in caplog.records if r.levelno > logging.WARNING]


def test_an_override_wins_over_what_the_device_says(caplog: pytest.LogCaptureFixture) -> None:
    pinned = {("analog_input_value", "unit"), ("set_point", "byte_order")}

    def replace(p):  # what [override.<name>] unit = "K" / byte_order = "CDAB" give
        if p.name == "analog_input_value":
            return dataclasses.replace(p, unit="K")
        return p

    device = pm_device(pinned=pinned, replace=replace)
    ticks = asyncio.run(poll(PMServer("high_low", "F"), device, ticks=3))
    for samples, _ in ticks:
        got = by_name(samples)
        assert got["analog_input_value"].unit == "K" and got["analog_input_value"].value == 234.567
        assert got["closed_loop_set_point"].unit == "degF"
        # Read low word first, as pinned: 250.0 high word first decodes to about 2.4e-41.
        assert got["set_point"].value != 250.0 and abs(got["set_point"].value) < 1e-38
    warned = warnings(caplog)
    assert warned == [
        "bus b device pm: set_point decoded as 2.4206e-41 in byte order CDAB, which the device "
        "does not say; if its words come in the other order, set override.set_point.byte_order "
        '= "ABCD"'
    ]


def test_a_reconnect_asks_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "connectors.poller")
    server = PMServer("low_high", "C")

    async def restart(i: int) -> None:
        if i == 2:  # the controller goes away, is set to High_Low and degF, and comes back
            await server.stop()
            server.load("high_low", "F", analog_input_value=454.22)
            await asyncio.sleep(0.3)
            await server.start()

    ticks = asyncio.run(poll(server, pm_device(), ticks=30, on_tick=restart))
    first, last = by_name(ticks[0][0]), by_name(ticks[-1][0])
    assert (first["analog_input_value"].value, first["analog_input_value"].unit) == (
        234.567,
        "degC",
    )
    assert (last["analog_input_value"].value, last["analog_input_value"].unit) == (454.22, "degF")
    assert last["set_point"].value == 250.0
    assert server.asked[(2488, 3)] == 2  # at connect and after the reconnect
    kinds = {s.error_kind for samples, _ in ticks for s in samples}
    assert ErrorKind.CONNECTION_LOST in kinds or ErrorKind.CONNECTION_FAILED in kinds
    said = [m for m in caplog.messages if "read as it says" in m]
    assert said == [
        "bus b device pm: read as it says: byte order CDAB, unit degC",
        "bus b device pm: read as it says: byte order ABCD, unit degF",
    ]
    # Nothing in between was stored in a wrong order: every value is one of those loaded.
    values = {s.value for samples, _ in ticks for s in samples if s.parameter == "set_point"}
    assert values <= {250.0, None}


def test_units_changed_while_polling_follow_the_polled_display_units() -> None:
    server = PMServer("low_high", "C")

    def to_fahrenheit(i: int) -> None:
        if i == 2:
            server.load("low_high", "F", analog_input_value=454.22)

    ticks = asyncio.run(poll(server, pm_device(), ticks=8, on_tick=to_fahrenheit))
    units = [by_name(samples)["analog_input_value"].unit for samples, _ in ticks]
    shown = [by_name(samples)["display_units"].text for samples, _ in ticks]
    # The read covering display_units comes first in a tick: the tick that sees F labels
    # its temperatures degF already, and no tick labels a degF value degC.
    change = shown.index("F")
    assert units[:change] == ["degC"] * change
    assert units[change:] == ["degF"] * (len(units) - change) and change < 6
    assert by_name(ticks[-1][0])["analog_input_value"].value == 454.22
    plan = len(pm_device().reads)
    # Every tick reads its plan once, no more (a loaded machine may skip a slot: fewer ticks).
    assert [st.reads for _, st in ticks] == [plan] * len(ticks)
    assert server.asked[(2488, 3)] == 1  # the description is not asked again


def test_values_out_of_range_are_error_rows() -> None:
    server = PMServer("low_high", "C", analog_input_value=12345.5, heat_power=100.5)
    server.put(1906, [0, 0xBF80])  # cool_power -1.0, low word first
    ticks = asyncio.run(poll(server, pm_device(), ticks=2))
    for samples, stats in ticks:
        got = by_name(samples)
        expected = {
            "analog_input_value": "out of range: 12345.5 not in [-1999, 9999]",
            "heat_power": "out of range: 100.5 not in [0, 100]",
            "cool_power": "out of range: -1.0 not in [0, 100]",
        }
        for name, error in expected.items():
            s = got[name]
            assert (s.value, s.error, s.error_kind) == (None, error, ErrorKind.OUT_OF_RANGE)
            row = to_row(s)
            assert row["value"] is None and row["error"] == error and row["unit"] == s.unit
        assert got["set_point"].value == 250.0 and got["set_point"].error is None
        assert stats.errors == 2  # the reads at 360 and at 1904 (heat and cool power)


def test_implausible_floats_warn_once_when_the_device_does_not_say(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The device is High_Low, its profile says Low_High, and it is not asked.
    device = pm_device(["analog_input_value", "set_point", "heat_power"], describe=False)
    ticks = asyncio.run(poll(PMServer("high_low", "C"), device, ticks=4))
    assert len(ticks) == 4
    warned = warnings(caplog)
    names = ("analog_input_value", "heat_power", "set_point")  # in the order they are read
    assert len(warned) == len(names)  # once each, not once a tick
    for name, line in zip(names, warned, strict=True):
        assert line.startswith(f"bus b device pm: {name} decoded as ")
        assert line.endswith(
            "in byte order CDAB, which the device does not say; if its words come in the "
            f'other order, set override.{name}.byte_order = "ABCD"'
        )
    assert "set_point decoded as 2.4206e-41 " in warned[2]  # 250.0 in the wrong order


def test_unknown_descriptions_keep_the_profile_and_warn_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = PMServer("low_high", "C")
    server.put(2488, [7, 9])
    server.put(2490, [99])
    ticks = asyncio.run(poll(server, pm_device(), ticks=4))
    for samples, _ in ticks:
        got = by_name(samples)
        assert got["analog_input_value"].value == 234.567  # the profile's CDAB
        assert got["analog_input_value"].unit == "degC"  # the profile's unit
    warned = warnings(caplog)
    assert warned == [
        "bus b device pm: word_order register (holding 2488 x2) read [7, 9], none of "
        "1331 (CDAB), 1330 (ABCD); keeping the profile's byte order",
        "bus b device pm: units register (holding 2490 x1) read [99], none of 15 (degC), "
        "30 (degF); keeping the profile's unit",
    ]


def test_a_description_answered_with_an_exception_keeps_the_profile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = PMServer("high_low", "F")
    server.exception = 4
    ticks = asyncio.run(poll(server, pm_device(), ticks=2))
    kinds = {s.error_kind for samples, _ in ticks for s in samples}
    assert kinds == {ErrorKind.EXCEPTION}
    warned = warnings(caplog)
    assert warned == [
        "bus b device pm: word_order register (holding 2488 x2) answered server device "
        "failure (4); keeping the profile's byte order",
        "bus b device pm: units register (holding 2490 x1) answered server device failure "
        "(4); keeping the profile's unit",
    ]


def test_profile_parameters_are_unchanged_by_the_describe_tables() -> None:
    described = load_profile("watlow_pm")
    assert all(isinstance(d, Describer) for d in described.describe)
    assert described.parameter("analog_input_value").codec.byte_order == "CDAB"
