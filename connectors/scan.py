"""Commissioning: find out what answers on a bus and print a config snippet for it.

    python -m connectors.scan URL [--units 1-247] [--timeout 0.2] [--name NAME]

``URL`` is a bus URL as in ``acquire.toml`` (``tcp://``, ``udp://``, ``rtu+tcp://``,
``rtu:///dev/...``, ``ascii:///dev/...``).

- Read-only: only FC03/FC04 (read holding/input registers) and FC01/FC02 (read coils/discrete
  inputs), to unit ids 1-247 (never 0, the broadcast id), one at a time, with the RTU
  inter-frame silence between them.
- Presence: each unit first gets FC03 at holding 360 x2. No answer within the timeout: nobody
  is there (a silent unit costs one timeout). Values, an exception code or a bad frame:
  something is. Exceptions 10 and 11 are a gateway speaking for a silent unit: nobody.
- Identification, with addresses and types from ``connectors/profiles``. ``watlow_pm``:
  holding 2490 (display units) is 15 or 30, and the float32 process value (360) and set
  point (2160) are both 0 or finite with 1e-3 <= |x| <= 1e5 in the word order the PM's
  word-order register (holding 2488 x2, the profile's ``[describe.word_order]``) says; the
  snippet then says so in a comment, and the flow reads both registers itself. A PM whose
  register says nothing known (or contradicts its floats) is tried in the profile's order
  (low word first), then high word first, in which case the snippet overrides the floats'
  byte order to ABCD (in the wrong order 75.3 or 100.0 decode to about 1e-23 or 1e-41).
  Values are shown in the units the PM says (degC/degF). ``servomex_4100``:
  input 0-6 (measurement 1) holds a finite float32, at 2 a name of printable ASCII with a
  letter and only NUL/space padding, at 5 printable units or none (all zeros never pass).
- Bits: each unit that answered is asked for coil 0 (FC01) and discrete input 0 (FC02); one
  answered with a value is noted (``answers FC01 (coil 0 = 1)``) on its progress line and in
  the snippet, for ``table = "coil"`` / ``"discrete"`` parameters.
- Output: a progress line per unit on stderr; on stdout ``[[bus]]`` with the URL as given and
  a ``[[bus.device]]`` (name, profile, address) per identified unit, which ``flows.config``
  accepts; units that matched no profile as commented-out tables with what they answered
  (with none identified, the whole snippet is comments).
- Exit status: 0 when some unit answered, 1 when none did, 2 (one line on stderr) for a bad
  URL or option or a gateway or port not there or lost (a ``udp://`` gateway has no
  connection: one not there is units not answering, 1). Ctrl-C prints what was found so far.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any

from pymodbus.exceptions import ModbusException

from connectors import transport
from connectors.faults import exception_text
from connectors.identify import Answer, Found, servomex_4100, watlow_pm
from connectors.parameter import Parameter
from connectors.registers import load_profile
from connectors.request import answer_words, read_call
from connectors.transport import BusUrl

__all__ = ["UNITS", "ScanError", "main", "parse_units", "scan", "snippet"]

UNITS = range(1, 248)
_toml = json.dumps  # a JSON string is a TOML basic string
GATEWAY_CODES = (10, 11)
CONNECT_TIMEOUT_S = 3.0  # opening a gateway may take longer than a unit takes to answer


class ScanError(Exception):
    """The bus cannot be scanned: its gateway or port cannot be opened, or went away."""


class _Prober:
    """One client on one bus, sending identification reads to one unit at a time."""

    def __init__(self, bus: BusUrl, client: Any, timeout_s: float) -> None:
        self.bus, self.client, self.timeout_s = bus, client, timeout_s
        self.gap = transport.frame_gap_s(bus.baudrate) if bus.scheme == "rtu" else 0.0
        self.pm, self.o2 = load_profile("watlow_pm"), load_profile("servomex_4100")

    async def connect(self) -> None:
        where = self.bus.path if self.bus.serial else f"{self.bus.host}:{self.bus.port}"
        try:
            ok, why = await self.client.connect(), ""
        except (ModbusException, OSError) as exc:
            ok, why = False, f": {exc}"
        if not ok:
            what = "open the serial port" if self.bus.serial else "connect to"
            raise ScanError(f"cannot {what} {where}{why}")
        transport.set_timing(self.client, timeout=self.timeout_s, retries=0)

    async def read(self, unit: int, p: Parameter, count: int = 0) -> Answer:
        return await self.read_at(unit, p.table, p.address, count or p.count)

    async def read_at(self, unit: int, table: str, address: int, count: int) -> Answer:
        at = {"table": table, "address": address, "count": count}
        if self.gap:
            await asyncio.sleep(self.gap)
        client = self.client
        call = read_call(client, table)
        try:
            response = await call(address, count=count, device_id=unit)
        except transport.BadFrameError as exc:
            return Answer(**at, error=f"bad frame: {exc.text}")
        except (ModbusException, OSError) as exc:
            if not client.connected:  # the gateway hung up: reconnect once, then go on
                transport.set_timing(client, timeout=CONNECT_TIMEOUT_S, retries=0)
                try:
                    await self.connect()
                except ScanError as lost:
                    raise ScanError(f"connection lost at unit {unit}; {lost}") from None
            return Answer(**at, error=transport.read_failure(exc)[1], silent=True)
        if response.isError():
            return Answer(**at, exception_code=getattr(response, "exception_code", 0))
        words = answer_words(table, response, count)
        if len(words) != count:
            return Answer(**at, error=f"bad response: {len(words)} registers")
        return Answer(**at, registers=tuple(words))

    async def bits(self, found: Found) -> Found:
        """``found`` with what its unit answered to a read of coil 0 and of discrete input 0;
        ``bits`` says which gave a value (an exception says nothing: many devices answer
        exception 2 for a table they do not have)."""
        answers, said = [], []
        for table, code in (("coil", 1), ("discrete", 2)):
            answers.append(a := await self.read_at(found.address, table, 0, 1))
            if a.registers is not None:
                said.append(f"FC0{code} ({table} 0 = {a.registers[0]})")
        if not said:
            return dataclasses.replace(found, answers=(*found.answers, *answers))
        evidence = found.evidence.replace("every read", "every register read")
        bits = f"answers {' and '.join(said)}"
        return dataclasses.replace(
            found, evidence=evidence, answers=(*found.answers, *answers), bits=bits
        )

    async def probe(self, unit: int) -> Found | None:
        """Who is at ``unit``; None when nothing answered the presence read."""
        pm, o2 = self.pm, self.o2
        answers = [await self.read(unit, pm.parameter("analog_input_value"))]
        pv = answers[0]
        if pv.silent or pv.exception_code in GATEWAY_CODES:
            return None

        def found(
            profile: str | None, evidence: str, order: str | None = None, told: str | None = None
        ) -> Found:
            kw = {"profile": profile, "evidence": evidence, "byte_order": order, "described": told}
            return Found(address=unit, answers=tuple(answers), **kw)

        if pv.registers is not None:
            answers.append(units := await self.read(unit, pm.parameter("display_units")))
            labels = dict(pm.parameter("display_units").labels)
            if units.registers is not None and units.registers[0] in labels:
                answers.append(sp := await self.read(unit, pm.parameter("set_point")))
                said = None
                for d in (d for d in pm.describe if d.sets == "byte_order"):
                    answers.append(order := await self.read_at(unit, d.table, d.address, d.count))
                    said = d.recognise(order.registers) if order.registers else None
                if sp.registers is not None and (
                    is_pm := watlow_pm(pm, pv, sp, units.registers[0], said)
                ):
                    return found(pm.name, *is_pm)
        first, last = o2.parameter("measurement_1"), o2.parameter("measurement_1_units")
        count = last.address + last.count - first.address
        answers.append(block := await self.read(unit, first, count))
        if block.registers is not None and (is_o2 := servomex_4100(o2, block.registers)):
            return found(o2.name, is_o2)
        codes = dict.fromkeys(a.exception_code for a in answers)
        if None in codes:
            return found(None, "answered, matched no known profile")
        names = ", ".join(exception_text(c) for c in codes)  # type: ignore[arg-type]
        return found(None, f"answered every read with an exception: {names}")


async def scan(
    bus: BusUrl,
    *,
    units: Iterable[int] = UNITS,
    timeout_s: float = 0.2,
    progress: Callable[[str], None] = lambda line: None,
    found: list[Found] | None = None,
) -> list[Found]:
    """Probe ``units`` on ``bus``, read-only; those that answered, in order, also appended
    to ``found`` as they come (kept if the scan is cancelled). ScanError: bus not there."""
    found = [] if found is None else found
    client = transport.open_client(bus, timeout=max(CONNECT_TIMEOUT_S, timeout_s), retries=0)
    prober = _Prober(bus, client, timeout_s)
    try:
        await prober.connect()
        progress(f"connected to {bus}; {timeout_s:g} s per silent unit")
        for unit in units:
            result = await prober.probe(unit)
            if result is None:
                progress(f"unit {unit}: no answer")
                continue
            result = await prober.bits(result)
            bits = f"; {result.bits}" if result.bits else ""
            progress(f"unit {unit}: {result.profile or 'unidentified'}: {result.evidence}{bits}")
            found.append(result)
    finally:
        client.close()
    return found


def snippet(bus: BusUrl, url: str, found: Sequence[Found], *, name: str | None = None) -> str:
    """The ``[[bus]]`` TOML for the units ``found`` on ``bus``; ``url`` as the user gave it."""
    if name is None:
        name = PurePosixPath(bus.path).name if bus.serial else bus.host
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:63].strip(".-") or "bus"
    known = [f for f in found if f.profile]
    lines = ["[[bus]]", f"name = {_toml(name)}", f"url = {_toml(url)}"]
    for f in found:
        lines.append("")
        if f.profile is None:
            lines += [f"  # unit {f.address} {f.evidence}:", *(f"  #   {a}" for a in f.answers)]
            lines += [f"  # {f.bits}"] if f.bits else []
            lines += ["  # [[bus.device]]", f'  # name = "unit-{f.address}"']
            lines += [f"  # address = {f.address}", '  # profile = "..."  # or parameter tables']
            continue
        lines += ["  [[bus.device]]", f"  # {f.evidence}", *([f"  # {f.bits}"] if f.bits else [])]
        if f.described:  # two lines: what the device says; that the flow reads it itself
            said, _, rest = f.described.partition("; ")
            lines += [f"  # {said};" if rest else f"  # {said}", *([f"  # {rest}"] if rest else [])]
        order = _toml(f.byte_order)
        lines.append(f"  name = {_toml(f.profile.replace('_', '-') + f'-{f.address}')}")
        lines += [f"  profile = {_toml(f.profile)}", f"  address = {f.address}"]
        floats = [p for p in load_profile(f.profile).parameters if p.codec.type == "float32"]
        for p in floats if f.byte_order else ():
            lines += ["", f"    [bus.device.override.{p.name}]", f"    byte_order = {order}"]
    if not known:  # a bus without a device does not parse: leave it all to the user
        lines = [line if line.lstrip().startswith("#") else f"# {line}" for line in lines]
    head = f"# connectors.scan of {url}: {len(known)} identified, {len(found) - len(known)} not"
    return "\n".join([head, *lines]) + "\n"


def parse_units(text: str) -> list[int]:
    """``"1-247"``, ``"3"`` or ``"1-10,20,30-40"`` -> sorted unit ids; ValueError if bad."""
    units: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if match is None:
            raise ValueError(f"{part!r} is not a unit id or a range like 1-247")
        first, last = int(match[1]), int(match[2] or match[1])
        if not 1 <= first <= last <= 247:
            raise ValueError(f"{part!r} is not within the unit ids 1-247")
        units.update(range(first, last + 1))
    return sorted(units)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: ``python -m connectors.scan``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m connectors.scan",
        description="Probe Modbus unit ids on a bus (read-only) and print a config snippet.",
    )
    parser.add_argument(
        "url", help="tcp://, udp:// or rtu+tcp://HOST[:PORT], rtu:///dev/..., ascii:///dev/..."
    )
    parser.add_argument("--units", default="1-247", help="unit ids, e.g. 1-10,20 (1-247)")
    parser.add_argument("--timeout", type=float, default=0.2, help="s to wait per answer (0.2)")
    parser.add_argument("--name", help="the [[bus]] name (default: from the URL)")
    args = parser.parse_args(argv)
    if logging.getLogger("pymodbus").level == logging.NOTSET:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # it logs each silence at ERROR

    say = functools.partial(print, file=sys.stderr, flush=True)
    try:
        bus, units = transport.parse_bus_url(args.url), parse_units(args.units)
        if bus.scheme == "sim":
            raise ValueError(f"{args.url!r} is served in process; scan a real bus's URL")
        if not (math.isfinite(args.timeout) and 0 < args.timeout <= 60):
            raise ValueError(f"--timeout {args.timeout}: not a number of seconds in (0, 60]")
    except ValueError as exc:
        say(f"scan: {exc}")
        return 2
    found: list[Found] = []
    try:
        asyncio.run(scan(bus, units=units, timeout_s=args.timeout, progress=say, found=found))
    except ScanError as exc:
        say(f"scan: {args.url}: {exc}")
        return 2
    except KeyboardInterrupt:
        say(f"scan: interrupted; printing the {len(found)} unit(s) found so far")
    print(snippet(bus, args.url, found, name=args.name), end="")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
