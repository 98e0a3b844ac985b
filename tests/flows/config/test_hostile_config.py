"""A corpus of malformed configs, each refused with one line naming the file, the key path and
the value, by ``load_config`` and by the real command (exit code 2). It adds to the broken
configs of test_config.py and test_buses.py what they leave out."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flows.acquire import command_line_config
from flows.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[3]

BASE = """[acquisition]
rate_hz = 2

[[bus]]
name = "gw"
url = "tcp://10.0.0.5:502"

  [[bus.device]]
  name = "pm"
  profile = "watlow_pm"
  address = 7

[[sink]]
kind = "csv"
path = "out/x.csv"
"""
SIM = BASE.replace('url = "tcp://10.0.0.5:502"', 'url = "tcp://127.0.0.1:0"\nsimulate = true')
INLINE = BASE.replace(
    '  profile = "watlow_pm"\n  address = 7\n',
    '  address = 7\n\n    [[bus.device.parameter]]\n    name = "t"\n    table = "input"\n'
    '    address = 0\n    type = "uint16"\n    unit = "degC"\n    labels = { 0 = "off" }\n',
)
SINK = 'kind = "csv"\npath = "out/x.csv"\n'
SQLITE = 'kind = "sqlite"\npath = "x.db"'
SECOND_BUS = '\n[[bus]]\nname = "{}"\nurl = "tcp://10.0.0.6"\n  [[bus.device]]\n  name = "{}"\n'
SECOND_BUS += '  profile = "watlow_pm"\n  address = 1\n'
WINDOWS = "[windows]\nlength_s = 5\n\n[[sink]]"


def edit(old: str, new: str, base: str = BASE) -> str:
    """``base`` with its first ``old`` replaced by ``new``; ``old`` must be there."""
    assert old in base, old
    return base.replace(old, new, 1)


def device(extra: str, base: str = BASE) -> str:
    return edit("  address = 7\n", f"  address = 7\n  {extra}\n", base)


def sink(text: str) -> str:
    return edit(SINK, text)


def url(value: str) -> str:
    return edit('url = "tcp://10.0.0.5:502"', f"url = {value}")


D = "bus[0].device[0]"
# (id, config text or bytes, what the message says after "<file>: "; "{dir}" is the config's
# directory). Extra files next to the config are in FILES.
CORPUS: list[tuple[str, str | bytes, str]] = [
    # wrong types
    ("acquisition-not-table", edit("[acquisition]\nrate_hz = 2", "acquisition = 3"),
     "acquisition: 3 is not a table"),
    ("bus-not-array", 'bus = "gw"\n', "bus: must be an array of tables ([[bus]])"),
    ("bus-items-not-tables", "bus = [1, 2]\n", "bus[0]: 1 is not a table"),
    ("sink-inline-table", 'sink = { kind = "csv", path = "x.csv" }\n' + BASE.split("[[sink]]")[0],
     "sink: must be an array of tables ([[sink]])"),
    ("device-table-not-array", edit("[[bus.device]]", "[bus.device]"),
     "bus[0].device: must be an array of tables ([[bus.device]])"),
    ("bus-name-int", edit('name = "gw"', "name = 5"), "bus[0].name: 5 is not a string"),
    ("bus-url-int", url("502"), "bus[0].url: 502 is not a string"),
    ("bus-simulate-string", url('"tcp://gw"\nsimulate = "yes"'),
     "bus[0].simulate: 'yes' is not true or false"),
    ("bus-host-int", url('"tcp://gw"\nhost = 5'), "bus[0].host: 5 is not a string"),
    ("parameters-string", device('parameters = "analog_input_value"'),
     f"{D}.parameters: 'analog_input_value' is not an array"),
    ("instance-float", device("instance = 1.0"), f"{D}.instance: 1.0 is not an integer"),
    ("retries-bool", device("retries = true"), f"{D}.retries: True is not an integer"),
    ("duration-string", edit("rate_hz = 2", 'duration_s = "10s"'),
     "acquisition.duration_s: '10s' is not a number"),
    ("sink-kind-int", edit('kind = "csv"', "kind = 5"), "sink[0].kind: 5 is not a string"),
    ("sink-path-int", edit('path = "out/x.csv"', "path = 5"), "sink[0].path: 5 is not a file path"),
    ("postgres-create-table-string", sink('kind = "postgres"\nhost = "db"\ncreate_table = "yes"'),
     "sink[0].create_table: 'yes' is not a bool"),
    ("postgres-port-string", sink('kind = "postgres"\nhost = "db"\nport = "5432"'),
     "sink[0].port: '5432' is not an integer in [1, 65535]"),
    ("sqlite-busy-timeout-string", sink(f'{SQLITE}\nbusy_timeout_s = "30"'),
     "sink[0].busy_timeout_s: '30' is not a finite number of seconds >= 0"),
    ("windows-length-string", edit("[[sink]]", '[windows]\nlength_s = "5"\n\n[[sink]]'),
     "windows.length_s: '5' is not a number"),
    ("simulate-dead-string", device('simulate = { dead = "yes" }', SIM),
     f"{D}.simulate.dead: 'yes' is not true or false"),
    # unknown keys
    ("top-level-typo", edit("[acquisition]", "[aquisition]"), "aquisition: unknown key"),
    ("device-unknown-key", device('colour = "red"'), f"{D}.colour: unknown key"),
    ("device-typo", edit("address = 7", "adress = 7"), f"{D}.address: missing (found 'adress': a"),
    ("sink-typo", sink(f'{SQLITE}\ntable_name = "s"'),
     "sink[0].table_name: unknown key for a sqlite sink"),
    ("sink-schema-key", sink(SINK + 'schema = "x"'), "sink[0].schema: unknown key for a csv sink"),
    ("windows-typo", edit("[[sink]]", WINDOWS.replace("5\n", "5\nlateness = 1\n")),
     "windows.lateness: unknown key"),
    ("simulate-typo", device("simulate = { colour = 1 }", SIM),
     f"{D}.simulate.colour: unknown key"),
    # bad URLs
    ("url-empty", url('""'), "bus[0].url: '' is not a bus URL"),
    ("url-tcp-no-host", url('"tcp://"'), "bus[0].url: 'tcp://' names no host"),
    ("url-tcp-path", url('"tcp://gw:502/x"'), "bus[0].url: 'tcp://gw:502/x': a tcp:// URL is only"),
    ("url-rtu-no-port", url('"rtu://"'), "bus[0].url: 'rtu://' names no serial port"),
    ("url-rtu-baud-word", url('"rtu:///dev/ttyUSB0?baudrate=fast"'),
     "bus[0].url: 'rtu:///dev/ttyUSB0?baudrate=fast': baudrate, stopbits and bytesize are int"),
    ("url-rtu-parity", url('"rtu:///dev/ttyUSB0?parity=X"'),
     "bus[0].url: 'rtu:///dev/ttyUSB0?parity=X': parity 'X' is not N, E or O"),
    ("url-rtu-stopbits", url('"rtu:///dev/ttyUSB0?stopbits=3"'),
     "bus[0].url: 'rtu:///dev/ttyUSB0?stopbits=3': baudrate > 0, stopbits 1 or 2"),
    ("url-ipv6-unclosed", url('"tcp://[::1"'), "bus[0].url: 'tcp://[::1': Invalid IPv6 URL"),
    ("url-port-negative", url('"tcp://gw:-1"'),
     "bus[0].url: 'tcp://gw:-1': the port is not a number from 0 to 65535"),
    ("url-space", url('"tcp://gate way:502"'),
     "bus[0].url: 'tcp://gate way:502': contains a space"),
    ("url-nul", url('"tcp://gw\\u0000:502"'),
     r"bus[0].url: 'tcp://gw\x00:502': contains the control character U+0000"),
    ("url-userinfo", url('"tcp://admin:pw@gw:502"'),
     "bus[0].url: 'tcp://admin:pw@gw:502': a bus URL takes no user or password"),
    ("url-fragment", url('"tcp://gw#2"'), "bus[0].url: 'tcp://gw#2': a bus URL takes no #fragment"),
    ("url-bad-host", url('"tcp://gw!:502"'),
     "bus[0].url: 'tcp://gw!:502': the host 'gw!' is not a host name or IP address"),
    # duplicates
    ("duplicate-bus-name", BASE + SECOND_BUS.format("gw", "pm2"),
     "bus[1].name: 'gw' is already the name of another bus"),
    ("duplicate-device-across-buses", BASE + SECOND_BUS.format("gx", "pm"),
     "bus[1].device[0].name: 'pm' is already the name of bus[0].device[0]"),
    ("duplicate-toml-key", edit('name = "gw"', 'name = "gw"\nname = "gx"'),
     "Cannot overwrite a value (at line 6"),
    ("duplicate-parameter", device('parameters = ["analog_input_value", "analog_input_value"]'),
     f"{D}.parameters[1]: 'analog_input_value' is listed twice"),
    ("duplicate-sink-file", BASE + '\n[[sink]]\nkind = "jsonl"\npath = "out/x.csv"\n',
     "sink[1].path: '{dir}/out/x.csv' is already written by sink[0]"),
    ("duplicate-sqlite-table",
     sink(f'{SQLITE}\n[[sink]]\n{SQLITE}\nstream = "bus_stats"'),
     "sink[1].table: 'samples' in '{dir}/x.db' is already written by sink[0]"),
    ("duplicate-postgres-table",
     sink('kind = "postgres"\nhost = "db"\n[[sink]]\nkind = "postgres"\nhost = "db"\nport = 5432'),
     "sink[1].table: 'db:5432/.public.samples' is already written by sink[0]"),
    # unit ids
    ("unit-id-248", edit("address = 7", "address = 248"),
     f"{D}.address: 248 is not a Modbus unit id (1-247)"),
    ("unit-id-int64", edit("address = 7", "address = 9223372036854775807"),
     f"{D}.address: 9223372036854775807 is not a Modbus unit id"),
    ("unit-id-missing", edit("  address = 7\n", ""), f"{D}.address: missing"),
    ("exception-code-zero", device("simulate = { exception_code = 0 }", SIM),
     f"{D}.simulate.exception_code: 0 is not 1-255"),
    # numbers out of range
    ("rate-zero", edit("rate_hz = 2", "rate_hz = 0"), "acquisition.rate_hz: 0 must be > 0"),
    ("rate-inf", edit("rate_hz = 2", "rate_hz = inf"),
     "acquisition.rate_hz: inf is not a finite number"),
    ("rate-nan", edit("rate_hz = 2", "rate_hz = nan"),
     "acquisition.rate_hz: nan is not a finite number"),
    ("rate-huge", edit("rate_hz = 2", "rate_hz = 1e308"),
     "acquisition.rate_hz: 1e+308 is more than 1e+06 ticks per second"),
    ("duration-negative", edit("rate_hz = 2", "duration_s = -10"),
     "acquisition.duration_s: -10 must be > 0"),
    ("duration-huge", edit("rate_hz = 2", "duration_s = 1e12"),
     "acquisition.duration_s: 1000000000000.0 is more than 1e+09 seconds"),
    ("bus-timeout-negative", url('"tcp://gw"\ntimeout_s = -1'), "bus[0].timeout_s: -1 must be > 0"),
    ("bus-retries-negative", url('"tcp://gw"\nretries = -1'), "bus[0].retries: -1 is not 0-10"),
    ("device-pause-inf", device("pause_s = inf"), f"{D}.pause_s: inf is not a finite number"),
    ("instance-zero", device("instance = 0"), f"{D}.instance: 0 must be >= 1"),
    ("windows-length-zero", edit("[[sink]]", "[windows]\nlength_s = 0\n\n[[sink]]"),
     "windows.length_s: 0 must be > 0"),
    ("windows-length-huge", edit("[[sink]]", "[windows]\nlength_s = 1e15\n\n[[sink]]"),
     "windows.length_s: 1000000000000000.0 is more than 1e+09 seconds"),
    ("windows-lateness-negative", edit("[[sink]]", WINDOWS.replace("5\n", "5\nlateness_s = -1\n")),
     "windows.lateness_s: -1 must be >= 0"),
    ("windows-lateness-nan", edit("[[sink]]", WINDOWS.replace("5\n", "5\nlateness_s = nan\n")),
     "windows.lateness_s: nan is not a finite number"),
    ("simulate-delay-negative", device("simulate = { delay_s = -1 }", SIM),
     f"{D}.simulate.delay_s: -1 must be >= 0"),
    ("simulate-set-point-inf", device("simulate = { set_point = -inf }", SIM),
     f"{D}.simulate.set_point: -inf is not a finite number"),
    ("parquet-rows-per-part-zero", sink('kind = "parquet"\npath = "ds"\nrows_per_part = 0'),
     "sink[0].rows_per_part: 0 is not an int >= 1"),
    ("postgres-port-huge", sink('kind = "postgres"\nhost = "db"\nport = 70000'),
     "sink[0].port: 70000 is not an integer in [1, 65535]"),
    # profiles
    ("profile-empty", edit('profile = "watlow_pm"', 'profile = ""'),
     f"{D}.profile: unknown profile ''; shipped profiles: "),
    ("profile-traversal", edit('profile = "watlow_pm"', 'profile = "../watlow_pm"'),
     f"{D}.profile: unknown profile '../watlow_pm'"),
    ("profile-int", edit('profile = "watlow_pm"', "profile = 5"),
     f"{D}.profile: 5 is not a string"),
    ("profile-missing-file", edit('profile = "watlow_pm"', 'profile = "nope.toml"'),
     f"{D}.profile: {{dir}}/nope.toml: [Errno 2] No such file or directory"),
    ("profile-not-toml", edit('profile = "watlow_pm"', 'profile = "bad.toml"'),
     f"{D}.profile: {{dir}}/bad.toml: Expected"),
    ("profile-nul-unit", edit('profile = "watlow_pm"', 'profile = "nul.toml"'),
     f"{D}.profile: parameter 'pv': unit 'deg\\x00C' contains the control character U+0000"),
    ("parameters-empty", device("parameters = []"), f"{D}.parameters: lists no parameters"),
    # identifiers and hostile text
    ("sqlite-table-injection",
     sink(f'{SQLITE}\ntable = "samples; DROP TABLE x"'),
     "sink[0].table: 'samples; DROP TABLE x' is not a valid identifier"),
    ("sqlite-table-quote", sink(f'{SQLITE}\ntable = \'s"; --\''),
     "sink[0].table: 's\"; --' is not a valid identifier"),
    ("postgres-table-injection", sink('kind = "postgres"\nhost = "db"\ntable = "x; DROP TABLE y"'),
     "sink[0].table: 'x; DROP TABLE y' is not a valid identifier"),
    ("postgres-schema-injection",
     sink('kind = "postgres"\nhost = "db"\nschema_name = "public CASCADE"'),
     "sink[0].schema_name: 'public CASCADE' is not a valid identifier"),
    ("postgres-table-too-long", sink(f'kind = "postgres"\nhost = "db"\ntable = "{"t" * 64}"'),
     f"sink[0].table: '{'t' * 64}' is not a valid identifier"),
    ("postgres-table-unicode", sink('kind = "postgres"\nhost = "db"\ntable = "tempé"'),
     "sink[0].table: 'tempé' is not a valid identifier"),
    ("postgres-dsn-mysql", sink('kind = "postgres"\ndsn = "mysql://u@db/daq"'),
     "sink[0].dsn: not a postgresql://user:password@host:port/database URL"),
    ("device-name-injection", edit('name = "pm"', 'name = "pm\'; DROP TABLE samples; --"'),
     f"{D}.name: \"pm'; DROP TABLE samples; --\" is not a name"),
    ("device-name-nul", edit('name = "pm"', 'name = "pm\\u0000"'),
     f"{D}.name: 'pm\\x00' is not a name"),
    ("bus-name-empty", edit('name = "gw"', 'name = ""'), "bus[0].name: '' is not a name"),
    # docs/configuration.md says which characters: ASCII letters, digits, _ . -
    ("bus-name-emoji", edit('name = "gw"', 'name = "gw-\U0001F525"'),
     "bus[0].name: 'gw-\U0001F525' is not a name (letters, digits, _ . -; up to 63)"),
    ("parameter-name-nul", edit('name = "t"', 'name = "t\\u0000"', INLINE),
     f"{D}.parameter[0].name: 't\\x00' contains the control character U+0000"),
    ("parameter-unit-newline", edit('unit = "degC"', 'unit = "deg\\nC"', INLINE),
     f"{D}.parameter[0].unit: 'deg\\nC' contains the control character U+000A"),
    ("label-nul", edit('0 = "off"', '0 = "off\\u0000"', INLINE),
     f"{D}.parameter[0].labels.0: 'off\\x00' contains the control character U+0000"),
    ("override-unit-nul", device('override = { analog_input_value = { unit = "\\u0000" } }'),
     f"{D}.override.analog_input_value.unit: '\\x00' contains the control character U+0000"),
    ("bus-host-space", url('"tcp://gw"\nhost = "my host"'),
     "bus[0].host: 'my host' is not a host name or IP address"),
    ("csv-delimiter-two", sink(SINK + 'delimiter = ";;"'),
     "sink[0].delimiter: ';;' is not one character"),
    ("parquet-compression", sink('kind = "parquet"\npath = "ds"\ncompression = "rar"'),
     "sink[0].compression: 'rar' is not one of none, snappy"),
    # structure
    ("bus-without-devices", BASE.split("  [[bus.device]]")[0], "bus[0]: has no devices"),
    ("windows-stream-without-windows", sink(SINK + 'stream = "windows"'),
     "sink[0].stream: 'windows' needs a [windows] table"),
    ("late-stream-without-windows", sink(SINK + 'stream = "late"'),
     "sink[0].stream: 'late' needs a [windows] table"),
    ("sink-without-kind", sink('path = "x.csv"'), "sink[0].kind: missing"),
    ("csv-without-path", sink('kind = "csv"'), "sink[0].path: missing"),
    ("csv-path-empty", edit('path = "out/x.csv"', 'path = ""'),
     "sink[0].path: '' is not a file path"),
    ("csv-path-directory", edit('path = "out/x.csv"', 'path = ".."'),
     "sink[0].path: '..' is a directory; a csv sink writes a file"),
    ("parquet-path-file", sink('kind = "parquet"\npath = "nul.toml"'),
     "sink[0].path: 'nul.toml' is a file; a parquet sink writes a directory"),
    ("csv-path-under-proc", edit('path = "out/x.csv"', 'path = "/proc/version"'),
     "sink[0].path: '/proc/version' is under /proc or /sys, where a sink can write no file"),
    ("sqlite-path-device", sink('kind = "sqlite"\npath = "/dev/null"'),
     "sink[0].path: '/dev/null' is a device, pipe or socket, not a file a sink can write"),
    # limits a later stage would enforce, and names that name files
    ("inline-string-200-registers",
     edit('type = "uint16"', 'type = "string"\n    length = 200', INLINE),
     "bus[0].device[0].parameter[0].length: 200 is not an integer in 0..125 (registers: one "
     "read carries at most 125)"),
    ("profile-string-130-registers", device('profile = "long.toml"', BASE.replace(
        '  profile = "watlow_pm"\n', '')),
     "bus[0].device[0].profile: {dir}/long.toml: parameter[0].length: 130 is not an integer in "
     "0..125 (registers: one read carries at most 125)"),
    ("real-bus-port-0", url('"tcp://127.0.0.1:0"'),
     "bus[0].url: 'tcp://127.0.0.1:0': port 0 is for simulated buses (any free port); give "
     "the gateway's"),
    ("bus-names-differ-in-case", BASE + SECOND_BUS.format("GW", "pm2"),
     "bus[1].name: 'GW' differs only in case from the name of bus[0] (bus names name files, "
     "e.g. the recovery journal)"),
    ("device-names-differ-in-case", BASE + SECOND_BUS.format("gw2", "PM"),
     "bus[1].device[0].name: 'PM' differs only in case from the name of bus[0].device[0] "
     "(device names name files, e.g. the plots)"),
    ("long-value-cut", edit('name = "pm"', 'name = "' + "p" * 5000 + '"'),
     "bus[0].device[0].name: '" + "p" * 79 + "...' (5000 characters) is not a name (letters, "
     "digits, _ . -; up to 63)"),
    # files that are not TOML
    ("json", '{"bus": []}\n', "Invalid statement (at line 1, column 1)"),
    ("not-utf8", BASE.replace("gw", "g\udcffw").encode("utf-8", "surrogateescape"),
     "line 5: byte 0xff is not UTF-8 (TOML is UTF-8 text)"),
    ("byte-order-mark", b"\xef\xbb\xbf" + BASE.encode(), "starts with a byte order mark"),
    ("raw-nul-byte", BASE.replace("rate_hz = 2", "rate_hz = 2\0"), "Expected newline or end of"),
]  # fmt: skip
FILES = {
    "bad.toml": "[[parameter]\n",
    "long.toml": 'name = "long"\n[[parameter]]\nname = "s"\ntable = "input"\naddress = 0\n'
    'type = "string"\nlength = 130\n',
    "nul.toml": 'name = "nul"\n[[parameter]]\nname = "pv"\ntable = "holding"\naddress = 0\n'
    'type = "uint16"\nunit = "deg\\u0000C"\n',
}
# A sample of the corpus, one or two per category, also run as the real command.
COMMAND_SAMPLE = [
    "bus-not-array", "sink-path-int", "device-unknown-key", "url-nul", "url-userinfo",
    "duplicate-bus-name", "unit-id-248", "rate-inf", "profile-not-toml",
    "sqlite-table-injection", "postgres-schema-injection", "parameter-name-nul", "not-utf8",
    "csv-path-under-proc", "inline-string-200-registers", "real-bus-port-0",
]  # fmt: skip


def write(directory: Path, text: str | bytes) -> Path:
    for name, content in FILES.items():
        (directory / name).write_text(content)
    path = directory / "bad.config.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def expected(case: str, path: Path) -> str:
    return f"{path}: {case.replace('{dir}', str(path.parent))}"


def test_the_bases_are_good(tmp_path: Path) -> None:
    for base in (BASE, SIM, INLINE):
        load_config(write(tmp_path, base))


def test_the_corpus() -> None:
    ids = [case[0] for case in CORPUS]
    assert len(ids) == len(set(ids)) and len(ids) >= 30
    assert set(COMMAND_SAMPLE) <= set(ids)


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_load_config_refuses_with_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str | bytes,
    message: str,
) -> None:
    """Every case through load_config, and through what the command runs first
    (command_line_config); the sample below also runs the real command."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    line = str(info.value)
    assert "\n" not in line and "\r" not in line
    assert line.startswith(expected(message, path)), line
    monkeypatch.setenv("ACQUIRE_CONFIG", str(path))
    with pytest.raises(SystemExit) as exit_info:
        command_line_config()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == line + "\n"


SAMPLE = [c for c in CORPUS if c[0] in COMMAND_SAMPLE]


def command(directory: Path, text: str | bytes) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = write(directory, text)
    result = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.acquire"],
        env={**os.environ, "ACQUIRE_CONFIG": str(path)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return path, result


@pytest.fixture(scope="module")
def commands(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """The real command on every config of SAMPLE, each in a directory of its own, four at a
    time (each only starts and refuses): case id -> (its config, its result)."""
    with ThreadPoolExecutor(4) as pool:
        runs = {
            case: pool.submit(command, tmp_path_factory.mktemp("hostile"), text)
            for case, text, _ in SAMPLE
        }
        return {case: run.result() for case, run in runs.items()}


@pytest.mark.parametrize("case", [c[0] for c in SAMPLE])
def test_the_command_exits_2_with_one_line(
    commands: dict[str, tuple[Path, subprocess.CompletedProcess[str]]], case: str
) -> None:
    (message,) = [c[2] for c in SAMPLE if c[0] == case]
    path, result = commands[case]
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert result.stderr.startswith(expected(message, path)), result.stderr
