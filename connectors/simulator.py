"""Simulated controllers served by a real pymodbus server.

A :class:`BusSimulator` serves several simulated devices (one per unit id)
from the same profile files the poller reads, over Modbus TCP on loopback,
RTU framing over TCP, or Modbus RTU on a pseudo-terminal. Values move like
the real thing: a Watlow PM heats toward its set point with a first-order
lag and noise; a Servomex analyser reads about 20.9 % O2 with noise.

Fault knobs per device: ``delay_s`` (answer late), ``dead`` (never answer),
``exception_code`` (answer every read with that Modbus exception) and, on an ``rtu``
bus, ``garbage`` (answer with a frame whose CRC is wrong). :meth:`BusSimulator.set_fault`
changes them while the bus runs. With ``wire_time=True`` an ``rtu`` bus carries every
frame at the speed of its baud rate (:func:`wire_time_s`), and ``turnaround_s`` is the
device's delay between the end of a request and the start of its answer.

Every read a device answers with values is counted (:meth:`BusSimulator.answered`, and with
``--log`` one line per read), so what a run stored can be held against what was answered.

Standalone, for pointing a real client at it::

    python -m connectors.simulator --tcp 127.0.0.1:5020 --device 1:watlow_pm \
        --device 2:servomex_4100 [--log answered.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException, NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.exceptionresponse import ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.registers import Parameter, Profile, encode, load_profile
from connectors.simcable import Cable, open_pty
from connectors.simmodels import device_values
from connectors.transport import wire_time_s

__all__ = ["BusSimulator", "InProcessClient", "SimulatedDevice", "device_values", "wire_time_s"]

KINDS = ("tcp", "rtu", "rtu+tcp", "sim")
_TABLES = {3: "holding", 4: "input"}  # function code -> register table
_RESPONSES = {3: ReadHoldingRegistersResponse, 4: ReadInputRegistersResponse}


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedDevice:
    """One simulated controller at one unit id, with its fault knobs."""

    address: int
    profile: str
    set_point: float | None = None
    delay_s: float = 0.0
    dead: bool = False
    exception_code: int | None = None
    garbage: bool = False  # rtu only: answer with a frame whose CRC is wrong


# A real controller refreshes its registers at its own scan rate (a Watlow PM's inputs at
# about 10 Hz), not per request; the model does the same, so the reads of one poll cost one
# model step, not one each.
_REFRESH_S = 0.1


def _same(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` encode alike: equal, of one type, zeros of one sign."""
    if type(a) is not type(b) or a != b:
        return False
    return a != 0 or math.copysign(1.0, a) == math.copysign(1.0, b)  # type: ignore[arg-type]


Span = list[tuple[int, Parameter]] | None
# The spans of each profile's reads, shared by its devices (they meet the same parameters):
# keyed by the profile's identity, the profile kept so its id is not reused.
_SPANS: dict[int, tuple[Profile, dict[tuple[str, int, int], Span]]] = {}


class _DeviceState:
    """Registers of one simulated device, refreshed from its model at most every 0.1 s."""

    def __init__(self, spec: SimulatedDevice, started: float, seed: int | None) -> None:
        self.spec = spec
        self.profile = load_profile(spec.profile)
        self.started = started
        self.rng = random.Random(seed if seed is None else seed + spec.address)
        self._values: dict[str, int | float | str] = {}
        # name -> (value, its words): encoded on the first read of a value, kept while the
        # model gives the same value (set points and most states do not move).
        self._words: dict[str, tuple[int | float | str, list[int]]] = {}
        self._refreshed = -math.inf
        self._spans = _SPANS.setdefault(id(self.profile), (self.profile, {}))[1]
        # (table, address, count) -> reads answered with values: the device's own log, to
        # hold what a run stored against (error answers and silences are not in it).
        self.answered: Counter[tuple[str, int, int]] = Counter()
        self.log: TextIO | None = None  # also one line per answered read, if set
        # Cleared by BusSimulator.stop(), with ``stops`` counted up: a request still being
        # handled (a delayed answer) then finds its connection closed, so its answer would
        # never be sent and must not be counted.
        self.serving = True
        self.stops = 0

    def _word(self, p: Parameter) -> list[int]:
        """``p``'s register words, from the model as of at most 0.1 s ago."""
        now = time.monotonic()
        if now - self._refreshed >= _REFRESH_S:
            spec = self.spec
            self._values = device_values(
                self.profile, now - self.started, spec.address, self.rng, spec.set_point
            )
            self._refreshed = now
        value = self._values[p.name]
        known = self._words.get(p.name)
        if known is not None and _same(known[0], value):
            return known[1]
        words = encode(p, value)
        self._words[p.name] = (value, words)
        return words

    def _span(self, table: str, address: int, count: int) -> list[tuple[int, Parameter]] | None:
        """(first register, parameter) of those a read of ``count`` at ``address`` meets;
        None when a register of the read belongs to no parameter (illegal data address)."""
        key = (table, address, count)
        if key not in self._spans:
            end = address + count
            met = [
                (p.address, p)
                for p in self.profile.parameters
                if p.table == table and p.address < end and p.address + p.count > address
            ]
            covered = {r for first, p in met for r in range(first, first + p.count)}
            whole = covered.issuperset(range(address, end))
            self._spans[key] = met if whole else None
        return self._spans[key]

    def fill(self, table: str, address: int, count: int, registers: list[int], at: int) -> bool:
        """Write the registers of a read of ``count`` at ``address`` into ``registers`` from
        index ``at``; False (nothing written) when the read meets a register no parameter
        has."""
        span = self._span(table, address, count)
        if span is None:
            return False
        self.answered[(table, address, count)] += 1
        if self.log is not None:
            self.log.write(f"{self.spec.address} {table} {address} {count}\n")
            self.log.flush()
        for first, p in span:
            words = self._word(p)
            offset = at + first - address
            # A parameter may start before the read or end after it: clip it to the read.
            lo, hi = max(offset, at), min(offset + len(words), at + count)
            registers[lo:hi] = words[lo - offset : hi - offset]
        return True

    def sim_device(self) -> SimDevice:
        blocks: dict[str, list[SimData]] = {"holding": [], "input": []}
        for p in self.profile.parameters:
            blocks[p.table].append(
                SimData(p.address, count=p.count, values=0, datatype=DataType.REGISTERS)
            )
        for table, block in blocks.items():
            if not block:  # pymodbus wants every block non-empty; keep it unreadable
                blocks[table] = [SimData(0, datatype=DataType.INVALID)]
        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=self.spec.address,
            simdata=(bits, list(bits), blocks["holding"], blocks["input"]),
            action=self.action,
        )

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        spec = self.spec
        if spec.dead:
            # The request handler answers nothing for a missing device.
            raise NoSuchIdException(f"simulated dead device {spec.address}")
        stops = self.stops
        if spec.delay_s:
            await asyncio.sleep(spec.delay_s)
        if not self.serving or self.stops != stops:
            raise NoSuchIdException(f"simulated bus stopped before device {spec.address} answered")
        if spec.exception_code is not None:
            return ExcCodes(spec.exception_code)
        table = _TABLES.get(function_code)
        if table is None or set_values is not None:
            return None
        # The server checked the address against its blocks (one per parameter) already.
        self.fill(table, address, count, registers, address - start_address)
        return None


async def _silent(*_args: object) -> ExcCodes | None:
    raise NoSuchIdException("no simulated device at this unit id")


class InProcessClient:
    """The part of a pymodbus async client the poller uses, served in process.

    Reads go straight to the simulated devices' registers and come back as the same
    pymodbus response PDUs a real client returns, without framing, I/O or the server's
    datastore, so the dataflow can be measured without Modbus overhead (the ``sim://``
    bus kind). As on a real bus: a unit id nobody simulates, or a dead device, costs
    ``timeout`` times ``retries + 1`` and raises ModbusIOException; a read meeting a
    register no parameter has is answered with exception 2 (illegal data address). Both
    attributes may be changed between requests.
    """

    connected = True

    def __init__(
        self, devices: Mapping[int, _DeviceState], timeout: float, retries: int = 0
    ) -> None:
        self._devices = devices
        self.timeout = timeout
        self.retries = retries

    async def connect(self) -> bool:
        return True

    def close(self) -> None:
        pass

    async def read_holding_registers(
        self, address: int, *, count: int = 1, device_id: int = 1
    ) -> ModbusPDU:
        return await self._read(3, address, count, device_id)

    async def read_input_registers(
        self, address: int, *, count: int = 1, device_id: int = 1
    ) -> ModbusPDU:
        return await self._read(4, address, count, device_id)

    async def _read(self, function_code: int, address: int, count: int, unit: int) -> ModbusPDU:
        state = self._devices.get(unit)
        if state is None or state.spec.dead:
            await asyncio.sleep(self.timeout * (self.retries + 1))
            raise ModbusIOException("No response received (simulated)")
        spec = state.spec
        if spec.delay_s:
            await asyncio.sleep(spec.delay_s)
        if spec.exception_code is not None:
            return ExceptionResponse(function_code, ExcCodes(spec.exception_code), device_id=unit)
        registers = [0] * count
        if not state.fill(_TABLES[function_code], address, count, registers, 0):
            return ExceptionResponse(function_code, ExcCodes.ILLEGAL_ADDRESS, device_id=unit)
        response = _RESPONSES[function_code]
        return response(registers=registers, dev_id=unit)


class BusSimulator:
    """A simulated bus: devices at unit ids behind one real pymodbus server.

    ``kind`` is ``tcp`` (Modbus TCP), ``rtu+tcp`` (RTU framing over TCP) or
    ``rtu`` (Modbus RTU on a pseudo-terminal), or ``sim`` (no server: :meth:`client` gives
    an :class:`InProcessClient` on the same registers). For ``rtu`` two pty pairs are
    joined by a null-modem pump in this process: the server owns one slave
    end, the client opens the other, and both sides are real serial ports.
    Start and stop it on one running event loop.
    """

    def __init__(
        self,
        kind: str,
        devices: Sequence[SimulatedDevice],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        baudrate: int = 19200,
        seed: int | None = None,
        wire_time: bool = False,
        turnaround_s: float = 0.0,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"simulator kind {kind!r} is not one of {', '.join(KINDS)}")
        units = [d.address for d in devices]
        if len(set(units)) != len(units):
            raise ValueError(f"simulated unit ids must be unique, got {units}")
        if turnaround_s < 0:
            raise ValueError(f"turnaround_s must be >= 0, got {turnaround_s}")
        self.kind, self.host, self.port, self.baudrate = kind, host, port, baudrate
        self.wire_time, self.turnaround_s = wire_time, turnaround_s
        started = time.monotonic()
        self.devices = {d.address: _DeviceState(d, started, seed) for d in devices}
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._fds: list[int] = []
        self._cable: Cable | None = None
        self.url = ""

    def device(self, address: int) -> _DeviceState:
        """The state of the simulated device at ``address``."""
        return self.devices[address]

    def answered(self) -> Counter[tuple[int, str, int, int]]:
        """(unit id, table, address, count) -> reads the devices answered with values, over
        every start and stop of this simulator."""
        return Counter(
            {(unit, *read): n for unit, d in self.devices.items() for read, n in d.answered.items()}
        )

    def set_fault(self, address: int, **knobs: object) -> None:
        """Change fault knobs of the device at ``address`` while the bus runs, e.g.
        ``set_fault(2, dead=True)``; takes effect from the next request (any kind)."""
        state = self.devices[address]
        state.spec = dataclasses.replace(state.spec, **knobs)  # type: ignore[arg-type]

    def _context(self) -> list[SimDevice]:
        context = [d.sim_device() for d in self.devices.values()]
        # Unit ids nobody simulates stay silent, as on a real bus.
        everything = SimData(0, count=65536, values=0, datatype=DataType.REGISTERS)
        context.append(SimDevice(id=0, simdata=[everything], action=_silent))
        return context

    def client(self, timeout: float) -> InProcessClient:
        """A client reading this bus's registers in process (any kind; ``sim`` has no other)."""
        return InProcessClient(self.devices, timeout)

    async def start(self) -> str:
        """Start serving; returns the bus URL a client connects to."""
        for state in self.devices.values():
            state.serving = True
        if self.kind == "sim":
            self.url = "sim://local"
            return self.url
        context = self._context()
        if self.kind == "rtu":
            server_master, server_slave, server_path = open_pty()
            client_master, client_slave, client_path = open_pty()
            self._fds = [server_master, server_slave, client_master, client_slave]
            self._cable = Cable(self, client_master, server_master)
            self._server = ModbusSerialServer(
                context,
                framer=FramerType.RTU,
                port=server_path,
                baudrate=self.baudrate,
                ignore_missing_devices=True,
            )
            await self._server.serve_forever(background=True)
            self.url = f"rtu://{client_path}?baudrate={self.baudrate}"
            return self.url
        framer = FramerType.SOCKET if self.kind == "tcp" else FramerType.RTU
        self._server = ModbusTcpServer(
            context,
            framer=framer,
            address=(self.host, self.port),
            ignore_missing_devices=True,
        )
        await self._server.serve_forever(background=True)
        host, port = self._server.transport.sockets[0].getsockname()[:2]  # type: ignore[union-attr]
        self.port = port
        self.url = f"{self.kind}://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop serving and release the port or pseudo-terminals. Idempotent. A request still
        being handled (a delayed answer) is not answered."""
        for state in self.devices.values():
            state.serving, state.stops = False, state.stops + 1
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
        if self._cable is not None:
            self._cable.close()
            self._cable = None
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _parse_device(text: str) -> SimulatedDevice:
    unit, _, profile = text.partition(":")
    if not unit.isdigit() or not profile:
        raise argparse.ArgumentTypeError(f"{text!r} is not UNIT:PROFILE (e.g. 1:watlow_pm)")
    return SimulatedDevice(address=int(unit), profile=profile)


async def _serve(args: argparse.Namespace) -> None:
    if args.rtu:
        sim = BusSimulator("rtu", args.device, baudrate=args.baudrate)
    else:
        host, _, port = (args.tcp or args.rtu_over_tcp).rpartition(":")
        kind = "tcp" if args.tcp else "rtu+tcp"
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
    """Command line entry point: ``python -m connectors.simulator``."""
    parser = argparse.ArgumentParser(prog="python -m connectors.simulator", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve Modbus TCP")
    where.add_argument("--rtu-over-tcp", metavar="HOST:PORT", help="serve RTU framing over TCP")
    where.add_argument("--rtu", action="store_true", help="serve Modbus RTU on a new pty")
    parser.add_argument("--baudrate", type=int, default=19200)
    parser.add_argument(
        "--log", metavar="PATH", help="append 'UNIT TABLE ADDRESS COUNT' per read answered"
    )
    parser.add_argument(
        "--device", type=_parse_device, action="append", required=True, metavar="UNIT:PROFILE"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
