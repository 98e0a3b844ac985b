"""Device register maps: loading profiles, planning reads, decoding registers.

Pure: the only I/O is reading profile files. No pymodbus import; callers hand
in and get back plain register words (ints 0..65535).
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "DATA_TYPES",
    "PROFILE_DIR",
    "TABLES",
    "WORD_ORDERS",
    "Parameter",
    "Profile",
    "ProfileError",
    "Read",
    "Table",
    "decode",
    "decode_read",
    "encode",
    "load_profile",
    "plan_reads",
    "shipped_profiles",
]

Table = Literal["holding", "input"]
TABLES: tuple[str, ...] = ("holding", "input")
DATA_TYPES: dict[str, int] = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
    "int64": 4, "uint64": 4, "float64": 4,
}  # fmt: skip
WORD_ORDERS: tuple[str, ...] = ("big", "little")
PROFILE_DIR = Path(__file__).parent / "profiles"

_TYPE_NAMES = (*DATA_TYPES, "string")
_FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
            "int64": "q", "uint64": "Q", "float64": "d"}  # fmt: skip
_STRUCTS = {t: struct.Struct(">" + f) for t, f in _FORMATS.items()}


class ProfileError(ValueError):
    """A profile file is missing, unreadable or invalid; the message names file and key path."""


_PARAM_KEYS = ("name", "table", "address", "type", "id", "word_order", "scale", "unit", "length")
_CHOICES = {"table": TABLES, "type": _TYPE_NAMES, "word_order": WORD_ORDERS}
_INT_FIELDS = {"address": 65535, "id": 2**63 - 1, "length": 65535}


def _check(field: str, value: Any) -> None:
    """Raise ValueError("<field>: <why>") if ``value`` is not valid for ``Parameter.<field>``."""
    if field in _CHOICES:
        ok, want = value in _CHOICES[field], f"one of {', '.join(_CHOICES[field])}"
    elif field in _INT_FIELDS:
        top = _INT_FIELDS[field]
        ok = (type(value) is int and 0 <= value <= top) or (field == "id" and value is None)
        want = f"an integer in 0..{top}"
    elif field == "scale":
        ok = type(value) in (int, float) and math.isfinite(value) and value != 0
        want = "a finite non-zero number"
    else:  # name, unit
        ok = (isinstance(value, str) and value != "") or (field == "unit" and value is None)
        want = "a non-empty string"
    if not ok:
        raise ValueError(f"{field}: {value!r} is not {want}")


@dataclass(frozen=True, slots=True)
class Parameter:
    """One value in a device's register map; validated on construction (ValueError)."""

    name: str
    table: Table
    address: int  # 0-based PDU address
    type: str  # a key of DATA_TYPES or "string"
    id: int | None = None  # vendor parameter id
    word_order: str = "big"
    scale: float = 1.0  # engineering value = raw * scale
    unit: str | None = None
    length: int = 0  # registers, only for type "string"
    labels: tuple[tuple[int, str], ...] = ()  # enum: raw value -> text for value_text

    def label(self, value: object) -> str | None:
        """The enum text for ``value``, or None (no labels, or a value without one)."""
        for raw, text in self.labels:
            if raw == value:
                return text
        return None

    def __post_init__(self) -> None:
        for field in _PARAM_KEYS:
            _check(field, getattr(self, field))
        object.__setattr__(self, "scale", float(self.scale))
        if self.type == "string":
            if self.length < 1:
                raise ValueError("length: type 'string' needs a length of at least 1 register")
            if self.scale != 1:
                raise ValueError(f"scale: {self.scale!r} given for type 'string'")
        elif self.length:
            raise ValueError(f"length: {self.length!r} given for type {self.type!r}")
        if self.address + self.count > 65536:
            raise ValueError(f"address: {self.address}+{self.count} registers run past 65535")

    @property
    def count(self) -> int:
        """Number of registers the parameter occupies."""
        return self.length if self.type == "string" else DATA_TYPES[self.type]


@dataclass(frozen=True, slots=True)
class Profile:
    """A named device register map; parameter names are unique."""

    name: str
    description: str
    parameters: tuple[Parameter, ...]

    def parameter(self, name: str) -> Parameter:
        """Return the parameter called ``name``; KeyError listing the known names otherwise."""
        for p in self.parameters:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.parameters)
        raise KeyError(f"profile {self.name!r} has no parameter {name!r}; known: {known}")


_PROFILE_KEYS = ("name", "description", "defaults", "parameter")
_DEFAULT_KEYS = ("table", "type", "word_order", "scale", "unit")
_REQUIRED = ("name", "table", "address", "type")


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped in ``connectors/profiles``."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name: str | Path) -> Profile:
    """Load and validate a profile: a bare name from ``connectors/profiles`` or a ``.toml`` path.

    Every error is a ProfileError naming the file and key path. Results are cached.
    """
    if isinstance(name, str) and not name.endswith(".toml"):
        if not name.isidentifier() or not (PROFILE_DIR / f"{name}.toml").is_file():
            shipped = ", ".join(shipped_profiles())
            raise ProfileError(f"unknown profile {name!r}; shipped profiles: {shipped}")
        return _load_file(PROFILE_DIR / f"{name}.toml")
    return _load_file(Path(name).resolve())


@functools.cache
def _load_file(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from None

    def fail(key: str, message: str) -> ProfileError:
        return ProfileError(f"{path}: {key}: {message}")

    def check_table(value: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise fail(where or "<top level>", "is not a table")
        for key in value:
            if key not in allowed:
                raise fail(f"{where}{key}", f"unknown key; expected one of {', '.join(allowed)}")
        return value

    check_table(data, _PROFILE_KEYS, "")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise fail("name", f"{data.get('name')!r} is not a non-empty string")
    if not isinstance(data.get("description", ""), str):
        raise fail("description", f"{data['description']!r} is not a string")
    defaults = check_table(data.get("defaults", {}), _DEFAULT_KEYS, "defaults.")
    for key, value in defaults.items():
        try:
            _check(key, value)
        except ValueError as exc:
            raise ProfileError(f"{path}: defaults.{exc}") from None
    entries = data.get("parameter")
    if not isinstance(entries, list) or not entries:
        raise fail("parameter", "a profile needs at least one [[parameter]] table")

    params: list[Parameter] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"parameter[{i}]"
        fields = {**defaults, **check_table(entry, _PARAM_KEYS, f"{where}.")}
        for key in _REQUIRED:
            if key not in fields:
                raise fail(f"{where}.{key}", "missing")
        try:
            params.append(Parameter(**fields))
        except ValueError as exc:
            # Parameter's messages start with the field name, which completes the key path.
            raise ProfileError(f"{path}: {where}.{exc}") from None
        if params[-1].name in seen:
            raise fail(
                f"{where}.name",
                f"{params[-1].name!r} duplicates parameter[{seen[params[-1].name]}]",
            )
        seen[params[-1].name] = i
    return Profile(data["name"], data.get("description", ""), tuple(params))


def _to_bytes(p: Parameter, words: Sequence[int]) -> bytes:
    if len(words) != p.count:
        raise ValueError(f"{p.name}: expected {p.count} registers, got {len(words)}")
    if p.word_order == "little" and p.type != "string":
        words = words[::-1]
    try:
        return struct.pack(f">{len(words)}H", *words)
    except struct.error:
        raise ValueError(
            f"{p.name}: register values must be ints 0..65535, got {words!r}"
        ) from None


def decode(p: Parameter, words: Sequence[int]) -> int | float | str:
    """Decode exactly ``p.count`` register words into the engineering value of ``p``.

    Integers stay ``int`` when ``p.scale == 1``, else become ``raw * scale``; float types
    give ``float``. Strings are latin-1, high byte first in each register, cut at the first
    NUL and stripped of trailing spaces (word order does not apply to strings).
    Raises ValueError on a wrong number of words or a word outside 0..65535.
    """
    data = _to_bytes(p, words)
    if p.type == "string":
        return data.split(b"\0", 1)[0].decode("latin-1").rstrip(" ")
    raw = _STRUCTS[p.type].unpack(data)[0]
    if p.type == "float32":
        raw = _shortest_float32(raw)
    return raw if p.scale == 1 else raw * p.scale


def _shortest_float32(x: float) -> float:
    """The shortest decimal with the same float32 bits: 75.3, not 75.30000305175781.

    It is the value the instrument meant and shows; 9 digits always round-trip.
    """
    if not math.isfinite(x):
        return x
    bits = _STRUCTS["float32"].pack(x)
    for digits in range(6, 9):
        y = float(f"{x:.{digits}g}")
        if _STRUCTS["float32"].pack(y) == bits:
            return y
    return x


def encode(p: Parameter, value: int | float | str) -> list[int]:
    """Encode an engineering value into ``p.count`` register words; the inverse of decode.

    The value is divided by ``p.scale`` and rounded for integer types. Raises ValueError
    when the value does not fit the type (or the string its length), TypeError when a
    string is given for a number or the other way round.
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
        data = data.ljust(2 * p.length, b"\0")
    else:
        if not isinstance(value, int | float):
            raise TypeError(f"{p.name}: expected a number, got {type(value).__name__}")
        # Dividing by 1.0 would turn a large int64 into an inexact float.
        raw = value if p.scale == 1 else value / p.scale
        try:
            if p.type not in ("float32", "float64"):
                raw = round(raw)  # OverflowError for inf, ValueError for nan
            data = _STRUCTS[p.type].pack(raw)  # struct.error for ints out of range
        except (OverflowError, ValueError, struct.error):
            raise ValueError(f"{p.name}: {value!r} is out of range for {p.type}") from None
    words = list(struct.unpack(f">{len(data) // 2}H", data))
    if p.word_order == "little" and p.type != "string":
        words.reverse()
    return words


@dataclass(frozen=True, slots=True)
class Read:
    """One request: ``count`` registers of ``table`` from ``address``, covering ``parameters``."""

    table: Table
    address: int
    count: int
    parameters: tuple[Parameter, ...]


def _joins(
    table: str, start: int, end: int, p: Parameter, max_registers: int, max_gap: int
) -> bool:
    """Whether ``p`` may extend the read of ``table`` covering registers ``[start, end)``,
    reading at most ``max_gap`` unused registers between them."""
    new_end = max(end, p.address + p.count)
    return p.table == table and p.address <= end + max_gap and new_end - start <= max_registers


def plan_reads(
    params: Iterable[Parameter], *, max_registers: int = 125, max_gap: int = 10
) -> tuple[Read, ...]:
    """Merge parameters into as few reads as possible, ordered by table then address.

    A parameter joins the current read when it has the same table, starts at most
    ``max_gap`` registers after the read's end (like Telegraf's ``max_insert``; 0 merges
    only contiguous or overlapping parameters) and the read stays within ``max_registers``
    (125, the most one Modbus read returns). Duplicate parameters are read once. Raises
    ValueError if one parameter alone is larger than ``max_registers``.
    """
    if max_registers < 1:
        raise ValueError(f"max_registers must be at least 1, got {max_registers}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be at least 0, got {max_gap}")
    ordered = sorted(dict.fromkeys(params), key=lambda p: (p.table, p.address, p.count))
    reads: list[Read] = []
    group: list[Parameter] = []
    start = end = 0
    for p in ordered:
        if p.count > max_registers:
            raise ValueError(f"{p.name}: {p.count} registers exceed max_registers={max_registers}")
        if group and _joins(group[0].table, start, end, p, max_registers, max_gap):
            group.append(p)
            end = max(end, p.address + p.count)
            continue
        if group:
            reads.append(Read(group[0].table, start, end - start, tuple(group)))
        group, start, end = [p], p.address, p.address + p.count
    if group:
        reads.append(Read(group[0].table, start, end - start, tuple(group)))
    return tuple(reads)


def decode_read(read: Read, words: Sequence[int]) -> list[tuple[Parameter, int | float | str]]:
    """Decode every parameter of ``read`` from exactly ``read.count`` words (else ValueError)."""
    if len(words) != read.count:
        raise ValueError(
            f"read at {read.address}: expected {read.count} registers, got {len(words)}"
        )
    out: list[tuple[Parameter, int | float | str]] = []
    for p in read.parameters:
        offset = p.address - read.address
        out.append((p, decode(p, words[offset : offset + p.count])))
    return out
