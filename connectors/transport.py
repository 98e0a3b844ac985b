"""Bus URLs and the pymodbus clients they open.

This is the only module that builds pymodbus clients. Supported URLs::

    tcp://HOST[:PORT]                       Modbus TCP (port 502 by default)
    rtu+tcp://HOST[:PORT]                   Modbus RTU framing through a TCP gateway
    rtu:///dev/ttyUSB0?baudrate=19200&parity=N&stopbits=1&bytesize=8
    sim://                                  simulated in process, no Modbus I/O (simulate = true)
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.framer import FramerType

__all__ = ["PROTOCOLS", "BusUrl", "open_client", "parse_bus_url"]

PROTOCOLS = {
    "tcp": "modbus-tcp",
    "rtu": "modbus-rtu",
    "rtu+tcp": "modbus-rtu-over-tcp",
    "sim": "modbus-sim",
}
_SERIAL_OPTIONS = {"baudrate", "parity", "stopbits", "bytesize"}


@dataclass(frozen=True, slots=True, kw_only=True)
class BusUrl:
    """A parsed bus URL: where the bus is and how it is framed."""

    scheme: str
    host: str = ""
    port: int = 502
    path: str = ""
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def protocol(self) -> str:
        """The row's ``protocol`` value: modbus-tcp, modbus-rtu or modbus-rtu-over-tcp."""
        return PROTOCOLS[self.scheme]

    def __str__(self) -> str:
        if self.scheme == "rtu":
            return (
                f"rtu://{self.path}?baudrate={self.baudrate}&parity={self.parity}"
                f"&stopbits={self.stopbits}&bytesize={self.bytesize}"
            )
        if self.scheme == "sim":
            return f"sim://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_bus_url(url: str) -> BusUrl:
    """Parse a bus URL; raises ValueError saying what is wrong with it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in PROTOCOLS:
        raise ValueError(f"{url!r} is not a bus URL (tcp://, rtu+tcp://, rtu:// or sim://)")
    if scheme == "sim":
        return BusUrl(scheme="sim", host=parts.netloc or "local", port=0)
    if scheme == "rtu":
        path = parts.netloc + parts.path if parts.netloc else parts.path
        if not path:
            raise ValueError(f"{url!r} names no serial port (e.g. rtu:///dev/ttyUSB0)")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(options) - _SERIAL_OPTIONS
        if unknown:
            raise ValueError(
                f"{url!r}: unknown option {sorted(unknown)[0]!r} "
                f"(known: {', '.join(sorted(_SERIAL_OPTIONS))})"
            )
        try:
            serial = {k: int(v) for k, v in options.items() if k != "parity"}
        except ValueError:
            raise ValueError(f"{url!r}: baudrate, stopbits and bytesize are integers") from None
        parity = options.get("parity", "N").upper()
        if parity not in ("N", "E", "O"):
            raise ValueError(f"{url!r}: parity {parity!r} is not N, E or O")
        bus = BusUrl(scheme="rtu", path=path, parity=parity, **serial)
        if bus.baudrate <= 0 or bus.stopbits not in (1, 2) or bus.bytesize not in (7, 8):
            raise ValueError(f"{url!r}: baudrate > 0, stopbits 1 or 2, bytesize 7 or 8")
        return bus
    if parts.query or parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: a {scheme}:// URL is only HOST[:PORT]")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    return BusUrl(scheme=scheme, host=parts.hostname, port=502 if port is None else port)


def open_client(bus: BusUrl, *, timeout: float, retries: int) -> ModbusBaseClient:
    """An unconnected pymodbus async client for ``bus``.

    pymodbus's own reconnect loop is off (``reconnect_delay=0``): the poller
    decides when to reconnect, so an outage becomes error rows, not a stall.
    """
    if bus.scheme == "sim":
        raise ValueError("a sim:// bus has no Modbus client: it is served by its simulator")
    common = {"timeout": timeout, "retries": retries, "reconnect_delay": 0, "name": str(bus)}
    if bus.scheme == "rtu":
        return AsyncModbusSerialClient(
            bus.path,
            framer=FramerType.RTU,
            baudrate=bus.baudrate,
            parity=bus.parity,
            stopbits=bus.stopbits,
            bytesize=bus.bytesize,
            **common,
        )
    framer = FramerType.SOCKET if bus.scheme == "tcp" else FramerType.RTU
    return AsyncModbusTcpClient(bus.host, port=bus.port, framer=framer, **common)
