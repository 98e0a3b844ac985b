"""Config parsing: the shipped config parses; broken ones give one exact line each."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connectors.bus import Device
from connectors.codec import Codec
from connectors.registers import load_profile, plan_reads
from connectors.transport import BusUrl
from flows.config import ConfigError, load_config
from sinks.csv import IntoCsv
from sinks.sqlite import IntoSqlite

ROOT = Path(__file__).resolve().parents[3]

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
  parameters = ["process_value"]
  instance = 2

[[sink]]
kind = "csv"
path = "out/x.csv"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "acquire.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_config_parses() -> None:
    config = load_config(ROOT / "acquire.toml")
    assert config.acquisition.rate_hz == 1.0
    assert config.acquisition.duration_s == 10
    assert [b.name for b in config.buses] == ["lab-tcp", "line-rtu"]
    assert [b.url.scheme for b in config.buses] == ["tcp", "rtu"]
    assert all(b.simulate for b in config.buses)
    assert len(config.buses[0].devices) == 3 and len(config.buses[1].devices) == 3
    assert [type(s) for s in config.sinks] == [IntoSqlite, IntoCsv]
    assert Path(config.sinks[0].path) == ROOT / "data" / "acquire.sqlite"
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
    assert [p.name for p in device.parameters] == ["process_value"]
    assert Path(config.sinks[0].path) == tmp_path / "out" / "x.csv"


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
        "bus[0].retry: unknown key (known keys: device, host, name, pause_s, retries, "
        "simulate, timeout_s, url)",
    ),
    (
        'url = "tcp://10.0.0.5:502"',
        'url = "http://x"',
        "bus[0].url: 'http://x' is not a bus URL (tcp://, rtu+tcp://, rtu:// or sim://)",
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
    ('parameters = ["process_value"]', 'parameters = ["pv"]', None),
    (
        'kind = "csv"',
        'kind = "excel"',
        "sink[0].kind: 'excel' is not a sink kind (csv, jsonl, sqlite, parquet, postgres)",
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
        'parameters = ["process_value"]',
        'parameters = ["pv"]',
        "bus[0].device[0].parameters[0]: 'pv' is not a parameter of watlow_pm",
        "process_value",
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


def test_duplicate_device_names_and_unit_ids(tmp_path: Path) -> None:
    device = '\n  [[bus.device]]\n  name = "{}"\n  profile = "watlow_pm"\n  address = {}\n'
    path = write(tmp_path, GOOD + device.format("pm", 8))
    with pytest.raises(
        ConfigError,
        match=r"bus\[0\]\.device\[1\]\.name: 'pm' is already the name of bus\[0\]\.device\[0\]",
    ):
        load_config(path)
    path = write(tmp_path, GOOD + device.format("pm2", 7))
    with pytest.raises(
        ConfigError, match=r"bus\[0\]\.device\[1\]\.address: 7 is already the unit id of pm"
    ):
        load_config(path)


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


TIMED = GOOD.replace(
    "  instance = 2",
    "  instance = 2\n  timeout_s = 0.05\n  retries = 2\n  pause_s = 0.01\n  max_gap = 20",
).replace("retries = 1", "retries = 1\npause_s = 0.002")


def test_timing_keys(tmp_path: Path) -> None:
    (bus,) = load_config(write(tmp_path, TIMED)).buses
    assert bus.pause_s == 0.002
    (device,) = bus.devices
    assert (device.timeout_s, device.retries, device.pause_s, device.max_gap) == (
        0.05, 2, 0.01, 20
    )  # fmt: skip
    (bus,) = load_config(write(tmp_path, GOOD)).buses
    (device,) = bus.devices
    assert (bus.pause_s, device.timeout_s, device.retries, device.pause_s) == (0.0, None, None, 0.0)
    assert device.max_gap == Device.__dataclass_fields__["max_gap"].default


OVERRIDDEN = GOOD.replace(
    'parameters = ["process_value"]',
    'parameters = ["process_value", "input_error", "heat_power"]',
).replace(
    "  instance = 2",
    """  instance = 2

    [bus.device.override.process_value]
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


def test_overrides(tmp_path: Path) -> None:
    (device,) = load_config(write(tmp_path, OVERRIDDEN)).buses[0].devices
    pv, err, heat = device.parameters
    assert (pv.name, pv.codec, pv.unit, pv.address, pv.id) == (
        "process_value", Codec("float32", byte_order="ABCD", scale=0.5, offset=-10), "degF", 360,
        4001,
    )  # fmt: skip
    assert (err.labels, err.codec) == (
        ((1, "ok"), (2, "broken")),
        Codec("uint16", byte_order="BADC"),
    )
    assert (heat.address, heat.codec) == (1905, Codec("int16", byte_order="CDAB", scale=0.1))
    assert [(r.address, r.count) for r in device.reads] == [(360, 3), (1905, 1)]
    # The profile itself is untouched.
    assert load_profile("watlow_pm").parameter("process_value").codec.byte_order == "CDAB"


INLINE = GOOD.replace(
    """  profile = "watlow_pm"
  address = 7
  parameters = ["process_value"]
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


def test_inline_parameters(tmp_path: Path) -> None:
    (device,) = load_config(write(tmp_path, INLINE)).buses[0].devices
    assert [p.name for p in device.parameters] == ["temperature", "flow", "mode", "alarm", "tag"]
    temperature, flow, mode, alarm, tag = device.parameters
    assert (temperature.table, temperature.codec.scale, temperature.unit) == ("input", 0.1, "degC")
    assert flow.codec.byte_order == "DCBA"
    assert mode.label(2) == "manual"
    assert (alarm.codec.type, alarm.codec.bit) == ("bit", 3)
    assert (tag.count, tag.codec.byte_order) == (4, "CDAB")
    assert device.instance == 1
    assert [(r.table, r.address, r.count) for r in plan_reads(device.parameters)] == [
        ("holding", 100, 10), ("input", 0, 1)
    ]  # fmt: skip


def test_bus_stats_sink(tmp_path: Path) -> None:
    text = GOOD + '\n[[sink]]\nkind = "jsonl"\npath = "out/stats.jsonl"\nstream = "bus_stats"\n'
    config = load_config(write(tmp_path, text))
    (stats,) = config.stats_sinks
    assert Path(stats.path) == tmp_path / "out" / "stats.jsonl"
    assert [Path(s.path).name for s in config.sinks] == ["x.csv"]


DEVICE = "bus[0].device[0]"
PV_OVERRIDE = "\n    [bus.device.override.process_value]\n"
BYTE_ORDERS_TEXT = "ABCD, CDAB, BADC, DCBA"

# (base config, replacement applied to it, expected message after "<file>: ")
BROKEN_NEW = [
    (TIMED, "timeout_s = 0.05", "timeout_s = 0", f"{DEVICE}.timeout_s: 0 must be > 0"),
    (TIMED, "timeout_s = 0.05", 'timeout_s = "1"', f"{DEVICE}.timeout_s: '1' is not a number"),
    (TIMED, "retries = 2", "retries = 11", f"{DEVICE}.retries: 11 is not 0-10"),
    (TIMED, "retries = 2", "retries = 1.5", f"{DEVICE}.retries: 1.5 is not an integer"),
    (TIMED, "pause_s = 0.01", "pause_s = -1", f"{DEVICE}.pause_s: -1 must be >= 0"),
    (TIMED, "max_gap = 20", "max_gap = 200", f"{DEVICE}.max_gap: 200 is not 0-124"),
    (TIMED, "max_gap = 20", "max_gap = -1", f"{DEVICE}.max_gap: -1 is not 0-124"),
    (TIMED, "max_gap = 20", "max_gap = true", f"{DEVICE}.max_gap: True is not an integer"),
    (TIMED, "pause_s = 0.002", "pause_s = -0.5", "bus[0].pause_s: -0.5 must be >= 0"),
    (
        OVERRIDDEN,
        "override.process_value]",
        "override.pv]",
        f"{DEVICE}.override.pv: 'pv' is not a parameter of watlow_pm (known: process_value, "
        "input_error, analog_input_2, heat_power, cool_power, closed_loop_set_point, "
        "active_set_point, temperature_units)",
    ),
    (
        OVERRIDDEN,
        'word_order = "big"',
        'word_order = "middle"',
        f"{DEVICE}.override.process_value.word_order: 'middle' is not one of big, little",
    ),
    (
        OVERRIDDEN,
        'byte_order = "BADC"',
        'byte_order = "ABDC"',
        f"{DEVICE}.override.input_error.byte_order: 'ABDC' is not one of {BYTE_ORDERS_TEXT}",
    ),
    (
        OVERRIDDEN,
        'word_order = "big"',
        'word_order = "big"\n    byte_order = "ABCD"',
        f"{DEVICE}.override.process_value.word_order: 'big' given with byte_order = 'ABCD'; give "
        "one (word_order is the older alias: big = ABCD, little = CDAB)",
    ),
    (
        OVERRIDDEN,
        "scale = 0.5",
        "scale = 0",
        f"{DEVICE}.override.process_value.scale: 0 is not a finite non-zero number",
    ),
    (
        OVERRIDDEN,
        "offset = -10",
        'offset = "x"',
        f"{DEVICE}.override.process_value.offset: 'x' is not a finite number",
    ),
    (
        OVERRIDDEN,
        "scale = 0.5",
        "scal = 0.5",
        f"{DEVICE}.override.process_value.scal: unknown key; expected one of name, table, "
        "address, type, id, byte_order, word_order, scale, offset, unit, length, bit, labels",
    ),
    (
        OVERRIDDEN,
        '1 = "ok"',
        'ok = "ok"',
        f"{DEVICE}.override.input_error.labels.ok: 'ok' is not an integer",
    ),
    (
        OVERRIDDEN,
        'unit = "degF"',
        'unit = "degF"\n    name = "pv"',
        f"{DEVICE}.override.process_value.name: 'pv': an override cannot rename a parameter",
    ),
    (
        OVERRIDDEN,
        'unit = "degF"',
        "unit = 3",
        f"{DEVICE}.override.process_value.unit: 3 is not a non-empty string",
    ),
    (
        OVERRIDDEN,
        'type = "int16"',
        'type = "int8"',
        f"{DEVICE}.override.heat_power.type: 'int8' is not one of int16, uint16, int32, uint32, "
        "float32, int64, uint64, float64, string, bit",
    ),
    (
        OVERRIDDEN,
        "address = 1905",
        "address = 70000",
        f"{DEVICE}.override.heat_power.address: 70000 is not an integer in 0..65535",
    ),
    (
        OVERRIDDEN,
        "[bus.device.override.input_error]",
        '[bus.device.override.input_error]\n    type = "float32"',
        f"{DEVICE}.override.input_error.labels: enum labels need an integer or bit type, "
        "not float32",
    ),
    (
        GOOD,
        "  instance = 2",
        "  instance = 2\n  override = 3",
        f"{DEVICE}.override: 3 is not a table",
    ),
    (
        GOOD,
        "  instance = 2",
        "  instance = 2\n  override = { process_value = 3 }",
        f"{DEVICE}.override.process_value: 3 is not a table",
    ),
    (
        INLINE,
        'type = "int16"',
        'type = "int"',
        f"{DEVICE}.parameter[0].type: 'int' is not one of int16, uint16, int32, uint32, float32, "
        "int64, uint64, float64, string, bit",
    ),
    (
        INLINE,
        'table = "input"',
        'table = "coil"',
        f"{DEVICE}.parameter[0].table: 'coil' is not one of holding, input",
    ),
    (INLINE, 'table = "input"\n', "", f"{DEVICE}.parameter[0].table: missing"),
    (
        INLINE,
        "address = 0\n",
        "address = -1\n",
        f"{DEVICE}.parameter[0].address: -1 is not an integer in 0..65535",
    ),
    (
        INLINE,
        'name = "flow"',
        'name = "temperature"',
        f"{DEVICE}.parameter[1].name: 'temperature' is already the name of {DEVICE}.parameter[0]",
    ),
    (
        INLINE,
        'byte_order = "DCBA"',
        'byte_order = "dcba"',
        f"{DEVICE}.parameter[1].byte_order: 'dcba' is not one of {BYTE_ORDERS_TEXT}",
    ),
    (
        INLINE,
        'byte_order = "DCBA"',
        'byte_order = "DCBA"\n    word_order = "big"',
        f"{DEVICE}.parameter[1].word_order: 'big' given with byte_order = 'DCBA'; give one "
        "(word_order is the older alias: big = ABCD, little = CDAB)",
    ),
    (
        INLINE,
        '2 = "manual"',
        'two = "manual"',
        f"{DEVICE}.parameter[2].labels.two: 'two' is not an integer",
    ),
    (
        INLINE,
        '2 = "manual"',
        '2 = ""',
        f"{DEVICE}.parameter[2].labels.2: '' is not a non-empty string",
    ),
    (INLINE, "bit = 3", "bit = 16", f"{DEVICE}.parameter[3].bit: 16 is not an integer in 0..15"),
    (INLINE, "bit = 3\n", "", f"{DEVICE}.parameter[3].bit: type 'bit' needs a bit number 0..15"),
    (
        INLINE,
        "length = 4",
        "length = 0",
        f"{DEVICE}.parameter[4].length: type 'string' needs a length of at least 1 register",
    ),
    (
        INLINE,
        "scale = 0.1",
        "scale = 0.1\n    offset = inf",
        f"{DEVICE}.parameter[0].offset: inf is not a finite number",
    ),
    (
        INLINE,
        'unit = "degC"',
        'unit = "degC"\n    units = "K"',
        f"{DEVICE}.parameter[0].units: unknown key; expected one of name, table, address, type, "
        "id, byte_order, word_order, scale, offset, unit, length, bit, labels",
    ),
    (
        INLINE,
        "  address = 7\n",
        '  address = 7\n  profile = "watlow_pm"\n',
        f"{DEVICE}.parameter: a device takes a profile or its own [[bus.device.parameter]] "
        "tables, not both",
    ),
    (
        INLINE,
        "  address = 7\n",
        '  address = 7\n  parameters = ["flow"]\n',
        f"{DEVICE}.parameters: parameters needs a profile to choose from",
    ),
    (
        GOOD,
        'profile = "watlow_pm"\n  address = 7\n  parameters = ["process_value"]\n',
        "address = 7\n",
        f"{DEVICE}.profile: missing (or describe the registers in [[bus.device.parameter]])",
    ),
    (
        INLINE,
        'url = "tcp://10.0.0.5:502"',
        'url = "tcp://127.0.0.1:0"\nsimulate = true',
        f"{DEVICE}.parameter: a device on a simulated bus needs a profile (the simulator serves "
        "profiles)",
    ),
    (
        GOOD,
        'path = "out/x.csv"',
        'path = "out/x.csv"\nstream = "stats"',
        "sink[0].stream: 'stats' is not samples, windows, late, bus_stats",
    ),
]


@pytest.mark.parametrize(("base", "old", "new", "expected"), BROKEN_NEW)
def test_broken_new_keys_give_one_line(
    tmp_path: Path, base: str, old: str, new: str, expected: str
) -> None:
    assert old in base
    path = write(tmp_path, base.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {expected}"
