"""Register words <-> engineering values: data types, byte orders, scale, offset, labels.

Pure, no I/O and no pymodbus import: register words are plain ints 0..65535.
``connectors.registers`` re-exports everything callers need from here.

Byte orders name where the bytes of a big-endian value ``A B C D ...`` (A most
significant) land in the registers as they arrive:

- ``ABCD`` high word first, high byte first in each register (Modbus's own order);
- ``CDAB`` low word first (registers reversed), high byte first;
- ``BADC`` high word first, bytes swapped in each register;
- ``DCBA`` low word first, bytes swapped in each register (fully little-endian).

For 64-bit types "word" means each of the four registers. A one-register type only
feels the byte swap; a string only the byte swap, never the register order.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

__all__ = [
    "BYTE_ORDERS",
    "DATA_TYPES",
    "TABLES",
    "WORD_ORDERS",
    "Decoder",
    "Parameter",
    "Table",
    "Value",
    "check_field",
    "decode",
    "decoder",
    "encode",
    "pack_registers",
]

Table = Literal["holding", "input"]
Value = int | float | str | bool
TABLES: tuple[str, ...] = ("holding", "input")
# Registers per numeric type; "string" takes ``length`` registers, "bit" one.
DATA_TYPES: dict[str, int] = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
    "int64": 4, "uint64": 4, "float64": 4,
}  # fmt: skip
BYTE_ORDERS: tuple[str, ...] = ("ABCD", "CDAB", "BADC", "DCBA")
# The older profile key ``word_order``: an alias resolved when TOML is read.
WORD_ORDERS: dict[str, str] = {"big": "ABCD", "little": "CDAB"}

_TYPE_NAMES = (*DATA_TYPES, "string", "bit")
_INT_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64")
_FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
            "int64": "q", "uint64": "Q", "float64": "d"}  # fmt: skip
_STRUCTS = {t: struct.Struct(">" + f) for t, f in _FORMATS.items()}

_FIELDS = ("name", "table", "address", "type", "id", "byte_order", "scale", "offset", "unit",
           "length", "bit", "labels")  # fmt: skip
_CHOICES = {"table": TABLES, "type": _TYPE_NAMES, "byte_order": BYTE_ORDERS}
_INT_FIELDS = {"address": (0, 65535), "id": (0, 2**63 - 1), "length": (0, 65535), "bit": (0, 15)}


def check_field(field: str, value: Any) -> None:
    """Raise ValueError("<field>: <why>") if ``value`` is not valid for ``Parameter.<field>``."""
    if field in _CHOICES:
        ok, want = value in _CHOICES[field], f"one of {', '.join(_CHOICES[field])}"
    elif field in _INT_FIELDS:
        low, top = _INT_FIELDS[field]
        ok = (type(value) is int and low <= value <= top) or (
            field in ("id", "bit") and value is None
        )
        want = f"an integer in {low}..{top}"
    elif field == "scale":
        ok = type(value) in (int, float) and math.isfinite(value) and value != 0
        want = "a finite non-zero number"
    elif field == "offset":
        ok, want = type(value) in (int, float) and math.isfinite(value), "a finite number"
    elif field == "labels":
        _check_labels(value)
        return
    else:  # name, unit
        ok = (isinstance(value, str) and value != "") or (field == "unit" and value is None)
        want = "a non-empty string"
    if not ok:
        raise ValueError(f"{field}: {value!r} is not {want}")


def _check_labels(labels: Any) -> None:
    if not isinstance(labels, tuple):
        raise ValueError(f"labels: {labels!r} is not a tuple of (int, text) pairs")
    seen: set[int] = set()
    for pair in labels:
        ok = isinstance(pair, tuple) and len(pair) == 2 and type(pair[0]) is int
        if not ok or not isinstance(pair[1], str) or not pair[1]:
            raise ValueError(f"labels: {pair!r} is not an (int, non-empty text) pair")
        if pair[0] in seen:
            raise ValueError(f"labels.{pair[0]}: given twice")
        seen.add(pair[0])


@dataclass(frozen=True, slots=True)
class Parameter:
    """One value in a device's register map; validated on construction (ValueError whose
    message starts with the offending field name, e.g. ``"bit: 16 is not an integer in 0..15"``).

    ``address`` is always the 0-based PDU address. The engineering value is
    ``raw * scale + offset``. ``labels`` are enum texts for raw integer values; they need an
    integer or bit type and no scale or offset, so the decoded value is the raw one.
    """

    name: str
    table: Table
    address: int
    type: str  # a key of DATA_TYPES, "string" or "bit"
    id: int | None = None  # vendor parameter id
    byte_order: str = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    length: int = 0  # registers, only for type "string"
    bit: int | None = None  # 0 (least significant) .. 15, only for type "bit"
    labels: tuple[tuple[int, str], ...] = ()  # enum: raw value -> text for value_text

    def label(self, value: object) -> str | None:
        """The enum text for ``value``, or None (no labels, or a value without one)."""
        for raw, text in self.labels:
            if raw == value:
                return text
        return None

    def __post_init__(self) -> None:
        for field in _FIELDS:
            check_field(field, getattr(self, field))
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "offset", float(self.offset))
        numeric = self.type in DATA_TYPES
        if not numeric and (self.scale != 1 or self.offset != 0):
            raise ValueError(f"scale: scale and offset do not apply to type {self.type!r}")
        if (self.type == "string") != (self.length > 0):
            if self.type == "string":
                raise ValueError("length: type 'string' needs a length of at least 1 register")
            raise ValueError(f"length: {self.length!r} given for type {self.type!r}")
        if (self.type == "bit") != (self.bit is not None):
            if self.type == "bit":
                raise ValueError("bit: type 'bit' needs a bit number 0..15")
            raise ValueError(f"bit: {self.bit!r} given for type {self.type!r}")
        if self.labels:
            if self.type not in (*_INT_TYPES, "bit"):
                raise ValueError(
                    f"labels: enum labels need an integer or bit type, not {self.type}"
                )
            if self.scale != 1 or self.offset != 0:
                raise ValueError("labels: enum labels apply to raw values: no scale or offset")
        if self.address + self.count > 65536:
            raise ValueError(f"address: {self.address}+{self.count} registers run past 65535")

    @property
    def count(self) -> int:
        """Number of registers the parameter occupies."""
        if self.type == "string":
            return self.length
        return 1 if self.type == "bit" else DATA_TYPES[self.type]


def _swap_bytes(data: bytes) -> bytes:
    swapped = bytearray(data)
    swapped[0::2], swapped[1::2] = data[1::2], data[0::2]
    return bytes(swapped)


def _to_words(p: Parameter, data: bytes) -> list[int]:
    """The registers, as they go on the wire, of the big-endian value bytes ``data``."""
    if p.byte_order in ("BADC", "DCBA"):
        data = _swap_bytes(data)
    words = list(struct.unpack(f">{len(data) // 2}H", data))
    if p.byte_order in ("CDAB", "DCBA") and p.type != "string":
        words.reverse()
    return words


# Decoders read a value from the registers of a response packed as they arrived, each
# register big-endian (``pack_registers``), at the value's byte offset.
Decoder = Callable[[bytes, int], Value]


def pack_registers(words: Sequence[int]) -> bytes:
    """Register words as the bytes they were on the wire (ValueError outside 0..65535)."""
    try:
        return struct.pack(f">{len(words)}H", *words)
    except struct.error:
        raise ValueError(f"register values must be ints 0..65535, got {list(words)!r}") from None


def _value_order(p: Parameter, size: int) -> Callable[[bytes], bytes] | None:
    """What turns ``size`` bytes as they arrived into ``A B C D ...``; None: nothing to do."""
    words = size // 2
    reverse = p.type != "string" and p.byte_order in ("CDAB", "DCBA")
    registers = range(words - 1, -1, -1) if reverse else range(words)
    swap = p.byte_order in ("BADC", "DCBA")
    order = [2 * w + (1 - b if swap else b) for w in registers for b in (0, 1)]
    if order == list(range(size)):
        return None
    if size == 2:  # itemgetter of one index would give an int, not a tuple
        return lambda data: data[::-1]
    pick = itemgetter(*order)
    return lambda data: bytes(pick(data))


def decoder(p: Parameter) -> Decoder:
    """A new decoder of ``p``: ``decoder(p)(data, start)`` is ``p``'s engineering value from
    the packed registers ``data`` whose first one at byte ``start`` is ``p``'s. The data
    type, byte order, scale and offset are settled here, once, not on every read; a float32
    decoder remembers its last value, so keep one per device (a request plan does)."""
    size = 2 * p.count
    order = _value_order(p, size)
    if p.type == "string":

        def text(data: bytes, start: int) -> Value:
            raw = data[start : start + size]
            raw = raw if order is None else order(raw)
            return raw.split(b"\0", 1)[0].decode("latin-1").rstrip(" ")

        return text
    if p.type == "bit":
        mask = 1 << p.bit  # type: ignore[operator]

        def bit(data: bytes, start: int) -> Value:
            raw = data[start : start + 2]
            raw = raw if order is None else order(raw)
            return bool(int.from_bytes(raw, "big") & mask)

        return bit
    unpack = _STRUCTS[p.type].unpack
    scale, offset, float32 = p.scale, p.offset, p.type == "float32"
    plain = scale == 1 and offset == 0
    # float32: (bits, value) of the last decode, swapped whole so threads never see a mix.
    last: list[tuple[bytes, float]] = [(b"", 0.0)]

    def number(data: bytes, start: int) -> Value:
        raw_bytes = data[start : start + size]
        if order is not None:
            raw_bytes = order(raw_bytes)
        if float32:
            # Most registers repeat between reads; the shortest decimal is worth keeping.
            bits, raw = last[0]
            if raw_bytes != bits:
                raw = _shortest_float32(unpack(raw_bytes)[0], raw_bytes)
                last[0] = raw_bytes, raw
        else:
            raw = unpack(raw_bytes)[0]
        return raw if plain else raw * scale + offset

    return number


def decode(p: Parameter, words: Sequence[int]) -> Value:
    """Decode exactly ``p.count`` register words into the engineering value of ``p``.

    Integers stay ``int`` when scale is 1 and offset 0, else become ``raw * scale + offset``
    (a float); float types give ``float`` (float32 as the shortest decimal with the same
    bits); ``bit`` gives ``bool``. Strings are latin-1, cut at the first NUL and stripped
    of trailing spaces. Raises ValueError on a wrong number of words or a word outside
    0..65535.
    """
    if len(words) != p.count:
        raise ValueError(f"{p.name}: expected {p.count} registers, got {len(words)}")
    try:
        data = pack_registers(words)
    except ValueError as exc:
        raise ValueError(f"{p.name}: {exc}") from None
    return _shared_decoder(p)(data, 0)


_shared_decoder = functools.cache(decoder)


def _shortest_float32(x: float, bits: bytes) -> float:
    """The shortest decimal with the float32 ``bits`` of ``x``: 75.3, not 75.30000305175781.

    It is the value the instrument meant and shows; 9 digits always round-trip.
    """
    if not math.isfinite(x):
        return x
    pack = _STRUCTS["float32"].pack
    for digits in range(6, 9):
        y = float(f"{x:.{digits}g}")
        if pack(y) == bits:
            return y
    return x


def encode(p: Parameter, value: Value) -> list[int]:
    """Encode an engineering value into ``p.count`` register words; the inverse of decode.

    Numbers become ``(value - offset) / scale``, rounded for integer types. A bit parameter
    takes a bool (or 0/1) and gives a register with only that bit set or none. Raises
    ValueError when the value does not fit the type (or the string its length), TypeError
    when a string is given for a number or the other way round.
    """
    if p.type == "string":
        if not isinstance(value, str):
            raise TypeError(f"{p.name}: expected str, got {type(value).__name__}")
        try:
            data = value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"{p.name}: {value!r} is not latin-1 text") from None
        if len(data) > 2 * p.length or b"\0" in data:
            raise ValueError(f"{p.name}: {value!r} does not fit {p.length} registers without NUL")
        return _to_words(p, data.ljust(2 * p.length, b"\0"))
    if not isinstance(value, int | float):
        raise TypeError(f"{p.name}: expected a number, got {type(value).__name__}")
    if p.type == "bit":
        if value not in (0, 1):
            raise ValueError(f"{p.name}: {value!r} is not a bit (true/false, 0/1)")
        assert p.bit is not None
        return _to_words(p, (int(value) << p.bit).to_bytes(2, "big"))
    # Subtracting 0.0 or dividing by 1.0 would turn a large int64 into an inexact float.
    raw = value if p.offset == 0 else value - p.offset
    raw = raw if p.scale == 1 else raw / p.scale
    try:
        if p.type not in ("float32", "float64"):
            raw = round(raw)  # OverflowError for inf, ValueError for nan
        data = _STRUCTS[p.type].pack(raw)  # struct.error for ints out of range
    except (OverflowError, ValueError, struct.error):
        raise ValueError(f"{p.name}: {value!r} is out of range for {p.type}") from None
    return _to_words(p, data)
