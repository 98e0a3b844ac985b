"""Engineering values -> register words: the way back of :mod:`connectors.codec`, for the
simulator (which serves what a device would hold) and the tests.

Pure, no I/O: a value laid out as its :class:`~connectors.codec.Codec` says, in the byte order
and one-byte placement that ``decode`` reads back.
"""

from __future__ import annotations

import struct

from connectors.codec import STRUCTS, Codec, Value, byte_at

__all__ = ["encode", "register_mask"]


def register_mask(c: Codec) -> int:
    """The bits of each of its registers ``c``'s value occupies, as the registers arrive:
    0xFFFF, or 0xFF00 / 0x00FF for a one-byte value (another may hold the other byte)."""
    if c.byte is None:
        return 0xFFFF
    return 0x00FF if byte_at(c) else 0xFF00


def _swap_bytes(data: bytes) -> bytes:
    swapped = bytearray(data)
    swapped[0::2], swapped[1::2] = data[1::2], data[0::2]
    return bytes(swapped)


def _to_words(c: Codec, data: bytes) -> list[int]:
    """The registers, as they go on the wire, of the big-endian value bytes ``data``."""
    if c.byte_order in ("BADC", "DCBA"):
        data = _swap_bytes(data)
    words = list(struct.unpack(f">{len(data) // 2}H", data))
    if c.byte_order in ("CDAB", "DCBA") and c.type != "string":
        words.reverse()
    return words


def encode(c: Codec, value: Value) -> list[int]:
    """Encode an engineering value into ``c.count`` register words; the inverse of decode.

    Numbers become ``(value - offset) / scale``, rounded for integer types. A one-byte value
    (int8, uint8, a string with ``byte``) leaves the register's other byte 0. A bit codec
    takes a bool (or 0/1) and gives a register with only that bit set or none. Raises
    ValueError when the value does not fit the type (or the string its length), TypeError
    when a string is given for a number or the other way round.
    """
    if c.type == "string":
        if not isinstance(value, str):
            raise TypeError(f"expected str, got {type(value).__name__}")
        try:
            data = value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"{value!r} is not latin-1 text") from None
        chars = c.length if c.byte is not None else 2 * c.length
        if len(data) > chars or b"\0" in data:
            raise ValueError(f"{value!r} does not fit {c.length} registers without NUL")
        if c.byte is not None:
            return _one_byte_each(c, data.ljust(chars, b"\0"))
        return _to_words(c, data.ljust(chars, b"\0"))
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if c.type == "bit":
        if value not in (0, 1):
            raise ValueError(f"{value!r} is not a bit (true/false, 0/1)")
        assert c.bit is not None
        return _to_words(c, (int(value) << c.bit).to_bytes(2, "big"))
    # Subtracting 0.0 or dividing by 1.0 would turn a large int64 into an inexact float.
    raw = value if c.offset == 0 else value - c.offset
    raw = raw if c.scale == 1 else raw / c.scale
    try:
        if c.type not in ("float16", "float32", "float64"):
            raw = round(raw)  # OverflowError for inf, ValueError for nan
        data = STRUCTS[c.type].pack(raw)  # struct.error for ints out of range
    except (OverflowError, ValueError, struct.error):
        raise ValueError(f"{value!r} is out of range for {c.type}") from None
    return _one_byte_each(c, data) if c.byte is not None else _to_words(c, data)


def _one_byte_each(c: Codec, data: bytes) -> list[int]:
    """The registers holding one byte of ``data`` each, in ``c.byte``, the other byte 0."""
    wire = bytearray(2 * len(data))
    wire[byte_at(c) :: 2] = data
    return list(struct.unpack(f">{len(data)}H", wire))
