"""``python -m connectors.sim``: serve simulated controllers for any Modbus client.

    python -m connectors.sim --tcp 127.0.0.1:5020 --device 1:watlow_pm \
        --device 2:watlow_pm:high_low:F --device 3:servomex_4100 [--log answered.txt]

Where: ``--tcp HOST:PORT``, ``--udp HOST:PORT``, ``--rtu-over-tcp HOST:PORT``, or ``--rtu`` /
``--ascii`` on a new pseudo-terminal (``--baudrate``); it prints the URL to give a client.

Each ``--device`` is ``UNIT:PROFILE`` and, for a Watlow PM, its word order and units
settings; ``--log`` appends one line per read answered (``UNIT TABLE ADDRESS COUNT``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence

from connectors.bus import Simulation
from connectors.sim.device import SimulatedDevice
from connectors.sim.server import BusSimulator

__all__ = ["main", "parse_device"]

_DEVICE_FORM = "UNIT:PROFILE[:low_high|high_low][:C|F]"


def parse_device(text: str) -> SimulatedDevice:
    """``UNIT:PROFILE`` and, in any order, the device's word order and units settings."""
    unit, _, rest = text.partition(":")
    profile, *settings = rest.split(":")
    if not unit.isdigit() or not profile:
        raise argparse.ArgumentTypeError(f"{text!r} is not {_DEVICE_FORM} (e.g. 1:watlow_pm)")
    knobs: dict[str, str] = {}
    for setting in settings:
        key = "word_order" if setting in Simulation.WORD_ORDERS else "units"
        if setting not in (*Simulation.WORD_ORDERS, *Simulation.UNITS) or key in knobs:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {setting!r} is not a word order (low_high, high_low) or units "
                f"(C, F), or is given twice ({_DEVICE_FORM})"
            )
        knobs[key] = setting
    return SimulatedDevice(address=int(unit), profile=profile, **knobs)


async def _serve(args: argparse.Namespace) -> None:
    if args.rtu or args.ascii:
        kind = "rtu" if args.rtu else "ascii"
        sim = BusSimulator(kind, args.device, baudrate=args.baudrate)
    else:
        kind = "tcp" if args.tcp else "udp" if args.udp else "rtu+tcp"
        host, _, port = (args.tcp or args.udp or args.rtu_over_tcp).rpartition(":")
        sim = BusSimulator(kind, args.device, host=host or "127.0.0.1", port=int(port or 0))
    with contextlib.ExitStack() as stack:
        if args.log:
            log = stack.enter_context(open(args.log, "a", encoding="ascii"))
            for state in sim.devices.values():
                state.log = log
        url = await sim.start()
        units = ", ".join(f"{d.address}={d.profile}" for d in args.device)
        print(f"serving {units} at {url} (Ctrl-C stops)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point: ``python -m connectors.sim``."""
    parser = argparse.ArgumentParser(prog="python -m connectors.sim", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve Modbus TCP")
    where.add_argument("--udp", metavar="HOST:PORT", help="serve Modbus UDP")
    where.add_argument("--rtu-over-tcp", metavar="HOST:PORT", help="serve RTU framing over TCP")
    where.add_argument("--rtu", action="store_true", help="serve Modbus RTU on a new pty")
    where.add_argument("--ascii", action="store_true", help="serve Modbus ASCII on a new pty")
    parser.add_argument("--baudrate", type=int, default=19200)
    parser.add_argument(
        "--log", metavar="PATH", help="append 'UNIT TABLE ADDRESS COUNT' per read answered"
    )
    parser.add_argument(
        "--device", type=parse_device, action="append", required=True, metavar=_DEVICE_FORM
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
