"""Tests for the profiles of connectors.registers and the TOML parameter keys of
connectors.parameter: the shipped profiles, loading by name or path, broken and unreadable
profiles, byte orders, labels, bits, one-based addresses, overrides and errors' key paths.

Read planning is tested in test_plan.py, the codecs in test_codec.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.parameter import override_parameter, parameter_fields
from connectors.registers import PROFILE_DIR, ProfileError, decode_read, load_profile, plan_reads
from connectors.tomltable import Table, TableError


def test_watlow_profile() -> None:
    profile = load_profile("watlow_pm")
    assert profile.name == "watlow_pm"
    assert {p.name: (p.address, p.codec.type, p.id, p.unit) for p in profile.parameters} == {
        "analog_input_value": (360, "float32", 4001, "degC"),
        "input_error": (362, "uint16", 4002, None),
        "analog_input_2": (440, "float32", 4001, "degC"),
        "heat_power": (1904, "float32", 8011, "%"),
        "cool_power": (1906, "float32", 8014, "%"),
        "set_point": (2160, "float32", 7001, "degC"),
        "closed_loop_set_point": (2172, "float32", 7007, "degC"),
        "display_units": (2490, "uint16", 17050, None),
    }
    assert {
        (p.table, p.codec.byte_order, p.codec.scale, p.codec.offset) for p in profile.parameters
    } == {("holding", "CDAB", 1.0, 0.0)}
    assert profile.parameter("input_error").label(61) == "none"
    assert profile.parameter("display_units").labels == ((15, "C"), (30, "F"))
    with pytest.raises(KeyError, match="known: analog_input_value, input_error"):
        profile.parameter("pv")
    # The names before they followed Watlow's table still find their parameters.
    assert profile.parameter("process_value").name == "analog_input_value"
    assert profile.parameter("active_set_point").address == 2172
    assert profile.parameter("temperature_units").name == "display_units"


def test_servomex_profile() -> None:
    profile = load_profile("servomex_4100")
    expected: dict[str, tuple[int, str, int]] = {}
    for n, base in enumerate((0, 7, 14, 21), start=1):
        expected[f"measurement_{n}"] = (base, "float32", 2)
        expected[f"measurement_{n}_name"] = (base + 2, "string", 3)
        expected[f"measurement_{n}_units"] = (base + 5, "string", 2)
    for n, base in enumerate((28, 35, 42, 49), start=1):
        expected[f"derived_{n}"] = (base, "float32", 2)
        expected[f"derived_{n}_name"] = (base + 2, "string", 3)
        expected[f"derived_{n}_units"] = (base + 5, "string", 2)
    expected["ma_input_1"] = (56, "float32", 2)
    expected["ma_input_2"] = (63, "float32", 2)
    assert {p.name: (p.address, p.codec.type, p.count) for p in profile.parameters} == expected
    assert {(p.table, p.codec.byte_order, p.id) for p in profile.parameters} == {
        ("input", "ABCD", None)
    }
    assert profile.parameter("ma_input_2").unit == "mA"


def test_load_profile_by_path_and_cache() -> None:
    assert load_profile(PROFILE_DIR / "watlow_pm.toml") == load_profile("watlow_pm")
    assert load_profile(str(PROFILE_DIR / "servomex_4100.toml")) is load_profile(
        str(PROFILE_DIR / "servomex_4100.toml")
    )
    assert load_profile("watlow_pm") is load_profile("watlow_pm")
    with pytest.raises(ProfileError, match=r"unknown profile 'nope'.*servomex_4100, watlow_pm"):
        load_profile("nope")


GOOD = 'name = "t"\n[defaults]\ntable = "holding"\n[[parameter]]\nname = "pv"\naddress = 0\n'

PV = '[[parameter]]\nname = "pv"\ntable = "holding"\n'

TYPES = (
    "int8, uint8, int16, uint16, float16, int32, uint32, float32, int64, uint64, float64, "
    "string, bit"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + 'type = "uint16"\nadress = 1\n',
         "parameter[0].adress: unknown key; expected one of name, table, address, type, id, "
         "byte_order, word_order, scale, offset, unit, length, bit, byte, labels, quantity, "
         "range, every_s, deadband, deadband_pct, heartbeat_s"),
        (GOOD + 'type = "uint16"\n[[parameter]]\nname = "sp"\naddress = 2\ntype = "flaot32"\n',
         f"parameter[1].type: 'flaot32' is not one of {TYPES}"),
        ('name = "t"\n' + PV.replace("holding", "coils") + 'address = 0\ntype = "uint16"\n',
         "parameter[0].table: 'coils' is not one of holding, input, coil, discrete"),
        (GOOD + 'type = "uint16"\n' + PV + 'address = 1\ntype = "uint16"\n',
         "parameter[1].name: 'pv' duplicates parameter[0]"),
        ('name = "t"\n' + PV + 'address = 65536\ntype = "uint16"\n',
         "parameter[0].address: 65536 is not an integer in 0..65535"),
        ('name = "t"\n' + PV + 'address = -1\ntype = "uint16"\n',
         "parameter[0].address: -1 is not an integer in 0..65535"),
        ('name = "t"\n' + PV + 'address = 0\ntype = "float32"\nword_order = "middle"\n',
         "parameter[0].word_order: 'middle' is not one of big, little"),
        (GOOD.replace('table = "holding"', 'word_order = "mid"'),
         "defaults.word_order: 'mid' is not one of big, little"),
        (GOOD.replace('table = "holding"', "address = 3"),
         "defaults.address: unknown key; expected one of table, type, byte_order, word_order, "
         "scale, offset, unit, quantity, range, every_s, deadband, deadband_pct, heartbeat_s"),
        (GOOD, "parameter[0].type: missing"),
        ('name = "t"\n' + PV + 'address = 65535\ntype = "float32"\n',
         "parameter[0].address: 65535+2 registers run past 65535"),
        ('name = "t"\n' + PV + 'address = 0\ntype = "string"\n',
         "parameter[0].length: type 'string' needs a length of at least 1 register"),
        ('name = "t"\n' + PV + 'address = 0\ntype = "uint16"\nscale = 0\n',
         "parameter[0].scale: 0 is not a finite non-zero number"),
        ('name = "t"\nmodel = "x"\n', "model: unknown key; expected one of name, description, "
         "address_base, defaults, renamed, describe, parameter"),
        ('name = "t"\n' + PV + 'address = 0\ntype = "uint16"\n[renamed]\nold = "nope"\n',
         "renamed.old: 'nope' is not a parameter of this profile"),
        ('name = "t"\n' + PV + 'address = 0\ntype = "uint16"\n[renamed]\npv = "pv"\n',
         "renamed.pv: 'pv' is the name of parameter[0]"),
        ('name = "t"\nrenamed = 3\n' + PV + 'address = 0\ntype = "uint16"\n',
         "renamed: 3 is not a table of old name = new name"),
        ('description = "x"\n', "name: None is not a non-empty string"),
        ('name = "t"\n', "parameter: a profile needs at least one [[parameter]] table"),
    ],
)  # fmt: skip
def test_broken_profiles(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value) == f"{path.resolve()}: {message}"


def test_unreadable_profiles(tmp_path: Path) -> None:
    path = tmp_path / "syntax.toml"
    path.write_text("name = \n")
    with pytest.raises(ProfileError, match=r"syntax\.toml: "):
        load_profile(path)
    with pytest.raises(ProfileError, match=r"missing\.toml: "):
        load_profile(tmp_path / "missing.toml")


def write_profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def test_profile_byte_orders_and_alias(tmp_path: Path) -> None:
    text = """
    name = "t"
    [defaults]
    table = "holding"
    type = "float32"
    word_order = "little"
    [[parameter]]
    name = "a"
    address = 0
    [[parameter]]
    name = "b"
    address = 2
    byte_order = "BADC"
    [[parameter]]
    name = "c"
    address = 4
    word_order = "big"
    """
    profile = load_profile(write_profile(tmp_path, text.replace("\n    ", "\n")))
    assert [p.codec.byte_order for p in profile.parameters] == ["CDAB", "BADC", "ABCD"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('type = "float32"\nbyte_order = "ABCD"\nword_order = "big"\n',
         "parameter[0].word_order: 'big' given with byte_order = 'ABCD'; give one"),
        ('type = "float32"\nbyte_order = "abcd"\n',
         "parameter[0].byte_order: 'abcd' is not one of ABCD, CDAB, BADC, DCBA"),
        ('type = "uint16"\nlabels = { open = "x" }\n',
         "parameter[0].labels.open: 'open' is not an integer"),
        ('type = "uint16"\nlabels = { 1 = 2 }\n',
         "parameter[0].labels.1: 2 is not a non-empty string"),
        ('type = "uint16"\nlabels = { 1 = "a", "+1" = "b" }\n',
         "parameter[0].labels.+1: value 1 is given twice"),
        ('type = "uint16"\nlabels = ["a"]\n',
         "parameter[0].labels: ['a'] is not a table like { 61 = \"none\" }"),
        ('type = "float32"\nlabels = { 1 = "a" }\n',
         "parameter[0].labels: enum labels need an integer or bit type, not float32"),
        ('type = "bit"\n', "parameter[0].bit: type 'bit' needs a bit number 0..15"),
        ('type = "bit"\nbit = 16\n', "parameter[0].bit: 16 is not an integer in 0..15"),
        ('type = "int16"\noffset = "1"\n', "parameter[0].offset: '1' is not a finite number"),
    ],
)  # fmt: skip
def test_broken_parameter_keys(tmp_path: Path, entry: str, message: str) -> None:
    path = write_profile(tmp_path, PV + "address = 0\n" + entry)
    path.write_text('name = "t"\n' + path.read_text())
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value).startswith(f"{path.resolve()}: {message}")
    assert "\n" not in str(info.value)


def test_profile_labels_bits_offset(tmp_path: Path) -> None:
    text = (
        'name = "t"\n[defaults]\ntable = "input"\n'
        '[[parameter]]\nname = "state"\naddress = 3\ntype = "int16"\n'
        'labels = { 0 = "off", -1 = "fault", "+2" = "on" }\n'
        '[[parameter]]\nname = "alarm"\naddress = 4\ntype = "bit"\nbit = 7\n'
        '[[parameter]]\nname = "t"\naddress = 5\ntype = "uint16"\nscale = 0.1\noffset = -40\n'
    )
    state, alarm, t = load_profile(write_profile(tmp_path, text)).parameters
    assert state.labels == ((-1, "fault"), (0, "off"), (2, "on"))
    assert (alarm.codec.type, alarm.codec.bit, alarm.count) == ("bit", 7, 1)
    assert (t.codec.scale, t.codec.offset) == (0.1, -40.0)
    (read,) = plan_reads([state, alarm, t])
    values = dict((p.name, v) for p, v in decode_read(read, [0xFFFF, 0x0080, 600]))
    assert values["state"] == -1 and state.label(values["state"]) == "fault"
    assert values["alarm"] is True
    assert values["t"] == pytest.approx(20.0)


ONE_BASED = 'name = "t"\naddress_base = 1\n[defaults]\ntype = "uint16"\n'


def test_one_based_addresses(tmp_path: Path) -> None:
    entries = [("holding", 40361, 360), ("holding", 40001, 0), ("holding", 49999, 9998),
               ("input", 30001, 0), ("input", 30008, 7), ("holding", 400001, 0),
               ("holding", 465536, 65535), ("input", 300064, 63)]  # fmt: skip
    text = ONE_BASED + "".join(
        f'[[parameter]]\nname = "p{i}"\ntable = "{table}"\naddress = {number}\n'
        for i, (table, number, _) in enumerate(entries)
    )
    profile = load_profile(write_profile(tmp_path, text))
    assert [(p.table, p.address) for p in profile.parameters] == [
        (table, pdu) for table, _, pdu in entries
    ]


@pytest.mark.parametrize(
    ("table", "number", "message"),
    [
        ("holding", 30001, "parameter[0].address: 30001 of 'pv' is not a 1-based holding register "
         "number (40001-49999 or 400001-465536)"),
        ("input", 40361, "parameter[0].address: 40361 of 'pv' is not a 1-based input register "
         "number (30001-39999 or 300001-365536)"),
        ("holding", 360, "parameter[0].address: 360 of 'pv' is not a 1-based holding register"),
        ("holding", 40000, "parameter[0].address: 40000 of 'pv' is not a 1-based holding"),
        ("input", 365537, "parameter[0].address: 365537 of 'pv' is not a 1-based input"),
    ],
)  # fmt: skip
def test_one_based_address_mismatch(tmp_path: Path, table: str, number: int, message: str) -> None:
    text = ONE_BASED + f'[[parameter]]\nname = "pv"\ntable = "{table}"\naddress = {number}\n'
    path = write_profile(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value).startswith(f"{path.resolve()}: {message}")


def test_address_base_values(tmp_path: Path) -> None:
    path = write_profile(tmp_path, ONE_BASED.replace("= 1", "= 2") + PV + "address = 0\n")
    with pytest.raises(ProfileError, match=r"address_base: 2 is not 0 \(PDU addresses\) or 1"):
        load_profile(path)
    path = write_profile(tmp_path, ONE_BASED.replace("= 1", "= 0") + PV + "address = 360\n")
    assert load_profile(path).parameters[0].address == 360


def table(data: dict[str, object], where: str = "override.analog_input_value") -> Table:
    return Table(data, where, "x.toml")


def test_parameter_fields_and_override() -> None:
    assert parameter_fields(table({"word_order": "little", "labels": {"2": "b", "1": "a"}})) == {
        "byte_order": "CDAB",
        "labels": ((1, "a"), (2, "b")),
    }
    with pytest.raises(
        TableError, match=r"^x\.toml: override\.analog_input_value\.adress: unknown"
    ):
        parameter_fields(table({"adress": 1}))
    with pytest.raises(TableError, match=r"word_order: 'mid' is not one of big, little$"):
        parameter_fields(table({"word_order": "mid"}))
    pv = load_profile("watlow_pm").parameter("analog_input_value")
    swapped = override_parameter(pv, table({"word_order": "big", "scale": 2, "unit": "degF"}))
    assert (swapped.codec.byte_order, swapped.codec.scale, swapped.unit, swapped.address) == (
        "ABCD", 2.0, "degF", 360
    )  # fmt: skip
    assert override_parameter(pv, table({"byte_order": "DCBA"})).codec.byte_order == "DCBA"
    assert override_parameter(pv, table({})) == pv
    with pytest.raises(TableError, match=r"\.name: 'x': an override cannot rename"):
        override_parameter(pv, table({"name": "x"}))
    with pytest.raises(TableError, match=r"\.labels: enum labels need an integer"):
        override_parameter(pv, table({"labels": {"1": "a"}}))
    with pytest.raises(TableError, match=r"\.address: 65535\+2 registers run past"):
        override_parameter(pv, table({"address": 65535}))


def test_profile_errors_carry_their_key_path(tmp_path: Path) -> None:
    """file, key path and message are data; str() is the one line made of them."""
    path = write_profile(
        tmp_path, PV.replace("holding", "coils") + 'address = 0\ntype = "uint16"\n'
    )
    path.write_text('name = "t"\n' + path.read_text())
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    error = info.value
    assert (error.file, error.path, error.message) == (
        str(path.resolve()),
        "parameter[0].table",
        "'coils' is not one of holding, input, coil, discrete",
    )
    assert str(error) == f"{error.file}: {error.path}: {error.message}"
    with pytest.raises(ProfileError) as info:
        load_profile("nope")
    assert (info.value.file, info.value.path) == (None, "")
    assert str(info.value) == info.value.message
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path / "missing.toml")
    assert (info.value.file, info.value.path) == (str(tmp_path / "missing.toml"), "")
    # A label's key is part of the path.
    path.write_text('name = "t"\n' + PV + 'address = 0\ntype = "uint16"\nlabels = { x = "a" }\n')
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert (info.value.path, info.value.message) == (
        "parameter[0].labels.x",
        "'x' is not an integer",
    )
