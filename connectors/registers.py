"""Device register maps: loading profiles, planning reads, decoding registers.

Pure: the only I/O is reading profile files. No pymodbus import; callers hand
in and get back plain register words (ints 0..65535). The codecs (data types,
byte orders, scale, offset, labels) live in ``connectors.codec`` and are
re-exported here.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.codec import (
    BYTE_ORDERS,
    DATA_TYPES,
    TABLES,
    WORD_ORDERS,
    Decoder,
    Parameter,
    Table,
    Value,
    check_field,
    decode,
    decoder,
    encode,
    pack_registers,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "BYTE_ORDERS",
    "DATA_TYPES",
    "PARAMETER_KEYS",
    "PROFILE_DIR",
    "TABLES",
    "WORD_ORDERS",
    "Parameter",
    "Profile",
    "ProfileError",
    "Read",
    "Table",
    "Value",
    "decode",
    "decode_read",
    "describe_plan",
    "encode",
    "load_profile",
    "override_parameter",
    "parameter_fields",
    "plan_reads",
    "shipped_profiles",
    "split_read",
]

PROFILE_DIR = Path(__file__).parent / "profiles"


class ProfileError(ValueError):
    """A profile file is missing, unreadable or invalid; the message names file and key path."""


# The keys of one parameter in TOML (a profile's [[parameter]], a config's inline parameter
# or override); ``word_order`` is the older alias of ``byte_order``.
PARAMETER_KEYS = ("name", "table", "address", "type", "id", "byte_order", "word_order", "scale",
                  "offset", "unit", "length", "bit", "labels")  # fmt: skip
_INTEGER = re.compile(r"^[+-]?[0-9]+$")


def parameter_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one TOML table of parameter keys into :class:`Parameter` keyword arguments.

    ``word_order = "big"``/``"little"`` becomes ``byte_order = "ABCD"``/``"CDAB"``; a
    ``labels`` table (TOML keys are strings) becomes (int, text) pairs ordered by value.
    Other values pass through unchecked (Parameter checks them). Raises ValueError whose
    message starts with the key path, e.g. ``"labels.open: 'open' is not an integer"``,
    for an unknown key, both ``word_order`` and ``byte_order``, or a bad label.
    """
    fields = dict(entry)
    for key in fields:
        if key not in PARAMETER_KEYS:
            raise ValueError(f"{key}: unknown key; expected one of {', '.join(PARAMETER_KEYS)}")
    if "word_order" in fields:
        order = fields.pop("word_order")
        if "byte_order" in fields:
            raise ValueError(
                f"word_order: {order!r} given with byte_order = {fields['byte_order']!r}; "
                "give one (word_order is the older alias: big = ABCD, little = CDAB)"
            )
        if not isinstance(order, str) or order not in WORD_ORDERS:
            raise ValueError(f"word_order: {order!r} is not one of {', '.join(WORD_ORDERS)}")
        fields["byte_order"] = WORD_ORDERS[order]
    if "labels" in fields:
        fields["labels"] = _labels(fields["labels"])
    return fields


def _labels(table: Any) -> tuple[tuple[int, str], ...]:
    if not isinstance(table, Mapping):
        raise ValueError(f'labels: {table!r} is not a table like {{ 61 = "none" }}')
    pairs: dict[int, str] = {}
    for key, text in table.items():
        if not isinstance(key, str) or not _INTEGER.match(key):
            raise ValueError(f"labels.{key}: {key!r} is not an integer")
        if not isinstance(text, str) or not text:
            raise ValueError(f"labels.{key}: {text!r} is not a non-empty string")
        if int(key) in pairs:
            raise ValueError(f"labels.{key}: value {int(key)} is given twice")
        pairs[int(key)] = text
    return tuple(sorted(pairs.items()))


def override_parameter(p: Parameter, entry: Mapping[str, Any]) -> Parameter:
    """``p`` with the TOML keys of ``entry`` replaced (any of PARAMETER_KEYS but ``name``).

    Addresses are 0-based. Raises ValueError starting with the key path, like
    :func:`parameter_fields`, when a key or the resulting parameter is invalid.
    """
    if "name" in entry:
        raise ValueError(f"name: {entry['name']!r}: an override cannot rename a parameter")
    return dataclasses.replace(p, **parameter_fields(entry))


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


_PROFILE_KEYS = ("name", "description", "address_base", "defaults", "parameter")
_DEFAULT_KEYS = ("table", "type", "byte_order", "word_order", "scale", "offset", "unit")
_REQUIRED = ("name", "table", "address", "type")
# 1-based register numbers: 4xxxx / 4xxxxx for holding, 3xxxx / 3xxxxx for input registers.
_PREFIX = {"holding": 4, "input": 3}


def _pdu_address(name: str, table: str, address: Any) -> Any:
    """The 0-based PDU address of 1-based register number ``address`` in ``table``."""
    if not isinstance(table, str) or table not in _PREFIX or type(address) is not int:
        return address  # Parameter reports the bad table or address
    digit = _PREFIX[table]
    for first, last in ((digit * 10000 + 1, digit * 10000 + 9999),
                        (digit * 100000 + 1, digit * 100000 + 65536)):  # fmt: skip
        if first <= address <= last:
            return address - first
    raise ValueError(
        f"address: {address} of {name!r} is not a 1-based {table} register number "
        f"({digit}0001-{digit}9999 or {digit}00001-{digit}65536)"
    )


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped in ``connectors/profiles``."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name: str | Path) -> Profile:
    """Load and validate a profile: a bare name from ``connectors/profiles`` or a ``.toml`` path.

    With ``address_base = 1`` the profile's addresses are 1-based register numbers (40361
    is holding 360, 30001 input 0) and are converted to 0-based PDU addresses here, once.
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
    base = data.get("address_base", 0)
    if type(base) is not int or base not in (0, 1):
        raise fail("address_base", f"{base!r} is not 0 (PDU addresses) or 1 (4xxxx/3xxxx)")
    raw_defaults = check_table(data.get("defaults", {}), _DEFAULT_KEYS, "defaults.")
    try:
        defaults = parameter_fields(raw_defaults)
        for key, value in defaults.items():
            check_field(key, value)
    except ValueError as exc:
        raise ProfileError(f"{path}: defaults.{exc}") from None
    entries = data.get("parameter")
    if not isinstance(entries, list) or not entries:
        raise fail("parameter", "a profile needs at least one [[parameter]] table")

    params: list[Parameter] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"parameter[{i}]"
        check_table(entry, PARAMETER_KEYS, f"{where}.")
        try:
            # Each level resolves its own word_order alias, so a parameter's byte_order
            # overrides a word_order in [defaults] instead of clashing with it.
            fields = {**defaults, **parameter_fields(entry)}
            for key in _REQUIRED:
                if key not in fields:
                    raise ValueError(f"{key}: missing")
            if base == 1:
                fields["address"] = _pdu_address(fields["name"], fields["table"], fields["address"])
            params.append(Parameter(**fields))
        except ValueError as exc:
            # The messages start with the key, which completes the key path.
            raise ProfileError(f"{path}: {where}.{exc}") from None
        if params[-1].name in seen:
            raise fail(
                f"{where}.name",
                f"{params[-1].name!r} duplicates parameter[{seen[params[-1].name]}]",
            )
        seen[params[-1].name] = i
    return Profile(data["name"], data.get("description", ""), tuple(params))


@dataclass(frozen=True, slots=True)
class Read:
    """One request: ``count`` registers of ``table`` from ``address``, covering ``parameters``.

    ``decoders`` holds each parameter's byte offset in the response and its decoder, built
    with the plan so a read's answer is decoded without settling types again.
    """

    table: Table
    address: int
    count: int
    parameters: tuple[Parameter, ...]
    decoders: tuple[tuple[Parameter, int, Decoder], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        decoders = tuple((p, 2 * (p.address - self.address), decoder(p)) for p in self.parameters)
        object.__setattr__(self, "decoders", decoders)


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


def decode_read(read: Read, words: Sequence[int]) -> list[tuple[Parameter, Value]]:
    """Decode every parameter of ``read`` from exactly ``read.count`` words (else ValueError)."""
    if len(words) != read.count:
        raise ValueError(
            f"read at {read.address}: expected {read.count} registers, got {len(words)}"
        )
    data = pack_registers(words)
    return [(p, decode(data, start)) for p, start, decode in read.decoders]


def split_read(read: Read) -> tuple[Read, ...]:
    """One read per parameter of ``read``, in its order: the fallback for a device that
    rejects a merged read (exception 2, illegal data address) for the registers between."""
    return tuple(Read(p.table, p.address, p.count, (p,)) for p in read.parameters)


def describe_plan(reads: Iterable[Read]) -> str:
    """The plan on one line for a debug log, e.g.
    ``holding 360+3 [process_value, input_error], input 0+2 [measurement_1]``
    (table, first register + count, parameters); ``no reads`` for an empty plan."""
    parts = [
        f"{r.table} {r.address}+{r.count} [{', '.join(p.name for p in r.parameters)}]"
        for r in reads
    ]
    return ", ".join(parts) or "no reads"
