"""The simulator's pymodbus servers, answering each request under its own ids.

pymodbus 3.16's ``ServerRequestHandler`` answers a delayed request with the ids of the
request its connection received last; :class:`RequestHandler` does not (see its docstring).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer, ModbusUdpServer
from pymodbus.server.requesthandler import ServerRequestHandler

__all__ = ["REQUEST", "RequestHandler", "SerialServer", "TcpServer", "UdpServer"]

log = logging.getLogger(__name__)

# The request being answered, for the device's action: pymodbus gives an action of a bit
# read (FC01/FC02) the registers its bits span, not how many bits were asked.
REQUEST: contextvars.ContextVar[ModbusPDU | None] = contextvars.ContextVar("REQUEST", default=None)


class RequestHandler(ServerRequestHandler):
    """pymodbus's handler of one connection, answering each request under its own ids.

    pymodbus 3.16's ``ServerRequestHandler.handle_request`` awaits the datastore (where a
    simulated device waits out its ``delay_s``) and then stamps the response with the
    transaction id and unit id of ``self.last_pdu`` and sends it to ``self.last_addr``: the
    connection's latest request, which ``callback_data`` replaces with every frame received.
    A request arriving while a delayed one was being answered made the delayed answer go out
    under the new request's ids, so the client took one device's values for another's (the
    cross-talk of issue 17). Here each request is taken from ``last_pdu`` as it is received,
    in order, and answered under its own ids and to its own address.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._received: collections.deque[tuple[ModbusPDU, tuple | None]] = collections.deque()

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        used = super().callback_data(data, addr)  # schedules handle_later once per request
        if self.last_pdu:
            self._received.append((self.last_pdu, self.last_addr))
        return used

    def handle_later(self) -> None:
        if self._received:
            pdu, addr = self._received.popleft()
            task = self.loop.create_task(self._answer(pdu, addr))
            _ANSWERING.add(task)
            task.add_done_callback(_ANSWERING.discard)

    async def _answer(self, pdu: ModbusPDU, addr: tuple | None) -> None:
        REQUEST.set(pdu)  # this task's own context
        try:
            response = await pdu.datastore_update(self.server.context, pdu.dev_id)
        except NoSuchIdException:
            return  # a unit id nobody simulates, or a dead device: no answer
        except Exception:
            log.exception("simulated device %d failed a request", pdu.dev_id)
            response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id, response.dev_id = pdu.transaction_id, pdu.dev_id
        self.server_send(response, addr)


_ANSWERING: set[asyncio.Task[None]] = set()  # requests being answered, kept from the GC


class _Handled:
    """A pymodbus server whose connections are handled by :class:`RequestHandler`."""

    def callback_new_connection(self) -> ServerRequestHandler:
        return RequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)  # type: ignore[attr-defined]


class TcpServer(_Handled, ModbusTcpServer):
    """pymodbus's Modbus TCP server, each request answered under its own ids."""


class UdpServer(_Handled, ModbusUdpServer):
    """pymodbus's Modbus UDP server (one handler for every datagram, each answered to the
    address it came from), each request answered under its own ids."""


class SerialServer(_Handled, ModbusSerialServer):
    """pymodbus's serial server, each request answered under its own ids."""
