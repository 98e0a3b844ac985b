"""Tests for connectors.registers: profiles, TOML parameter keys and read planning.

The codecs are tested in test_codec.py."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from connectors.codec import Codec, encode
from connectors.parameter import Parameter, override_parameter, parameter_fields
from connectors.registers import (
    PROFILE_DIR,
    ProfileError,
    Read,
    decode_read,
    describe_plan,
    load_profile,
    plan_reads,
    split_read,
)
from connectors.tomltable import Table, TableError


def test_watlow_profile() -> None:
    profile = load_profile("watlow_pm")
    assert profile.name == "watlow_pm"
    assert {p.name: (p.address, p.codec.type, p.id, p.unit) for p in profile.parameters} == {
        "process_value": (360, "float32", 4001, "degC"),
        "input_error": (362, "uint16", None, None),
        "analog_input_2": (440, "float32", None, "degC"),
        "heat_power": (1904, "float32", None, "%"),
        "cool_power": (1906, "float32", None, "%"),
        "closed_loop_set_point": (2160, "float32", 7001, "degC"),
        "active_set_point": (2172, "float32", None, "degC"),
        "temperature_units": (2490, "uint16", None, None),
    }
    assert {
        (p.table, p.codec.byte_order, p.codec.scale, p.codec.offset) for p in profile.parameters
    } == {("holding", "CDAB", 1.0, 0.0)}
    assert profile.parameter("input_error").label(61) == "none"
    assert profile.parameter("temperature_units").labels == ((15, "C"), (30, "F"))
    with pytest.raises(KeyError, match="known: process_value, input_error"):
        profile.parameter("pv")


def test_servomex_profile() -> None:
    profile = load_profile("servomex_4100")
    expected: dict[str, tuple[int, str, int]] = {}
    for n, base in enumerate((0, 7, 14, 21), start=1):
        expected[f"measurement_{n}"] = (base, "float32", 2)
        expected[f"measurement_{n}_name"] = (base + 2, "string", 3)
        expected[f"measurement_{n}_units"] = (base + 5, "string", 2)
    for n, base in enumerate((28, 35, 42, 49), start=1):
        expected[f"derived_{n}"] = (base, "float32", 2)
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
TYPES = "int16, uint16, int32, uint32, float32, int64, uint64, float64, string, bit"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + 'type = "uint16"\nadress = 1\n',
         "parameter[0].adress: unknown key; expected one of name, table, address, type, id, "
         "byte_order, word_order, scale, offset, unit, length, bit, labels"),
        (GOOD + 'type = "uint16"\n[[parameter]]\nname = "sp"\naddress = 2\ntype = "flaot32"\n',
         f"parameter[1].type: 'flaot32' is not one of {TYPES}"),
        ('name = "t"\n' + PV.replace("holding", "coil") + 'address = 0\ntype = "uint16"\n',
         "parameter[0].table: 'coil' is not one of holding, input"),
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
         "scale, offset, unit"),
        (GOOD, "parameter[0].type: missing"),
        ('name = "t"\n' + PV + 'address = 65535\ntype = "float32"\n',
         "parameter[0].address: 65535+2 registers run past 65535"),
        ('name = "t"\n' + PV + 'address = 0\ntype = "string"\n',
         "parameter[0].length: type 'string' needs a length of at least 1 register"),
        ('name = "t"\n' + PV + 'address = 0\ntype = "uint16"\nscale = 0\n',
         "parameter[0].scale: 0 is not a finite non-zero number"),
        ('name = "t"\nmodel = "x"\n', "model: unknown key; expected one of name, description, "
         "address_base, defaults, parameter"),
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


def spans(reads: tuple[Read, ...]) -> list[tuple[str, int, int]]:
    return [(r.table, r.address, r.count) for r in reads]


def test_plan_reads_merges_contiguous() -> None:
    watlow, servomex = load_profile("watlow_pm"), load_profile("servomex_4100")
    pv, err = watlow.parameter("process_value"), watlow.parameter("input_error")
    reads = plan_reads([err, pv])
    assert spans(reads) == [("holding", 360, 3)]
    assert reads[0].parameters == (pv, err)
    block = [servomex.parameter(f"measurement_1{s}") for s in ("", "_name", "_units")]
    assert spans(plan_reads(block)) == [("input", 0, 7)]
    four = [p for p in servomex.parameters if p.name.startswith("measurement_")]
    assert len(four) == 12
    assert spans(plan_reads(reversed(four))) == [("input", 0, 28)]
    assert spans(plan_reads(four + four)) == [("input", 0, 28)]
    assert len(plan_reads(four + four)[0].parameters) == 12


def test_plan_reads_splits() -> None:
    watlow = load_profile("watlow_pm")
    gap = [watlow.parameter("process_value"), watlow.parameter("analog_input_2")]
    assert spans(plan_reads(gap)) == [("holding", 360, 2), ("holding", 440, 2)]
    tables = [reg("a", 0, table="input"), reg("b", 1)]
    assert spans(plan_reads(tables)) == [("holding", 1, 1), ("input", 0, 1)]
    words = [reg(f"r{i}", i) for i in range(130)]
    assert spans(plan_reads(words)) == [("holding", 0, 125), ("holding", 125, 5)]
    floats = [reg(f"f{i}", 2 * i, "float32", table="input") for i in range(63)]
    assert spans(plan_reads(floats)) == [("input", 0, 124), ("input", 124, 2)]
    assert spans(plan_reads(words[:10], max_registers=4)) == [
        ("holding", 0, 4), ("holding", 4, 4), ("holding", 8, 2)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="exceed max_registers"):
        plan_reads([reg("s", 0, "string", table="input", length=126)])
    assert plan_reads([]) == ()


def test_plan_reads_overlap() -> None:
    whole, low = reg("whole", 10, "float32"), reg("low", 11)
    assert spans(plan_reads([whole, low])) == [("holding", 10, 2)]
    assert spans(plan_reads([low, whole, reg("n", 12)])) == [("holding", 10, 3)]


def test_decode_read() -> None:
    servomex = load_profile("servomex_4100")
    (read,) = plan_reads(p for p in servomex.parameters if p.address < 7)
    o2 = struct.unpack(">2H", struct.pack(">f", 20.9))
    words = [*o2, 0x4F78, 0x7967, 0x656E, 0x2520, 0x2000]
    assert [(p.name, v) for p, v in decode_read(read, words)] == [
        ("measurement_1", 20.9), ("measurement_1_name", "Oxygen"),
        ("measurement_1_units", "%"),
    ]  # fmt: skip
    watlow = load_profile("watlow_pm")
    (read,) = plan_reads([watlow.parameter("process_value"), watlow.parameter("input_error")])
    assert [v for _, v in decode_read(read, [0x0000, 0x4296, 0x0000])] == [75.0, 0]
    with pytest.raises(ValueError, match="expected 3 registers"):
        decode_read(read, [0, 0])


def test_decode_read_inverts_encode() -> None:
    """What the simulator does: encode every parameter into a register image, then read it."""
    servomex = load_profile("servomex_4100")
    values = {p.name: (f"N{p.address}" if p.codec.type == "string" else p.address + 0.5)
              for p in servomex.parameters}  # fmt: skip
    image = [0] * 70
    for p in servomex.parameters:
        image[p.address : p.address + p.count] = encode(p.codec, values[p.name])
    decoded = {}
    for read in plan_reads(servomex.parameters):
        words = image[read.address : read.address + read.count]
        decoded.update((p.name, v) for p, v in decode_read(read, words))
    assert decoded == values


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


def table(data: dict[str, object], where: str = "override.process_value") -> Table:
    return Table(data, where, "x.toml")


def test_parameter_fields_and_override() -> None:
    assert parameter_fields(table({"word_order": "little", "labels": {"2": "b", "1": "a"}})) == {
        "byte_order": "CDAB",
        "labels": ((1, "a"), (2, "b")),
    }
    with pytest.raises(TableError, match=r"^x\.toml: override\.process_value\.adress: unknown"):
        parameter_fields(table({"adress": 1}))
    with pytest.raises(TableError, match=r"word_order: 'mid' is not one of big, little$"):
        parameter_fields(table({"word_order": "mid"}))
    pv = load_profile("watlow_pm").parameter("process_value")
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
    path = write_profile(tmp_path, PV.replace("holding", "coil") + 'address = 0\ntype = "uint16"\n')
    path.write_text('name = "t"\n' + path.read_text())
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    error = info.value
    assert (error.file, error.path, error.message) == (
        str(path.resolve()), "parameter[0].table", "'coil' is not one of holding, input"
    )  # fmt: skip
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


def reg(
    name: str, address: int, type_: str = "uint16", table: str = "holding", **kw: object
) -> Parameter:
    return Parameter(name, table, address, Codec(type_, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("gap", "max_gap", "expected"),
    [
        (0, 0, [("holding", 0, 4)]),
        (1, 0, [("holding", 0, 2), ("holding", 3, 2)]),
        (9, 10, [("holding", 0, 13)]),  # below max_gap: merged
        (10, 10, [("holding", 0, 14)]),  # at max_gap: merged
        (11, 10, [("holding", 0, 2), ("holding", 13, 2)]),  # above: split
        (3, 3, [("holding", 0, 7)]),
        (4, 3, [("holding", 0, 2), ("holding", 6, 2)]),
    ],
)
def test_plan_reads_gaps(gap: int, max_gap: int, expected: list[tuple[str, int, int]]) -> None:
    a, b = reg("a", 0, "float32"), reg("b", 2 + gap, "float32")
    reads = plan_reads([b, a], max_gap=max_gap)
    assert spans(reads) == expected
    assert [p.name for r in reads for p in r.parameters] == ["a", "b"]


def test_plan_reads_default_gap_is_10() -> None:
    assert spans(plan_reads([reg("a", 0), reg("b", 11)])) == [("holding", 0, 12)]
    assert spans(plan_reads([reg("a", 0), reg("b", 12)])) == [("holding", 0, 1), ("holding", 12, 1)]


def test_plan_reads_two_tables() -> None:
    params = [reg("h0", 0), reg("i0", 0, table="input"), reg("h1", 1),
              reg("i5", 5, "float32", table="input"), reg("h40", 40)]  # fmt: skip
    reads = plan_reads(params)
    assert spans(reads) == [("holding", 0, 2), ("holding", 40, 1), ("input", 0, 7)]
    assert [[p.name for p in r.parameters] for r in reads] == [["h0", "h1"], ["h40"], ["i0", "i5"]]


def test_plan_reads_past_125_registers() -> None:
    # 100 float32 with a 1-register gap each: 300 registers of span, 200 of data.
    params = [reg(f"f{i}", 3 * i, "float32") for i in range(100)]
    reads = plan_reads(params)
    assert spans(reads) == [("holding", 0, 125), ("holding", 126, 125), ("holding", 252, 47)]
    assert [len(r.parameters) for r in reads] == [42, 42, 16]
    assert sum(len(r.parameters) for r in reads) == 100
    assert all(r.count <= 125 for r in reads)


def test_plan_reads_exactly_125() -> None:
    block = reg("block", 10, "string", length=125)
    assert spans(plan_reads([block])) == [("holding", 10, 125)]
    assert spans(plan_reads([block, reg("next", 135)])) == [
        ("holding", 10, 125),
        ("holding", 135, 1),
    ]
    # Two parameters whose span, gap included, is exactly 125 registers share one read.
    assert spans(plan_reads([reg("a", 0, "float32"), reg("b", 123, "float32")], max_gap=125)) == [
        ("holding", 0, 125)
    ]
    assert spans(plan_reads([reg("a", 0, "float32"), reg("b", 124, "float32")], max_gap=125)) == [
        ("holding", 0, 2), ("holding", 124, 2)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="block: 126 registers exceed max_registers=125"):
        plan_reads([reg("block", 0, "string", length=126)])


def test_plan_reads_duplicates() -> None:
    a, b = reg("a", 0), reg("b", 1)
    reads = plan_reads([a, b, a, b, a])
    assert spans(reads) == [("holding", 0, 2)]
    assert reads[0].parameters == (a, b)
    # Two names for one register are two parameters, read once.
    alias = reg("a_alias", 0)
    (read,) = plan_reads([a, alias])
    assert (read.count, [p.name for p in read.parameters]) == (1, ["a", "a_alias"])
    # Bits of one status register share it.
    bits = [reg(f"bit{n}", 7, "bit", bit=n) for n in (9, 0, 3)]
    (read,) = plan_reads(bits)
    assert spans((read,)) == [("holding", 7, 1)]
    values = {p.name: v for p, v in decode_read(read, [0x0201])}
    assert values == {"bit9": True, "bit0": True, "bit3": False}


def test_plan_reads_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_registers must be at least 1"):
        plan_reads([], max_registers=0)
    with pytest.raises(ValueError, match="max_gap must be at least 0"):
        plan_reads([], max_gap=-1)


def test_split_read() -> None:
    watlow = load_profile("watlow_pm")
    names = ("process_value", "input_error", "analog_input_2")
    (merged,) = plan_reads([watlow.parameter(n) for n in names], max_gap=80)
    assert (merged.address, merged.count) == (360, 82)
    single = split_read(merged)
    assert spans(single) == [("holding", 360, 2), ("holding", 362, 1), ("holding", 440, 2)]
    assert [r.parameters for r in single] == [(p,) for p in merged.parameters]
    assert split_read(single[0]) == (single[0],)
    # Every single read decodes on its own.
    assert [v for r in single for _, v in decode_read(r, [0] * r.count)] == [0.0, 0, 0.0]


def test_describe_plan() -> None:
    watlow, servomex = load_profile("watlow_pm"), load_profile("servomex_4100")
    params = [watlow.parameter("process_value"), watlow.parameter("input_error"),
              servomex.parameter("measurement_1"), watlow.parameter("heat_power")]  # fmt: skip
    assert describe_plan(plan_reads(params)) == (
        "holding 360+3 [process_value, input_error], holding 1904+2 [heat_power], "
        "input 0+2 [measurement_1]"
    )
    assert describe_plan(()) == "no reads"
