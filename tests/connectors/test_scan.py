"""connectors.scan against the real simulator, over Modbus TCP and RTU on a pty, with a tap
between them that notes every request frame the bus carried."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import tty
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.machine import free_ports
from connectors import identify, scan
from connectors.registers import load_profile
from connectors.sim import BusSimulator, SimulatedDevice
from connectors.sim.cable import open_pty
from connectors.transport import parse_bus_url
from flows.config import load_config, parse_config
from tests.connectors.pmserver import PMServer

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

UNITS = range(1, 17)  # 11-16 silent: pymodbus hangs up a TCP connection after 3 in a row
TIMEOUT_S = 0.1


def bus_devices(tmp_path: Path) -> list[SimulatedDevice]:
    # A device with registers at holding 360 (which read 0.0 as a float) but nothing else.
    meter = tmp_path / "meter.toml"
    meter.write_text(
        'name = "meter"\ndescription = "x"\n[[parameter]]\nname = "energy"\n'
        'table = "holding"\naddress = 360\ntype = "uint32"\n',
        "utf-8",
    )
    return [
        SimulatedDevice(address=3, profile="watlow_pm"),
        SimulatedDevice(address=4, profile=str(meter)),
        SimulatedDevice(address=5, profile="watlow_pm", exception_code=4),
        SimulatedDevice(address=6, profile="watlow_pm", exception_code=11),  # a gateway's "none"
        SimulatedDevice(address=7, profile="watlow_pm", dead=True),
        SimulatedDevice(address=8, profile="watlow_pm", word_order="high_low", units="F"),
        SimulatedDevice(address=9, profile="digital_io"),  # coils and discrete inputs only
        SimulatedDevice(address=10, profile="servomex_4100"),
    ]


class Tap:
    """Notes (unit id, function code) of every request frame passing towards the simulator.

    Read requests (FC01-FC04) are 8 bytes in RTU framing; any other function code takes the
    rest of the chunk, which is enough to see that it was sent."""

    def __init__(self, *, rtu: bool) -> None:
        self.rtu, self.buffer = rtu, b""
        self.requests: list[tuple[int, int]] = []
        self.carriers: list[asyncio.Future[Any]] = []  # one per TCP connection

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 8:
            if self.rtu:
                unit, function = self.buffer[0], self.buffer[1]
                size = 8 if function in (1, 2, 3, 4) else len(self.buffer)
            else:  # MBAP header: transaction, protocol, length, unit; then the PDU
                unit, function = self.buffer[6], self.buffer[7]
                size = 6 + int.from_bytes(self.buffer[4:6], "big")
            if len(self.buffer) < size:
                return
            self.requests.append((unit, function))
            self.buffer = self.buffer[size:]


async def tap_tcp(tap: Tap, port: int) -> asyncio.Server:
    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, note: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                if note:
                    tap.feed(data)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        carrier = asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        tap.carriers.append(carrier)
        await carrier

    return await asyncio.start_server(connection, "127.0.0.1", 0)


def tap_pty(tap: Tap, sim_path: str) -> tuple[str, list[int]]:
    """A new pty whose far side is joined to the simulator's, through ``tap``."""
    loop = asyncio.get_running_loop()
    master, slave, path = open_pty()
    far = os.open(sim_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(far)
    os.set_blocking(master, False)

    def carry(source: int, sink: int, note: bool) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            data = os.read(source, 4096)
            if note:
                tap.feed(data)
            os.write(sink, data)

    loop.add_reader(master, carry, master, far, True)
    loop.add_reader(far, carry, far, master, False)
    return path, [master, slave, far]


Scanned = tuple[list[identify.Found], Tap, str, list[str], BusSimulator]


async def scan_through_tap(kind: str, devices: Sequence[SimulatedDevice]) -> Scanned:
    """Scan ``UNITS`` of a simulated bus through a Tap: (found, tap, url scanned, progress
    lines, simulator)."""
    sim = BusSimulator(kind, devices)
    url = await sim.start()
    tap, lines = Tap(rtu=kind != "tcp"), []
    fds: list[int] = []
    server = None
    try:
        if kind == "rtu":
            path, fds = tap_pty(tap, parse_bus_url(url).path)
            url = f"rtu://{path}?baudrate=19200"
        else:
            server = await tap_tcp(tap, sim.port)
            url = f"{kind}://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        found = await scan.scan(
            parse_bus_url(url), units=UNITS, timeout_s=TIMEOUT_S, progress=lines.append
        )
    finally:
        if server is not None:
            server.close()
            if tap.carriers:  # the scan hung up: let both ends of the tap close
                await asyncio.wait(tap.carriers, timeout=5)
        for fd in fds:
            with contextlib.suppress(ValueError):
                asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
        await sim.stop()
    return found, tap, url, lines, sim


@pytest.mark.parametrize("kind", ["tcp", "rtu", "rtu+tcp"])
def test_scan_finds_and_identifies_units_with_reads_only(kind: str, tmp_path: Path) -> None:
    found, tap, url, lines, sim = asyncio.run(scan_through_tap(kind, bus_devices(tmp_path)))
    by_unit = {f.address: f for f in found}
    assert {u: f.profile for u, f in by_unit.items()} == {
        3: "watlow_pm",
        4: None,
        5: None,
        8: "watlow_pm",
        9: None,
        10: "servomex_4100",
    }
    # Both say their word order and units (test_scan_of_a_pm_that_does_not_say: one that not).
    assert [by_unit[u].byte_order for u in (3, 8)] == [None, None]
    assert "set point 85 degC, units C, word order Low_High" in by_unit[3].evidence
    assert by_unit[3].described == (
        "the device says word order Low_High (CDAB) and units C (degC); "
        "the flow reads both from it at connect, no override needed"
    )
    assert "set point 230 degF, units F, word order High_Low" in by_unit[8].evidence
    assert "says word order High_Low (ABCD) and units F (degF)" in (by_unit[8].described or "")
    assert by_unit[10].evidence.startswith("measurement 1: O2 20.")
    assert by_unit[5].evidence.startswith(
        "answered every read with an exception: server device failure (4)"
    )
    assert by_unit[4].evidence == "answered, matched no known profile"
    # Every unit that answered is asked for coil 0 and discrete input 0: only unit 9 has them.
    assert by_unit[9].bits == "answers FC01 (coil 0 = 1) and FC02 (discrete 0 = 1)"
    assert [by_unit[u].bits for u in (3, 4, 5, 8, 10)] == [None] * 5
    assert (
        "unit 9: unidentified: answered every register read with an exception: illegal data "
        "address (2); answers FC01 (coil 0 = 1) and FC02 (discrete 0 = 1)"
    ) in lines
    assert "unit 6: no answer" in lines and "unit 7: no answer" in lines

    # Only reads went on the bus; every unit was asked, and a silent one exactly once.
    assert {function for _, function in tap.requests} == {1, 2, 3, 4}
    asked = Counter(unit for unit, _ in tap.requests)
    assert set(asked) == set(UNITS)
    assert all(asked[u] == 1 for u in (1, 2, 6, 7, *range(11, 17)))
    # Silent units do not cost the connection (connectors.transport keeps it open).
    assert kind == "rtu" or len(tap.carriers) == 1
    assert {table for _, table, _, _ in sim.answered()} == {"holding", "input", "coil", "discrete"}

    # The snippet is a config: the identified units are devices with their profiles.
    text = scan.snippet(parse_bus_url(url), url, found, name="line-1")
    config = parse_config(tomllib.loads(text))
    (bus,) = config.buses
    assert bus.name == "line-1" and bus.url == parse_bus_url(url)
    devices = {d.address: d for d in bus.devices}
    assert sorted(devices) == [3, 8, 10]
    assert devices[3].name == "watlow-pm-3"
    pm = load_profile("watlow_pm")
    assert devices[3].parameters == devices[8].parameters == pm.parameters
    assert devices[3].describe == devices[8].describe == pm.describe
    assert devices[10].parameters == load_profile("servomex_4100").parameters
    assert "# the device says word order High_Low (ABCD) and units F (degF)" in text
    assert "  # answers FC01 (coil 0 = 1) and FC02 (discrete 0 = 1)" in text
    assert "  #   coil 0 x1: bits [1]" in text
    for unit in (4, 5):  # listed, as comments, with what they answered
        assert f"# unit {unit} answered" in text and f'# name = "unit-{unit}"' in text
    assert "holding 360 x2: exception server device failure (4)" in text


@pytest.mark.parametrize("word_order", [[0, 0], [7, 9]])
def test_scan_of_a_pm_that_does_not_say(word_order: list[int]) -> None:
    """A PM (a plain pymodbus server, not the simulator) in high word first whose word order
    register says nothing known: its floats are tried in both orders and the snippet
    overrides their byte order."""
    server = PMServer("high_low", "F")
    server.put(2488, word_order)

    async def scanned() -> list[identify.Found]:
        url = await server.start()
        try:
            return await scan.scan(parse_bus_url(url), units=[1], timeout_s=TIMEOUT_S)
        finally:
            await server.stop()

    (found,) = asyncio.run(scanned())
    assert found.profile == "watlow_pm" and found.byte_order == "ABCD"
    assert found.described is None
    assert found.evidence == (
        "process value 234.567 degF, set point 250 degF, units F; "
        "floats in byte order ABCD, not CDAB"
    )
    text = scan.snippet(parse_bus_url("tcp://192.0.2.1"), "tcp://192.0.2.1", [found])
    (device,) = parse_config(tomllib.loads(text)).buses[0].devices
    floats = [p for p in device.parameters if p.codec.type == "float32"]
    assert floats and {p.codec.byte_order for p in floats} == {"ABCD"}
    # The override pins the byte order: what the device might say later does not change it.
    assert ("analog_input_value", "byte_order") in device.pinned


def test_snippet_of_unidentified_units_only_is_all_comments() -> None:
    answer = identify.Answer(table="holding", address=360, count=2, registers=(0, 0))
    found = [identify.Found(address=4, profile=None, evidence="answered", answers=(answer,))]
    text = scan.snippet(parse_bus_url("tcp://192.0.2.1"), "tcp://192.0.2.1", found)
    assert tomllib.loads(text) == {}
    assert "#   holding 360 x2: registers [0, 0]" in text
    assert "# [[bus]]" in text and '# name = "192.0.2.1"' in text


def test_parse_units() -> None:
    assert scan.parse_units("1-3,7,2") == [1, 2, 3, 7]
    assert scan.parse_units("247") == [247]
    for bad in ("0-3", "5-2", "248", "x", "1-", ""):
        with pytest.raises(ValueError):
            scan.parse_units(bad)


@contextlib.contextmanager
def served(kind: str, devices: Sequence[SimulatedDevice]) -> Iterator[str]:
    """The URL of a simulator running on an event loop in another thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = BusSimulator(kind, devices)
    try:
        yield asyncio.run_coroutine_threadsafe(sim.start(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_command_line_prints_a_snippet_load_config_reads(tmp_path: Path) -> None:
    devices = [
        SimulatedDevice(address=3, profile="watlow_pm"),
        SimulatedDevice(address=10, profile="servomex_4100"),
    ]
    with served("tcp", devices) as url:
        command = [sys.executable, "-m", "connectors.scan", url, "--units", "1-12"]
        done = subprocess.run(
            [*command, "--timeout", str(TIMEOUT_S)], capture_output=True, text=True, timeout=30
        )
    assert done.returncode == 0, done.stderr
    assert "unit 3: watlow_pm: process value" in done.stderr
    assert "unit 4: no answer" in done.stderr
    path = tmp_path / "acquire.toml"
    path.write_text(done.stdout, "utf-8")
    (bus,) = load_config(path).buses
    assert bus.name == "127.0.0.1" and bus.url == parse_bus_url(url)
    assert [(d.name, d.address) for d in bus.devices] == [
        ("watlow-pm-3", 3),
        ("servomex-4100-10", 10),
    ]


def test_nobody_answering_exits_1_with_a_comment_only_snippet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with served("rtu", [SimulatedDevice(address=2, profile="watlow_pm", dead=True)]) as url:
        assert scan.main([url, "--units", "1-3", "--timeout", "0.05"]) == 1
    out = capsys.readouterr()
    assert tomllib.loads(out.out) == {}
    assert "unit 2: no answer" in out.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://x"], "is not a bus URL"),
        (["sim://"], "is served in process"),
        (["tcp://127.0.0.1:{port}"], "cannot connect to 127.0.0.1:{port}"),
        (["rtu:///dev/no-such-port?baudrate=9600"], "cannot open the serial port"),
        (["tcp://127.0.0.1:{port}", "--units", "0-3"], "not within the unit ids 1-247"),
        (["tcp://127.0.0.1:{port}", "--timeout", "-1"], "not a number of seconds"),
    ],
)
def test_bad_urls_and_unreachable_buses_are_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (port,) = free_ports(1)
    assert scan.main([a.format(port=port) for a in args]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1 and message.format(port=port) in out.err
