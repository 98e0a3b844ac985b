"""What a unit's answers say it is: the identification rules of ``connectors.scan``.

A Watlow PM (``watlow_pm``): its process value and set point decode as plausible floats in the
word order its word-order register says (else the profile's, else high word first), and its
display units register holds a known value. A Servomex SERVOPRO 4100 (``servomex_4100``):
measurement 1's input registers hold a finite float, a printable name and units.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from connectors.codec import decode
from connectors.faults import exception_text
from connectors.parameter import Parameter
from connectors.registers import Profile

__all__ = ["Answer", "Found", "servomex_4100", "watlow_pm"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What one read got: its registers, an exception code, or an error (``silent``: none)."""

    table: str
    address: int
    count: int
    registers: tuple[int, ...] | None = None
    exception_code: int | None = None
    error: str | None = None
    silent: bool = False

    def __str__(self) -> str:
        words = "bits" if self.table in ("coil", "discrete") else "registers"
        what = f"{words} {list(self.registers)}" if self.registers is not None else self.error
        if self.exception_code is not None:
            what = f"exception {exception_text(self.exception_code)}"
        return f"{self.table} {self.address} x{self.count}: {what}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """A unit that answered: its profile (None: unidentified), why, what it answered,
    ``byte_order`` when its floats are in another byte order than its profile's and it does
    not say so itself, ``described`` what it says of how to read it (None: nothing), and
    ``bits`` whether it reads coils or discrete inputs (see connectors.scan)."""

    address: int
    profile: str | None
    evidence: str
    answers: tuple[Answer, ...]
    byte_order: str | None = None
    described: str | None = None
    bits: str | None = None  # which of coil 0 / discrete input 0 it answered with a value


def _plausible(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and (x == 0 or 1e-3 <= abs(x) <= 1e5)


def _text(p: Parameter, words: Sequence[int]) -> str | None:
    """``p``'s string if it is printable ASCII followed only by NUL or space padding."""
    body = b"".join(w.to_bytes(2, "big") for w in words).rstrip(b"\0 ")
    if any(c < 0x20 or c > 0x7E for c in body):
        return None
    return str(decode(p.codec, words))


# Watlow's names of the word orders its "Modbus Word Order" register (17043) says.
_WATLOW_ORDERS = {"CDAB": "Low_High", "ABCD": "High_Low"}


def watlow_pm(
    pm: Profile, pv: Answer, sp: Answer, units: int, said: str | None
) -> tuple[str, str | None, str | None] | None:
    """(evidence, byte order if not the profile's and not said, what the device said) when
    the reads look like a PM's. ``said`` is the byte order its word-order register says
    (None: not readable or unknown); it is tried first, then the profile's order, then
    high word first."""
    p_pv, p_sp = pm.parameter("analog_input_value"), pm.parameter("set_point")
    profile_order = p_pv.codec.byte_order
    for order in dict.fromkeys(o for o in (said, profile_order, "ABCD") if o):
        values = [
            decode(dataclasses.replace(p.codec, byte_order=order), a.registers or ())
            for p, a in ((p_pv, pv), (p_sp, sp))
        ]
        if all(_plausible(v) for v in values):
            label = pm.parameter("display_units").label(units)
            unit = _unit(pm, units)
            evidence = f"process value {values[0]:g} {unit}, set point {values[1]:g} {unit}"
            evidence += f", units {label}"
            if order == said:
                name = _WATLOW_ORDERS.get(order, order)
                told = (
                    f"the device says word order {name} ({order}) and units {label} ({unit}); "
                    "the flow reads both from it at connect, no override needed"
                )
                return f"{evidence}, word order {name}", None, told
            if order == profile_order:
                return evidence, None, None
            return f"{evidence}; floats in byte order {order}, not {profile_order}", order, None
    return None


def _unit(pm: Profile, raw: int) -> str:
    """The unit a PM's display units register value ``raw`` gives its temperatures."""
    for d in pm.describe:
        if d.sets == "unit" and (unit := d.recognise([raw])) is not None:
            return unit
    return pm.parameter("analog_input_value").unit or ""


def servomex_4100(o2: Profile, block: Sequence[int]) -> str | None:
    """The evidence when measurement 1's input registers look like a SERVOPRO's."""
    value, name, units = (o2.parameter(f"measurement_1{s}") for s in ("", "_name", "_units"))

    def words(p: Parameter) -> Sequence[int]:
        return block[p.address - value.address :][: p.count]

    reading, label, unit = decode(value.codec, words(value)), _text(name, words(name)), None
    if isinstance(reading, float) and math.isfinite(reading) and label:
        unit = _text(units, words(units))
    if unit is None or not any(c.isalpha() for c in label or ""):
        return None
    return f"measurement 1: {label} {reading:g} {unit}".rstrip()
