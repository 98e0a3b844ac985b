"""A simulated Watlow PM's settings (word order, display units), read with a plain pymodbus
client: the registers that say how it is read, and its values laid out as they say."""

from __future__ import annotations

import argparse
import asyncio
import re
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from connectors.bus import Simulation
from connectors.sim import BusSimulator, SimulatedDevice
from connectors.sim.cli import parse_device
from connectors.sim.device import DeviceState
from flows.config import parse_config
from flows.config.table import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[3]
# Watlow's codes: word order Low_High 1331 / High_Low 1330; display units C 15 / F 30.
WORD_ORDER = {"low_high": [1331, 0], "high_low": [0, 1330]}
UNITS = {"C": 15, "F": 30}
SET_POINT_C = 100.0
SET_POINT = {"C": 100.0, "F": 212.0}  # the set point as served in each unit


def floats(registers: list[int], word_order: str) -> float:
    """A float32 from two registers in ``word_order``."""
    high, low = registers if word_order == "high_low" else registers[::-1]
    return float(struct.unpack(">f", struct.pack(">2H", high, low))[0])


Reader = Callable[[int, int, int], Awaitable[list[int]]]


def serve(
    devices: list[SimulatedDevice], body: Callable[[BusSimulator, Reader], Awaitable[None]]
) -> None:
    """Serve ``devices`` on a TCP simulator and run ``body(sim, read)``, where
    ``read(unit, address, count)`` reads holding registers with a bare pymodbus client."""

    async def main() -> None:
        sim = BusSimulator("tcp", devices)
        await sim.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=2, retries=0)
        assert await client.connect()

        async def read(unit: int, address: int, count: int) -> list[int]:
            response = await client.read_holding_registers(address, count=count, device_id=unit)
            assert not response.isError(), response
            return list(response.registers)

        try:
            await body(sim, read)
        finally:
            client.close()
            await sim.stop()

    asyncio.run(main())


@pytest.mark.parametrize("units", ["C", "F"])
@pytest.mark.parametrize("word_order", ["low_high", "high_low"])
def test_a_pm_serves_its_settings_and_values_as_set(word_order: str, units: str) -> None:
    pm = SimulatedDevice(
        address=1, profile="watlow_pm", set_point=SET_POINT_C, word_order=word_order, units=units
    )

    async def body(sim: BusSimulator, read: Reader) -> None:
        # The word order register, read as two, and the units register beside it.
        assert await read(1, 2488, 3) == [*WORD_ORDER[word_order], UNITS[units]]
        assert await read(1, 2490, 1) == [UNITS[units]]
        # Every float32 in the device's order, temperatures in its units.
        for address in (2160, 2172):  # set point, closed-loop set point
            words = await read(1, address, 2)
            assert floats(words, word_order) == SET_POINT[units]
            assert abs(floats(words, _other(word_order))) != SET_POINT[units]
        pv = floats(await read(1, 360, 2), word_order)
        low, high = (20.0, SET_POINT_C) if units == "C" else (68.0, 212.0)
        assert low < pv < high
        assert 0 <= floats(await read(1, 1904, 2), word_order) <= 100  # heat power, %

    serve([pm], body)


def _other(word_order: str) -> str:
    return "low_high" if word_order == "high_low" else "high_low"


def test_the_defaults_keep_what_was_served_before() -> None:
    # Low_High (the profile's CDAB) and degC.
    assert (Simulation(profile="watlow_pm").word_order, Simulation(profile="x").units) == (
        "low_high",
        "C",
    )

    async def body(sim: BusSimulator, read: Reader) -> None:
        assert await read(1, 2488, 3) == [1331, 0, 15]
        assert floats(await read(1, 2160, 2), "low_high") == SET_POINT_C

    serve([SimulatedDevice(address=1, profile="watlow_pm", set_point=SET_POINT_C)], body)


def test_set_fault_changes_the_settings_from_the_next_request() -> None:
    async def body(sim: BusSimulator, read: Reader) -> None:
        assert await read(1, 2488, 3) == [1331, 0, 15]
        sim.set_fault(1, word_order="high_low", units="F")
        assert await read(1, 2488, 3) == [0, 1330, 30]
        assert floats(await read(1, 2160, 2), "high_low") == 212.0
        sim.set_fault(1, units="C")
        assert await read(1, 2488, 3) == [0, 1330, 15]
        assert floats(await read(1, 2160, 2), "high_low") == SET_POINT_C
        sim.set_fault(1, word_order="low_high")
        assert floats(await read(1, 2160, 2), "low_high") == SET_POINT_C
        for bad in ({"word_order": "little"}, {"units": "K"}):
            with pytest.raises(ValueError, match="is not one of"):
                sim.set_fault(1, **bad)
        assert await read(1, 2488, 3) == [1331, 0, 15]  # unchanged by the refused ones

    serve([SimulatedDevice(address=1, profile="watlow_pm", set_point=SET_POINT_C)], body)


def test_two_pms_on_one_bus_each_as_set_and_an_analyser_as_its_profile_says() -> None:
    devices = [
        SimulatedDevice(address=1, profile="watlow_pm", set_point=SET_POINT_C),
        SimulatedDevice(
            address=2, profile="watlow_pm", set_point=SET_POINT_C, word_order="high_low"
        ),
        SimulatedDevice(address=3, profile="servomex_4100", word_order="low_high", units="F"),
    ]

    async def body(sim: BusSimulator, read: Reader) -> None:
        assert floats(await read(1, 2160, 2), "low_high") == SET_POINT_C
        assert floats(await read(2, 2160, 2), "high_low") == SET_POINT_C

    serve(devices, body)
    # The analyser has no word order register: its float32s stay as its profile says.
    state = DeviceState(devices[2], 0.0, None)
    registers = [0, 0]
    assert state.fill("input", 0, 2, registers, 0)
    assert 20.8 < floats(registers, "high_low") < 21.0  # O2 %


def test_the_in_process_client_serves_the_same_registers() -> None:
    async def main() -> None:
        pm = SimulatedDevice(address=4, profile="watlow_pm", word_order="high_low", units="F")
        client = BusSimulator("sim", [pm]).client(timeout=1.0)
        response = await client.read_holding_registers(2488, count=3, device_id=4)
        assert response.registers == [0, 1330, 30]

    asyncio.run(main())


def test_device_arguments_take_settings_in_any_order() -> None:
    parsed = parse_device("3:watlow_pm:F:high_low")
    assert (parsed.address, parsed.profile, parsed.word_order, parsed.units) == (
        3,
        "watlow_pm",
        "high_low",
        "F",
    )
    assert parse_device("1:watlow_pm").word_order == "low_high"
    for bad in ("1:watlow_pm:K", "1:watlow_pm:F:C", "1:watlow_pm:low_high:high_low", "x:pm"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_device(bad)


def test_standalone_simulator_serves_the_settings_given() -> None:
    command = [sys.executable, "-m", "connectors.sim", "--tcp", "127.0.0.1:0"]
    devices = ["--device", "1:watlow_pm:high_low:F", "--device", "2:watlow_pm"]
    proc = subprocess.Popen([*command, *devices], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(re.search(r"at tcp://\S+:(\d+)", proc.stdout.readline()).group(1))  # type: ignore[union-attr]

        async def main() -> tuple[list[int], list[int]]:
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
            assert await client.connect()
            try:
                one = await client.read_holding_registers(2488, count=3, device_id=1)
                two = await client.read_holding_registers(2488, count=3, device_id=2)
                return one.registers, two.registers
            finally:
                client.close()

        assert asyncio.run(main()) == ([0, 1330, 30], [1331, 0, 15])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


CONFIG = """
[acquisition]
rate_hz = 1
[[bus]]
name = "lab"
url = "tcp://127.0.0.1:0"
simulate = true
  [[bus.device]]
  name = "pm"
  profile = "watlow_pm"
  address = 1
  {simulate}
[[sink]]
kind = "csv"
path = "x.csv"
"""


def _parse(simulate: str) -> Simulation:
    data = tomllib.loads(CONFIG.format(simulate=simulate))
    simulation = parse_config(data, source="t.toml", base_dir=ROOT).buses[0].devices[0].simulation
    assert simulation is not None
    return simulation


def test_config_knobs() -> None:
    sim = _parse('simulate = { word_order = "high_low", units = "F" }')
    assert (sim.word_order, sim.units) == ("high_low", "F")
    assert (_parse("").word_order, _parse("simulate = { delay_s = 0.1 }").units) == (
        "low_high",
        "C",
    )
    cases = {
        'simulate = { word_order = "big" }': "simulate.word_order: 'big' is not low_high or "
        "high_low",
        'simulate = { units = "K" }': "simulate.units: 'K' is not C or F",
        "simulate = { units = 1 }": "simulate.units",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as info:
            _parse(text)
        assert "\n" not in str(info.value)
