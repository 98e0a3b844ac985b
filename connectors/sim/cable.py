"""The simulated RS-485 cable between the poller's pty and the simulator's, with wire time.

Two pseudo-terminal pairs are joined in process: the server owns one slave end, the client
opens the other, and both sides are real serial ports. The line carries Modbus RTU frames or
Modbus ASCII ones (7-bit characters, delimited by ':' and CR LF rather than by silence).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import tty
from collections.abc import Mapping

from pymodbus.framer import FramerAscii, FramerRTU

from connectors.sim.device import DeviceState
from connectors.transport import char_time_s, frame_gap_s

__all__ = ["Cable", "open_pty"]


def open_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


# The event loop's timers wake up to a millisecond late (epoll counts whole milliseconds),
# which on a 19200-baud line is two characters. A line that keeps wire time is woken this
# much early and waits out the rest itself, so a frame arrives when its last character has
# crossed, not up to a millisecond after.
_EARLY_S = 0.0012


class Line:
    """One direction of the simulated cable: writes each chunk to ``fd`` at its time, in order.

    With ``precise``, each chunk is written at its time to within microseconds (the loop is
    held for up to :data:`_EARLY_S` before each one); without, up to a millisecond later.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, *, precise: bool = False) -> None:
        self.loop, self.fd = loop, fd
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.early = _EARLY_S if precise else 0.0

    def send(self, data: bytes, at: float) -> None:
        if not self.queue and at <= self.loop.time():
            self._write(data)
            return
        self.queue.append((at, data))
        if self.timer is None:
            self.timer = self.loop.call_at(self.queue[0][0] - self.early, self._flush)

    def _flush(self) -> None:
        self.timer = None
        while self.queue and self.queue[0][0] <= self.loop.time() + self.early:
            at, data = self.queue.popleft()
            while self.loop.time() < at:  # see _EARLY_S
                pass
            self._write(data)
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0] - self.early, self._flush)

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the other end is gone: the bytes are lost
            os.write(self.fd, data)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.queue.clear()


class Cable:
    """The null-modem cable joining the client's pty and the server's, run on the event loop.

    Without wire time, bytes pass at once. With it, an answer reaches the client when its
    last character has crossed the line (11 bits each at the bus's baud rate), and starts
    no earlier than ``turnaround_s`` after the device saw the request: its last character
    plus 3.5 character times of end-of-frame silence. (The server is handed the request at
    once, so its own processing hides inside that time instead of adding to it.) The
    silence after an answer is the master's to keep. A device with ``garbage`` set never
    sees its requests: the cable answers them with a response-shaped frame whose CRC is
    wrong. An ``ascii`` line carries 10-bit characters and no end-of-frame silence (its frames
    end with CR LF), and its garbage is a frame whose LRC is wrong.
    """

    def __init__(
        self,
        devices: Mapping[int, DeviceState],
        client_fd: int,
        server_fd: int,
        *,
        baudrate: int,
        wire_time: bool,
        turnaround_s: float,
        ascii: bool = False,
    ) -> None:
        self.devices, self.turnaround_s, self.ascii = devices, turnaround_s, ascii
        self.loop = asyncio.get_running_loop()
        self.client_fd, self.server_fd = client_fd, server_fd
        self.to_client = Line(self.loop, client_fd, precise=wire_time)
        self.to_server = Line(self.loop, server_fd)
        self.char_s = char_time_s(baudrate, 7 if ascii else 8) if wire_time else 0.0
        self.gap_s = frame_gap_s(baudrate) if wire_time and not ascii else 0.0
        self.busy_until = 0.0  # when the line falls silent (loop time)
        self.request_seen = 0.0  # when the device saw the last request
        for fd, handler in ((client_fd, self._from_client), (server_fd, self._from_server)):
            os.set_blocking(fd, False)
            self.loop.add_reader(fd, handler)

    def _read(self, fd: int) -> bytes:
        try:
            return os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:  # the other side closed; nothing more to carry
            self.loop.remove_reader(fd)
            return b""

    def _from_client(self) -> None:
        data = self._read(self.client_fd)
        if not data:
            return
        end = max(self.loop.time(), self.busy_until) + len(data) * self.char_s
        self.busy_until = end
        self.request_seen = end + self.gap_s
        request = _ascii_bytes(data) if self.ascii else data
        state = self.devices.get(request[0]) if request else None
        if state is not None and state.spec.garbage and _too_long(request, state.spec.max_read):
            answer = _bad_crc_answer(request)
            self._answer(_bad_lrc_frame(answer[:-2]) if self.ascii else answer)
        else:  # at once: the server's own work overlaps the wire time; its answer waits
            self.to_server.send(data, 0.0)

    def _from_server(self) -> None:
        data = self._read(self.server_fd)
        if data:
            self._answer(data)

    def _answer(self, data: bytes) -> None:
        now = self.loop.time()
        start = max(now, self.busy_until, self.request_seen + self.turnaround_s)
        self.busy_until = start + len(data) * self.char_s
        self.to_client.send(data, self.busy_until)

    def close(self) -> None:
        for fd in (self.client_fd, self.server_fd):
            self.loop.remove_reader(fd)
        self.to_client.close()
        self.to_server.close()


def _too_long(request: bytes, max_read: int | None) -> bool:
    """Whether a read ``request`` (unit id and PDU first) asks for more than ``max_read``
    registers (any request, when there is no such bound)."""
    if max_read is None or len(request) < 6:
        return True
    return int.from_bytes(request[4:6], "big") > max_read


def _ascii_bytes(data: bytes) -> bytes:
    """The unit id and PDU an ASCII frame (``:`` hex LRC CR LF) carries (b"" if not one)."""
    try:
        return bytes.fromhex(data.strip()[1:-2].decode("ascii")) if data[:1] == b":" else b""
    except ValueError:
        return b""


def _bad_lrc_frame(body: bytes) -> bytes:
    """``body`` (unit id and PDU) as an ASCII frame whose LRC is wrong."""
    lrc = (FramerAscii.compute_LRC(body) ^ 0xFF) & 0xFF
    return b":" + f"{body.hex()}{lrc:02x}".upper().encode() + b"\r\n"


def _bad_crc_answer(request: bytes) -> bytes:
    """A read response to ``request`` (FC03/04) of the right length, with a wrong CRC."""
    unit, function = request[0], request[1] if len(request) > 1 else 3
    count = int.from_bytes(request[4:6], "big") if len(request) >= 6 else 1
    frame = bytes([unit, function, 2 * count]) + b"\xa5" * (2 * count)
    return frame + (FramerRTU.compute_CRC(frame) ^ 0xFFFF).to_bytes(2, "big")
