"""What a read becomes: the Samples of one bus's reads, each value checked on the way.

A value outside its parameter's ``range`` is an error row (value None, ``out of range: <value>
not in [lo, hi]``, :attr:`~connectors.sample.ErrorKind.OUT_OF_RANGE`). A float that decodes
as NaN, infinite, absurdly large or small on a device whose byte order is not self-described
(connectors.describe) is stored, and warned of once per device and parameter with the
override that would fix it: most likely its words come in the other order. On a device that
said its byte order, such a float is an error row (bad response) and the device is asked
again before its next read: its setting changed since it said it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime

from connectors.bus import Bus, Device
from connectors.describe import Description
from connectors.parameter import Parameter
from connectors.registers import Read
from connectors.sample import ErrorKind, Sample

__all__ = ["Failure", "Readings"]

log = logging.getLogger("connectors.poller")  # the bus's log lines, under one name

# A failed read's kind, error text and Modbus exception code (None but for an exception).
Failure = tuple[ErrorKind, str, int | None]

# A float that is NaN, infinite, beyond 1e12, or not 0 and within 1e-12 of it (denormals
# too), is garbage most likely: what a value read in the wrong word order decodes to (75.3 ->
# 1e-23, 100 -> 1e-41).
_ABSURD, _TINY = 1e12, 1e-12


_RANGE, _BAD = ErrorKind.OUT_OF_RANGE, ErrorKind.BAD_RESPONSE


def _num(x: float) -> str:
    """``x`` as TOML would write it: 9999, not 9999.0."""
    return str(int(x)) if float(x).is_integer() else repr(x)


class Readings:
    """Builds one bus's Samples: checked values (:meth:`values`) and error rows
    (:meth:`errors`)."""

    def __init__(self, bus: Bus) -> None:
        self._bus, self._protocol = bus.name, bus.url.protocol
        self._warned: set[tuple[str, str]] = set()  # (device, parameter) warned implausible

    def values(
        self,
        device: Device,
        desc: Description | None,
        read: Read,
        data: bytes,
        tick: int,
        requested: datetime,
        received: datetime,
        out: list[Sample],
    ) -> bool:
        """Append the samples of the values of ``read`` in its answer ``data``
        (connectors.registers.pack_read) to ``out``; whether any became an error row (out of
        range, or garbage in the byte order the device said)."""
        failed, checked = False, read.checked
        bus, protocol = self._bus, self._protocol
        name, address, instance = device.name, device.address, device.instance
        for p, start, decode in read.decoders:
            v = decode(data, start)
            if checked:
                bad = None
                bounds = p.range  # only on numbers: v is an int or a float
                if bounds is not None and not bounds[0] <= v <= bounds[1]:  # type: ignore[operator]
                    error = f"out of range: {v!r} not in [{_num(bounds[0])}, {_num(bounds[1])}]"
                    bad = self._sample(
                        device, p, tick, requested, received, None, error, _RANGE, None
                    )
                elif type(v) is float and not (_TINY <= abs(v) <= _ABSURD or v == 0):
                    bad = self._implausible(device, desc, p, v, tick, requested, received)
                if bad is not None:
                    failed = True
                    out.append(bad)
                    continue
            # Built here, positionally in Sample's field order: this runs once per value read.
            text = p.label(v) if p.labels else None
            sample = Sample(
                bus, name, address, protocol, p.name, p.id, instance, v, p.unit,
                requested, received, tick, None, text,
            )  # fmt: skip
            out.append(sample)
        return failed

    def errors(
        self,
        device: Device,
        parameters: Sequence[Parameter],
        tick: int,
        requested: datetime,
        received: datetime,
        failure: Failure,
        out: list[Sample],
    ) -> None:
        """Append one error row per parameter of a failed (or unsent) read to ``out``."""
        kind, error, code = failure
        for p in parameters:
            out.append(self._sample(device, p, tick, requested, received, None, error, kind, code))

    def _implausible(
        self,
        device: Device,
        desc: Description | None,
        p: Parameter,
        v: float,
        tick: int,
        requested: datetime,
        received: datetime,
    ) -> Sample | None:
        """What becomes of a float that is NaN, infinite, absurdly large or small: one whose
        byte order the device did not say is stored (None) and warned of, once per device and
        parameter; one whose byte order the device said means the device's setting changed
        since it said it: its error row, and the device is asked again before its next read."""
        if desc is None or not desc.self_described(p):
            self._warn_implausible(device, p, v)
            return None
        desc.due = True
        error = (
            f"bad response: {v!r} in byte order {p.codec.byte_order}, which the device said; "
            "asking it again"
        )
        return self._sample(device, p, tick, requested, received, None, error, _BAD, None)

    def _warn_implausible(self, device: Device, p: Parameter, value: float) -> None:
        if (device.name, p.name) in self._warned:
            return
        self._warned.add((device.name, p.name))
        order = p.codec.byte_order
        other = {"ABCD": "CDAB", "CDAB": "ABCD", "BADC": "DCBA", "DCBA": "BADC"}[order]
        log.warning(
            "bus %s device %s: %s decoded as %r in byte order %s, which the device does not "
            "say; if its words come in the other order, set override.%s.byte_order = %s",
            self._bus, device.name, p.name, value, order, p.name, json.dumps(other),
        )  # fmt: skip

    def _sample(
        self,
        device: Device,
        p: Parameter,
        tick: int,
        requested: datetime,
        received: datetime,
        value: int | float | str | None,
        error: str | None,
        kind: ErrorKind | None,
        code: int | None,
    ) -> Sample:
        text = p.label(value) if p.labels and value is not None else None
        # Positional, in Sample's field order: one is built per value read, and keywords
        # cost a third more.
        return Sample(
            self._bus, device.name, device.address, self._protocol, p.name, p.id,
            device.instance, value, p.unit, requested, received, tick, error, text, kind, code,
        )  # fmt: skip
