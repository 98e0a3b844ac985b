"""The valid configs the config tests start from, and ``write`` to put one in a directory:
GOOD (one TCP bus, one profiled device, one CSV sink), TIMED (with the timing keys),
OVERRIDDEN (with profile overrides) and INLINE (with a device's own parameter tables)."""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD = """
[acquisition]
rate_hz = 2
duration_s = 5

[[bus]]
name = "gw"
url = "tcp://10.0.0.5:502"
timeout_s = 0.2
retries = 1

  [[bus.device]]
  name = "pm"
  profile = "watlow_pm"
  address = 7
  parameters = ["analog_input_value"]
  instance = 2

[[sink]]
kind = "csv"
path = "out/x.csv"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "acquire.toml"
    path.write_text(textwrap.dedent(text))
    return path


TIMED = GOOD.replace(
    "  instance = 2",
    "  instance = 2\n  timeout_s = 0.05\n  retries = 2\n  pause_s = 0.01\n  max_gap = 20",
).replace("retries = 1", "retries = 1\npause_s = 0.002")

OVERRIDDEN = GOOD.replace(
    'parameters = ["analog_input_value"]',
    'parameters = ["analog_input_value", "input_error", "heat_power"]',
).replace(
    "  instance = 2",
    """  instance = 2

    [bus.device.override.analog_input_value]
    word_order = "big"
    scale = 0.5
    offset = -10
    unit = "degF"

    [bus.device.override.input_error]
    labels = { 1 = "ok", 2 = "broken" }
    byte_order = "BADC"

    [bus.device.override.heat_power]
    type = "int16"
    address = 1905
    scale = 0.1
    """,
)

INLINE = GOOD.replace(
    """  profile = "watlow_pm"
  address = 7
  parameters = ["analog_input_value"]
  instance = 2""",
    """  address = 7

    [[bus.device.parameter]]
    name = "temperature"
    table = "input"
    address = 0
    type = "int16"
    scale = 0.1
    unit = "degC"

    [[bus.device.parameter]]
    name = "flow"
    table = "holding"
    address = 100
    type = "float32"
    byte_order = "DCBA"

    [[bus.device.parameter]]
    name = "mode"
    table = "holding"
    address = 104
    type = "uint16"
    labels = { 0 = "off", 1 = "auto", 2 = "manual" }

    [[bus.device.parameter]]
    name = "alarm"
    table = "holding"
    address = 105
    type = "bit"
    bit = 3

    [[bus.device.parameter]]
    name = "tag"
    table = "holding"
    address = 106
    type = "string"
    length = 4
    word_order = "little"
""",
)
