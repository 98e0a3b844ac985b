"""Config parsing of [[bus]] and [[bus.device]] tables: device names and unit ids, the timing
keys, profile overrides and a device's own parameter tables; each broken key gives one exact
line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connectors.bus import Device
from connectors.codec import Codec
from connectors.registers import load_profile, plan_reads
from flows.config import ConfigError, load_config
from tests.flows.config.good import GOOD, INLINE, OVERRIDDEN, TIMED, write


def test_duplicate_device_names_and_unit_ids(tmp_path: Path) -> None:
    device = '\n  [[bus.device]]\n  name = "{}"\n  profile = "watlow_pm"\n  address = {}\n'
    path = write(tmp_path, GOOD + device.format("pm", 8))
    with pytest.raises(
        ConfigError,
        match=r"bus\[0\]\.device\[1\]\.name: 'pm' is already the name of bus\[0\]\.device\[0\]",
    ):
        load_config(path)
    path = write(tmp_path, GOOD + device.format("pm2", 7))
    with pytest.raises(
        ConfigError, match=r"bus\[0\]\.device\[1\]\.address: 7 is already the unit id of pm"
    ):
        load_config(path)


def test_timing_keys(tmp_path: Path) -> None:
    (bus,) = load_config(write(tmp_path, TIMED)).buses
    assert bus.pause_s == 0.002
    (device,) = bus.devices
    assert (device.timeout_s, device.retries, device.pause_s, device.max_gap) == (
        0.05, 2, 0.01, 20
    )  # fmt: skip
    (bus,) = load_config(write(tmp_path, GOOD)).buses
    (device,) = bus.devices
    assert (bus.pause_s, device.timeout_s, device.retries, device.pause_s) == (0.0, None, None, 0.0)
    assert device.max_gap == Device.__dataclass_fields__["max_gap"].default


def test_overrides(tmp_path: Path) -> None:
    (device,) = load_config(write(tmp_path, OVERRIDDEN)).buses[0].devices
    pv, err, heat = device.parameters
    assert (pv.name, pv.codec, pv.unit, pv.address, pv.id) == (
        "analog_input_value", Codec("float32", byte_order="ABCD", scale=0.5, offset=-10),
        "degF", 360, 4001,
    )  # fmt: skip
    assert (err.labels, err.codec) == (
        ((1, "ok"), (2, "broken")),
        Codec("uint16", byte_order="BADC"),
    )
    assert (heat.address, heat.codec) == (1905, Codec("int16", byte_order="CDAB", scale=0.1))
    assert [(r.address, r.count) for r in device.reads] == [(360, 3), (1905, 1)]
    # The profile itself is untouched.
    assert load_profile("watlow_pm").parameter("analog_input_value").codec.byte_order == "CDAB"


def test_devices_carry_their_profiles_description_and_what_overrides_pin(tmp_path: Path) -> None:
    """A device reads how its profile says the device describes itself; an override's
    byte_order (or word_order) and unit pin those fields against what the device says."""
    (device,) = load_config(write(tmp_path, OVERRIDDEN)).buses[0].devices
    pm = load_profile("watlow_pm")
    assert device.describe == pm.describe and len(device.describe) == 2
    assert device.pinned == frozenset(
        {("analog_input_value", "byte_order"), ("analog_input_value", "unit"),
         ("input_error", "byte_order")}
    )  # fmt: skip
    (plain,) = load_config(write(tmp_path, GOOD)).buses[0].devices
    assert plain.describe == pm.describe and plain.pinned == frozenset()
    # An override by a parameter's old name pins the parameter by its new one.
    text = GOOD.replace(
        "  instance = 2",
        '  instance = 2\n\n    [bus.device.override.process_value]\n    unit = "K"\n'
        "    range = [0, 500]",
    )
    (renamed,) = load_config(write(tmp_path, text)).buses[0].devices
    assert renamed.pinned == frozenset({("analog_input_value", "unit")})
    (pv,) = renamed.parameters
    assert (pv.unit, pv.range, pv.quantity) == ("K", (0, 500), "temperature")
    (inline,) = load_config(write(tmp_path, INLINE)).buses[0].devices
    assert inline.describe == () and inline.pinned == frozenset()


def test_inline_parameters(tmp_path: Path) -> None:
    (device,) = load_config(write(tmp_path, INLINE)).buses[0].devices
    assert [p.name for p in device.parameters] == ["temperature", "flow", "mode", "alarm", "tag"]
    temperature, flow, mode, alarm, tag = device.parameters
    assert (temperature.table, temperature.codec.scale, temperature.unit) == ("input", 0.1, "degC")
    assert flow.codec.byte_order == "DCBA"
    assert mode.label(2) == "manual"
    assert (alarm.codec.type, alarm.codec.bit) == ("bit", 3)
    assert (tag.count, tag.codec.byte_order) == (4, "CDAB")
    assert device.instance == 1
    assert [(r.table, r.address, r.count) for r in plan_reads(device.parameters)] == [
        ("holding", 100, 10), ("input", 0, 1)
    ]  # fmt: skip


DEVICE = "bus[0].device[0]"

BYTE_ORDERS_TEXT = "ABCD, CDAB, BADC, DCBA"

# (base config, replacement applied to it, expected message after "<file>: ")
BROKEN_NEW = [
    (TIMED, "timeout_s = 0.05", "timeout_s = 0", f"{DEVICE}.timeout_s: 0 must be > 0"),
    (TIMED, "timeout_s = 0.05", 'timeout_s = "1"', f"{DEVICE}.timeout_s: '1' is not a number"),
    (TIMED, "retries = 2", "retries = 11", f"{DEVICE}.retries: 11 is not 0-10"),
    (TIMED, "retries = 2", "retries = 1.5", f"{DEVICE}.retries: 1.5 is not an integer"),
    (TIMED, "pause_s = 0.01", "pause_s = -1", f"{DEVICE}.pause_s: -1 must be >= 0"),
    (TIMED, "max_gap = 20", "max_gap = 200", f"{DEVICE}.max_gap: 200 is not 0-124"),
    (TIMED, "max_gap = 20", "max_gap = -1", f"{DEVICE}.max_gap: -1 is not 0-124"),
    (TIMED, "max_gap = 20", "max_gap = true", f"{DEVICE}.max_gap: True is not an integer"),
    (TIMED, "pause_s = 0.002", "pause_s = -0.5", "bus[0].pause_s: -0.5 must be >= 0"),
    (
        OVERRIDDEN,
        "override.analog_input_value]",
        "override.pv]",
        f"{DEVICE}.override.pv: 'pv' is not a parameter of watlow_pm (known: analog_input_value, "
        "input_error, analog_input_2, heat_power, cool_power, set_point, "
        "closed_loop_set_point, display_units)",
    ),
    (
        OVERRIDDEN,
        'word_order = "big"',
        'word_order = "middle"',
        f"{DEVICE}.override.analog_input_value.word_order: 'middle' is not one of big, little",
    ),
    (
        OVERRIDDEN,
        'byte_order = "BADC"',
        'byte_order = "ABDC"',
        f"{DEVICE}.override.input_error.byte_order: 'ABDC' is not one of {BYTE_ORDERS_TEXT}",
    ),
    (
        OVERRIDDEN,
        'word_order = "big"',
        'word_order = "big"\n    byte_order = "ABCD"',
        f"{DEVICE}.override.analog_input_value.word_order: 'big' given with byte_order = "
        "'ABCD'; give one (word_order is the older alias: big = ABCD, little = CDAB)",
    ),
    (
        OVERRIDDEN,
        "scale = 0.5",
        "scale = 0",
        f"{DEVICE}.override.analog_input_value.scale: 0 is not a finite non-zero number",
    ),
    (
        OVERRIDDEN,
        "offset = -10",
        'offset = "x"',
        f"{DEVICE}.override.analog_input_value.offset: 'x' is not a finite number",
    ),
    (
        OVERRIDDEN,
        "scale = 0.5",
        "scal = 0.5",
        f"{DEVICE}.override.analog_input_value.scal: unknown key; expected one of name, table, "
        "address, type, id, byte_order, word_order, scale, offset, unit, length, bit, byte, "
        "labels, quantity, range, every_s, deadband, deadband_pct, heartbeat_s",
    ),
    (
        OVERRIDDEN,
        '1 = "ok"',
        'ok = "ok"',
        f"{DEVICE}.override.input_error.labels.ok: 'ok' is not an integer",
    ),
    (
        OVERRIDDEN,
        'unit = "degF"',
        'unit = "degF"\n    name = "pv"',
        f"{DEVICE}.override.analog_input_value.name: 'pv': an override cannot rename a parameter",
    ),
    (
        OVERRIDDEN,
        'unit = "degF"',
        "unit = 3",
        f"{DEVICE}.override.analog_input_value.unit: 3 is not a non-empty string",
    ),
    (
        OVERRIDDEN,
        'type = "int16"',
        'type = "int24"',
        f"{DEVICE}.override.heat_power.type: 'int24' is not one of int8, uint8, int16, uint16, "
        "float16, int32, uint32, float32, int64, uint64, float64, string, bit",
    ),
    (
        OVERRIDDEN,
        "address = 1905",
        "address = 70000",
        f"{DEVICE}.override.heat_power.address: 70000 is not an integer in 0..65535",
    ),
    (
        OVERRIDDEN,
        "[bus.device.override.input_error]",
        '[bus.device.override.input_error]\n    type = "float32"',
        f"{DEVICE}.override.input_error.labels: enum labels need an integer or bit type, "
        "not float32",
    ),
    (
        GOOD,
        "  instance = 2",
        "  instance = 2\n  override = 3",
        f"{DEVICE}.override: 3 is not a table",
    ),
    (
        GOOD,
        "  instance = 2",
        "  instance = 2\n  override = { analog_input_value = 3 }",
        f"{DEVICE}.override.analog_input_value: 3 is not a table",
    ),
    (
        INLINE,
        'type = "int16"',
        'type = "int"',
        f"{DEVICE}.parameter[0].type: 'int' is not one of int8, uint8, int16, uint16, float16, "
        "int32, uint32, float32, int64, uint64, float64, string, bit",
    ),
    (
        INLINE,
        'table = "input"',
        'table = "coils"',
        f"{DEVICE}.parameter[0].table: 'coils' is not one of holding, input, coil, discrete",
    ),
    (INLINE, 'table = "input"\n', "", f"{DEVICE}.parameter[0].table: missing"),
    (
        INLINE,
        "address = 0\n",
        "address = -1\n",
        f"{DEVICE}.parameter[0].address: -1 is not an integer in 0..65535",
    ),
    (
        INLINE,
        'name = "flow"',
        'name = "temperature"',
        f"{DEVICE}.parameter[1].name: 'temperature' is already the name of {DEVICE}.parameter[0]",
    ),
    (
        INLINE,
        'byte_order = "DCBA"',
        'byte_order = "dcba"',
        f"{DEVICE}.parameter[1].byte_order: 'dcba' is not one of {BYTE_ORDERS_TEXT}",
    ),
    (
        INLINE,
        'byte_order = "DCBA"',
        'byte_order = "DCBA"\n    word_order = "big"',
        f"{DEVICE}.parameter[1].word_order: 'big' given with byte_order = 'DCBA'; give one "
        "(word_order is the older alias: big = ABCD, little = CDAB)",
    ),
    (
        INLINE,
        '2 = "manual"',
        'two = "manual"',
        f"{DEVICE}.parameter[2].labels.two: 'two' is not an integer",
    ),
    (
        INLINE,
        '2 = "manual"',
        '2 = ""',
        f"{DEVICE}.parameter[2].labels.2: '' is not a non-empty string",
    ),
    (INLINE, "bit = 3", "bit = 16", f"{DEVICE}.parameter[3].bit: 16 is not an integer in 0..15"),
    (INLINE, "bit = 3\n", "", f"{DEVICE}.parameter[3].bit: type 'bit' needs a bit number 0..15"),
    (
        INLINE,
        "length = 4",
        "length = 0",
        f"{DEVICE}.parameter[4].length: type 'string' needs a length of at least 1 register",
    ),
    (
        INLINE,
        "scale = 0.1",
        "scale = 0.1\n    offset = inf",
        f"{DEVICE}.parameter[0].offset: inf is not a finite number",
    ),
    (
        INLINE,
        'unit = "degC"',
        'unit = "degC"\n    units = "K"',
        f"{DEVICE}.parameter[0].units: unknown key; expected one of name, table, address, type, "
        "id, byte_order, word_order, scale, offset, unit, length, bit, byte, labels, quantity, "
        "range, every_s, deadband, deadband_pct, heartbeat_s",
    ),
    (
        INLINE,
        "  address = 7\n",
        '  address = 7\n  profile = "watlow_pm"\n',
        f"{DEVICE}.parameter: a device takes a profile or its own [[bus.device.parameter]] "
        "tables, not both",
    ),
    (
        INLINE,
        "  address = 7\n",
        '  address = 7\n  parameters = ["flow"]\n',
        f"{DEVICE}.parameters: parameters needs a profile to choose from",
    ),
    (
        GOOD,
        'profile = "watlow_pm"\n  address = 7\n  parameters = ["analog_input_value"]\n',
        "address = 7\n",
        f"{DEVICE}.profile: missing (or describe the registers in [[bus.device.parameter]])",
    ),
    (
        INLINE,
        'url = "tcp://10.0.0.5:502"',
        'url = "tcp://127.0.0.1:0"\nsimulate = true',
        f"{DEVICE}.parameter: a device on a simulated bus needs a profile (the simulator serves "
        "profiles)",
    ),
    (
        OVERRIDDEN,
        "scale = 0.5",
        "scale = 0.5\n    range = [5, 1]",
        f"{DEVICE}.override.analog_input_value.range: [5, 1]: lo is above hi",
    ),
    (
        OVERRIDDEN,
        "scale = 0.5",
        'scale = 0.5\n    range = [0, "x"]',
        f"{DEVICE}.override.analog_input_value.range: [0, 'x'] is not [lo, hi], two finite numbers",
    ),
    (
        INLINE,
        "length = 4",
        "length = 4\n    range = [0, 1]",
        f"{DEVICE}.parameter[4].range: a range applies to numbers, not type 'string'",
    ),
    (
        OVERRIDDEN,
        "scale = 0.5",
        'scale = 0.5\n    quantity = ""',
        f"{DEVICE}.override.analog_input_value.quantity: '' is not a non-empty string",
    ),
    (
        GOOD,
        'path = "out/x.csv"',
        'path = "out/x.csv"\nstream = "stats"',
        "sink[0].stream: 'stats' is not samples, windows, late, bus_stats, changes",
    ),
]


@pytest.mark.parametrize(("base", "old", "new", "expected"), BROKEN_NEW)
def test_broken_new_keys_give_one_line(
    tmp_path: Path, base: str, old: str, new: str, expected: str
) -> None:
    assert old in base
    path = write(tmp_path, base.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {expected}"


def test_old_parameter_names_still_work_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Names from before the Watlow profile followed Watlow's table: a config using one reads
    the renamed parameter and logs one line naming the key, the old and the new name."""
    text = textwrap.dedent(
        """
        [[bus]]
        name = "b"
        url = "tcp://127.0.0.1:0"
        simulate = true

          [[bus.device]]
          name = "pm"
          profile = "watlow_pm"
          address = 1
          parameters = ["process_value", "active_set_point", "set_point"]

          [bus.device.override.temperature_units]
          unit = "units"

        [[sink]]
        kind = "csv"
        path = "out.csv"
        """
    )
    path = write(tmp_path, text)
    caplog.set_level("WARNING", logger="flows.config.buses")
    (device,) = load_config(path).buses[0].devices
    assert [(p.name, p.address) for p in device.parameters] == [
        ("analog_input_value", 360), ("closed_loop_set_point", 2172), ("set_point", 2160)
    ]  # fmt: skip
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"{path}: bus[0].device[0].override.temperature_units: 'temperature_units' is now "
        "'display_units' in profile watlow_pm (the old name goes in the next release)",
        f"{path}: bus[0].device[0].parameters[0]: 'process_value' is now 'analog_input_value' "
        "in profile watlow_pm (the old name goes in the next release)",
        f"{path}: bus[0].device[0].parameters[1]: 'active_set_point' is now "
        "'closed_loop_set_point' in profile watlow_pm (the old name goes in the next release)",
    ]
