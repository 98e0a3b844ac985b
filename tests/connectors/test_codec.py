"""Tests for connectors.codec: each data type x each byte order, scale, offset, labels, bits."""

from __future__ import annotations

import dataclasses
import math
import random
import struct

import pytest
from pymodbus.client.mixin import ModbusClientMixin

from connectors.codec import (
    BYTE_ORDERS,
    DATA_TYPES,
    Codec,
    FieldError,
    Value,
    decode,
    decoder,
    pack_registers,
)
from connectors.encode import encode
from connectors.parameter import Parameter, make_parameter

# (type, engineering value, register words in ABCD order), worked out by hand.
CASES: list[tuple[str, int | float, list[int]]] = [
    ("int16", 1234, [0x04D2]),
    ("int16", -2, [0xFFFE]),
    ("int16", -32768, [0x8000]),
    ("uint16", 65535, [0xFFFF]),
    ("uint16", 0x1234, [0x1234]),
    ("int32", -2, [0xFFFF, 0xFFFE]),
    ("int32", -123456, [0xFFFE, 0x1DC0]),
    ("uint32", 0xDEADBEEF, [0xDEAD, 0xBEEF]),
    ("float32", 75.0, [0x4296, 0x0000]),
    ("float32", -1.5, [0xBFC0, 0x0000]),
    ("float32", 1.0, [0x3F80, 0x0000]),
    ("int64", -2, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]),
    ("int64", 2**62 + 5, [0x4000, 0x0000, 0x0000, 0x0005]),
    ("uint64", 0x0123456789ABCDEF, [0x0123, 0x4567, 0x89AB, 0xCDEF]),
    ("float64", 1.0, [0x3FF0, 0x0000, 0x0000, 0x0000]),
    ("float64", -2.5, [0xC004, 0x0000, 0x0000, 0x0000]),
]

# Where each byte of the big-endian value A B C D ... lands, per order and register count.
PERMUTATIONS: dict[str, dict[int, list[int]]] = {
    "ABCD": {1: [0, 1], 2: [0, 1, 2, 3], 4: [0, 1, 2, 3, 4, 5, 6, 7]},
    "CDAB": {1: [0, 1], 2: [2, 3, 0, 1], 4: [6, 7, 4, 5, 2, 3, 0, 1]},
    "BADC": {1: [1, 0], 2: [1, 0, 3, 2], 4: [1, 0, 3, 2, 5, 4, 7, 6]},
    "DCBA": {1: [1, 0], 2: [3, 2, 1, 0], 4: [7, 6, 5, 4, 3, 2, 1, 0]},
}

# Fully written out, so the permutation table above is checked too.
LITERAL: list[tuple[str, str, int | float, list[int]]] = [
    ("float32", "ABCD", 1.0, [0x3F80, 0x0000]),
    ("float32", "CDAB", 1.0, [0x0000, 0x3F80]),
    ("float32", "BADC", 1.0, [0x803F, 0x0000]),
    ("float32", "DCBA", 1.0, [0x0000, 0x803F]),
    ("uint32", "CDAB", 0xDEADBEEF, [0xBEEF, 0xDEAD]),
    ("uint32", "BADC", 0xDEADBEEF, [0xADDE, 0xEFBE]),
    ("uint32", "DCBA", 0xDEADBEEF, [0xEFBE, 0xADDE]),
    ("uint64", "CDAB", 0x0123456789ABCDEF, [0xCDEF, 0x89AB, 0x4567, 0x0123]),
    ("uint64", "BADC", 0x0123456789ABCDEF, [0x2301, 0x6745, 0xAB89, 0xEFCD]),
    ("uint64", "DCBA", 0x0123456789ABCDEF, [0xEFCD, 0xAB89, 0x6745, 0x2301]),
    ("uint16", "CDAB", 0x1234, [0x1234]),
    ("uint16", "BADC", 0x1234, [0x3412]),
    ("int16", "DCBA", -2, [0xFEFF]),
]


# The types pymodbus decodes too; int8, uint8 and float16 are in test_codec_types.py.
PYMODBUS_TYPES = [t for t in DATA_TYPES if t.upper() in ModbusClientMixin.DATATYPE.__members__]
# The types whose every register word is theirs (int8 and uint8 hold one byte).
WHOLE_TYPES = [t for t in DATA_TYPES if t not in ("int8", "uint8")]


def codec(type_: str, order: str = "ABCD", **kw: object) -> Codec:
    return Codec(type_, byte_order=order, **kw)  # type: ignore[arg-type]


def param(type_: str, order: str = "ABCD", **kw: object) -> Parameter:
    """A parameter from flat TOML-like fields, codec and display mixed."""
    fields = {"name": "p", "table": "holding", "address": 0, "type": type_, "byte_order": order}
    return make_parameter({**fields, **kw})


def arrange(abcd_words: list[int], order: str) -> list[int]:
    """ABCD register words rearranged into ``order`` through the byte table above."""
    data = struct.pack(f">{len(abcd_words)}H", *abcd_words)
    moved = bytes(data[i] for i in PERMUTATIONS[order][len(abcd_words)])
    return list(struct.unpack(f">{len(abcd_words)}H", moved))


@pytest.mark.parametrize("order", BYTE_ORDERS)
@pytest.mark.parametrize(("type_", "value", "abcd"), CASES)
def test_known_words(type_: str, value: float, abcd: list[int], order: str) -> None:
    words = arrange(abcd, order)
    p = codec(type_, order)
    decoded = decode(p, words)
    assert decoded == value
    assert type(decoded) is type(value)
    assert encode(p, value) == words


@pytest.mark.parametrize(("type_", "order", "value", "words"), LITERAL)
def test_literal_words(type_: str, order: str, value: float, words: list[int]) -> None:
    p = codec(type_, order)
    assert decode(p, words) == value
    assert encode(p, value) == words


def _swap(words: list[int]) -> list[int]:
    return [((w & 0xFF) << 8) | (w >> 8) for w in words]


@pytest.mark.parametrize("order", BYTE_ORDERS)
@pytest.mark.parametrize("type_", PYMODBUS_TYPES)
def test_agrees_with_pymodbus(type_: str, order: str) -> None:
    """pymodbus knows word order only; byte-swapped orders are swapped back for it."""
    rng = random.Random(f"pymodbus-{type_}-{order}")
    p = codec(type_, order)
    datatype = ModbusClientMixin.DATATYPE[type_.upper()]
    for _ in range(100):
        words = [rng.randrange(65536) for _ in range(p.count)]
        plain = _swap(words) if order in ("BADC", "DCBA") else words
        word_order = "little" if order in ("CDAB", "DCBA") else "big"
        expected = ModbusClientMixin.convert_from_registers(plain, datatype, word_order=word_order)
        value = decode(p, words)
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(expected, float) and math.isnan(expected)
        elif type_ == "float32":
            assert struct.pack(">f", value) == struct.pack(">f", expected)
        else:
            assert value == expected


def test_float32_reads_as_the_shortest_decimal() -> None:
    # 0x41A73333 is the float32 nearest 20.9; read back it is 20.9, not 20.899999618530273.
    p = codec("float32")
    assert decode(p, [0x41A7, 0x3333]) == 20.9
    assert struct.unpack(">f", struct.pack(">f", 20.9))[0] != 20.9
    for value in (75.3, 22.846, 0.1, 1e-12, 3.4e38, 123456.78, -0.0):
        assert decode(p, encode(p, value)) == value
    assert math.isnan(decode(p, [0x7FC0, 0x0000]))
    assert decode(p, [0x7F80, 0x0000]) == math.inf


@pytest.mark.parametrize("order", BYTE_ORDERS)
def test_a_float32_decoder_remembers_only_the_last_value(order: str) -> None:
    # A decoder keeps the last value it decoded; repeats, changes and returns must all read
    # what the registers say now, and a scale applies to the remembered value too.
    p = codec("float32", order, scale=10.0)
    raw = codec("float32", order)
    read = decoder(p)
    for value in (75.3, 75.3, 20.9, 75.3, -1.5, -1.5):
        assert read(pack_registers(encode(raw, value)), 0) == value * 10.0
    assert read(b"\0\0" + pack_registers(encode(raw, 20.9)), 2) == 20.9 * 10.0


@pytest.mark.parametrize("order", BYTE_ORDERS)
@pytest.mark.parametrize("type_", WHOLE_TYPES)
def test_words_round_trip(type_: str, order: str) -> None:
    rng = random.Random(f"{type_}-{order}")
    p = codec(type_, order)
    for _ in range(200):
        words = [rng.randrange(65536) for _ in range(p.count)]
        value = decode(p, words)
        if isinstance(value, float) and math.isnan(value):
            continue  # NaN payloads need not survive a trip through a Python float
        assert encode(p, value) == words
        assert decode(p, encode(p, value)) == value


def test_scale() -> None:
    p = codec("int16", scale=0.1)
    assert decode(p, [0x04D2]) == pytest.approx(123.4)
    assert isinstance(decode(p, [0x04D2]), float)
    assert decode(p, [0xFF85]) == pytest.approx(-12.3)
    assert encode(p, 123.4) == [0x04D2]
    assert encode(p, -12.3) == [0xFF85]
    assert encode(p, decode(p, [0x7FFF])) == [0x7FFF]
    assert decode(codec("float32", scale=2), [0x4296, 0x0000]) == 150.0
    assert encode(codec("uint32", "CDAB", scale=10), 1000) == [100, 0]
    assert type(decode(codec("uint16"), [7])) is int


def test_offset() -> None:
    # A transmitter reporting tenths of a kelvin: raw 2931 is 293.1 K, 20.0 degC.
    p = codec("uint16", scale=0.1, offset=-273.15)
    assert decode(p, [2931]) == pytest.approx(19.95)
    assert encode(p, 19.95) == [2931]
    q = codec("int32", "DCBA", offset=-40)
    assert decode(q, [0x3C00, 0x0000]) == 20.0  # raw 60, little-endian bytes
    assert type(decode(q, [0x3C00, 0x0000])) is float
    assert encode(q, 20.0) == [0x3C00, 0x0000]
    assert decode(codec("float32", scale=2, offset=1), [0x4296, 0x0000]) == 151.0
    with pytest.raises(ValueError, match="out of range"):
        encode(codec("uint16", offset=10), 5)  # raw -5


def test_labels() -> None:
    p = param("uint16", labels=((61, "none"), (65, "open")))
    assert decode(p.codec, [61]) == 61
    assert p.label(decode(p.codec, [61])) == "none"
    assert p.label(65) == "open"
    assert p.label(62) is None
    assert param("uint16").label(61) is None
    flag = param("bit", bit=3, labels=((0, "off"), (1, "on")))
    assert flag.label(decode(flag.codec, [0x0008])) == "on"
    assert flag.label(decode(flag.codec, [0xFFF7])) == "off"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"type_": "float32", "labels": ((1, "a"),)}, "labels: enum labels need an integer"),
        ({"type_": "uint16", "scale": 2, "labels": ((1, "a"),)}, "labels: enum labels apply"),
        ({"type_": "uint16", "labels": ((1, "a"), (1, "b"))}, "labels.1: given twice"),
        ({"type_": "uint16", "labels": ((1, ""),)}, "labels: (1, '') is not an (int, non-empty"),
        ({"type_": "uint16", "labels": {1: "a"}}, "labels: {1: 'a'} is not a tuple"),
        ({"type_": "uint16", "bit": 2}, "bit: 2 given for type 'uint16'"),
        ({"type_": "bit"}, "bit: type 'bit' needs a bit number 0..15"),
        ({"type_": "bit", "bit": 16}, "bit: 16 is not an integer in 0..15"),
        ({"type_": "bit", "bit": 1, "scale": 2}, "scale: scale and offset do not apply"),
        ({"type_": "string", "length": 2, "offset": 1}, "offset: scale and offset do not apply"),
        ({"type_": "uint16", "offset": math.inf}, "offset: inf is not a finite number"),
        ({"type_": "uint16", "order": "ABDC"}, "byte_order: 'ABDC' is not one of ABCD, CDAB"),
        ({"type_": "string"}, "length: type 'string' needs a length"),
        ({"type_": "uint16", "length": 2}, "length: 2 given for type 'uint16'"),
    ],
)
def test_parameter_validates(kw: dict[str, object], message: str) -> None:
    with pytest.raises(FieldError) as info:
        param(**kw)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
    # The key path is data: nobody splits the message to find it.
    assert (info.value.key, info.value.why) == tuple(str(info.value).split(": ", 1))
    assert info.value.key == message.split(":")[0]


@pytest.mark.parametrize("order", BYTE_ORDERS)
def test_bit(order: str) -> None:
    swapped = order in ("BADC", "DCBA")
    for bit in range(16):
        p = codec("bit", order, bit=bit)
        assert p.count == 1
        word = 1 << bit
        on = [((word & 0xFF) << 8) | (word >> 8)] if swapped else [word]
        assert decode(p, on) is True
        assert decode(p, [0xFFFF ^ on[0]]) is False
        assert encode(p, True) == on
        assert encode(p, 0) == [0]
    # The 0x0201 word of a status register, read ABCD: bits 0 and 9 are set.
    status = [0x0201]
    assert [b for b in range(16) if decode(codec("bit", bit=b), status)] == [0, 9]
    with pytest.raises(ValueError, match="is not a bit"):
        encode(codec("bit", bit=0), 2)


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
    for order in ("ABCD", "CDAB"):  # the register order never applies to strings
        assert decode(codec("string", order, length=3), words) == text
    for order in ("BADC", "DCBA"):  # the byte swap does
        assert decode(codec("string", order, length=3), _swap(words)) == text


def test_string_encode() -> None:
    p = codec("string", "CDAB", length=2)
    assert encode(p, "ppm") == [0x7070, 0x6D00]
    assert encode(p, "%") == [0x2500, 0x0000]
    assert encode(p, "") == [0, 0]
    assert encode(codec("string", "BADC", length=2), "ppm") == [0x7070, 0x006D]
    assert decode(p, encode(p, "vpm")) == "vpm"
    for bad in ("toolong", "\u20ac", "a\0b"):
        with pytest.raises(ValueError):
            encode(p, bad)
    with pytest.raises(TypeError):
        encode(p, 1.0)
    with pytest.raises(TypeError):
        encode(codec("float32"), "1.0")


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
def test_encode_out_of_range(type_: str, value: Value, scale: float) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode(codec(type_, scale=scale), value)


@pytest.mark.parametrize(
    ("type_", "words"),
    [("float32", [1]), ("float32", [1, 2, 3]), ("uint16", []), ("float64", [0, 0]),
     ("uint16", [65536]), ("int16", [-1]), ("bit", [1, 2])],
)  # fmt: skip
def test_decode_bad_words(type_: str, words: list[int]) -> None:
    with pytest.raises(ValueError):
        decode(codec(type_, bit=0 if type_ == "bit" else None), words)


def test_parameter_limits() -> None:
    with pytest.raises(ValueError, match="run past 65535"):
        Parameter("p", "input", 65535, Codec("float32"))
    assert codec("string", length=5).count == 5
    assert Parameter("p", "input", 65535, Codec("bit", bit=15)).count == 1


def test_codec_is_a_value() -> None:
    """Equal codecs are one value: a parameter holds one, decoders are shared by it."""
    assert Codec("float32", byte_order="CDAB") == codec("float32", "CDAB")
    assert hash(Codec("int16", scale=0.1)) == hash(Codec("int16", scale=0.1))
    assert Codec("uint16", scale=2).scale == 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        Codec("uint16").scale = 2  # type: ignore[misc]
    p = Parameter("t", "input", 5, Codec("int16", scale=0.1), unit="degC")
    assert (p.name, p.table, p.address, p.count, p.unit, p.codec.type) == (
        "t", "input", 5, 1, "degC", "int16"
    )  # fmt: skip
    assert decode(p.codec, encode(p.codec, 21.5)) == pytest.approx(21.5)
