"""Tests for connectors.registers: codecs, profiles and read planning."""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import pytest

from connectors.registers import (
    DATA_TYPES,
    PROFILE_DIR,
    WORD_ORDERS,
    Parameter,
    ProfileError,
    Read,
    decode,
    decode_read,
    encode,
    load_profile,
    plan_reads,
)

# (type, engineering value, register words high word first), worked out by hand.
CASES: list[tuple[str, int | float, list[int]]] = [
    ("int16", 1234, [0x04D2]),
    ("int16", -2, [0xFFFE]),
    ("int16", -32768, [0x8000]),
    ("uint16", 65535, [0xFFFF]),
    ("int32", -2, [0xFFFF, 0xFFFE]),
    ("int32", -123456, [0xFFFE, 0x1DC0]),
    ("uint32", 0xDEADBEEF, [0xDEAD, 0xBEEF]),
    ("float32", 75.0, [0x4296, 0x0000]),
    ("float32", -1.5, [0xBFC0, 0x0000]),
    ("int64", -2, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]),
    ("int64", 2**62 + 5, [0x4000, 0x0000, 0x0000, 0x0005]),
    ("uint64", 0x0123456789ABCDEF, [0x0123, 0x4567, 0x89AB, 0xCDEF]),
    ("float64", 1.0, [0x3FF0, 0x0000, 0x0000, 0x0000]),
    ("float64", -2.5, [0xC004, 0x0000, 0x0000, 0x0000]),
]


def param(type_: str, order: str = "big", **kw: object) -> Parameter:
    return Parameter(name="p", table="holding", address=0, type=type_, word_order=order, **kw)


def f32(x: float) -> float:
    """The float32 nearest to ``x``, as Python reads it back."""
    return struct.unpack(">f", struct.pack(">f", x))[0]


@pytest.mark.parametrize("order", WORD_ORDERS)
@pytest.mark.parametrize(("type_", "value", "high_first"), CASES)
def test_known_words(type_: str, value: float, high_first: list[int], order: str) -> None:
    words = high_first if order == "big" else high_first[::-1]
    p = param(type_, order)
    decoded = decode(p, words)
    assert decoded == value
    assert type(decoded) is type(value)
    assert encode(p, value) == words


def test_float32_reads_as_the_shortest_decimal() -> None:
    # 0x41A73333 is the float32 nearest 20.9; read back it is 20.9, not 20.899999618530273.
    p = param("float32")
    assert decode(p, [0x41A7, 0x3333]) == 20.9
    assert f32(20.9) != 20.9
    for value in (75.3, 22.846, 0.1, 1e-12, 3.4e38, 123456.78, -0.0):
        assert decode(p, encode(p, value)) == value
    assert math.isnan(decode(p, [0x7FC0, 0x0000]))
    assert decode(p, [0x7F80, 0x0000]) == math.inf


def test_float32_75_both_orders() -> None:
    assert encode(param("float32", "little"), 75.0) == [0x0000, 0x4296]
    assert encode(param("float32", "big"), 75.0) == [0x4296, 0x0000]
    assert decode(param("float32", "little"), [0x0000, 0x4296]) == 75.0


@pytest.mark.parametrize("order", WORD_ORDERS)
@pytest.mark.parametrize("type_", list(DATA_TYPES))
def test_words_round_trip(type_: str, order: str) -> None:
    rng = random.Random(f"{type_}-{order}")
    p = param(type_, order)
    for _ in range(200):
        words = [rng.randrange(65536) for _ in range(p.count)]
        value = decode(p, words)
        if isinstance(value, float) and math.isnan(value):
            continue  # NaN payloads need not survive a trip through a Python float
        assert encode(p, value) == words
        assert decode(p, encode(p, value)) == value


def test_scale() -> None:
    p = param("int16", scale=0.1)
    assert decode(p, [0x04D2]) == pytest.approx(123.4)
    assert isinstance(decode(p, [0x04D2]), float)
    assert decode(p, [0xFF85]) == pytest.approx(-12.3)
    assert encode(p, 123.4) == [0x04D2]
    assert encode(p, -12.3) == [0xFF85]
    assert encode(p, decode(p, [0x7FFF])) == [0x7FFF]
    assert decode(param("float32", scale=2), [0x4296, 0x0000]) == 150.0
    assert encode(param("uint32", "little", scale=10), 1000) == [100, 0]
    assert type(decode(param("uint16"), [7])) is int


@pytest.mark.parametrize(
    ("words", "text"),
    [
        ([0x4F78, 0x7967, 0x656E], "Oxygen"),
        ([0x4F32, 0x0000, 0x0000], "O2"),
        ([0x4F32, 0x2020, 0x2000], "O2"),
        ([0x4F32, 0x00FF, 0x4142], "O2"),  # garbage after the NUL terminator
        ([0x0000, 0x0000, 0x0000], ""),
        ([0x4344, 0xB020, 0x2020], "CD\xb0"),  # latin-1 degree sign
    ],
)
def test_string_decode(words: list[int], text: str) -> None:
    for order in WORD_ORDERS:  # word order never applies to strings
        assert decode(param("string", order, length=3), words) == text


def test_string_encode() -> None:
    p = param("string", "little", length=2)
    assert encode(p, "ppm") == [0x7070, 0x6D00]
    assert encode(p, "%") == [0x2500, 0x0000]
    assert encode(p, "") == [0, 0]
    assert decode(p, encode(p, "vpm")) == "vpm"
    for bad in ("toolong", "\u20ac", "a\0b"):
        with pytest.raises(ValueError):
            encode(p, bad)
    with pytest.raises(TypeError):
        encode(p, 1.0)
    with pytest.raises(TypeError):
        encode(param("float32"), "1.0")


@pytest.mark.parametrize(
    ("type_", "value", "scale"),
    [
        ("int16", 32768, 1),
        ("int16", -32769, 1),
        ("uint16", -1, 1),
        ("uint16", 65536, 1),
        ("int32", 2**31, 1),
        ("uint32", 2**32, 1),
        ("int64", 2**63, 1),
        ("uint64", -1, 1),
        ("uint64", 2**64, 1),
        ("float32", 1e39, 1),
        ("float64", 10**400, 1),
        ("int16", 3276.8, 0.1),
        ("int32", math.nan, 1),
        ("int32", math.inf, 1),
    ],
)
def test_encode_out_of_range(type_: str, value: float, scale: float) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode(param(type_, scale=scale), value)


@pytest.mark.parametrize(
    ("type_", "words"),
    [("float32", [1]), ("float32", [1, 2, 3]), ("uint16", []), ("float64", [0, 0]),
     ("uint16", [65536]), ("int16", [-1])],
)  # fmt: skip
def test_decode_bad_words(type_: str, words: list[int]) -> None:
    with pytest.raises(ValueError):
        decode(param(type_), words)


def test_parameter_validates() -> None:
    with pytest.raises(ValueError, match="length"):
        param("string")
    with pytest.raises(ValueError, match="length"):
        param("uint16", length=2)
    with pytest.raises(ValueError, match="run past 65535"):
        Parameter(name="p", table="input", address=65535, type="float32")
    assert param("string", length=5).count == 5


def test_watlow_profile() -> None:
    profile = load_profile("watlow_pm")
    assert profile.name == "watlow_pm"
    assert {p.name: (p.address, p.type, p.id, p.unit) for p in profile.parameters} == {
        "process_value": (360, "float32", 4001, "degC"),
        "input_error": (362, "uint16", None, None),
        "analog_input_2": (440, "float32", None, "degC"),
        "heat_power": (1904, "float32", None, "%"),
        "cool_power": (1906, "float32", None, "%"),
        "closed_loop_set_point": (2160, "float32", 7001, "degC"),
        "active_set_point": (2172, "float32", None, "degC"),
        "temperature_units": (2490, "uint16", None, None),
    }
    assert {(p.table, p.word_order, p.scale) for p in profile.parameters} == {
        ("holding", "little", 1.0)
    }
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
    assert {p.name: (p.address, p.type, p.count) for p in profile.parameters} == expected
    assert {(p.table, p.word_order, p.id) for p in profile.parameters} == {("input", "big", None)}
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
TYPES = "int16, uint16, int32, uint32, float32, int64, uint64, float64, string"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + 'type = "uint16"\nadress = 1\n',
         "parameter[0].adress: unknown key; expected one of name, table, address, type, id, "
         "word_order, scale, unit, length"),
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
         "defaults.address: unknown key; expected one of table, type, word_order, scale, unit"),
        (GOOD, "parameter[0].type: missing"),
        ('name = "t"\n' + PV + 'address = 65535\ntype = "float32"\n',
         "parameter[0].address: 65535+2 registers run past 65535"),
        ('name = "t"\n' + PV + 'address = 0\ntype = "string"\n',
         "parameter[0].length: type 'string' needs a length of at least 1 register"),
        ('name = "t"\n' + PV + 'address = 0\ntype = "uint16"\nscale = 0\n',
         "parameter[0].scale: 0 is not a finite non-zero number"),
        ('name = "t"\nmodel = "x"\n', "model: unknown key; expected one of name, description, "
         "defaults, parameter"),
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
    tables = [Parameter("a", "input", 0, "uint16"), Parameter("b", "holding", 1, "uint16")]
    assert spans(plan_reads(tables)) == [("holding", 1, 1), ("input", 0, 1)]
    words = [Parameter(f"r{i}", "holding", i, "uint16") for i in range(130)]
    assert spans(plan_reads(words)) == [("holding", 0, 125), ("holding", 125, 5)]
    floats = [Parameter(f"f{i}", "input", 2 * i, "float32") for i in range(63)]
    assert spans(plan_reads(floats)) == [("input", 0, 124), ("input", 124, 2)]
    assert spans(plan_reads(words[:10], max_registers=4)) == [
        ("holding", 0, 4), ("holding", 4, 4), ("holding", 8, 2)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="exceed max_registers"):
        plan_reads([Parameter("s", "input", 0, "string", length=126)])
    assert plan_reads([]) == ()


def test_plan_reads_overlap() -> None:
    whole = Parameter("whole", "holding", 10, "float32")
    low = Parameter("low", "holding", 11, "uint16")
    assert spans(plan_reads([whole, low])) == [("holding", 10, 2)]
    assert spans(plan_reads([low, whole, Parameter("n", "holding", 12, "uint16")])) == [
        ("holding", 10, 3)
    ]


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
    values = {p.name: (f"N{p.address}" if p.type == "string" else p.address + 0.5)
              for p in servomex.parameters}  # fmt: skip
    image = [0] * 70
    for p in servomex.parameters:
        image[p.address : p.address + p.count] = encode(p, values[p.name])
    decoded = {}
    for read in plan_reads(servomex.parameters):
        words = image[read.address : read.address + read.count]
        decoded.update((p.name, v) for p, v in decode_read(read, words))
    assert decoded == values
