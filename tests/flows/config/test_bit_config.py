"""Coils and discrete inputs in a config: inline parameters, a profile's with overrides, and the
one-line errors naming file, key and value; then a run of them on a simulated TCP bus through
the whole flow: rows (0.0 / 1.0, labels in value_text) and windows (a coil's mean is its duty
cycle)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from bytewax.testing import run_main

from connectors.codec import Codec
from flows.acquire import build_flow
from flows.config import ConfigError, load_config
from tests.flows.config.good import GOOD, write

DEVICE = "bus[0].device[0]"

INLINE_BITS = GOOD.replace(
    """  profile = "watlow_pm"
  address = 7
  parameters = ["analog_input_value"]
  instance = 2""",
    """  address = 7

    [[bus.device.parameter]]
    name = "pump"
    table = "coil"
    address = 16
    labels = { 0 = "stopped", 1 = "running" }

    [[bus.device.parameter]]
    name = "door"
    table = "discrete"
    address = 3
    type = "bit"

    [[bus.device.parameter]]
    name = "level"
    table = "holding"
    address = 0
    type = "uint16\"""",
)

PROFILED = GOOD.replace('profile = "watlow_pm"', 'profile = "digital_io"').replace(
    'parameters = ["analog_input_value"]\n  instance = 2',
    'parameters = ["relay_1", "door"]\n  instance = 2\n\n'
    '    [bus.device.override.door]\n    labels = { 0 = "ajar", 1 = "shut" }\n'
    "    address = 9",
)


def test_inline_coils_and_discrete_inputs(tmp_path: Path) -> None:
    (device,) = load_config(write(tmp_path, INLINE_BITS)).buses[0].devices
    pump, door, level = device.parameters
    assert (level.table, level.codec.type) == ("holding", "uint16")
    assert (pump.table, pump.address, pump.codec, pump.label(1)) == (
        "coil", 16, Codec("bit", bit=0), "running"
    )  # fmt: skip
    assert (door.table, door.address, door.codec) == ("discrete", 3, Codec("bit", bit=0))
    assert [(r.table, r.address, r.count) for r in device.reads] == [
        ("coil", 16, 1), ("discrete", 3, 1), ("holding", 0, 1)
    ]  # fmt: skip


def test_profile_bits_with_an_override(tmp_path: Path) -> None:
    (device,) = load_config(write(tmp_path, PROFILED)).buses[0].devices
    relay, door = device.parameters
    assert (relay.table, relay.label(0)) == ("coil", "off")
    assert (door.table, door.address, door.labels) == ("discrete", 9, ((0, "ajar"), (1, "shut")))


WHY_TYPE = "a coil is one bit; give no type, or 'bit'"
BROKEN = [
    (INLINE_BITS, 'address = 16\n', 'address = 16\n    type = "float32"\n',
     f"{DEVICE}.parameter[0].type: 'float32': {WHY_TYPE}"),
    (INLINE_BITS, 'address = 16\n', 'address = 16\n    bit = 4\n',
     f"{DEVICE}.parameter[0].bit: 4: a coil is one bit, it has no bit number"),
    (INLINE_BITS, '1 = "running"', '2 = "running"',
     f"{DEVICE}.parameter[0].labels.2: a coil is 0 or 1"),
    (INLINE_BITS, 'address = 16\n', 'address = 16\n    scale = 0.5\n',
     f"{DEVICE}.parameter[0].scale: scale and offset do not apply to type 'bit'"),
    (INLINE_BITS, 'type = "bit"', 'type = "int16"',
     f"{DEVICE}.parameter[1].type: 'int16': a discrete is one bit; give no type, or 'bit'"),
    (PROFILED, "address = 9", 'type = "uint16"',
     f"{DEVICE}.override.door.type: 'uint16': a discrete is one bit; give no type, or 'bit'"),
    (PROFILED, "address = 9", 'byte_order = "CDAB"',
     f"{DEVICE}.override.door.byte_order: 'CDAB': a discrete has no byte order"),
]  # fmt: skip


@pytest.mark.parametrize(("base", "old", "new", "message"), BROKEN)
def test_broken_bit_parameters_give_one_line(
    tmp_path: Path, base: str, old: str, new: str, message: str
) -> None:
    assert old in base
    path = write(tmp_path, base.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {message}"
    assert "\n" not in str(info.value)


RUN = """
[acquisition]
rate_hz = 10
duration_s = 2.05

[windows]
length_s = 1
lateness_s = 0.2

[[bus]]
name = "io"
url = "tcp://127.0.0.1:0"
simulate = true

  [[bus.device]]
  name = "card"
  profile = "digital_io"
  address = 1

[[sink]]
kind = "sqlite"
path = "out/rows.sqlite"

[[sink]]
kind = "sqlite"
stream = "windows"
path = "out/windows.sqlite"
"""


def test_bits_through_the_flow_rows_and_duty_cycles(tmp_path: Path) -> None:
    run_main(build_flow(load_config(write(tmp_path, RUN))))
    with sqlite3.connect(tmp_path / "out" / "rows.sqlite") as db:
        rows = db.execute("SELECT parameter, value, value_text, error FROM samples").fetchall()
    with sqlite3.connect(tmp_path / "out" / "windows.sqlite") as db:
        windows = db.execute("SELECT parameter, count, mean FROM samples").fetchall()
    ticks = len(rows) // 8
    assert ticks >= 20 and len(rows) == 8 * ticks
    assert all(error is None for *_, error in rows)
    assert {(v, t) for p, v, t, _ in rows if p == "relay_1"} == {(1.0, "on")}
    assert {(v, t) for p, v, t, _ in rows if p == "door"} == {(1.0, "closed")}
    assert {(v, t) for p, v, t, _ in rows if p == "fault"} == {(0.0, None)}
    cycling = [v for p, v, _, _ in rows if p == "relay_3"]
    assert set(cycling) == {0.0, 1.0} and 0.3 < sum(cycling) / len(cycling) < 0.7
    means = {p: m for p, n, m in windows if n == 10}  # the whole seconds
    assert means and means["relay_1"] == 1.0 and means["fault"] == 0.0
    # Relay 3 is on for the first half of every second of the device's clock: ten reads a
    # second catch it on about five times, whatever the phase between the two clocks.
    duty = [m for p, n, m in windows if p == "relay_3" and n == 10]
    assert duty and all(0.3 <= m <= 0.7 for m in duty), duty
    assert {p for p, _, _ in windows} == {r[0] for r in rows}
