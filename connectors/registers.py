"""Device profiles and read planning: loading register maps, planning and decoding reads.

Pure: the only I/O is reading profile files. No pymodbus import; callers hand in and get
back plain register words (ints 0..65535). A profile's parameters are
``connectors.parameter.Parameter``s; their codecs live in ``connectors.codec``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from connectors.codec import Decoder, Value, decoder, pack_registers
from connectors.describe import Describer, read_describers
from connectors.parameter import (
    BIT_TABLES,
    Parameter,
    RegisterTable,
    read_defaults,
    read_parameter,
)
from connectors.tomltable import Table, TableError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "MAX_BITS",
    "PROFILE_DIR",
    "Profile",
    "ProfileError",
    "Read",
    "decode_read",
    "describe_plan",
    "halve_read",
    "load_profile",
    "pack_read",
    "plan_reads",
    "shipped_profiles",
    "split_read",
]

PROFILE_DIR = Path(__file__).parent / "profiles"
MAX_BITS = 2000  # coils or discrete inputs one Modbus read (FC01/FC02) carries at most


class ProfileError(TableError):
    """A profile file is missing, unreadable or invalid: ``file`` is the profile's path
    (None for an unknown profile name), ``path`` the key path in it."""


class _ProfileTable(Table):
    error_type = ProfileError


@dataclass(frozen=True, slots=True)
class Profile:
    """A named device register map; parameter names are unique."""

    name: str
    description: str
    parameters: tuple[Parameter, ...]
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Names the profile's parameters had before: old name -> current name."""
    describe: tuple[Describer, ...] = ()
    """The registers that say how to read the rest (connectors.describe)."""

    def parameter(self, name: str) -> Parameter:
        """Return the parameter called ``name`` (or, by its old name, the one it was renamed
        to); KeyError listing the known names otherwise."""
        name = self.renamed.get(name, name)
        for p in self.parameters:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.parameters)
        raise KeyError(f"profile {self.name!r} has no parameter {name!r}; known: {known}")


_PROFILE_KEYS = (
    "name", "description", "address_base", "defaults", "renamed", "describe", "parameter",
)  # fmt: skip


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
            raise ProfileError(
                file=None, path="", message=f"unknown profile {name!r}; shipped profiles: {shipped}"
            )
        return _load_file(PROFILE_DIR / f"{name}.toml")
    return _load_file(Path(name).resolve())


@functools.cache
def _load_file(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(file=str(path), path="", message=str(exc)) from None
    top = _ProfileTable(data, "", str(path))
    top.allow(_PROFILE_KEYS)
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise top.error(f"{data.get('name')!r} is not a non-empty string", "name")
    if not isinstance(data.get("description", ""), str):
        raise top.error(f"{data['description']!r} is not a string", "description")
    base = data.get("address_base", 0)
    if type(base) is not int or base not in (0, 1):
        raise top.error(f"{base!r} is not 0 (PDU addresses) or 1 (4xxxx/3xxxx)", "address_base")
    defaults = read_defaults(top.table("defaults", data.get("defaults", {})))
    if not isinstance(data.get("parameter"), list) or not data["parameter"]:
        raise top.error("a profile needs at least one [[parameter]] table", "parameter")
    params: list[Parameter] = []
    seen: dict[str, int] = {}
    for i, pt in enumerate(top.tables("parameter")):
        p = read_parameter(pt, defaults=defaults, one_based=base == 1)
        if p.name in seen:
            raise pt.error(f"{p.name!r} duplicates parameter[{seen[p.name]}]", "name")
        seen[p.name] = i
        params.append(p)
    renamed = data.get("renamed", {})
    if not isinstance(renamed, dict):
        raise top.error(f"{renamed!r} is not a table of old name = new name", "renamed")
    for old, new in renamed.items():
        if old in seen:
            raise top.error(f"{old!r} is the name of parameter[{seen[old]}]", f"renamed.{old}")
        if not isinstance(new, str) or new not in seen:
            raise top.error(f"{new!r} is not a parameter of this profile", f"renamed.{old}")
    describe = read_describers(top.table("describe", data.get("describe", {})))
    return Profile(
        data["name"], data.get("description", ""), tuple(params), dict(renamed), describe
    )


@dataclass(frozen=True, slots=True)
class Read:
    """One request: ``count`` registers of ``table`` from ``address``, covering ``parameters``
    (of a bit table, ``count`` coils or discrete inputs: its answer's bits as words 0 or 1).

    ``decoders`` holds each parameter's byte offset in the response and its decoder, built
    with the plan so a read's answer is decoded without settling types again. ``checked``:
    some value of it is checked once decoded (a parameter with a range, or a float).
    """

    table: RegisterTable
    address: int
    count: int
    parameters: tuple[Parameter, ...]
    decoders: tuple[tuple[Parameter, int, Decoder], ...] = field(
        init=False, repr=False, compare=False
    )
    checked: bool = field(init=False, repr=False, compare=False)
    # halve_read's answer, once asked: it plans, and a live device's merged reads ask it at
    # every request (connectors.stepdown).
    _halves: list[tuple[Read, Read] | tuple[()]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        decoders = tuple(
            (p, 2 * (p.address - self.address), decoder(p.codec)) for p in self.parameters
        )
        object.__setattr__(self, "decoders", decoders)
        checked = any(
            p.range is not None or p.codec.type.startswith("float") for p in self.parameters
        )
        object.__setattr__(self, "checked", checked)


def _joins(
    table: str, start: int, end: int, p: Parameter, max_registers: int, max_gap: int
) -> bool:
    """Whether ``p`` may extend the read of ``table`` covering registers ``[start, end)``,
    reading at most ``max_gap`` unused registers between them."""
    new_end = max(end, p.address + p.count)
    return p.table == table and p.address <= end + max_gap and new_end - start <= max_registers


def plan_reads(
    params: Iterable[Parameter],
    *,
    max_registers: int = 125,
    max_gap: int = 10,
    max_bits: int = MAX_BITS,
) -> tuple[Read, ...]:
    """Merge parameters into as few reads as possible, ordered by table then address.

    A parameter joins the current read when it has the same table, starts at most
    ``max_gap`` registers (or bits) after the read's end (like Telegraf's ``max_insert``; 0
    merges only contiguous or overlapping parameters) and the read stays within
    ``max_registers`` (125, the most one Modbus read returns), for coils and discrete inputs
    within ``max_bits`` (2000, the most one FC01/FC02 read returns). Duplicate parameters are
    read once. Raises ValueError if one parameter alone is larger than ``max_registers``.
    """
    for name, most in (("max_registers", max_registers), ("max_bits", max_bits)):
        if most < 1:
            raise ValueError(f"{name} must be at least 1, got {most}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be at least 0, got {max_gap}")
    ordered = sorted(dict.fromkeys(params), key=lambda p: (p.table, p.address, p.count))
    reads: list[Read] = []
    group: list[Parameter] = []
    start = end = 0
    for p in ordered:
        if p.count > max_registers:
            raise ValueError(f"{p.name}: {p.count} registers exceed max_registers={max_registers}")
        most = max_bits if p.table in BIT_TABLES else max_registers
        if group and _joins(group[0].table, start, end, p, most, max_gap):
            group.append(p)
            end = max(end, p.address + p.count)
            continue
        if group:
            reads.append(Read(group[0].table, start, end - start, tuple(group)))
        group, start, end = [p], p.address, p.address + p.count
    if group:
        reads.append(Read(group[0].table, start, end - start, tuple(group)))
    return tuple(reads)


def pack_read(read: Read, words: Sequence[int]) -> bytes:
    """The answer to ``read`` as it was on the wire, to decode each parameter from at its
    offset (``read.decoders``); ValueError unless exactly ``read.count`` words of 0..65535 (a
    read of coils or discrete inputs: its bits as words 0 or 1)."""
    if len(words) != read.count:
        what = "bits" if read.table in BIT_TABLES else "registers"
        raise ValueError(f"read at {read.address}: expected {read.count} {what}, got {len(words)}")
    return pack_registers(words)


def decode_read(read: Read, words: Sequence[int]) -> list[tuple[Parameter, Value]]:
    """Decode every parameter of ``read`` from exactly ``read.count`` words (else ValueError,
    as :func:`pack_read`)."""
    data = pack_read(read, words)
    return [(p, decode(data, start)) for p, start, decode in read.decoders]


def split_read(read: Read) -> tuple[Read, ...]:
    """One read per parameter of ``read``, in its order: the fallback for a device that
    rejects a merged read (exception 2, illegal data address) for the registers between."""
    return tuple(Read(p.table, p.address, p.count, (p,)) for p in read.parameters)


def describe_plan(reads: Iterable[Read]) -> str:
    """The plan on one line for a debug log, e.g.
    ``holding 360+3 [analog_input_value, input_error], input 0+2 [measurement_1]``
    (table, first register + count, parameters); ``no reads`` for an empty plan."""
    parts = [
        f"{r.table} {r.address}+{r.count} [{', '.join(p.name for p in r.parameters)}]"
        for r in reads
    ]
    return ", ".join(parts) or "no reads"


def halve_read(read: Read) -> tuple[Read, Read] | tuple[()]:
    """``read`` as two merged reads of about half its registers each, or () when it holds
    one parameter (nothing smaller to try). Planned once per read."""
    if len(read.parameters) < 2:
        return ()
    if not read._halves:
        read._halves.append(_halve(read))
    return read._halves[0]


def _halve(read: Read) -> tuple[Read, Read] | tuple[()]:
    cap = max(max(p.count for p in read.parameters), (read.count + 1) // 2)
    reads = plan_reads(read.parameters, max_registers=cap, max_bits=cap, max_gap=read.count)
    if len(reads) < 2:
        return ()
    # More than two when parameters do not fit two halves: the first, and the rest merged.
    rest = reads[1:]
    if len(rest) > 1:
        params = tuple(p for r in rest for p in r.parameters)
        start = rest[0].address
        rest = (Read(read.table, start, rest[-1].address + rest[-1].count - start, params),)
    return reads[0], rest[0]
