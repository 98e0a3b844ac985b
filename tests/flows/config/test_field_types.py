"""Config of the field's one-register types (int8/uint8 with ``byte``, float16, strings of one
character per register) and of scale and offset: what a good table becomes, and the one line
each broken key gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.codec import Codec
from flows.config import ConfigError, load_config

CONFIG = """
[[bus]]
name = "gw"
url = "tcp://10.0.0.5:502"

  [[bus.device]]
  name = "d"
  address = 7

    [[bus.device.parameter]]
    name = "v"
    table = "holding"
    address = 4
{keys}
[[sink]]
kind = "csv"
path = "out/x.csv"
"""


def load(tmp_path: Path, keys: str) -> Codec:
    path = tmp_path / "acquire.toml"
    path.write_text(CONFIG.format(keys="".join(f"    {line}\n" for line in keys.splitlines())))
    (device,) = load_config(path).buses[0].devices
    (p,) = device.parameters
    return p.codec


@pytest.mark.parametrize(
    ("keys", "codec"),
    [
        ('type = "int8"\nbyte = "high"', Codec("int8", byte="high")),
        (
            'type = "uint8"\nbyte = "low"\nscale = 0.5\noffset = -40\nbyte_order = "DCBA"',
            Codec("uint8", byte="low", scale=0.5, offset=-40, byte_order="DCBA"),
        ),
        ('type = "float16"\nscale = 10', Codec("float16", scale=10)),
        ('type = "string"\nlength = 8\nbyte = "low"', Codec("string", length=8, byte="low")),
        ('type = "string"\nlength = 8', Codec("string", length=8)),
    ],
)
def test_good_tables(tmp_path: Path, keys: str, codec: Codec) -> None:
    assert load(tmp_path, keys) == codec


WHERE = "bus[0].device[0].parameter[0]"


@pytest.mark.parametrize(
    ("keys", "key", "message"),
    [
        ('type = "uint8"\nbyte = "middle"', "byte", "'middle' is not one of high, low"),
        ('type = "int8"\nbyte = 1', "byte", "1 is not one of high, low"),
        ('type = "int8"', "byte", "type 'int8' needs byte = 'high' or 'low'"),
        ('type = "int16"\nbyte = "low"', "byte", "'low' given for type 'int16'"),
        ('type = "int16"\nscale = 0', "scale", "0 is not a finite non-zero number"),
        ('type = "float16"\nscale = nan', "scale", "nan is not a finite non-zero number"),
        ('type = "float32"\noffset = inf', "offset", "inf is not a finite number"),
        (
            'type = "string"\nlength = 4\nbyte = "low"\noffset = 1',
            "offset",
            "scale and offset do not apply to type 'string'",
        ),
        (
            'type = "bit"\nbit = 0\nscale = 2',
            "scale",
            "scale and offset do not apply to type 'bit'",
        ),
        (
            'type = "uint8"\nbyte = "low"\nscale = 2\nlabels = { 1 = "on" }',
            "labels",
            "enum labels apply to raw values: no scale or offset",
        ),
    ],
)
def test_broken_tables_give_one_line(tmp_path: Path, keys: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, keys)
    error = info.value
    assert (error.path, error.message) == (f"{WHERE}.{key}", message)
    assert "\n" not in str(error)
