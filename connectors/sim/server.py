"""Simulated controllers served by a real pymodbus server.

A :class:`BusSimulator` serves several simulated devices (one per unit id)
from the same profile files the poller reads, over Modbus TCP or UDP on loopback,
RTU framing over TCP, or Modbus RTU or ASCII on a pseudo-terminal. Values move like
the real thing: a Watlow PM heats toward its set point with a first-order
lag and noise; a Servomex analyser reads about 20.9 % O2 with noise.

Fault knobs per device: ``delay_s`` (answer late), ``dead`` (never answer),
``exception_code`` (answer every read with that Modbus exception) and, on an ``rtu`` or
``ascii`` bus, ``garbage`` (answer with a frame whose CRC or LRC is wrong). A Watlow PM's settings:
``word_order`` (``low_high``, its 32-bit values low word first, Watlow's factory default, or
``high_low``) and ``units`` (``C`` or ``F``); it serves its word order register (2488-2489:
[1331, 0] for low_high, [0, 1330] for high_low) and display units (2490: 15 or 30) to match.
:meth:`BusSimulator.set_fault` changes any of them while the bus runs. With
``wire_time=True`` an ``rtu`` bus carries every frame at the speed of its baud rate
(:func:`wire_time_s`), and ``turnaround_s`` is the device's delay between the end of a
request and the start of its answer.

Each request is answered under its own transaction and unit ids, however many are in flight
on one connection (connectors.sim.handler; pymodbus's own handler stamps a delayed answer
with the ids of the request received last).

Every read a device answers with values is counted (:meth:`BusSimulator.answered`, and with
``--log`` one line per read), so what a run stored can be held against what was answered.

Standalone, for pointing a real client at it: ``python -m connectors.sim`` (connectors.sim.cli).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Sequence

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer, ModbusUdpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.bus import Bus
from connectors.sim.cable import Cable, open_pty
from connectors.sim.device import DeviceState, InProcessClient, SimulatedDevice
from connectors.sim.handler import SerialServer, TcpServer, UdpServer

__all__ = ["BusSimulator", "simulator_for"]

KINDS = ("tcp", "udp", "rtu", "ascii", "rtu+tcp", "sim")


async def _silent(*_args: object) -> ExcCodes | None:
    raise NoSuchIdException("no simulated device at this unit id")


class BusSimulator:
    """A simulated bus: devices at unit ids behind one real pymodbus server.

    ``kind`` is ``tcp`` (Modbus TCP), ``udp`` (Modbus UDP), ``rtu+tcp`` (RTU framing over
    TCP), ``rtu`` or ``ascii`` (Modbus RTU or ASCII on a pseudo-terminal), or ``sim`` (no
    server: :meth:`client` gives an :class:`InProcessClient` on the same registers). For
    ``rtu`` and ``ascii`` two pty pairs are joined by a null-modem pump in this process: the
    server owns one slave end, the client opens the other, and both sides are real serial
    ports. A pty takes only 8N1 (Linux refuses to set 7 data bits or parity on it), so an
    ``ascii`` bus is served at ``ascii://PTY?...&parity=N&bytesize=8``; its wire time counts
    the spec's 10-bit characters (7E1) all the same.
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
        self._server: ModbusTcpServer | ModbusUdpServer | ModbusSerialServer | None = None
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
        if self.kind in ("rtu", "ascii"):
            ascii_line = self.kind == "ascii"
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
                ascii=ascii_line,
            )
            self._server = SerialServer(
                context,
                framer=FramerType.ASCII if ascii_line else FramerType.RTU,
                port=server_path,
                baudrate=self.baudrate,
                ignore_missing_devices=True,
            )
            await self._server.serve_forever(background=True)
            line = "&parity=N&bytesize=8" if ascii_line else ""
            self.url = f"{self.kind}://{client_path}?baudrate={self.baudrate}{line}"
            return self.url
        if self.kind == "udp":
            self._server = UdpServer(
                context, address=(self.host, self.port), ignore_missing_devices=True
            )
            await self._server.serve_forever(background=True)
            host, port = self._server.transport.get_extra_info("sockname")[:2]
        else:
            framer = FramerType.SOCKET if self.kind == "tcp" else FramerType.RTU
            self._server = TcpServer(
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
    URL's scheme, it listens where the URL says (any free port for port 0; an ``rtu`` or
    ``ascii`` bus on a new pseudo-terminal at the URL's baud rate) and plays each device that has a
    :class:`~connectors.bus.Simulation` at its unit id (the others stay silent)."""
    url = bus.url
    devices = [SimulatedDevice.of(d.address, d.simulation) for d in bus.devices if d.simulation]
    return BusSimulator(
        url.scheme,
        devices,
        host=url.host or "127.0.0.1",
        port=0 if url.serial else url.port,
        baudrate=url.baudrate,
    )
