"""The workaround keys of a bus and a device: values, inheritance, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import ConfigError, load_config
from tests.conftest import write_config

BASE = """
[[bus]]
name = "gw"
url = "tcp://10.0.0.5:502"
{bus}
  [[bus.device]]
  name = "ox"
  profile = "servomex_4100"
  address = 1
  {device}
"""


def load(tmp_path: Path, bus: str = "", device: str = ""):  # type: ignore[no-untyped-def]
    return load_config(write_config(tmp_path, BASE.format(bus=bus, device=device)))


def test_defaults(tmp_path: Path) -> None:
    (bus,) = load(tmp_path).buses
    (device,) = bus.devices
    assert (bus.pause_after_connect_s, bus.close_after_tick) == (0.0, False)
    assert (device.max_registers, device.one_request_per_parameter, device.step_down) == (
        125, False, True,
    )  # fmt: skip


def test_a_device_inherits_the_bus_and_may_override_it(tmp_path: Path) -> None:
    bus_keys = (
        "pause_after_connect_s = 0.5\nclose_after_tick = true\nmax_registers = 8\n"
        "one_request_per_parameter = true\nstep_down = false"
    )
    (bus,) = load(tmp_path, bus_keys).buses
    assert (bus.pause_after_connect_s, bus.close_after_tick) == (0.5, True)
    (device,) = bus.devices
    assert (device.max_registers, device.one_request_per_parameter, device.step_down) == (
        8, True, False,
    )  # fmt: skip
    (device,) = load(tmp_path, "max_registers = 8", "max_registers = 20").buses[0].devices
    assert device.max_registers == 20 and max(r.count for r in device.reads) <= 20


@pytest.mark.parametrize(
    ("bus", "device", "line"),
    [
        ("max_registers = 0", "", "bus[0].max_registers: 0 is not a number of registers per "
         "read (1-125)"),
        ("", "max_registers = 126", "bus[0].device[0].max_registers: 126 is not a number of "
         "registers per read (1-125)"),
        ("", "max_registers = 2", "bus[0].device[0].max_registers: 2 is less than the 3 "
         "registers of parameter 'measurement_1_name', which is read whole"),
        ("close_after_tick = 1", "", "bus[0].close_after_tick: 1 is"),
        ("pause_after_connect_s = -1", "", "bus[0].pause_after_connect_s: -1"),
        ("", "step_down = \"no\"", "bus[0].device[0].step_down: 'no' is"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line(tmp_path: Path, bus: str, device: str, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, bus, device)
    text = str(info.value)
    assert "\n" not in text and line in text, text


def test_a_simulated_device_that_ignores_long_reads(tmp_path: Path) -> None:
    text = BASE.replace('url = "tcp://10.0.0.5:502"', 'url = "tcp://127.0.0.1:0"\nsimulate = true')
    config = load_config(
        write_config(tmp_path, text.format(bus="", device="simulate = { max_read = 8 }"))
    )
    assert config.buses[0].devices[0].simulation.max_read == 8  # type: ignore[union-attr]
