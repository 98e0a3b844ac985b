"""Devices that describe themselves: registers that say how to read the rest.

A profile's ``[describe.<name>]`` tables name them (see docs/configuration.md)::

    [describe.word_order]
    sets = "byte_order"    # the byte order of every value of 2 or more registers
    address = 2488
    count = 2              # registers read; the first one holding a known value decides
    values = { 1331 = "CDAB", 1330 = "ABCD" }

    [describe.units]
    sets = "unit"          # the unit of every parameter with this quantity
    quantity = "temperature"
    address = 2490
    values = { 15 = "degC", 30 = "degF" }

A :class:`Description` is one device's state of them: read when the connection opens
(again after every reconnect) before the device's first data read, and kept current by
any polled read that covers a describing register, by asking again every
:data:`RECHECK_S` seconds while polling, and at once when a value it governs decodes as
garbage (NaN, infinite, beyond 1e12, or nonzero within 1e-12, as a float read in the wrong
word order does; that value is an error row): a setting changed at the device's panel is
followed without a reconnect. What a config override sets for a
parameter (``byte_order``/``word_order``, ``unit``) wins over what the device says. An
unreadable or unknown description keeps the profile's own settings, with one WARNING.
Pure: no I/O, no pymodbus.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.codec import BYTE_ORDERS
from connectors.parameter import REGISTER_TABLES, Parameter
from connectors.tomltable import Table

__all__ = ["RECHECK_S", "SETS", "Describer", "Description", "read_describers"]

RECHECK_S = 60.0  # while polling, a device is asked how to read it again this often

log = logging.getLogger("connectors.poller")  # the bus's log lines, under one name

# What a describing register may set: the parameter field, and which parameters it governs.
SETS: tuple[str, ...] = ("byte_order", "unit")
_KEYS = ("sets", "table", "address", "count", "values", "quantity")
_NAMES = {"byte_order": "byte order", "unit": "unit"}


@dataclass(frozen=True, slots=True)
class Describer:
    """One describing register (or run of ``count`` registers) of a profile: the first of
    its words whose value is among ``values`` decides ``sets`` (``"byte_order"`` of the
    values of 2 or more registers, or ``"unit"`` of the parameters of ``quantity``)."""

    name: str
    sets: str
    table: str
    address: int
    count: int
    values: tuple[tuple[int, str], ...]
    quantity: str | None = None

    def governs(self, p: Parameter) -> bool:
        """Whether this register says how ``p`` is read or shown."""
        if self.sets == "byte_order":
            return p.codec.count >= 2 and p.codec.type != "string"
        return p.quantity is not None and p.quantity == self.quantity

    def recognise(self, words: Sequence[int]) -> str | None:
        """The setting ``words`` (its ``count`` registers) say, or None for none known."""
        known = dict(self.values)
        for word in words:
            if word in known:
                return known[word]
        return None

    def within(self, table: str, address: int, count: int) -> bool:
        """Whether a read of ``count`` registers of ``table`` at ``address`` holds all of this
        one's registers."""
        return (
            table == self.table
            and address <= self.address
            and self.address + self.count <= address + count
        )

    def where(self) -> str:
        return f"{self.name} register ({self.table} {self.address} x{self.count})"


def read_describers(t: Table) -> tuple[Describer, ...]:
    """A profile's ``[describe]`` table; raises ``t``'s error naming the bad key."""
    found = []
    for name, data in t.data.items():
        d = t.table(name, data)
        d.allow(_KEYS)
        sets = d.get("sets", str, check=lambda v: None if v in SETS else f"is not one of {SETS}")
        table = d.get(
            "table",
            str,
            "holding",
            lambda v: None if v in REGISTER_TABLES else "is no register table",
        )
        address = d.get("address", int, check=_pdu_address)
        count = d.get("count", int, 1, lambda v: None if 1 <= v <= 125 else "is not 1..125")
        if address + count > 65536:
            raise d.error(f"{address}+{count} registers run past 65535", "count")
        quantity = d.get("quantity", str, None)
        if (sets == "unit") != (quantity is not None):
            why = "needed for sets = 'unit'" if sets == "unit" else "only for sets = 'unit'"
            raise d.error(why, "quantity")
        values = _values(d, d.get("values", dict), sets)
        found.append(Describer(name, sets, table, address, count, values, quantity))
    return tuple(found)


def _pdu_address(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "is not a PDU address 0..65535"


def _values(d: Table, table: Mapping[str, Any], sets: str) -> tuple[tuple[int, str], ...]:
    pairs = []
    for key, value in table.items():
        if not key.lstrip("-").isdigit() or not 0 <= int(key) <= 65535:
            raise d.error(f"{key!r} is not a register value 0..65535", f"values.{key}")
        ok = value in BYTE_ORDERS if sets == "byte_order" else isinstance(value, str) and value
        if not ok:
            want = f"one of {', '.join(BYTE_ORDERS)}" if sets == "byte_order" else "a unit"
            raise d.error(f"{value!r} is not {want}", f"values.{key}")
        pairs.append((int(key), value))
    if not pairs:
        raise d.error("names no value", "values")
    return tuple(pairs)


class Description:
    """What one device says about how to read it, and its parameters as read that way.

    ``due`` is set when the connection opens and cleared once the device has been asked;
    ``version`` goes up whenever the effective parameters change (:meth:`parameters`).
    """

    def __init__(
        self,
        bus: str,
        device: str,
        parameters: Iterable[Parameter],
        describers: Sequence[Describer],
        pinned: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self._bus, self._device = bus, device
        self._base = tuple(parameters)
        self.describers = tuple(describers)
        self._pinned = pinned
        self._said: dict[str, str | None] = {d.name: None for d in self.describers}
        self._warned: set[tuple[str, tuple[int, ...] | None]] = set()
        self.due = True
        self.asked_at: float | None = None  # when it last answered (monotonic), None: never
        self.version = 0
        self._params = {p.name: p for p in self._base}

    def stale(self, now: float) -> bool:
        """Whether :data:`RECHECK_S` has passed since the device last said how to read it."""
        return self.asked_at is not None and now - self.asked_at >= RECHECK_S

    def spans(self) -> list[tuple[str, int, int]]:
        """The reads that ask the device, (table, address, count): its describing registers,
        neighbours (at most 10 apart, 125 in all) merged into one read."""
        spans: list[list[Any]] = []
        for d in sorted(self.describers, key=lambda d: (d.table, d.address)):
            last = spans[-1] if spans else None
            end = d.address + d.count
            if last and last[0] == d.table and d.address <= last[2] + 10 and end - last[1] <= 125:
                last[2] = max(last[2], end)
            else:
                spans.append([d.table, d.address, end])
        return [(t, a, end - a) for t, a, end in spans]

    def take(self, table: str, address: int, words: Sequence[int]) -> bool:
        """Update from ``words`` read from ``table`` at ``address`` (each describing register
        they cover); whether the effective parameters changed."""
        changed = False
        for d in self.describers:
            if not d.within(table, address, len(words)):
                continue
            at = d.address - address
            mine = tuple(words[at : at + d.count])
            said = d.recognise(mine)
            if said is None:
                self.unknown(d, mine)
            if said != self._said[d.name]:
                self._said[d.name], changed = said, True
        if changed:
            self._rebuild()
        return changed

    def unknown(self, d: Describer, words: tuple[int, ...] | None, why: str = "") -> None:
        """One WARNING per describing register and reading that says nothing known."""
        if (d.name, words) in self._warned:
            return
        self._warned.add((d.name, words))
        known = ", ".join(f"{v} ({s})" for v, s in d.values)
        what = f"read {list(words)}, none of {known}" if words is not None else why
        log.warning(
            "bus %s device %s: %s %s; keeping the profile's %s",
            self._bus, self._device, d.where(), what, _NAMES[d.sets],
        )  # fmt: skip

    def said(self, sets: str, p: Parameter) -> str | None:
        """What the device says of ``p``'s ``sets`` field (None: nothing, or pinned)."""
        if (p.name, sets) in self._pinned:
            return None
        for d in self.describers:
            if d.sets == sets and d.governs(p) and self._said[d.name] is not None:
                return self._said[d.name]
        return None

    def _rebuild(self) -> None:
        params = {}
        for p in self._base:
            order, unit = self.said("byte_order", p), self.said("unit", p)
            if order is not None and order != p.codec.byte_order:
                p = dataclasses.replace(p, codec=dataclasses.replace(p.codec, byte_order=order))
            if unit is not None and unit != p.unit:
                p = dataclasses.replace(p, unit=unit)
            params[p.name] = p
        self._params = params
        self.version += 1

    def summary(self) -> str:
        """What the device says, for a log line: ``byte order ABCD, unit degF``."""
        return ", ".join(
            f"{_NAMES[d.sets]} {self._said[d.name] or 'as in the profile'}" for d in self.describers
        )

    def parameters(self) -> dict[str, Parameter]:
        """The device's parameters by name, as the device says to read them."""
        return self._params

    def self_described(self, p: Parameter) -> bool:
        """Whether the device said the byte order ``p`` is read in."""
        return self.said("byte_order", p) is not None
