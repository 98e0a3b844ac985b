"""Bus URL parsing and the client each URL opens."""

from __future__ import annotations

import asyncio

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from connectors.transport import BusUrl, open_client, parse_bus_url


@pytest.mark.parametrize(
    ("url", "expected", "protocol"),
    [
        ("tcp://192.0.2.7:1502", BusUrl(scheme="tcp", host="192.0.2.7", port=1502), "modbus-tcp"),
        ("tcp://gateway", BusUrl(scheme="tcp", host="gateway", port=502), "modbus-tcp"),
        (
            "rtu+tcp://192.0.2.8:4001",
            BusUrl(scheme="rtu+tcp", host="192.0.2.8", port=4001),
            "modbus-rtu-over-tcp",
        ),
        (
            "rtu:///dev/ttyUSB0?baudrate=9600&parity=e&stopbits=2",
            BusUrl(scheme="rtu", path="/dev/ttyUSB0", baudrate=9600, parity="E", stopbits=2),
            "modbus-rtu",
        ),
        ("rtu://COM3", BusUrl(scheme="rtu", path="COM3"), "modbus-rtu"),
        ("sim://", BusUrl(scheme="sim", host="local", port=0), "modbus-sim"),
    ],
)
def test_parse(url: str, expected: BusUrl, protocol: str) -> None:
    bus = parse_bus_url(url)
    assert bus == expected
    assert bus.protocol == protocol
    assert parse_bus_url(str(bus)) == bus


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://x:1", "is not a bus URL"),
        ("tcp://:502", "names no host"),
        ("tcp://x:port", "the port is not a number"),
        ("tcp://x:502/path", "is only HOST[:PORT]"),
        ("rtu://", "names no serial port"),
        ("rtu:///dev/ttyS0?baudrate=fast", "are integers"),
        ("rtu:///dev/ttyS0?parity=X", "parity 'X' is not N, E or O"),
        ("rtu:///dev/ttyS0?stopbits=3", "stopbits 1 or 2"),
        ("rtu:///dev/ttyS0?speed=9600", "unknown option 'speed'"),
    ],
)
def test_parse_errors(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_bus_url(url)


def test_open_client_kinds() -> None:
    asyncio.run(_open_client_kinds())


async def _open_client_kinds() -> None:
    tcp = open_client(parse_bus_url("tcp://127.0.0.1:1502"), timeout=0.5, retries=2)
    assert isinstance(tcp, AsyncModbusTcpClient)
    assert tcp.ctx.comm_params.timeout_connect == 0.5
    assert tcp.ctx.retries == 2
    rtu = open_client(parse_bus_url("rtu:///dev/null?baudrate=38400"), timeout=1, retries=0)
    assert isinstance(rtu, AsyncModbusSerialClient)
    assert rtu.ctx.comm_params.baudrate == 38400
    gw = open_client(parse_bus_url("rtu+tcp://127.0.0.1:4001"), timeout=1, retries=0)
    assert isinstance(gw, AsyncModbusTcpClient)
    assert type(gw.ctx.framer).__name__ == "FramerRTU"
