"""A minimal Modbus RTU slave, written from the Modbus specifications (Modbus Application
Protocol V1.1b3 and Modbus over Serial Line V1.02), not with pymodbus: it owns the master end
of a pseudo-terminal pair (``os.openpty()``, raw mode) and a client opens the other end, its
``path``, as a serial port.

- Frames end with a silence (3.5 character times, at least 1.75 ms; 5 ms here, a pty has no
  baud rate). A frame whose CRC-16/MODBUS is wrong, or that is addressed to a unit id this
  line does not play, is dropped unanswered, as on a real line; broadcast (0) is never
  answered.
- FC03 (read holding registers) and FC04 (read input registers): quantity 1-125 or exception
  3 (illegal data value); every register of the read must exist or exception 2 (illegal data
  address). Any other function code: exception 1 (illegal function).
- Each unit answers ``delay_s`` after the request, on a timer: a unit slower than the client's
  timeout answers late, into whatever the client is doing then.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import time
import tty
from collections.abc import Mapping
from dataclasses import dataclass, field

FRAME_SILENCE_S = 0.005
MAX_QUANTITY = 125


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS: polynomial 0xA001 (0x8005 reflected), initial 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC, low byte first (the one field of RTU sent that way)."""
    return body + struct.pack("<H", crc16(body))


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and struct.unpack("<H", frame[-2:])[0] == crc16(frame[:-2])


@dataclass
class Unit:
    """One slave on the line: its holding and input registers (address -> word) and its
    answer delay."""

    holding: Mapping[int, int] = field(default_factory=dict)
    input: Mapping[int, int] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Sent:
    """One answer put on the line: when its request ended, when it was sent, the frame."""

    requested: float
    sent: float
    frame: bytes

    @property
    def unit(self) -> int:
        return self.frame[0]


class RtuSlave:
    """Units on one pty line; ``start()`` to serve, ``stop()`` to close both ends."""

    def __init__(self, units: Mapping[int, Unit]) -> None:
        self.units = dict(units)
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.requests: list[bytes] = []  # every frame received, good or not
        self.dropped: list[bytes] = []  # frames with a bad CRC or too short
        self.sent: list[Sent] = []
        self._write = threading.Lock()
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        self._thread = threading.Thread(target=self._serve, name="rtu-slave", daemon=True)

    def start(self) -> RtuSlave:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._timers:
            t.cancel()
        self._thread.join(timeout=2)
        with self._write:
            for fd in (self.master, self.slave):
                os.close(fd)
            self.master = self.slave = -1

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], FRAME_SILENCE_S if buffer else 0.05)
            if ready:
                try:
                    buffer += os.read(self.master, 512)
                except OSError:  # the client end closed: wait for it to open again
                    time.sleep(0.01)
                continue
            if buffer:  # a silence after bytes: that was a frame
                self._frame(buffer, time.monotonic())
                buffer = b""

    def _frame(self, frame: bytes, ended: float) -> None:
        self.requests.append(frame)
        if not crc_ok(frame):
            self.dropped.append(frame)
            return
        unit = self.units.get(frame[0])
        if unit is None or frame[0] == 0:
            return
        answer = with_crc(self.answer(unit, frame[:-2]))
        if unit.delay_s > 0:
            timer = threading.Timer(unit.delay_s, self._send, (ended, answer))
            self._timers.append(timer)
            timer.start()
        else:
            self._send(ended, answer)

    @staticmethod
    def answer(unit: Unit, request: bytes) -> bytes:
        """The response PDU (with the unit id, without CRC) to ``request`` (same, no CRC)."""
        address, function = request[0], request[1]
        if function not in (3, 4):
            return bytes([address, function | 0x80, 1])
        if len(request) != 6:
            return bytes([address, function | 0x80, 3])
        start, quantity = struct.unpack(">HH", request[2:6])
        if not 1 <= quantity <= MAX_QUANTITY:
            return bytes([address, function | 0x80, 3])
        table = unit.holding if function == 3 else unit.input
        wanted = range(start, start + quantity)
        if any(a not in table for a in wanted):
            return bytes([address, function | 0x80, 2])
        data = struct.pack(f">{quantity}H", *(table[a] for a in wanted))
        return bytes([address, function, len(data)]) + data

    def _send(self, requested: float, frame: bytes) -> None:
        with self._write:
            if self.master < 0:
                return
            os.write(self.master, frame)
            self.sent.append(Sent(requested, time.monotonic(), frame))
