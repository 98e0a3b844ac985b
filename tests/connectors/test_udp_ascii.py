"""Modbus UDP and Modbus ASCII buses: their URLs, their clients, their timing, and simulated
buses of each polled end to end and scanned, held against the same devices over TCP."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusUdpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerAscii

from connectors import scan
from connectors.codec import decode
from connectors.link import BusLink
from connectors.registers import load_profile
from connectors.sample import Sample
from connectors.sim import BusSimulator, SimulatedDevice
from connectors.transport import (
    BadFrameError,
    BusUrl,
    ascii_chars,
    char_time_s,
    open_client,
    parse_bus_url,
    read_failure,
    set_timing,
    wire_time_s,
)
from flows.config import ConfigError, parse_config
from flows.rows import to_row
from tests.conftest import run_poller, sim_bus

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DEVICES = [
    SimulatedDevice(address=1, profile="watlow_pm"),
    SimulatedDevice(address=2, profile="servomex_4100"),
]


@pytest.mark.parametrize(
    ("url", "expected", "protocol"),
    [
        ("udp://192.0.2.9", BusUrl(scheme="udp", host="192.0.2.9", port=502), "modbus-udp"),
        ("UDP://gw-3:1502", BusUrl(scheme="udp", host="gw-3", port=1502), "modbus-udp"),
        (  # the Modbus spec's ASCII line: 7 data bits, even parity, 1 stop bit
            "ascii:///dev/ttyUSB0?baudrate=9600",
            BusUrl(scheme="ascii", path="/dev/ttyUSB0", baudrate=9600, parity="E", bytesize=7),
            "modbus-ascii",
        ),
        (
            "ascii:///dev/ttyS1?parity=n&stopbits=2&bytesize=7",
            BusUrl(scheme="ascii", path="/dev/ttyS1", parity="N", stopbits=2, bytesize=7),
            "modbus-ascii",
        ),
        (
            "ascii://COM4?bytesize=8&parity=N",
            BusUrl(scheme="ascii", path="COM4", parity="N", bytesize=8),
            "modbus-ascii",
        ),
    ],
)
def test_parse(url: str, expected: BusUrl, protocol: str) -> None:
    bus = parse_bus_url(url)
    assert bus == expected and bus.protocol == protocol
    assert bus.serial == (bus.scheme == "ascii")
    assert parse_bus_url(str(bus)) == bus


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("udp://:502", "'udp://:502' names no host"),
        ("udp://gw:502/1", "'udp://gw:502/1': a udp:// URL is only HOST[:PORT]"),
        ("udp://gw:70000", "'udp://gw:70000': the port is not a number from 0 to 65535"),
        ("ascii://", "'ascii://' names no serial port (e.g. ascii:///dev/ttyUSB0)"),
        ("ascii:///dev/ttyS0?baud=9600", "unknown option 'baud'"),
        ("ascii:///dev/ttyS0?bytesize=6", "baudrate > 0, stopbits 1 or 2, bytesize 7 or 8"),
        ("ascii:///dev/ttyS0?parity=M", "parity 'M' is not N, E or O"),
    ],
)
def test_parse_errors(url: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_bus_url(url)
    assert message in str(info.value) and "\n" not in str(info.value)


def _config(url: str, simulate: bool = False) -> dict[str, Any]:
    device = {"name": "d", "address": 1, "profile": "watlow_pm"}
    return {"bus": [{"name": "b", "url": url, "simulate": simulate, "device": [device]}]}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("udp://gw-1:0", "bus[0].url: 'udp://gw-1:0': port 0 is for simulated buses"),
        ("udp://-gw-:502", "bus[0].url: 'udp://-gw-:502': the host '-gw-' is not a host name"),
        ("udp://u:p@gw:502", "bus[0].url: 'udp://u:p@gw:502': a bus URL takes no user or"),
        ("ascii://", "bus[0].url: 'ascii://' names no serial port"),
    ],
)
def test_config_errors_are_one_line(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_config(url))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_config_takes_udp_and_ascii_buses() -> None:
    (udp,) = parse_config(_config("udp://192.0.2.9")).buses
    (line,) = parse_config(_config("ascii:///dev/ttyUSB1?baudrate=9600")).buses
    assert (udp.url.port, udp.url.protocol) == (502, "modbus-udp")
    assert (line.url.bytesize, line.url.parity, line.url.protocol) == (7, "E", "modbus-ascii")
    (simulated,) = parse_config(_config("udp://127.0.0.1:0", simulate=True)).buses
    assert simulated.url.port == 0


def test_clients() -> None:
    async def main() -> None:
        udp = open_client(parse_bus_url("udp://127.0.0.1:1502"), timeout=0.5, retries=2)
        assert isinstance(udp, AsyncModbusUdpClient)
        assert (udp.ctx.comm_params.timeout_connect, udp.ctx.retries) == (0.5, 2)
        line = open_client(parse_bus_url("ascii:///dev/null?baudrate=4800"), timeout=1, retries=0)
        assert isinstance(line, AsyncModbusSerialClient)
        assert isinstance(line.ctx.framer, FramerAscii)
        params = line.ctx.comm_params
        assert (params.baudrate, params.bytesize, params.parity, params.stopbits) == (
            4800, 7, "E", 1
        )  # fmt: skip

    asyncio.run(main())


@pytest.mark.parametrize(("baud", "ms"), [(9600, 70.8), (19200, 35.4)])
def test_ascii_wire_time_of_a_ten_register_read(baud: int, ms: float) -> None:
    # 17 characters of request, 11 + 4N of answer, 10 bits each (7E1), no gaps: twice the
    # characters of RTU's 13 + 2N, so about 1.5 times RTU's wire time at 10 bits a character.
    chars = ascii_chars(6) + ascii_chars(3 + 2 * 10)
    assert chars == 28 + 4 * 10
    assert chars * char_time_s(baud, 7) * 1000 == pytest.approx(ms, abs=0.06)
    rtu = wire_time_s(8, baud) + wire_time_s(5 + 2 * 10, baud)
    assert 1.5 < chars * char_time_s(baud, 7) / rtu < 1.6
    assert chars * char_time_s(baud, 8) / rtu == pytest.approx(1.7, abs=0.05)


def test_simulated_ascii_line_keeps_wire_time_and_flags_a_bad_lrc() -> None:
    baud = 9600

    async def main() -> tuple[float, Exception | None]:
        sim = BusSimulator("ascii", DEVICES[1:], baudrate=baud, wire_time=True)
        client = open_client(parse_bus_url(await sim.start()), timeout=1.0, retries=0)
        try:
            assert await client.connect()
            started = time.monotonic()
            response = await client.read_input_registers(0, count=10, device_id=2)
            took = time.monotonic() - started
            assert not response.isError() and len(response.registers) == 10
            sim.set_fault(2, garbage=True)
            try:
                await client.read_input_registers(0, count=2, device_id=2)
            except BadFrameError as exc:
                return took, exc
            return took, None
        finally:
            client.close()
            await sim.stop()

    took, bad = asyncio.run(main())
    floor = (ascii_chars(6) + ascii_chars(3 + 20)) * char_time_s(baud, 7)
    assert floor - 1e-4 <= took < floor + 0.05
    assert isinstance(bad, BadFrameError) and bad.text.startswith("LRC check failed")


def _values_served(unit: int, profile: str, served: dict[Any, set[tuple[int, ...]]]) -> dict:
    """parameter -> every value ``unit`` served for it, decoded from the words it answered."""
    values: dict[str, set[object]] = {}
    for p in load_profile(profile).parameters:
        for (table, address, count), answers in served.items():
            at = p.address - address
            if p.table == table and at >= 0 and at + p.count <= count:
                words = (w[at : at + p.count] for w in answers)
                values.setdefault(p.name, set()).update(decode(p.codec, w) for w in words)
    return values


def _poll(kind: str, ticks: int) -> tuple[list[list[Sample]], dict[int, dict[str, set[object]]]]:
    """Poll DEVICES on a simulated ``kind`` bus: each tick's samples, and per unit what each
    parameter's served values were."""
    bus = sim_bus(kind, kind, DEVICES)
    link = BusLink(bus)
    assert link.simulator is not None
    for state in link.simulator.devices.values():
        state.served = {}
    out = asyncio.run(run_poller(bus, link, rate_hz=10, ticks=ticks))
    served = {
        unit: _values_served(unit, state.spec.profile, state.served or {})
        for unit, state in link.simulator.devices.items()
    }
    return [samples for samples, _ in out], served


def test_udp_and_ascii_buses_store_one_row_per_parameter_per_tick_as_tcp_does() -> None:
    ticks = 3
    runs = {kind: _poll(kind, ticks) for kind in ("tcp", "udp", "ascii")}
    expected = Counter(
        (f"{{}}-{d.address}", p.name) for d in DEVICES for p in load_profile(d.profile).parameters
    )
    static: dict[tuple[str, str], object] = {}
    for kind, (per_tick, served) in runs.items():
        assert len(per_tick) == ticks, kind
        for samples in per_tick:
            rows = [to_row(s) for s in samples]
            assert all(r["error"] is None for r in rows), [r["error"] for r in rows]
            assert {r["protocol"] for r in rows} == {f"modbus-{kind}"}
            keys = Counter((s.device.replace(kind, "{}", 1), s.parameter) for s in samples)
            assert keys == expected, kind  # exactly one row per parameter per tick
            for s in samples:  # each value is one its device served, decoded alike
                assert s.value in served[s.address][s.parameter], (kind, s.parameter, s.value)
        if kind == "tcp":  # what did not move over TCP reads the same over UDP and ASCII
            seen: dict[tuple[int, str], set[object]] = {}
            for s in (s for samples in per_tick for s in samples):
                seen.setdefault((s.address, s.parameter), set()).add((s.value, s.text))
            # Static: one value over TCP, and the one value each run's device served (a
            # slowly moving value may hold still over TCP's ticks and move before UDP's).
            static = {
                (unit, name): next(iter(v))
                for (unit, name), v in seen.items()
                if len(v) == 1
                and all(
                    runs[k][1][unit][name] == {next(iter(v))[0]} for k in ("tcp", "udp", "ascii")
                )
            }
            assert len(static) >= 10
        else:
            for s in (s for samples in per_tick for s in samples):
                if (s.address, s.parameter) in static:
                    assert (s.value, s.text) == static[(s.address, s.parameter)], s.parameter


@pytest.mark.parametrize("kind", ["udp", "ascii"])
def test_scan(kind: str) -> None:
    async def main() -> tuple[str, list[Any], list[str]]:
        sim = BusSimulator(kind, [DEVICES[0], SimulatedDevice(address=3, profile="servomex_4100")])
        url = await sim.start()
        lines: list[str] = []
        try:
            found = await scan.scan(
                parse_bus_url(url), units=range(1, 5), timeout_s=0.1, progress=lines.append
            )
        finally:
            await sim.stop()
        return url, found, lines

    url, found, lines = asyncio.run(main())
    assert [(f.address, f.profile) for f in found] == [(1, "watlow_pm"), (3, "servomex_4100")]
    assert "unit 2: no answer" in lines and "unit 4: no answer" in lines
    (bus,) = parse_config(tomllib.loads(scan.snippet(parse_bus_url(url), url, found))).buses
    assert bus.url == parse_bus_url(url) and [d.address for d in bus.devices] == [1, 3]


class _Lossy(asyncio.DatagramProtocol):
    """A UDP relay to ``server`` that loses every request ``lose(n)`` picks (n from 0) and
    relays the rest, and the answers back to whoever sent the last request."""

    def __init__(self, server: tuple[str, int], lose: Callable[[int], bool]) -> None:
        self.server, self.lose, self.requests = server, lose, 0
        self.transport: asyncio.DatagramTransport | None = None
        self.client: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if addr == self.server:
            if self.client is not None:
                self.transport.sendto(data, self.client)
            return
        n, self.requests, self.client = self.requests, self.requests + 1, addr
        if not self.lose(n):
            self.transport.sendto(data, self.server)


def test_a_lost_udp_datagram_is_a_timeout_and_a_retry_sends_it_again() -> None:
    async def main() -> tuple[list[float], tuple[str, str], int]:
        sim = BusSimulator("udp", DEVICES[:1])
        url = parse_bus_url(await sim.start())
        relay = _Lossy((url.host, url.port), lambda n: n % 2 == 0)  # every first try is lost
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: relay, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        client = open_client(parse_bus_url(f"udp://127.0.0.1:{port}"), timeout=0.1, retries=1)
        took = []
        try:
            assert await client.connect()
            for _ in range(3):
                started = time.monotonic()
                response = await client.read_holding_registers(360, count=2, device_id=1)
                took.append(time.monotonic() - started)
                assert not response.isError() and len(response.registers) == 2
            set_timing(client, timeout=0.1, retries=0)
            try:
                await client.read_holding_registers(360, count=2, device_id=1)
            except ModbusException as exc:
                failure = read_failure(exc)
            else:
                raise AssertionError("a lost datagram was answered")
        finally:
            client.close()
            transport.close()
            await sim.stop()
        return took, (failure[0].name, failure[1]), relay.requests

    took, failure, requests = asyncio.run(main())
    assert requests == 7  # three reads sent twice each, the last once: lost, no retry
    assert all(0.1 <= t < 0.3 for t in took)  # one timeout, then the retry's answer
    assert failure == ("TIMEOUT", "timeout: no response")
