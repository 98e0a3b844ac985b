"""One simulated controller: its fault knobs (:class:`SimulatedDevice`), its registers
(:class:`DeviceState`, refreshed from its model in connectors.sim.models) and the client that
reads them in process (:class:`InProcessClient`, the ``sim://`` bus). connectors.sim.server
serves them through a real pymodbus server."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TextIO

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException, NoSuchIdException
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsResponse, ReadDiscreteInputsResponse
from pymodbus.pdu.exceptionresponse import ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.bus import Simulation
from connectors.codec import Codec
from connectors.encode import encode, register_mask
from connectors.parameter import Parameter
from connectors.registers import Profile, load_profile
from connectors.sim.handler import REQUEST
from connectors.sim.models import SETTINGS, device_values, fahrenheit, setting_registers

__all__ = ["DeviceState", "InProcessClient", "SimulatedDevice"]

_TABLES = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}  # function code -> table
_RESPONSES = {
    1: ReadCoilsResponse,
    2: ReadDiscreteInputsResponse,
    3: ReadHoldingRegistersResponse,
    4: ReadInputRegistersResponse,
}
# A device's word order setting -> the byte order of its 32-bit (and longer) values.
_BYTE_ORDERS = {"low_high": "CDAB", "high_low": "ABCD"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedDevice:
    """One simulated controller at one unit id, with its fault knobs."""

    address: int
    profile: str
    set_point: float | None = None
    delay_s: float = 0.0
    dead: bool = False
    exception_code: int | None = None
    garbage: bool = False  # rtu and ascii only: answer with a frame whose CRC or LRC is wrong
    # How a controller that says how it is read (a Watlow PM) is set: its word order
    # ("low_high", "high_low") and display units ("C", "F").
    word_order: str = "low_high"
    units: str = "C"
    max_read: int | None = None  # a read of more registers gets no answer

    def __post_init__(self) -> None:
        if self.word_order not in Simulation.WORD_ORDERS:
            raise ValueError(
                f"word_order {self.word_order!r} is not one of {', '.join(Simulation.WORD_ORDERS)}"
            )
        if self.units not in Simulation.UNITS:
            raise ValueError(f"units {self.units!r} is not one of {', '.join(Simulation.UNITS)}")

    @classmethod
    def of(cls, address: int, simulation: Simulation) -> SimulatedDevice:
        """The simulated controller at unit id ``address`` that plays ``simulation``."""
        knobs = {f.name: getattr(simulation, f.name) for f in fields(simulation)}
        return cls(address=address, **knobs)

    def simulation(self) -> Simulation:
        """This controller's knobs as a device's plain :class:`~connectors.bus.Simulation`."""
        return Simulation(**{f.name: getattr(self, f.name) for f in fields(Simulation)})


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


class DeviceState:
    """Registers of one simulated device, refreshed from its model at most every 0.1 s."""

    def __init__(self, spec: SimulatedDevice, started: float, seed: int | None) -> None:
        self.spec = spec
        self.profile = load_profile(spec.profile)
        self.started = started
        self.rng = random.Random(seed if seed is None else seed + spec.address)
        self._values: dict[str, int | float | str] = {}
        # name -> (value, byte order, its words): encoded on the first read of a value, kept
        # while the model gives the same value (set points and most states do not move).
        self._words: dict[str, tuple[int | float | str, str, list[int]]] = {}
        # Holding registers in which the device says how it is read (its settings).
        self._settings = SETTINGS.get(self.profile.name, ((), None))[0]
        self._refreshed = -math.inf
        self._spans = _SPANS.setdefault(id(self.profile), (self.profile, {}))[1]
        # (table, address, count) -> reads answered with values: the device's own log, to
        # hold what a run stored against (error answers and silences are not in it).
        self.answered: Counter[tuple[str, int, int]] = Counter()
        self.log: TextIO | None = None  # also one line per answered read, if set
        # (table, address, count) -> the register words answered, if set to a dict (tests
        # hold each stored value against what its device served).
        self.served: dict[tuple[str, int, int], set[tuple[int, ...]]] | None = None
        # Cleared by BusSimulator.stop(), with ``stops`` counted up: a request still being
        # handled (a delayed answer) then finds its connection closed, so its answer would
        # never be sent and must not be counted.
        self.serving = True
        self.stops = 0

    def _codec(self, p: Parameter) -> Codec:
        """How ``p`` is laid out on the wire: as its profile says, but a self-describing
        controller's (a PM's) values of two registers or more in its own word order."""
        codec = p.codec
        if self.profile.name in SETTINGS and codec.count > 1 and codec.type != "string":
            order = _BYTE_ORDERS[self.spec.word_order]
            if codec.byte_order != order:
                codec = replace(codec, byte_order=order)
        return codec

    def _word(self, p: Parameter) -> list[int]:
        """``p``'s register words, from the model as of at most 0.1 s ago, in the device's
        units (the model's temperatures are degC) and word order."""
        now = time.monotonic()
        spec = self.spec
        if now - self._refreshed >= _REFRESH_S:
            self._values = device_values(
                self.profile, now - self.started, spec.address, self.rng, spec.set_point
            )
            self._refreshed = now
        value = self._values[p.name]
        if spec.units == "F" and p.unit == "degC" and isinstance(value, int | float):
            value = fahrenheit(value)
        codec = self._codec(p)
        known = self._words.get(p.name)
        if known is not None and known[1] == codec.byte_order and _same(known[0], value):
            return known[2]
        words = encode(codec, value)
        self._words[p.name] = (value, codec.byte_order, words)
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
            if table == "holding":
                covered.update(self._settings)
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
            if p.codec.byte is None:
                registers[lo:hi] = words[lo - offset : hi - offset]
            else:  # one byte of each register: another parameter may hold the other one
                keep = 0xFFFF ^ register_mask(p.codec)
                for i in range(lo, hi):
                    registers[i] = (registers[i] & keep) | words[i - offset]
        if table == "holding" and self._settings:
            spec = self.spec
            for register, word in setting_registers(
                self.profile.name, spec.word_order, spec.units
            ).items():
                if address <= register < address + count:
                    registers[at + register - address] = word
        if self.served is not None:
            words = tuple(registers[at : at + count])
            self.served.setdefault((table, address, count), set()).add(words)
        return True

    def sim_device(self) -> SimDevice:
        blocks: dict[str, list[SimData]] = {"coil": [], "discrete": [], "holding": [], "input": []}
        taken: dict[str, set[int]] = {"holding": set(), "input": set()}
        for p in self.profile.parameters:
            if p.table in ("coil", "discrete"):  # bit addresses, 16 to a register of the block
                blocks[p.table].append(SimData(p.address, values=False, datatype=DataType.BITS))
                continue
            own = range(p.address, p.address + p.count)
            if taken[p.table].isdisjoint(own):
                blocks[p.table].append(
                    SimData(p.address, count=p.count, values=0, datatype=DataType.REGISTERS)
                )
            else:  # it shares registers (the two bytes of one): pymodbus refuses overlaps
                blocks[p.table].extend(
                    SimData(r, count=1, values=0, datatype=DataType.REGISTERS)
                    for r in own
                    if r not in taken[p.table]
                )
            taken[p.table].update(own)
        for register in self._settings:
            if register not in taken["holding"]:
                blocks["holding"].append(
                    SimData(register, count=1, values=0, datatype=DataType.REGISTERS)
                )
        for table, block in blocks.items():
            if not block:  # pymodbus wants every block non-empty; keep it unreadable
                if table in ("coil", "discrete"):  # the action refuses its bits
                    blocks[table] = [SimData(0, values=False, datatype=DataType.BITS)]
                else:
                    blocks[table] = [SimData(0, datatype=DataType.INVALID)]
        return SimDevice(
            id=self.spec.address,
            simdata=(blocks["coil"], blocks["discrete"], blocks["holding"], blocks["input"]),
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
        if spec.dead or (spec.max_read is not None and count > spec.max_read):
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
        if function_code in (1, 2):
            return self._fill_bits(table, start_address, address, registers)
        # The server checked the address against its blocks (one per parameter) already.
        self.fill(table, address, count, registers, address - start_address)
        return None

    def _fill_bits(
        self, table: str, start: int, address: int, registers: list[int]
    ) -> ExcCodes | None:
        """Set the bits a read of coils or discrete inputs at bit ``address`` asks for in its
        block's ``registers`` (16 bits each, the first at bit ``16 * start``); exception 2
        when the read meets a bit no parameter has. pymodbus tells the action only how many
        registers the bits span: the request handler gives the request itself."""
        request = REQUEST.get()
        if request is None:
            return ExcCodes.DEVICE_FAILURE
        bits = [0] * request.count
        if not self.fill(table, address, request.count, bits, 0):
            return ExcCodes.ILLEGAL_ADDRESS
        for i, bit in enumerate(bits):
            register, mask = (address + i) // 16 - start, 1 << (address + i) % 16
            registers[register] = registers[register] | mask if bit else registers[register] & ~mask
        return None


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
        self, devices: Mapping[int, DeviceState], timeout: float, retries: int = 0
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

    async def read_coils(self, address: int, *, count: int = 1, device_id: int = 1) -> ModbusPDU:
        return await self._read(1, address, count, device_id)

    async def read_discrete_inputs(
        self, address: int, *, count: int = 1, device_id: int = 1
    ) -> ModbusPDU:
        return await self._read(2, address, count, device_id)

    async def _read(self, function_code: int, address: int, count: int, unit: int) -> ModbusPDU:
        state = self._devices.get(unit)
        too_long = state is not None and (state.spec.max_read or count) < count
        if state is None or state.spec.dead or too_long:
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
        if function_code in (1, 2):  # padded to whole bytes, as on the wire
            bits = [w == 1 for w in registers] + [False] * (-count % 8)
            return response(bits=bits, dev_id=unit)
        return response(registers=registers, dev_id=unit)
