"""Tests for connectors.codec's one-register types of the field: int8 and uint8 (one byte of a
register), float16 (IEEE half precision) and strings of one character per register, each held
against an independent encoder (``int.to_bytes``, ``struct``'s "e" format)."""

from __future__ import annotations

import math
import random
import struct

import pytest

from connectors.codec import BYTE_ORDERS, Codec, FieldError, decode
from connectors.encode import encode, register_mask
from connectors.parameter import make_parameter

SWAPPED = ("BADC", "DCBA")  # the orders that swap the two bytes of each register


def wire(high: int, low: int, order: str) -> int:
    """The register that arrives for the bytes ``high`` and ``low`` of a value read in
    ``order`` (the byte swap of BADC and DCBA puts the low byte first on the wire)."""
    first, second = (low, high) if order in SWAPPED else (high, low)
    return int.from_bytes(bytes((first, second)), "big")


@pytest.mark.parametrize("order", BYTE_ORDERS)
@pytest.mark.parametrize("byte", ["high", "low"])
@pytest.mark.parametrize("type_", ["int8", "uint8"])
def test_one_byte_integers(type_: str, byte: str, order: str) -> None:
    c = Codec(type_, byte=byte, byte_order=order)
    signed = type_ == "int8"
    values = range(-128, 128) if signed else range(256)
    other = random.Random(f"{type_}-{byte}-{order}")
    for value in values:
        (raw,) = value.to_bytes(1, "big", signed=signed)
        expected = wire(raw, 0, order) if byte == "high" else wire(0, raw, order)
        assert encode(c, value) == [expected]
        assert decode(c, [expected]) == value
        assert type(decode(c, [expected])) is int
        # The register's other byte is another value's: it never changes this one.
        noise = other.randrange(256)
        noisy = wire(raw, noise, order) if byte == "high" else wire(noise, raw, order)
        assert decode(c, [noisy]) == value
    low, high = (-128, 127) if signed else (0, 255)
    for bad in (low - 1, high + 1, math.nan, math.inf):
        with pytest.raises(ValueError, match="out of range"):
            encode(c, bad)


@pytest.mark.parametrize("order", BYTE_ORDERS)
def test_a_byte_is_that_byte_of_the_uint16_in_the_same_order(order: str) -> None:
    rng = random.Random(order)
    whole = Codec("uint16", byte_order=order)
    high = Codec("uint8", byte="high", byte_order=order)
    low = Codec("uint8", byte="low", byte_order=order)
    for _ in range(200):
        words = [rng.randrange(65536)]
        n = decode(whole, words)
        assert (decode(high, words), decode(low, words)) == (n >> 8, n & 0xFF)
        assert register_mask(high) | register_mask(low) == 0xFFFF
        assert encode(high, n >> 8)[0] | encode(low, n & 0xFF)[0] == words[0]
    assert register_mask(whole) == 0xFFFF
    assert register_mask(high) == (0x00FF if order in SWAPPED else 0xFF00)


def test_one_byte_integers_scale_offset_and_edges() -> None:
    assert decode(Codec("int8", byte="high"), [0x8000]) == -128
    assert decode(Codec("int8", byte="low"), [0x007F]) == 127
    assert decode(Codec("uint8", byte="low"), [0xABFF]) == 255
    assert decode(Codec("int8", byte="low"), [0x12FF]) == -1
    c = Codec("int8", byte="low", scale=0.5, offset=-10)
    assert decode(c, [0x00FE]) == -11.0  # raw -2
    assert type(decode(c, [0x00FE])) is float
    assert encode(c, -11.0) == [0x00FE]
    assert encode(c, 53.5) == [0x007F]  # raw 127
    with pytest.raises(ValueError, match="out of range"):
        encode(c, 54.0)  # raw 128
    p = make_parameter(
        {"name": "mode", "table": "holding", "address": 3, "type": "uint8", "byte": "high",
         "labels": ((0, "off"), (1, "auto"))}
    )  # fmt: skip
    assert (p.count, p.label(decode(p.codec, [0x0107]))) == (1, "auto")


def half(bits: int) -> bytes:
    return bits.to_bytes(2, "big")


def test_float16_every_word_against_struct() -> None:
    """Every one of the 65536 words decodes to the float16 that struct's "e" format reads in
    them (the same bits once packed back), and encodes back to that word."""
    c = Codec("float16")
    for word in range(65536):
        value = decode(c, [word])
        (expected,) = struct.unpack(">e", half(word))
        assert type(value) is float
        if math.isnan(expected):
            assert math.isnan(value)
            continue
        assert struct.pack(">e", value) == half(word)
        assert encode(c, value) == [word]
        assert encode(c, expected) == [word]


@pytest.mark.parametrize("order", BYTE_ORDERS)
def test_float16_byte_orders(order: str) -> None:
    c = Codec("float16", byte_order=order)
    for value in (1.0, -2.5, 65504.0, 0.1):
        (ab,) = struct.unpack(">H", struct.pack(">e", value))
        word = ((ab & 0xFF) << 8 | ab >> 8) if order in SWAPPED else ab
        assert encode(c, value) == [word]
        assert decode(c, [word]) == value


@pytest.mark.parametrize(
    ("value", "word"),
    [
        (65504.0, 0x7BFF),  # the largest: read whole, not as its shortest decimal 65500
        (-65504.0, 0xFBFF),
        (2.0**-14, 0x0400),  # the smallest normal
        (2.0**-24, 0x0001),  # the smallest subnormal
        (2.0**-14 - 2.0**-24, 0x03FF),  # the largest subnormal
        (-(2.0**-24), 0x8001),
        (math.inf, 0x7C00),
        (-math.inf, 0xFC00),
        (-0.0, 0x8000),
        (0.1, 0x2E66),
        (1.0, 0x3C00),
        (2049.0, 0x6800),  # not representable: rounds to even, 2048
        (65519.0, 0x7BFF),  # rounds down to the largest
    ],
)
def test_float16_edges(value: float, word: int) -> None:
    c = Codec("float16")
    assert encode(c, value) == [word]
    assert struct.pack(">e", value) == half(word)  # the independent encoder agrees
    read = decode(c, [word])
    assert struct.pack(">e", read) == half(word)
    assert math.copysign(1.0, read) == math.copysign(1.0, value)


def test_float16_reads() -> None:
    c = Codec("float16")
    assert decode(c, [0x7BFF]) == 65504.0
    assert decode(c, [0x2E66]) == 0.1  # the shortest decimal, not 0.0999755859375
    assert decode(c, [0x0001]) == 6e-08  # the smallest subnormal, 5.96e-08, as shortest
    assert decode(c, [0x5646]) == 100.4  # 100.375: every digit of the whole part stays
    assert math.isnan(decode(c, [0x7E00]))
    assert decode(c, [0x7C00]) == math.inf
    scaled = Codec("float16", scale=10, offset=1)
    assert decode(scaled, [0x2E66]) == 2.0
    assert encode(scaled, 2.0) == [0x2E66]
    for bad in (65520.0, 1e6):
        with pytest.raises(ValueError, match="out of range"):
            encode(c, bad)
    nan = encode(c, math.nan)
    assert math.isnan(struct.unpack(">e", half(nan[0]))[0])


@pytest.mark.parametrize("order", BYTE_ORDERS)
def test_string_of_one_character_per_register(order: str) -> None:
    low = Codec("string", length=4, byte="low", byte_order=order)
    high = Codec("string", length=4, byte="high", byte_order=order)
    text = "O2%"
    expect_low = [wire(0, ch, order) for ch in b"O2%\0"]
    expect_high = [wire(ch, 0, order) for ch in b"O2%\0"]
    assert encode(low, text) == expect_low
    assert encode(high, text) == expect_high
    assert decode(low, expect_low) == text
    assert decode(high, expect_high) == text
    # The other byte of each register is not the string's; the text ends at the first NUL.
    noisy = [wire(0x55, ch, order) for ch in b"AB\0C"]
    assert decode(low, noisy) == "AB"
    assert decode(low, [wire(0, ch, order) for ch in b"ab  "]) == "ab"
    assert decode(low, encode(low, "\xb0C")) == "\xb0C"  # latin-1
    assert encode(low, "") == [0, 0, 0, 0]
    for bad in ("toolong", "\u20ac", "a\0b"):
        with pytest.raises(ValueError):
            encode(low, bad)
    assert low.count == 4


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "int8"}, "byte: type 'int8' needs byte = 'high' or 'low'"),
        ({"type": "uint8", "byte": "middle"}, "byte: 'middle' is not one of high, low"),
        ({"type": "uint8", "byte": 1}, "byte: 1 is not one of high, low"),
        ({"type": "int16", "byte": "low"}, "byte: 'low' given for type 'int16'"),
        ({"type": "float16", "byte": "high"}, "byte: 'high' given for type 'float16'"),
        ({"type": "bit", "bit": 1, "byte": "low"}, "byte: 'low' given for type 'bit'"),
        ({"type": "uint8", "byte": "low", "scale": 0}, "scale: 0 is not a finite non-zero"),
        ({"type": "float16", "scale": math.nan}, "scale: nan is not a finite non-zero"),
        ({"type": "int8", "byte": "low", "offset": math.nan}, "offset: nan is not a finite"),
        (
            {"type": "string", "length": 2, "byte": "low", "offset": 1},
            "offset: scale and offset do not apply to type 'string'",
        ),
        ({"type": "string", "length": 2, "scale": 2}, "scale: scale and offset do not apply"),
        (
            {"type": "float16", "labels": ((1, "a"),)},
            "labels: enum labels need an integer or bit type, not float16",
        ),
    ],
)
def test_one_line_errors(fields: dict[str, object], message: str) -> None:
    base = {"name": "p", "table": "holding", "address": 0}
    with pytest.raises(FieldError) as info:
        make_parameter({**base, **fields})
    assert str(info.value) == message or str(info.value).startswith(message)
    assert info.value.key == message.split(":")[0]
