"""Register words <-> engineering values: data types, byte orders, scale, offset.

Pure, no I/O and no pymodbus import: register words are plain ints 0..65535. A
:class:`Codec` is how one value is laid out in registers; ``decode`` and ``decoder`` read
it. Where a value lives and how it is shown is
``connectors.parameter.Parameter``, which holds a Codec. The way back, a value into register
words (for the simulator), is :mod:`connectors.encode`.

Byte orders name where the bytes of a big-endian value ``A B C D ...`` (A most
significant) land in the registers as they arrive:

- ``ABCD`` high word first, high byte first in each register (Modbus's own order);
- ``CDAB`` low word first (registers reversed), high byte first;
- ``BADC`` high word first, bytes swapped in each register;
- ``DCBA`` low word first, bytes swapped in each register (fully little-endian).

For 64-bit types "word" means each of the four registers. A one-register type only
feels the byte swap; a string only the byte swap, never the register order.

A one-byte value (``int8``, ``uint8``, and a ``string`` of one character per register) sits
in the ``byte`` ("high" or "low") of its register as the byte order reads it: the high byte
of a ``uint16`` read in the same byte order, so under ``BADC``/``DCBA`` "high" arrives second.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from operator import itemgetter
from typing import Any

__all__ = [
    "BYTES",
    "BYTE_ORDERS",
    "DATA_TYPES",
    "INT_TYPES",
    "TYPE_NAMES",
    "WORD_ORDERS",
    "Codec",
    "Decoder",
    "FieldError",
    "Value",
    "check_codec_field",
    "decode",
    "decoder",
    "pack_registers",
]

# A decoded engineering value; a Sample's value is this or None (a failed read).
Value = int | float | str | bool
MAX_READ = 125  # registers one Modbus read (FC03/FC04) carries at most

# Registers per numeric type; "string" takes ``length`` registers, "bit" one.
DATA_TYPES: dict[str, int] = {
    "int8": 1, "uint8": 1, "int16": 1, "uint16": 1, "float16": 1,
    "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4,
}  # fmt: skip
TYPE_NAMES: tuple[str, ...] = (*DATA_TYPES, "string", "bit")
INT_TYPES: tuple[str, ...] = (
    "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
)  # fmt: skip
_BYTE_TYPES = ("int8", "uint8")  # one byte of a register: they need ``byte``
BYTE_ORDERS: tuple[str, ...] = ("ABCD", "CDAB", "BADC", "DCBA")
BYTES: tuple[str, ...] = ("high", "low")
# The older profile key ``word_order``: an alias resolved when TOML is read.
WORD_ORDERS: dict[str, str] = {"big": "ABCD", "little": "CDAB"}

_FORMATS = {"int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "float16": "e",
            "int32": "i", "uint32": "I", "float32": "f", "int64": "q", "uint64": "Q",
            "float64": "d"}  # fmt: skip
STRUCTS = {t: struct.Struct(">" + f) for t, f in _FORMATS.items()}


class FieldError(ValueError):
    """A field of a Codec or Parameter with a bad value: ``key`` is the field's key path
    (``"bit"``, ``"labels.3"``), ``why`` what is wrong with it; ``str()`` is ``"<key>: <why>"``.
    """

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key, self.why = key, why

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.key, self.why)


def check_codec_field(field: str, value: Any) -> None:
    """Raise FieldError if ``value`` is not valid for ``Codec.<field>`` on its own."""
    if field == "type":
        ok, want = value in TYPE_NAMES, f"one of {', '.join(TYPE_NAMES)}"
    elif field == "byte":
        ok, want = value in BYTES or value is None, "one of high, low"
    elif field == "byte_order":
        ok, want = value in BYTE_ORDERS, f"one of {', '.join(BYTE_ORDERS)}"
    elif field == "scale":
        ok = type(value) in (int, float) and math.isfinite(value) and value != 0
        want = "a finite non-zero number"
    elif field == "offset":
        ok, want = type(value) in (int, float) and math.isfinite(value), "a finite number"
    else:  # length, bit
        top = MAX_READ if field == "length" else 15
        ok = (type(value) is int and 0 <= value <= top) or (field == "bit" and value is None)
        want = f"an integer in 0..{top}"
        if field == "length":
            want += " (registers: one read carries at most 125)"
    if not ok:
        raise FieldError(field, f"{value!r} is not {want}")


@dataclass(frozen=True, slots=True)
class Codec:
    """How one value sits in registers: its data type, byte order, scale and offset, and for
    a string its ``length`` in registers, for a bit its ``bit`` number (0 is the least
    significant), for a one-byte value its ``byte`` ("high" or "low": required for int8 and
    uint8; a string with it holds one character per register). The engineering value is
    ``raw * scale + offset``.

    Validated on construction: FieldError naming the field, e.g. ``"bit: 16 is not an
    integer in 0..15"``.
    """

    type: str  # a key of DATA_TYPES, "string" or "bit"
    _: KW_ONLY
    byte_order: str = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    length: int = 0  # registers, only for type "string"
    bit: int | None = None  # 0 (least significant) .. 15, only for type "bit"
    byte: str | None = None  # "high" or "low", only for int8, uint8 and string

    def __post_init__(self) -> None:
        for field in ("type", "byte_order", "scale", "offset", "length", "bit", "byte"):
            check_codec_field(field, getattr(self, field))
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "offset", float(self.offset))
        if self.type not in DATA_TYPES and (self.scale != 1 or self.offset != 0):
            key = "scale" if self.scale != 1 else "offset"
            raise FieldError(key, f"scale and offset do not apply to type {self.type!r}")
        if (self.type == "string") != (self.length > 0):
            if self.type == "string":
                raise FieldError("length", "type 'string' needs a length of at least 1 register")
            raise FieldError("length", f"{self.length!r} given for type {self.type!r}")
        if (self.type == "bit") != (self.bit is not None):
            if self.type == "bit":
                raise FieldError("bit", "type 'bit' needs a bit number 0..15")
            raise FieldError("bit", f"{self.bit!r} given for type {self.type!r}")
        if self.type in _BYTE_TYPES and self.byte is None:
            raise FieldError("byte", f"type {self.type!r} needs byte = 'high' or 'low'")
        if self.byte is not None and self.type not in (*_BYTE_TYPES, "string"):
            raise FieldError("byte", f"{self.byte!r} given for type {self.type!r}")

    @property
    def count(self) -> int:
        """Number of registers the value occupies."""
        if self.type == "string":
            return self.length
        return 1 if self.type == "bit" else DATA_TYPES[self.type]


def byte_at(c: Codec) -> int:
    """Where in each register, as it arrives (0 first, 1 second), ``c``'s one byte is (for
    :mod:`connectors.encode` too)."""
    swapped = c.byte_order in ("BADC", "DCBA")
    return (c.byte == "low") ^ swapped


# Decoders read a value from the registers of a response packed as they arrived, each
# register big-endian (``pack_registers``), at the value's byte offset.
Decoder = Callable[[bytes, int], Value]


@functools.cache
def _packer(count: int) -> Callable[..., bytes]:
    return struct.Struct(f">{count}H").pack


def pack_registers(words: Sequence[int]) -> bytes:
    """Register words as the bytes they were on the wire (ValueError outside 0..65535)."""
    try:
        return _packer(len(words))(*words)  # a Struct per count: every read's answer comes here
    except struct.error:
        raise ValueError(f"register values must be ints 0..65535, got {list(words)!r}") from None


def _value_order(c: Codec, size: int) -> Callable[[bytes], bytes] | None:
    """What turns ``size`` bytes as they arrived into ``A B C D ...``; None: nothing to do."""
    words = size // 2
    reverse = c.type != "string" and c.byte_order in ("CDAB", "DCBA")
    registers = range(words - 1, -1, -1) if reverse else range(words)
    swap = c.byte_order in ("BADC", "DCBA")
    order = [2 * w + (1 - b if swap else b) for w in registers for b in (0, 1)]
    if order == list(range(size)):
        return None
    if size == 2:  # itemgetter of one index would give an int, not a tuple
        return lambda data: data[::-1]
    pick = itemgetter(*order)
    return lambda data: bytes(pick(data))


def decoder(c: Codec) -> Decoder:
    """A new decoder of ``c``: ``decoder(c)(data, start)`` is the engineering value in the
    packed registers ``data`` whose first one, at byte ``start``, is the value's. The data
    type, byte order, scale and offset are settled here, once, not on every read; a float32
    or float16 decoder remembers its last value, so keep one per device (a request plan
    does)."""
    size = 2 * c.count
    order = _value_order(c, size)
    if c.type == "string" and c.byte is not None:
        at = byte_at(c)

        def chars(data: bytes, start: int) -> Value:
            raw = data[start + at : start + size : 2]
            return raw.split(b"\0", 1)[0].decode("latin-1").rstrip(" ")

        return chars
    if c.type == "string":

        def text(data: bytes, start: int) -> Value:
            raw = data[start : start + size]
            raw = raw if order is None else order(raw)
            return raw.split(b"\0", 1)[0].decode("latin-1").rstrip(" ")

        return text
    if c.type == "bit":
        mask = 1 << c.bit  # type: ignore[operator]

        def bit(data: bytes, start: int) -> Value:
            raw = data[start : start + 2]
            raw = raw if order is None else order(raw)
            return bool(int.from_bytes(raw, "big") & mask)

        return bit
    scale, offset, shortest = c.scale, c.offset, _SHORTEST.get(c.type)
    plain = scale == 1 and offset == 0
    if c.byte is not None:  # int8, uint8
        at, unpack_from = byte_at(c), STRUCTS[c.type].unpack_from

        def small(data: bytes, start: int) -> Value:
            raw = unpack_from(data, start + at)[0]
            return raw if plain else raw * scale + offset

        return small
    unpack = STRUCTS[c.type].unpack
    # float32, float16: (bits, value) of the last decode, swapped whole so threads never
    # see a mix.
    last: list[tuple[bytes, float]] = [(b"", 0.0)]

    def number(data: bytes, start: int) -> Value:
        raw_bytes = data[start : start + size]
        if order is not None:
            raw_bytes = order(raw_bytes)
        if shortest is not None:
            # Most registers repeat between reads; the shortest decimal is worth keeping.
            bits, raw = last[0]
            if raw_bytes != bits:
                raw = shortest(unpack(raw_bytes)[0], raw_bytes)
                last[0] = raw_bytes, raw
        else:
            raw = unpack(raw_bytes)[0]
        return raw if plain else raw * scale + offset

    return number


def decode(c: Codec, words: Sequence[int]) -> Value:
    """Decode exactly ``c.count`` register words into their engineering value.

    Integers stay ``int`` when scale is 1 and offset 0, else become ``raw * scale + offset``
    (a float); float types give ``float`` (float32 as the shortest decimal with the same
    bits, float16 the same but keeping every digit of the whole part: 65504, not 65500);
    ``bit`` gives ``bool``. Strings are latin-1, cut at the first NUL and stripped of
    trailing spaces. Raises ValueError on a wrong number of words or a word outside
    0..65535.
    """
    if len(words) != c.count:
        raise ValueError(f"expected {c.count} registers, got {len(words)}")
    return _shared_decoder(c)(pack_registers(words), 0)


_shared_decoder = functools.cache(decoder)


def _shortest_float32(x: float, bits: bytes) -> float:
    """The shortest decimal with the float32 ``bits`` of ``x``: 75.3, not 75.30000305175781.

    It is the value the instrument meant and shows; 9 digits always round-trip.
    """
    if not math.isfinite(x):
        return x
    pack = STRUCTS["float32"].pack
    for digits in range(6, 9):
        y = float(f"{x:.{digits}g}")
        if pack(y) == bits:
            return y
    return x


def _shortest_float16(x: float, bits: bytes) -> float:
    """The shortest decimal with the float16 ``bits`` of ``x`` that keeps every digit of its
    whole part: 0.1, not 0.0999755859375, but 65504, not 65500 (a count, most likely).

    5 digits always round-trip.
    """
    if not math.isfinite(x):
        return x
    pack = STRUCTS["float16"].pack
    whole = len(str(int(abs(x)))) if abs(x) >= 1 else 1
    for digits in range(whole, 6):
        y = float(f"{x:.{digits}g}")
        if pack(y) == bits:
            return y
    return x


_SHORTEST: dict[str, Callable[[float, bytes], float]] = {
    "float16": _shortest_float16,
    "float32": _shortest_float32,
}
