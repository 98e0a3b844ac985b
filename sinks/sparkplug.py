"""Sparkplug B 3.0 payloads: the metric catalog type and the protobuf wire format.

The payload is the ``Payload`` message of Eclipse Tahu's ``sparkplug_b.proto`` (the copy the
tests compile is ``tests/interop/data/sparkplug_b.proto``). Only what the MQTT sink sends is
encoded here, by hand: a payload's ``timestamp``, ``metrics`` and ``seq``; a metric's
``name``, ``alias``, ``timestamp``, ``datatype``, ``is_null``, ``properties`` and scalar
value; a property set of Int32 and String values. The wire format needs varints, fixed
32/64-bit numbers and length-prefixed bytes, nothing else, so the ``protobuf`` runtime stays
a test dependency. Signed integers go into the unsigned ``int_value`` / ``long_value``
fields as two's complement (sign-extended to 32 or 64 bits), as Tahu's Java encoder does.

:func:`rebirth_requested` reads the one message an edge node receives, an NCMD, for the
``Node Control/Rebirth`` metric; the session logic is in :mod:`sinks.sparkplug_node`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DATATYPES",
    "INT_RANGES",
    "Metric",
    "encode_metric",
    "encode_payload",
    "id_problem",
    "property_set",
    "rebirth_requested",
]

# The scalar datatypes of sparkplug_b.proto's DataType enum that rows can hold.
DATATYPES: dict[str, int] = {
    "Int8": 1, "Int16": 2, "Int32": 3, "Int64": 4,
    "UInt8": 5, "UInt16": 6, "UInt32": 7, "UInt64": 8,
    "Float": 9, "Double": 10, "Boolean": 11, "String": 12,
}  # fmt: skip
INT_RANGES: dict[str, tuple[int, int]] = {
    "Int8": (-(2**7), 2**7 - 1), "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1), "Int64": (-(2**63), 2**63 - 1),
    "UInt8": (0, 2**8 - 1), "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1), "UInt64": (0, 2**64 - 1),
}  # fmt: skip
_LONG = frozenset({"Int64", "UInt64"})
_FLOAT = struct.Struct("<f").pack
_DOUBLE = struct.Struct("<d").pack


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric a device reports: its name, Sparkplug datatype (a key of
    :data:`DATATYPES`) and engineering unit (sent as the ``engUnit`` property of births)."""

    name: str
    datatype: str
    unit: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Sparkplug metric name {self.name!r} is not a non-empty string")
        if self.datatype not in DATATYPES:
            raise ValueError(
                f"metric {self.name!r}: datatype {self.datatype!r} is not one of "
                + ", ".join(DATATYPES)
            )


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _text(number: int, text: str) -> bytes:
    return _field(number, text.encode("utf-8"))


def property_set(pairs: Iterable[tuple[str, int | str]]) -> bytes:
    """A PropertySet of Int32 (type 3) and String (type 12) property values."""
    keys, values = b"", b""
    for key, value in pairs:
        keys += _text(1, key)
        if isinstance(value, int):
            body = b"\x08\x03\x18" + _varint(value & 0xFFFFFFFF)
        else:
            body = b"\x08\x0c" + _text(8, value)
        values += _field(2, body)
    return keys + values


def _value(datatype: str, value: float | str | bool) -> bytes:
    if datatype == "Double":
        return b"\x69" + _DOUBLE(value)  # field 13, fixed64
    if datatype == "Float":
        return b"\x65" + _FLOAT(value)  # field 12, fixed32
    if datatype == "Boolean":
        return b"\x70\x01" if value else b"\x70\x00"  # field 14
    if datatype == "String":
        return _text(15, str(value))
    n = int(value)
    if datatype in _LONG:
        return b"\x58" + _varint(n & 0xFFFFFFFFFFFFFFFF)  # field 11, long_value
    return b"\x50" + _varint(n & 0xFFFFFFFF)  # field 10, int_value


def encode_metric(
    *,
    timestamp: int,
    datatype: str,
    value: float | str | bool | None,
    name: str | None = None,
    alias: int | None = None,
    typed: bool = False,
    properties: bytes = b"",
) -> bytes:
    """One Metric message (without its field header). ``value`` None is ``is_null`` with no
    value; ``typed`` includes the datatype (births); ``properties``: a :func:`property_set`."""
    out = _text(1, name) if name is not None else b""
    if alias is not None:
        out += b"\x10" + _varint(alias)
    out += b"\x18" + _varint(timestamp)
    if typed:
        out += b"\x20" + _varint(DATATYPES[datatype])
    if value is None:
        out += b"\x38\x01"  # is_null
    if properties:
        out += _field(9, properties)
    if value is not None:
        out += _value(datatype, value)
    return out


def encode_payload(timestamp: int, metrics: Iterable[bytes], seq: int | None) -> bytes:
    """A Payload: its timestamp (ms since the epoch), metrics and seq (None: none, NDEATH)."""
    out = [b"\x08" + _varint(timestamp)]
    out += [_field(2, m) for m in metrics]
    if seq is not None:
        out.append(b"\x18" + _varint(seq))
    return b"".join(out)


def _fields(data: bytes) -> Iterable[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as ints, anything
    length-delimited as bytes, fixed-size fields as their bytes. ValueError if cut short."""
    i, end = 0, len(data)
    while i < end:
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            yield number, value
        elif wire == 2:
            size, i = _read_varint(data, i)
            if i + size > end:
                raise ValueError("a field runs past the message")
            yield number, data[i : i + size]
            i += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, data[i : i + size]
            i += size
        else:
            raise ValueError(f"wire type {wire} is not used by Sparkplug B")


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("a varint is cut short")
        byte = data[i]
        n |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return n, i


def rebirth_requested(payload: bytes) -> bool:
    """Whether an NCMD payload sets ``Node Control/Rebirth`` to true (False for anything
    that cannot be read)."""
    try:
        for number, metric in _fields(payload):
            if number != 2 or not isinstance(metric, bytes):
                continue
            found = dict(_fields(metric))
            if found.get(1) == b"Node Control/Rebirth" and found.get(14) == 1:
                return True
    except ValueError:
        return False
    return False


def id_problem(text: object) -> str | None:
    """Why ``text`` cannot be a Sparkplug group, edge node or device id (a topic level that
    is UTF-8, not empty and without ``+``, ``/`` or ``#``), or None."""
    if not isinstance(text, str):
        return "is not a string"
    if not text:
        return "is empty"
    for char in "+/#\0":
        if char in text:
            return f"has {char!r}" if char != "\0" else "has a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "has a lone surrogate, which UTF-8 cannot hold"
    return None
