"""every_s in a config: a device's, a parameter's (inline, profile override), checked
against the tick."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import ConfigError, load_config
from tests.conftest import write_config

BASE = """
[acquisition]
rate_hz = 2
[[bus]]
name = "gw"
url = "tcp://10.0.0.5:502"
  [[bus.device]]
  name = "pm"
  profile = "watlow_pm"
  address = 1
  {device}
"""


def load(tmp_path: Path, device: str):  # type: ignore[no-untyped-def]
    return load_config(write_config(tmp_path, BASE.format(device=device)))


def test_a_device_and_a_parameter_take_every_s(tmp_path: Path) -> None:
    text = 'every_s = 5\n  override = { display_units = { every_s = "connect" } }'
    (device,) = load(tmp_path, text).buses[0].devices
    assert device.every_s == 5
    groups = device.groups()
    assert set(groups) == {5, "connect"}
    assert [p.name for p in groups["connect"]] == ["display_units"]


@pytest.mark.parametrize(
    ("device", "line"),
    [
        ("every_s = 0.75", "bus[0].device[0].every_s: 0.75 is not a whole number of ticks "
         "(the tick is 0.5 s at rate_hz = 2)"),
        ('every_s = "daily"', "bus[0].device[0].every_s: 'daily' is not seconds (> 0, at most "
         '1e6) or "connect"'),
        ("every_s = 0", "bus[0].device[0].every_s: 0 is not seconds"),
        ("override = { set_point = { every_s = 1.25 } }", "bus[0].device[0]: parameter "
         "'set_point': every_s = 1.25 is not a whole number of ticks"),
    ],
)  # fmt: skip
def test_bad_periods_are_one_line(tmp_path: Path, device: str, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, device)
    text = str(info.value)
    assert "\n" not in text and line in text, text
