"""The project's simulator (``python -m connectors.sim``, as a user starts it) read by an
independent client, pyModbusTCP's: every PM register it serves is decoded here with struct,
in the word order its own word order register says, and is what the simulator's settings and
model make it (set points exact, moving values within the model's bounds)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyModbusTCP.client import ModbusClient

from bench.machine import free_ports
from tests.interop.watlow import (
    ADDRESSES,
    CELSIUS,
    FAHRENHEIT,
    HIGH_LOW,
    LOW_HIGH,
    NONE_ERROR,
    WORD_ORDER_ADDRESS,
    words_float,
)

ROOT = Path(__file__).resolve().parents[2]
# unit id -> (--device settings, word order code, units code); the simulator's default is
# low_high and C.
DEVICES = {
    1: ("", LOW_HIGH, CELSIUS),
    2: (":high_low:F", HIGH_LOW, FAHRENHEIT),
    3: (":low_high:F", LOW_HIGH, FAHRENHEIT),
    4: (":high_low:C", HIGH_LOW, CELSIUS),
}
AMBIENT_C = 22.0  # the model's


def in_units(celsius: float, units: int) -> float:
    return celsius if units == CELSIUS else celsius * 9 / 5 + 32


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """``python -m connectors.sim --tcp`` with the PMs of DEVICES: (port, its --log file)."""
    log = tmp_path_factory.mktemp("sim") / "answered.txt"
    (port,) = free_ports(1)
    command = [sys.executable, "-m", "connectors.sim", "--tcp", f"127.0.0.1:{port}"]
    for unit, (settings, _, _) in DEVICES.items():
        command += ["--device", f"{unit}:watlow_pm{settings}"]
    process = subprocess.Popen(
        [*command, "--log", str(log)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("serving "), f"connectors.sim said {line!r}"
        yield port, log
    finally:
        process.terminate()
        process.wait(timeout=10)


def client(port: int, unit: int) -> ModbusClient:
    return ModbusClient(host="127.0.0.1", port=port, unit_id=unit, timeout=2.0, auto_open=True)


def read(c: ModbusClient, address: int, count: int) -> list[int]:
    words = c.read_holding_registers(address, count)
    assert words is not None, (
        f"read {address} x{count}: {c.last_error_as_txt} {c.last_except_as_txt}"
    )
    assert len(words) == count
    return words


@pytest.mark.parametrize("unit", DEVICES)
def test_pm_registers_are_what_the_simulator_serves(simulator, unit: int) -> None:
    port, log = simulator
    _, order, units = DEVICES[unit]
    c = client(port, unit)
    try:
        word_order = read(c, WORD_ORDER_ADDRESS, 2)
        assert word_order == ([1331, 0] if order == LOW_HIGH else [0, 1330])
        # The independent client's own reading of it: the word holding the code says.
        said = next(w for w in word_order if w in (LOW_HIGH, HIGH_LOW))
        assert said == order
        assert read(c, ADDRESSES["display_units"], 1) == [units]
        assert read(c, ADDRESSES["input_error"], 1) == [NONE_ERROR]
        value = {
            n: words_float(read(c, ADDRESSES[n], 2), said)
            for n in ADDRESSES
            if n not in ("input_error", "display_units")
        }
        set_point = in_units(70.0 + 5 * unit, units)  # the model's default set point
        assert value["set_point"] == pytest.approx(set_point, abs=1e-4)
        assert value["closed_loop_set_point"] == value["set_point"]
        assert value["cool_power"] == 0.0
        assert 0.0 <= value["heat_power"] <= 100.0
        low, high = sorted((in_units(AMBIENT_C - 1, units), in_units(70.0 + 5 * unit + 1, units)))
        assert low <= value["analog_input_value"] <= high
        assert value["analog_input_2"] == pytest.approx(in_units(AMBIENT_C, units), abs=1.0)
        # Read the other way round, the same words are nonsense: the order is the device's.
        other = HIGH_LOW if said == LOW_HIGH else LOW_HIGH
        wrong = words_float(read(c, ADDRESSES["set_point"], 2), other)
        assert not (math.isfinite(wrong) and 1e-3 <= abs(wrong) <= 1e5), wrong
        # A register of a read that is no parameter's: exception 2, illegal data address.
        assert c.read_holding_registers(2500, 1) is None and c.last_except == 2
    finally:
        c.close()
    answered = {tuple(line.split()) for line in log.read_text().splitlines()}
    assert (str(unit), "holding", "2488", "2") in answered
    assert (str(unit), "holding", "2160", "2") in answered
