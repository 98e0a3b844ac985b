"""Config parsing: the shipped config parses; broken ones give one exact line each. The
[acquisition] table, the file itself and the [[sink]] tables here; the buses, devices and
parameters in test_buses.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.transport import BusUrl
from flows.config import ConfigError, load_config
from sinks.csv import IntoCsv
from sinks.sqlite import IntoSqlite
from tests.flows.config.good import GOOD, write

ROOT = Path(__file__).resolve().parents[3]


def test_shipped_config_parses() -> None:
    config = load_config(ROOT / "acquire.toml")
    assert config.acquisition.rate_hz == 1.0
    assert config.acquisition.duration_s == 10
    assert [b.name for b in config.buses] == ["lab-tcp", "line-rtu"]
    assert [b.url.scheme for b in config.buses] == ["tcp", "rtu"]
    assert all(b.simulate for b in config.buses)
    assert len(config.buses[0].devices) == 3 and len(config.buses[1].devices) == 3
    assert [type(s.sink) for s in config.sinks] == [IntoSqlite, IntoCsv]
    assert Path(config.sinks[0].sink.path) == ROOT / "data" / "acquire.sqlite"
    assert config.sinks[0].directory == ROOT / "data" / "spool"
    oven2 = config.buses[0].devices[1]
    assert oven2.simulation is not None
    assert (oven2.address, oven2.simulation.set_point) == (2, 150.0)


def test_good_config_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    (bus,) = config.buses
    assert bus.url == BusUrl(scheme="tcp", host="10.0.0.5", port=502)
    assert (bus.timeout_s, bus.retries, bus.simulate) == (0.2, 1, False)
    (device,) = bus.devices
    assert (device.name, device.address, device.instance) == ("pm", 7, 2)
    assert [p.name for p in device.parameters] == ["analog_input_value"]
    assert Path(config.sinks[0].sink.path) == tmp_path / "out" / "x.csv"


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACQUIRE_CONFIG", str(write(tmp_path, GOOD)))
    assert load_config().buses[0].name == "gw"


# (replacement applied to GOOD, expected message after "<file>: ")
BROKEN = [
    (
        "address = 7",
        "address = 300",
        "bus[0].device[0].address: 300 is not a Modbus unit id (1-247)",
    ),
    ("address = 7", "address = 0", "bus[0].device[0].address: 0 is not a Modbus unit id (1-247)"),
    ("address = 7", 'address = "7"', "bus[0].device[0].address: '7' is not an integer"),
    ("rate_hz = 2", "rate_hz = -1", "acquisition.rate_hz: -1 must be > 0"),
    ("rate_hz = 2", "rate_hz = true", "acquisition.rate_hz: True is not a number"),
    (
        "retries = 1",
        "retry = 1",
        "bus[0].retry: unknown key (known keys: close_after_tick, device, host, max_registers, "
        "name, one_request_per_parameter, pause_after_connect_s, pause_s, retries, simulate, "
        "step_down, timeout_s, url)",
    ),
    (
        'url = "tcp://10.0.0.5:502"',
        'url = "http://x"',
        "bus[0].url: 'http://x' is not a bus URL "
        "(tcp://, udp://, rtu+tcp://, rtu://, ascii:// or sim://)",
    ),
    (
        'url = "tcp://10.0.0.5:502"',
        'url = "tcp://10.0.0.5:99999"',
        "bus[0].url: 'tcp://10.0.0.5:99999': the port is not a number from 0 to 65535",
    ),
    (
        'url = "tcp://10.0.0.5:502"',
        'url = "rtu:///dev/ttyUSB0?baud=9600"',
        "bus[0].url: 'rtu:///dev/ttyUSB0?baud=9600': unknown option 'baud' "
        "(known: baudrate, bytesize, parity, stopbits)",
    ),
    ('profile = "watlow_pm"', 'profile = "watlow_pn"', None),
    ('parameters = ["analog_input_value"]', 'parameters = ["pv"]', None),
    (
        'kind = "csv"',
        'kind = "excel"',
        "sink[0].kind: 'excel' is not a sink kind (csv, jsonl, sqlite, parquet, postgres, mqtt)",
    ),
    ('path = "out/x.csv"', 'path = "out/x.csv"\nfile = "y"', None),
    ("timeout_s = 0.2", "timeout_s = 0", "bus[0].timeout_s: 0 must be > 0"),
    (
        'name = "gw"',
        'name = "g w"',
        "bus[0].name: 'g w' is not a name (letters, digits, _ . -; up to 63)",
    ),
    (
        'url = "tcp://10.0.0.5:502"',
        'url = "sim://"',
        "bus[0].url: a sim:// bus is simulated in process: set simulate = true",
    ),
    (
        "[acquisition]",
        "[acquisition]\nrate = 1",
        "acquisition.rate: unknown key (known keys: duration_s, rate_hz)",
    ),
    (
        "  instance = 2",
        "  instance = 2\n  simulate = { dead = true }",
        "bus[0].device[0].simulate: only a device on a simulated bus takes simulate settings",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), BROKEN)
def test_broken_config_gives_one_line(
    tmp_path: Path, old: str, new: str, expected: str | None
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    if expected is not None:
        assert message == f"{path}: {expected}"


PARTLY_KNOWN = [
    ('profile = "watlow_pm"', 'profile = "watlow_pn"', "bus[0].device[0].profile:", "watlow_pn"),
    (
        'parameters = ["analog_input_value"]',
        'parameters = ["pv"]',
        "bus[0].device[0].parameters[0]: 'pv' is not a parameter of watlow_pm",
        "analog_input_value",
    ),
    (
        'path = "out/x.csv"',
        'path = "out/x.csv"\nfile = "y"',
        "sink[0].file: unknown key for a csv sink",
        "path",
    ),
]


@pytest.mark.parametrize(("old", "new", "start", "mention"), PARTLY_KNOWN)
def test_broken_messages_name_the_key(
    tmp_path: Path, old: str, new: str, start: str, mention: str
) -> None:
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {start}"), str(info.value)
    assert mention in str(info.value)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")
    path = write(tmp_path, "[acquisition\nrate_hz = 1")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_no_bus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"defines no bus"):
        load_config(write(tmp_path, "[acquisition]\nrate_hz = 1\n"))


def test_missing_sink_extra_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, GOOD.replace('kind = "csv"', 'kind = "parquet"').replace("x.csv", "ds"))
    script = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from flows.config import ConfigError, load_config\n"
        f"try:\n    load_config({str(path)!r})\nexcept ConfigError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.stdout == (
        f"{path}: sink[0].kind: a parquet sink needs pyarrow, which is not installed: "
        "pip install -e '.[parquet]'\n"
    )


def test_bus_stats_sink(tmp_path: Path) -> None:
    text = GOOD + '\n[[sink]]\nkind = "jsonl"\npath = "out/stats.jsonl"\nstream = "bus_stats"\n'
    config = load_config(write(tmp_path, text))
    (stats,) = config.stats_sinks
    assert Path(stats.sink.path) == tmp_path / "out" / "stats.jsonl"
    assert [Path(s.sink.path).name for s in config.sinks] == ["x.csv"]
