"""Simulated controllers served by a real pymodbus server.

A :class:`BusSimulator` serves several simulated devices (one per unit id)
from the same profile files the poller reads, over Modbus TCP on loopback,
RTU framing over TCP, or Modbus RTU on a pseudo-terminal. Values move like
the real thing: a Watlow PM heats toward its set point with a first-order
lag and noise; a Servomex analyser reads about 20.9 % O2 with noise.

Fault knobs per device: ``delay_s`` (answer late), ``dead`` (never answer),
``exception_code`` (answer every read with that Modbus exception) and, on an ``rtu``
bus, ``garbage`` (answer with a frame whose CRC is wrong). A Watlow PM's settings:
``word_order`` (``low_high``, its 32-bit values low word first, Watlow's factory default, or
``high_low``) and ``units`` (``C`` or ``F``); it serves its word order register (2488-2489:
[1331, 0] for low_high, [0, 1330] for high_low) and display units (2490: 15 or 30) to match.
:meth:`BusSimulator.set_fault` changes any of them while the bus runs. With
``wire_time=True`` an ``rtu`` bus carries every frame at the speed of its baud rate
(:func:`wire_time_s`), and ``turnaround_s`` is the device's delay between the end of a
request and the start of its answer.

Each request is answered under its own transaction and unit ids, however many are in flight
on one connection (:class:`_RequestHandler`; pymodbus's own handler stamps a delayed answer
with the ids of the request received last).

Every read a device answers with values is counted (:meth:`BusSimulator.answered`, and with
``--log`` one line per read), so what a run stored can be held against what was answered.

Standalone, for pointing a real client at it::

    python -m connectors.sim --tcp 127.0.0.1:5020 --device 1:watlow_pm \
        --device 2:watlow_pm:high_low:F --device 3:servomex_4100 [--log answered.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.bus import Bus, Simulation
from connectors.sim.cable import Cable, open_pty
from connectors.sim.device import DeviceState, InProcessClient, SimulatedDevice

__all__ = ["BusSimulator", "simulator_for"]

KINDS = ("tcp", "rtu", "rtu+tcp", "sim")


log = logging.getLogger(__name__)


async def _silent(*_args: object) -> ExcCodes | None:
    raise NoSuchIdException("no simulated device at this unit id")


class _RequestHandler(ServerRequestHandler):
    """pymodbus's handler of one connection, answering each request under its own ids.

    pymodbus 3.16's ``ServerRequestHandler.handle_request`` awaits the datastore (where a
    simulated device waits out its ``delay_s``) and then stamps the response with the
    transaction id and unit id of ``self.last_pdu`` and sends it to ``self.last_addr``: the
    connection's latest request, which ``callback_data`` replaces with every frame received.
    A request arriving while a delayed one was being answered made the delayed answer go out
    under the new request's ids, so the client took one device's values for another's (the
    cross-talk of issue 17). Here each request is taken from ``last_pdu`` as it is received,
    in order, and answered under its own ids and to its own address.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._received: collections.deque[tuple[ModbusPDU, tuple | None]] = collections.deque()

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        used = super().callback_data(data, addr)  # schedules handle_later once per request
        if self.last_pdu:
            self._received.append((self.last_pdu, self.last_addr))
        return used

    def handle_later(self) -> None:
        if self._received:
            pdu, addr = self._received.popleft()
            task = self.loop.create_task(self._answer(pdu, addr))
            _ANSWERING.add(task)
            task.add_done_callback(_ANSWERING.discard)

    async def _answer(self, pdu: ModbusPDU, addr: tuple | None) -> None:
        try:
            response = await pdu.datastore_update(self.server.context, pdu.dev_id)
        except NoSuchIdException:
            return  # a unit id nobody simulates, or a dead device: no answer
        except Exception:
            log.exception("simulated device %d failed a request", pdu.dev_id)
            response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id, response.dev_id = pdu.transaction_id, pdu.dev_id
        self.server_send(response, addr)


_ANSWERING: set[asyncio.Task[None]] = set()  # requests being answered, kept from the GC


class _Handled:
    """A pymodbus server whose connections are handled by :class:`_RequestHandler`."""

    def callback_new_connection(self) -> ServerRequestHandler:
        return _RequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)  # type: ignore[attr-defined]


class _TcpServer(_Handled, ModbusTcpServer):
    pass


class _SerialServer(_Handled, ModbusSerialServer):
    pass


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
        self.devices = {d.address: DeviceState(d, started, seed) for d in devices}
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._fds: list[int] = []
        self._cable: Cable | None = None
        self.url = ""

    def device(self, address: int) -> DeviceState:
        """The state of the simulated device at ``address``."""
        return self.devices[address]

    def answered(self) -> Counter[tuple[int, str, int, int]]:
        """(unit id, table, address, count) -> reads the devices answered with values, over
        every start and stop of this simulator."""
        return Counter(
            {(unit, *read): n for unit, d in self.devices.items() for read, n in d.answered.items()}
        )

    def set_fault(self, address: int, **knobs: object) -> None:
        """Change knobs of the device at ``address`` while the bus runs, e.g.
        ``set_fault(2, dead=True)`` or ``set_fault(1, word_order="high_low", units="F")``;
        takes effect from the next request (any kind). ValueError for a setting it has not."""
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
            self._cable = Cable(
                self.devices,
                client_master,
                server_master,
                baudrate=self.baudrate,
                wire_time=self.wire_time,
                turnaround_s=self.turnaround_s,
            )
            self._server = _SerialServer(
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
        self._server = _TcpServer(
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


def simulator_for(bus: Bus) -> BusSimulator:
    """The simulator of a bus configured ``simulate = true``, not started: its kind is the
    URL's scheme, it listens where the URL says (any free port for port 0; an ``rtu`` bus on a
    new pseudo-terminal at the URL's baud rate) and plays each device that has a
    :class:`~connectors.bus.Simulation` at its unit id (the others stay silent)."""
    url = bus.url
    devices = [SimulatedDevice.of(d.address, d.simulation) for d in bus.devices if d.simulation]
    return BusSimulator(
        url.scheme,
        devices,
        host=url.host or "127.0.0.1",
        port=url.port if url.scheme != "rtu" else 0,
        baudrate=url.baudrate,
    )


_DEVICE_FORM = "UNIT:PROFILE[:low_high|high_low][:C|F]"


def _parse_device(text: str) -> SimulatedDevice:
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
    """Command line entry point: ``python -m connectors.sim``."""
    parser = argparse.ArgumentParser(prog="python -m connectors.sim", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve Modbus TCP")
    where.add_argument("--rtu-over-tcp", metavar="HOST:PORT", help="serve RTU framing over TCP")
    where.add_argument("--rtu", action="store_true", help="serve Modbus RTU on a new pty")
    parser.add_argument("--baudrate", type=int, default=19200)
    parser.add_argument(
        "--log", metavar="PATH", help="append 'UNIT TABLE ADDRESS COUNT' per read answered"
    )
    parser.add_argument(
        "--device", type=_parse_device, action="append", required=True, metavar=_DEVICE_FORM
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
