"""Bus URLs and the pymodbus clients they open.

This is the only module that builds pymodbus clients, and the one place that turns what a
pymodbus read raised into an error kind and text (:func:`read_failure`). Supported URLs::

    tcp://HOST[:PORT]                       Modbus TCP (port 502 by default)
    udp://HOST[:PORT]                       Modbus UDP: MBAP frames in datagrams (port 502)
    rtu+tcp://HOST[:PORT]                   Modbus RTU framing through a TCP gateway
    rtu:///dev/ttyUSB0?baudrate=19200&parity=N&stopbits=1&bytesize=8
    ascii:///dev/ttyUSB0?baudrate=9600&parity=E&stopbits=1&bytesize=7
    sim://                                  simulated in process, no Modbus I/O (simulate = true)

A serial URL (``rtu://``, ``ascii://``) takes the same options; an ``ascii://`` line defaults
to the Modbus spec's 7 data bits, even parity, 1 stop bit (``rtu://``: 8N1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, AsyncModbusUdpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerAscii, FramerType

from connectors.sample import ErrorKind

__all__ = [
    "PROTOCOLS",
    "SERIAL",
    "BadFrameError",
    "BusUrl",
    "ascii_chars",
    "char_time_s",
    "frame_gap_s",
    "open_client",
    "parse_bus_url",
    "pending_bytes",
    "read_failure",
    "set_timing",
    "wire_time_s",
]

PROTOCOLS = {
    "tcp": "modbus-tcp",
    "udp": "modbus-udp",
    "rtu": "modbus-rtu",
    "ascii": "modbus-ascii",
    "rtu+tcp": "modbus-rtu-over-tcp",
    "sim": "modbus-sim",
}
SERIAL = ("rtu", "ascii")  # the schemes of a serial line: a path and _SERIAL_OPTIONS
_SERIAL_OPTIONS = {"baudrate", "parity", "stopbits", "bytesize"}
# What a serial URL's left-out options mean: the project's 8N1 for RTU, the Modbus spec's 7E1
# for ASCII ("Modbus over serial line" 2.5.2.1: 7 data bits, even parity by default).
_SERIAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "rtu": {"parity": "N", "bytesize": 8},
    "ascii": {"parity": "E", "bytesize": 7},
}


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
        """The row's ``protocol`` value: modbus-tcp, modbus-udp, modbus-rtu, modbus-ascii,
        modbus-rtu-over-tcp (modbus-sim for ``sim://``)."""
        return PROTOCOLS[self.scheme]

    @property
    def serial(self) -> bool:
        """Whether the bus is a serial line (``rtu://``, ``ascii://``): a path, not a host."""
        return self.scheme in SERIAL

    def __str__(self) -> str:
        if self.serial:
            return (
                f"{self.scheme}://{self.path}?baudrate={self.baudrate}&parity={self.parity}"
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
        raise ValueError(
            f"{url!r} is not a bus URL (tcp://, udp://, rtu+tcp://, rtu://, ascii:// or sim://)"
        )
    if scheme == "sim":
        return BusUrl(scheme="sim", host=parts.netloc or "local", port=0)
    if scheme in SERIAL:
        path = parts.netloc + parts.path if parts.netloc else parts.path
        if not path:
            raise ValueError(f"{url!r} names no serial port (e.g. {scheme}:///dev/ttyUSB0)")
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
        defaults = _SERIAL_DEFAULTS[scheme]
        parity = options.get("parity", defaults["parity"]).upper()
        if parity not in ("N", "E", "O"):
            raise ValueError(f"{url!r}: parity {parity!r} is not N, E or O")
        serial.setdefault("bytesize", defaults["bytesize"])
        bus = BusUrl(scheme=scheme, path=path, parity=parity, **serial)
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


def char_time_s(baudrate: int, bytesize: int = 8) -> float:
    """Seconds one serial character takes on the wire: start, ``bytesize`` data bits, parity
    or a second stop bit, stop. RTU's are 11 bits; ASCII's 10 (7 data bits, the spec's) or 11.
    """
    return (bytesize + 3) / baudrate


def frame_gap_s(baudrate: int) -> float:
    """The RTU inter-frame silence: 3.5 character times, fixed at 1.75 ms above 19200 baud."""
    return 0.00175 if baudrate > 19200 else 3.5 * char_time_s(baudrate)


def wire_time_s(n_chars: int, baudrate: int) -> float:
    """Wire time of one RTU frame of ``n_chars`` characters plus the 3.5-character gap after it.

    A read of N registers is ``wire_time_s(8, b) + wire_time_s(5 + 2 * N, b)`` plus the
    device's turnaround: 45.8 ms for N = 10 at 9600 baud, 22.9 ms at 19200.
    """
    return n_chars * char_time_s(baudrate) + frame_gap_s(baudrate)


def ascii_chars(n_bytes: int) -> int:
    """Characters of a Modbus ASCII frame carrying ``n_bytes`` of unit id and PDU: ':', two
    hex characters per byte and for the LRC, CR LF. No silence delimits it (a receiver allows
    up to 1 s between characters), so its wire time is ``ascii_chars(n) * char_time_s(b, 7)``.

    A read of N registers is ``ascii_chars(6) + ascii_chars(3 + 2 * N)`` = 28 + 4N characters
    (RTU: 13 + 2N): 70.8 ms for N = 10 at 9600 baud 7E1, 35.4 ms at 19200.
    """
    return 2 * n_bytes + 5


class BadFrameError(ModbusIOException):
    """A response that failed its CRC or could not be decoded (``text`` says which)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _check_frames(ctx: Any) -> None:
    """Make a frame that fails its CRC or does not decode fail the request in flight at
    once with BadFrameError (pymodbus drops it and waits for the timeout). The framer
    keeps its class; its ``decode`` and ``handleFrame`` are wrapped on the instance."""
    framer = ctx.framer
    decode, handle = framer.decode, framer.handleFrame

    def bad(text: str) -> None:
        future = ctx.response_future
        if not future.done():
            future.set_exception(BadFrameError(text))

    check = "LRC" if isinstance(framer, FramerAscii) else "CRC"

    def checked_decode(data: bytes) -> tuple[int, int, int, bytes]:
        used, dev_id, tid, frame = decode(data)
        if used and not frame:
            bad(f"{check} check failed on {used} bytes")
        return used, dev_id, tid, frame

    def checked_handle(data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, Any]:
        try:
            return handle(data, exp_devid, exp_tid)
        except ModbusIOException as exc:
            bad(f"undecodable response ({exc})")
            return len(data), None

    framer.decode, framer.handleFrame = checked_decode, checked_handle


def _fail_on_disconnect(ctx: Any) -> None:
    """Make a connection that closes while a request waits for its answer fail that request
    at once with ConnectionException: pymodbus leaves it waiting out its whole timeout, so a
    gateway going away mid-request would stall the bus and skip tick slots."""
    disconnected = ctx.callback_disconnected

    def checked(exc: Exception | None) -> None:
        disconnected(exc)
        future = ctx.response_future
        if not future.done():
            # "not connected": the poller's text for it is "connection lost".
            future.set_exception(ConnectionException(f"not connected: closed ({exc or 'EOF'})"))

    ctx.callback_disconnected = checked


def pending_bytes(client: object) -> int:
    """Bytes received since the last request that formed no frame (0 for other clients)."""
    ctx = getattr(client, "ctx", None)
    return len(getattr(ctx, "recv_buffer", b"") or b"")


def set_timing(client: object, *, timeout: float, retries: int) -> None:
    """Set the response timeout and retries of ``client`` for the requests that follow.

    Works on a pymodbus async client (its transaction manager's settings) and on any
    client with ``timeout`` and ``retries`` attributes (the simulator's in-process one).
    """
    ctx = getattr(client, "ctx", None)
    if ctx is not None:
        ctx.comm_params.timeout_connect = timeout
        ctx.retries = retries
    else:
        client.timeout = timeout  # type: ignore[attr-defined]
        client.retries = retries  # type: ignore[attr-defined]


def _serial_client(bus: BusUrl, common: dict[str, Any]) -> ModbusBaseClient:
    return AsyncModbusSerialClient(
        bus.path,
        framer=FramerType.ASCII if bus.scheme == "ascii" else FramerType.RTU,
        baudrate=bus.baudrate,
        parity=bus.parity,
        stopbits=bus.stopbits,
        bytesize=bus.bytesize,
        **common,
    )


def _tcp_client(bus: BusUrl, common: dict[str, Any]) -> ModbusBaseClient:
    return AsyncModbusTcpClient(bus.host, port=bus.port, framer=FramerType.SOCKET, **common)


def _udp_client(bus: BusUrl, common: dict[str, Any]) -> ModbusBaseClient:
    return AsyncModbusUdpClient(bus.host, port=bus.port, framer=FramerType.SOCKET, **common)


def _rtu_over_tcp_client(bus: BusUrl, common: dict[str, Any]) -> ModbusBaseClient:
    return AsyncModbusTcpClient(bus.host, port=bus.port, framer=FramerType.RTU, **common)


# Scheme -> its client; a new transport is one more entry.
_CLIENTS: dict[str, Callable[[BusUrl, dict[str, Any]], ModbusBaseClient]] = {
    "tcp": _tcp_client,
    "udp": _udp_client,
    "rtu+tcp": _rtu_over_tcp_client,
    "rtu": _serial_client,
    "ascii": _serial_client,
}


def open_client(bus: BusUrl, *, timeout: float, retries: int) -> ModbusBaseClient:
    """An unconnected pymodbus async client for ``bus``; ValueError for a scheme that has none
    (``sim://``, served in process by its simulator, or one unknown).

    pymodbus's own reconnect loop is off (``reconnect_delay=0``): the poller
    decides when to reconnect, so an outage becomes error rows, not a stall.
    A response frame that fails its CRC or does not decode raises BadFrameError at once, and
    a connection closed while a request waits fails it at once with ConnectionException.
    Silent devices never close the connection (pymodbus closes a TCP connection after
    ``retries + 3`` unanswered requests in a row, which four dead controllers behind one
    gateway reach in every tick): a timeout is the device's, a lost connection the bus's.
    """
    if bus.scheme == "sim":
        raise ValueError("a sim:// bus has no Modbus client: it is served by its simulator")
    build = _CLIENTS.get(bus.scheme)
    if build is None:
        raise ValueError(f"no Modbus client for a {bus.scheme}:// bus")
    common = {"timeout": timeout, "retries": retries, "reconnect_delay": 0, "name": str(bus)}
    client = build(bus, common)
    _check_frames(client.ctx)
    _fail_on_disconnect(client.ctx)
    client.set_max_no_responses(2**62)  # in effect never
    return client


# pymodbus 3.x raises a ModbusIOException whose message says this when a request's time is
# up (after its retries); the same class also reports answers from the wrong unit or
# transaction, and it carries no attribute that tells the two apart.
_NO_RESPONSE = "No response received"


def read_failure(exc: Exception) -> tuple[ErrorKind, str]:
    """The kind and the row's error text of an exception a client's read raised.

    A frame that failed its CRC or did not decode is :attr:`~ErrorKind.BAD_FRAME`; a
    connection closed or not open (pymodbus's ConnectionException) or an OSError is
    :attr:`~ErrorKind.CONNECTION_LOST`; no answer in time is :attr:`~ErrorKind.TIMEOUT`
    (``timeout: no response``); any other pymodbus failure (an answer from another unit
    or transaction) is :attr:`~ErrorKind.BAD_RESPONSE` with pymodbus's words; anything
    else :attr:`~ErrorKind.INTERNAL`. Whether the connection survived a timeout is the
    caller's to ask (the client's ``connected``).
    """
    if isinstance(exc, BadFrameError):
        return ErrorKind.BAD_FRAME, f"bad frame: {exc.text}"
    if isinstance(exc, ConnectionException):
        return ErrorKind.CONNECTION_LOST, "connection lost"
    if isinstance(exc, ModbusIOException) and _NO_RESPONSE in exc.string:
        return ErrorKind.TIMEOUT, "timeout: no response"
    if isinstance(exc, ModbusException):
        return ErrorKind.BAD_RESPONSE, str(exc).replace("Modbus Error: ", "")
    if isinstance(exc, OSError):
        return ErrorKind.CONNECTION_LOST, str(exc)
    return ErrorKind.INTERNAL, f"internal error: {exc!r}"
