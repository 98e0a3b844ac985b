"""A Watlow PM served by a plain pymodbus TCP server from a dict of holding registers the test
owns and changes: not the project's simulator, so what the poller makes of a device's word
order and units registers is checked against values the test wrote itself."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.bus import Bus, Device
from connectors.codec import Codec
from connectors.encode import encode
from connectors.link import BusLink
from connectors.parameter import Parameter
from connectors.registers import load_profile
from connectors.sample import Sample
from connectors.transport import parse_bus_url
from tests.conftest import Tick, run_poller

PM = load_profile("watlow_pm")
WORD_ORDER = {"low_high": [1331, 0], "high_low": [0, 1330]}  # at 2488, 2489
UNITS = {"C": 15, "F": 30}  # at 2490
ORDERS = {"low_high": "CDAB", "high_low": "ABCD"}
VALUES = {  # what the PM holds, in its own units
    "analog_input_value": 234.567,
    "analog_input_2": 21.5,
    "heat_power": 42.25,
    "cool_power": 0.0,
    "set_point": 250.0,
    "closed_loop_set_point": 249.5,
}


class PMServer:
    """One PM at unit 1 on 127.0.0.1; ``registers`` is what it serves (holding)."""

    def __init__(self, word_order: str = "low_high", units: str = "C", **values: float) -> None:
        self.registers: dict[int, int] = {}
        self.exception: int | None = None  # answer every read with this exception code
        self.silent = False  # answer nothing
        self.asked: Counter[tuple[int, int]] = Counter()  # (address, count) -> reads
        self.server: ModbusTcpServer | None = None
        self.port = 0
        self.load(word_order, units, **values)

    def load(self, word_order: str, units: str, **values: float) -> None:
        """Serve ``VALUES`` (or ``values``) in ``word_order``, saying it and ``units``."""
        order = ORDERS[word_order]
        for name, value in {**VALUES, **values}.items():
            self.put(PM.parameter(name).address, encode(Codec("float32", byte_order=order), value))
        self.put(362, [61])
        self.put(2488, WORD_ORDER[word_order])
        self.put(2490, [UNITS[units]])

    def put(self, address: int, words: Iterable[int]) -> None:
        for i, word in enumerate(words):
            self.registers[address + i] = word

    async def _action(
        self, function_code: int, start: int, address: int, count: int, registers: list[int],
        set_values: Any,
    ) -> ExcCodes | None:  # fmt: skip
        self.asked[(address, count)] += 1
        if self.silent:
            raise NoSuchIdException("a silent PM")  # pymodbus's server then answers nothing
        if self.exception is not None:
            return ExcCodes(self.exception)
        for i in range(count):
            registers[address - start + i] = self.registers.get(address + i, 0)
        return None

    async def start(self) -> str:
        holding = [SimData(0, count=3000, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        device = SimDevice(id=1, simdata=(bits, list(bits), holding, holding), action=self._action)
        self.server = ModbusTcpServer([device], address=("127.0.0.1", self.port))
        self._task = asyncio.ensure_future(self.server.serve_forever())
        while self.server.transport is None:
            await asyncio.sleep(0.01)
        self.port = self.server.transport.sockets[0].getsockname()[1]
        return f"tcp://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None


def pm_device(
    names: Iterable[str] = VALUES, *, describe: bool = True, pinned: Iterable[tuple[str, str]] = (),
    replace: Callable[[Parameter], Parameter] = lambda p: p,
) -> Device:  # fmt: skip
    """The PM at unit 1 polling ``names`` (and display_units), self-described or not."""
    params = tuple(replace(PM.parameter(n)) for n in (*names, "display_units"))
    return Device(
        name="pm", address=1, parameters=params,
        describe=PM.describe if describe else (), pinned=frozenset(pinned),
    )  # fmt: skip


async def poll(
    server: PMServer, device: Device, *, ticks: int, rate_hz: float = 20,
    on_tick: Callable[[int], Any] | None = None,
) -> list[Tick]:  # fmt: skip
    """Poll ``device`` on ``server`` for ``ticks`` ticks; ``on_tick(i)`` after each (awaited
    if it returns a coroutine, before the next tick)."""
    url = await server.start()
    bus = Bus(name="b", url=parse_bus_url(url), devices=(device,), timeout_s=0.3)
    try:
        return await run_poller(bus, BusLink(bus), rate_hz=rate_hz, ticks=ticks, on_tick=on_tick)
    finally:
        await server.stop()


def by_name(samples: list[Sample]) -> dict[str, Sample]:
    return {s.parameter: s for s in samples}
