"""One value in a device's register map, and its keys in TOML.

A :class:`Parameter` is where a value lives (register table and address), how it is
laid out (its :class:`~connectors.codec.Codec`) and how it is shown (unit, enum labels).
:data:`PARAMETER_KEYS` is the one list of the keys a parameter takes in TOML: a profile's
``[[parameter]]`` and ``[defaults]``, a config's ``[[bus.device.parameter]]`` and
``[bus.device.override.<name>]`` are all read by the functions here, from it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

from connectors.codec import INT_TYPES, WORD_ORDERS, Codec, FieldError, check_codec_field
from connectors.tomltable import Table

__all__ = [
    "BIT_TABLES",
    "DEFAULT_KEYS",
    "KEY_NAMES",
    "PARAMETER_KEYS",
    "REGISTER_TABLES",
    "REQUIRED_KEYS",
    "TABLES",
    "Key",
    "Parameter",
    "RegisterTable",
    "make_parameter",
    "override_parameter",
    "parameter_fields",
    "read_defaults",
    "read_parameter",
]

RegisterTable = Literal["holding", "input", "coil", "discrete"]
REGISTER_TABLES: tuple[str, ...] = ("holding", "input")  # 16-bit words, FC03 / FC04
BIT_TABLES: tuple[str, ...] = ("coil", "discrete")  # one bit each, FC01 / FC02
TABLES: tuple[str, ...] = (*REGISTER_TABLES, *BIT_TABLES)
# Keys that lay out or describe a number: a profile's [defaults] of them do not reach a
# parameter of a bit table (a coil is 0 or 1 whatever the registers around it are).
_NUMBER_KEYS = ("type", "byte_order", "scale", "offset", "unit", "quantity", "range")


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a parameter in TOML."""

    name: str
    required: bool = False  # every parameter has it, from its own table or [defaults]
    default: bool = False  # a profile's [defaults] may give it for all its parameters
    override: bool = True  # a config's [override.<name>] may change it


# In the order values are checked, so the first bad key of a table is the one reported.
# ``word_order`` is the older alias of ``byte_order`` (big = ABCD, little = CDAB).
PARAMETER_KEYS: tuple[Key, ...] = (
    Key("name", required=True, override=False),
    Key("table", required=True, default=True),
    Key("address", required=True),
    Key("type", required=True, default=True),
    Key("id"),
    Key("byte_order", default=True),
    Key("word_order", default=True),
    Key("scale", default=True),
    Key("offset", default=True),
    Key("unit", default=True),
    Key("length"),
    Key("bit"),
    Key("byte"),
    Key("labels"),
    Key("quantity", default=True),
    Key("range", default=True),
    Key("every_s", default=True),
    Key("deadband", default=True),
    Key("deadband_pct", default=True),
    Key("heartbeat_s", default=True),
)
KEY_NAMES: tuple[str, ...] = tuple(k.name for k in PARAMETER_KEYS)
DEFAULT_KEYS: tuple[str, ...] = tuple(k.name for k in PARAMETER_KEYS if k.default)
REQUIRED_KEYS: tuple[str, ...] = tuple(k.name for k in PARAMETER_KEYS if k.required)
_CODEC_FIELDS = tuple(f.name for f in dataclasses.fields(Codec))
_INTEGER = re.compile(r"^[+-]?[0-9]+$")


def _check_field(key: str, value: Any) -> None:
    """Raise FieldError if ``value`` is not valid for the field ``key`` on its own."""
    if key in _CODEC_FIELDS:
        check_codec_field(key, value)
        return
    if key == "labels":
        _check_labels(value)
        return
    if key == "range":
        _check_range(value)
        return
    if key == "every_s":
        check_every(value)
        return
    if key in ("deadband", "deadband_pct", "heartbeat_s"):
        low = "> 0" if key == "heartbeat_s" else ">= 0"
        ok = value is None or (
            _number(value) and (value > 0 if key == "heartbeat_s" else value >= 0)
        )
        if not ok:
            raise FieldError(key, f"{value!r} is not a finite number {low}")
        return
    if key == "table":
        ok, want = value in TABLES, f"one of {', '.join(TABLES)}"
    elif key in ("address", "id"):
        top = 65535 if key == "address" else 2**63 - 1
        ok = (type(value) is int and 0 <= value <= top) or (key == "id" and value is None)
        want = f"an integer in 0..{top}"
    else:  # name, unit, quantity
        ok = (isinstance(value, str) and value != "") or (key != "name" and value is None)
        want = "a non-empty string"
    if not ok:
        raise FieldError(key, f"{value!r} is not {want}")


def every_problem(value: Any) -> str | None:
    """Why ``value`` is not a poll group (None: the device's, ``"connect"`` or seconds, a
    number > 0), or None when it is one."""
    if value is None or value == "connect" or (_number(value) and 0 < value <= 1e6):
        return None
    return 'is not seconds (> 0, at most 1e6) or "connect"'


def check_every(value: Any) -> None:
    """FieldError unless ``value`` is a poll group (see :func:`every_problem`)."""
    if (problem := every_problem(value)) is not None:
        raise FieldError("every_s", f"{value!r} {problem}")


def _number(x: Any) -> bool:
    return type(x) in (int, float) and math.isfinite(x)


def _check_range(value: Any) -> None:
    if value is None:
        return
    if not (isinstance(value, tuple) and len(value) == 2 and all(map(_number, value))):
        shown = list(value) if isinstance(value, tuple) else value
        raise FieldError("range", f"{shown!r} is not [lo, hi], two finite numbers")
    if value[0] > value[1]:
        raise FieldError("range", f"[{value[0]!r}, {value[1]!r}]: lo is above hi")


def _check_labels(labels: Any) -> None:
    if not isinstance(labels, tuple):
        raise FieldError("labels", f"{labels!r} is not a tuple of (int, text) pairs")
    seen: set[int] = set()
    for pair in labels:
        ok = isinstance(pair, tuple) and len(pair) == 2 and type(pair[0]) is int
        if not ok or not isinstance(pair[1], str) or not pair[1]:
            raise FieldError("labels", f"{pair!r} is not an (int, non-empty text) pair")
        if pair[0] in seen:
            raise FieldError(f"labels.{pair[0]}", "given twice")
        seen.add(pair[0])


@dataclass(frozen=True, slots=True)
class Parameter:
    """One value in a device's register map; validated on construction (FieldError naming
    the field, e.g. ``"address: 65535+2 registers run past 65535"``).

    ``address`` is always the 0-based PDU address. ``labels`` are enum texts for raw integer
    values; they need an integer or bit codec without scale or offset, so the decoded value
    is the raw one. A parameter of a bit table (``coil``, ``discrete``) is one bit, read with
    FC01 / FC02: its codec is ``Codec("bit", bit=0)`` (see :func:`make_parameter`) and its
    value 0 or 1 (False / True).
    """

    name: str
    table: RegisterTable
    address: int
    codec: Codec
    _: KW_ONLY
    id: int | None = None  # vendor parameter id
    unit: str | None = None
    labels: tuple[tuple[int, str], ...] = ()  # enum: raw value -> text for value_text
    quantity: str | None = None  # what it measures ("temperature"): a units register's say
    range: tuple[float, float] | None = None  # valid values; one outside is an error row
    every_s: float | str | None = None  # its poll group: seconds, "connect", None: the device's
    # Report by exception (flows.changes): how far it must move, or how long may pass, to be
    # sent again in the changes stream.
    deadband: float | None = None
    deadband_pct: float | None = None
    heartbeat_s: float | None = None

    def __post_init__(self) -> None:
        for key in _OWN_FIELDS:
            _check_field(key, getattr(self, key))
        codec = self.codec
        if self.labels:
            if codec.type not in (*INT_TYPES, "bit"):
                raise FieldError(
                    "labels", f"enum labels need an integer or bit type, not {codec.type}"
                )
            if codec.scale != 1 or codec.offset != 0:
                raise FieldError("labels", "enum labels apply to raw values: no scale or offset")
        if self.table in BIT_TABLES:
            if codec != _BIT:
                raise FieldError("type", f"a {self.table} is one bit: type 'bit', bit 0")
            for raw, _text in self.labels:
                if raw not in (0, 1):
                    raise FieldError(f"labels.{raw}", f"a {self.table} is 0 or 1")
        if self.deadband is not None and self.deadband_pct is not None:
            raise FieldError("deadband_pct", "give deadband (absolute) or deadband_pct, not both")
        if self.range is not None and codec.type in ("string", "bit"):
            raise FieldError("range", f"a range applies to numbers, not type {codec.type!r}")
        if self.address + codec.count > 65536:
            raise FieldError("address", f"{self.address}+{codec.count} registers run past 65535")

    @property
    def count(self) -> int:
        """Number of registers the parameter occupies (1 for a coil or discrete input)."""
        return self.codec.count

    def label(self, value: object) -> str | None:
        """The enum text for ``value``, or None (no labels, or a value without one)."""
        for raw, text in self.labels:
            if raw == value:
                return text
        return None


_OWN_FIELDS = tuple(f.name for f in dataclasses.fields(Parameter) if f.name != "codec")
_BIT = Codec("bit", bit=0)


def _bit_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` of a coil or discrete input with its codec's: no type or ``"bit"``, no
    bit number (or 0), no byte order (or ABCD); FieldError naming the key given otherwise."""
    table, out = fields["table"], dict(fields)
    kind = out.setdefault("type", "bit")
    if kind != "bit":
        raise FieldError("type", f"{kind!r}: a {table} is one bit; give no type, or 'bit'")
    if out.setdefault("bit", 0) != 0:
        raise FieldError("bit", f"{out['bit']!r}: a {table} is one bit, it has no bit number")
    if out.setdefault("byte_order", "ABCD") != "ABCD":
        raise FieldError("byte_order", f"{out['byte_order']!r}: a {table} has no byte order")
    return out


def make_parameter(fields: Mapping[str, Any]) -> Parameter:
    """A Parameter from the flat fields of TOML (``name``, ``type``, ``scale`` ..., with
    ``word_order`` already resolved and labels as pairs; see :func:`parameter_fields`).

    Each value is checked in the order of PARAMETER_KEYS before any rule between two of
    them, so the error names the first bad key. Raises FieldError (TypeError for a field
    no parameter has).
    """
    for key in KEY_NAMES:
        if key in fields:
            _check_field(key, fields[key])
    if fields.get("table") in BIT_TABLES:
        fields = _bit_fields(fields)
    codec = Codec(**{k: v for k, v in fields.items() if k in _CODEC_FIELDS})
    own = {k: v for k, v in fields.items() if k not in _CODEC_FIELDS}
    return Parameter(**own, codec=codec)


def _fields_of(p: Parameter) -> dict[str, Any]:
    own = {k: getattr(p, k) for k in _OWN_FIELDS}
    return {**own, **{k: getattr(p.codec, k) for k in _CODEC_FIELDS}}


def parameter_fields(t: Table, keys: Iterable[str] = KEY_NAMES) -> dict[str, Any]:
    """The keys of parameter table ``t`` as fields for :func:`make_parameter`.

    ``word_order = "big"``/``"little"`` becomes ``byte_order = "ABCD"``/``"CDAB"``; a
    ``labels`` table (TOML keys are strings) becomes (int, text) pairs ordered by value.
    Other values pass through unchecked. Raises ``t``'s error for a key not in ``keys``,
    both ``word_order`` and ``byte_order``, or a bad label.
    """
    t.allow(keys)
    fields = dict(t.data)
    if "word_order" in fields:
        order = fields.pop("word_order")
        if "byte_order" in fields:
            raise t.error(
                f"{order!r} given with byte_order = {fields['byte_order']!r}; "
                "give one (word_order is the older alias: big = ABCD, little = CDAB)",
                "word_order",
            )
        if not isinstance(order, str) or order not in WORD_ORDERS:
            raise t.error(f"{order!r} is not one of {', '.join(WORD_ORDERS)}", "word_order")
        fields["byte_order"] = WORD_ORDERS[order]
    if "labels" in fields:
        fields["labels"] = _labels(t, fields["labels"])
    if isinstance(fields.get("range"), list):  # checked with the other fields
        fields["range"] = tuple(fields["range"])
    return fields


def _labels(t: Table, table: Any) -> tuple[tuple[int, str], ...]:
    if not isinstance(table, Mapping):
        raise t.error(f'{table!r} is not a table like {{ 61 = "none" }}', "labels")
    pairs: dict[int, str] = {}
    for key, text in table.items():
        if not isinstance(key, str) or not _INTEGER.match(key):
            raise t.error(f"{key!r} is not an integer", f"labels.{key}")
        if not isinstance(text, str) or not text:
            raise t.error(f"{text!r} is not a non-empty string", f"labels.{key}")
        if int(key) in pairs:
            raise t.error(f"value {int(key)} is given twice", f"labels.{key}")
        pairs[int(key)] = text
    return tuple(sorted(pairs.items()))


def read_defaults(t: Table) -> dict[str, Any]:
    """A profile's ``[defaults]``: the fields it gives every parameter (DEFAULT_KEYS only),
    each checked; raises ``t``'s error."""
    fields = parameter_fields(t, DEFAULT_KEYS)
    try:
        for key, value in fields.items():
            _check_field(key, value)
    except FieldError as exc:
        raise t.error(exc.why, exc.key) from None
    return fields


# 1-based numbers: 4xxxx / 4xxxxx holding, 3xxxx / 3xxxxx input registers, 1xxxx / 1xxxxx
# discrete inputs, 0xxxx / 0xxxxx coils.
_PREFIX = {"holding": 4, "input": 3, "discrete": 1, "coil": 0}


def _pdu_address(name: str, table: Any, address: Any) -> Any:
    """The 0-based PDU address of 1-based register number ``address`` in ``table``."""
    if not isinstance(table, str) or table not in _PREFIX or type(address) is not int:
        return address  # Parameter reports the bad table or address
    digit = _PREFIX[table]
    for first, last in ((digit * 10000 + 1, digit * 10000 + 9999),
                        (digit * 100000 + 1, digit * 100000 + 65536)):  # fmt: skip
        if first <= address <= last:
            return address - first
    raise FieldError(
        "address",
        f"{address} of {name!r} is not a 1-based {table} register number "
        f"({digit}0001-{digit}9999 or {digit}00001-{digit}65536)",
    )


def read_parameter(
    t: Table, *, defaults: Mapping[str, Any] | None = None, one_based: bool = False
) -> Parameter:
    """The parameter of table ``t`` (a profile's ``[[parameter]]`` or a config's inline one),
    over ``defaults`` (from :func:`read_defaults`). With ``one_based`` its ``address`` is a
    1-based register number (40361 is holding 360, 30001 input 0, 10001 discrete input 0,
    00001 coil 0). A coil or discrete input needs no ``type`` and takes none of the number
    keys of ``defaults`` (type, byte order, scale, offset, unit, quantity, range). Raises
    ``t``'s error with the key path of the bad key.
    """
    # Each level resolves its own word_order alias, so a parameter's byte_order
    # overrides a word_order in [defaults] instead of clashing with it.
    own = parameter_fields(t)
    fields = {**(defaults or {}), **own}
    if fields.get("table") in BIT_TABLES:
        fields = {k: v for k, v in fields.items() if k in own or k not in _NUMBER_KEYS}
        fields.setdefault("type", "bit")
    for key in REQUIRED_KEYS:
        if key not in fields:
            raise t.error("missing", key)
    try:
        if one_based:
            fields["address"] = _pdu_address(fields["name"], fields["table"], fields["address"])
        return make_parameter(fields)
    except FieldError as exc:
        raise t.error(exc.why, exc.key) from None


def override_parameter(p: Parameter, t: Table) -> Parameter:
    """``p`` with the keys of table ``t`` replaced (any key of PARAMETER_KEYS an override may
    change). Raises ``t``'s error when a key or the resulting parameter is invalid."""
    for key in PARAMETER_KEYS:
        if not key.override and key.name in t.data:
            # name is the only such key: the override is addressed by it.
            raise t.error(f"{t.data[key.name]!r}: an override cannot rename a parameter", key.name)
    fields, new = _fields_of(p), parameter_fields(t)
    if new.get("table") in BIT_TABLES and p.table not in BIT_TABLES:
        # A register parameter made a coil keeps none of its number's layout.
        drop = (*_CODEC_FIELDS, "range")
        fields = {k: v for k, v in fields.items() if k not in drop}
    try:
        return make_parameter({**fields, **new})
    except FieldError as exc:
        raise t.error(exc.why, exc.key) from None
