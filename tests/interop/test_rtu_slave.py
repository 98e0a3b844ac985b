"""The flow over Modbus RTU against a slave written in the test from the Modbus specs (not
pymodbus) on a pty pair: a PM read with no override; and on one line a unit answering 0.1 s
after the client's 0.25 s timeout beside a unit answering at once: no late answer is ever
taken for another request (unit id, function code, byte count and CRC are what the client
has to tell them apart)."""

from __future__ import annotations

import os
import select
import struct
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.rig import check_rows, pm_unit, run_flow
from tests.interop.rtuslave import RtuSlave, Unit, crc16, crc_ok, with_crc
from tests.interop.watlow import CELSIUS, FAHRENHEIT, HIGH_LOW, LOW_HIGH, PM


@pytest.fixture
def slave() -> Iterator:
    started: list[RtuSlave] = []

    def start(units: dict[int, Unit]) -> RtuSlave:
        started.append(RtuSlave(units).start())
        return started[-1]

    yield start
    for s in started:
        s.stop()


def ask(path: str, request: bytes, wait_s: float = 0.3) -> bytes:
    """Send ``request`` as a client would and return what came back within ``wait_s``."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        os.write(fd, request)
        answer, deadline = b"", time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            if select.select([fd], [], [], left)[0]:
                answer += os.read(fd, 512)
        return answer
    finally:
        os.close(fd)


def test_crc_of_the_spec_example() -> None:
    # Modbus over Serial Line V1.02, 6.2.2: 01 03 00 00 00 0A is followed by C5 CD.
    frame = with_crc(bytes.fromhex("01030000000A"))
    assert frame.hex(" ") == "01 03 00 00 00 0a c5 cd"
    assert crc16(frame) == 0  # a frame with its CRC leaves no remainder
    assert crc_ok(frame) and not crc_ok(frame[:-1] + b"\0")


def test_the_slave_answers_as_the_spec_says(slave) -> None:
    line = slave({1: Unit(holding={10: 0x1234, 11: 0xABCD}, input={0: 7})})
    read = with_crc(struct.pack(">BBHH", 1, 3, 10, 2))
    assert ask(line.path, read) == with_crc(bytes.fromhex("010304") + bytes.fromhex("1234ABCD"))
    assert ask(line.path, with_crc(struct.pack(">BBHH", 1, 4, 0, 1))) == with_crc(
        bytes.fromhex("01040200 07")
    )
    assert ask(line.path, with_crc(struct.pack(">BBHH", 1, 3, 11, 2))) == with_crc(b"\x01\x83\x02")
    assert ask(line.path, with_crc(struct.pack(">BBHH", 1, 3, 10, 126))) == with_crc(
        b"\x01\x83\x03"
    )
    assert ask(line.path, with_crc(struct.pack(">BBHH", 1, 6, 10, 1))) == with_crc(b"\x01\x86\x01")
    assert ask(line.path, read[:-1] + bytes([read[-1] ^ 1]), 0.1) == b""  # bad CRC: silence
    assert ask(line.path, with_crc(struct.pack(">BBHH", 2, 3, 10, 2)), 0.1) == b""  # not here
    assert len(line.dropped) == 1


def rtu_bus(path: str, units: dict[int, str], timeout_s: float = 0.5, name: str = "line") -> str:
    devices = "".join(
        f'\n  [[bus.device]]\n  name = "{device}"\n  profile = "watlow_pm"\n  address = {u}\n'
        for u, device in units.items()
    )
    url = f"rtu://{path}?baudrate=115200"
    return f'[[bus]]\nname = "{name}"\nurl = "{url}"\ntimeout_s = {timeout_s}\n{devices}'


PMS = [PM(word_order=LOW_HIGH, units=FAHRENHEIT), PM(word_order=HIGH_LOW, units=CELSIUS)]


@pytest.fixture(scope="module")
def pm_lines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict], list]]:
    """One run of the flow with a line per PM of PMS (its own slave on its own pty, the PM
    at unit 7 as device ``pm-<i>``, no override): the rows and the slaves."""
    lines = [RtuSlave({7: pm_unit(pm)}).start() for pm in PMS]
    try:
        text = "\n".join(
            rtu_bus(s.path, {7: f"pm-{i}"}, name=f"line-{i}") for i, s in enumerate(lines)
        )
        yield run_flow(tmp_path_factory.mktemp("rtu"), text), lines
    finally:
        for line in lines:
            line.stop()


@pytest.mark.parametrize("pm", PMS, ids=str)
def test_flow_reads_a_pm_on_the_hand_written_slave(pm_lines, pm: PM) -> None:
    rows, lines = pm_lines
    i = PMS.index(pm)
    check_rows(rows, pm, f"pm-{i}")
    assert {r["bus"] for r in rows if r["device"] == f"pm-{i}"} == {f"line-{i}"}
    assert not lines[i].dropped  # every request the client sent had a good CRC


# (unit 2's delay, tick rate, duration, ticks): at 0.15 s a tick of unit 2's reads takes ~1 s.
LATE_CASES = {"unit 2 at once": (0.0, 2.0, 2.0, 4), "unit 2 after 0.15 s": (0.15, 0.8, 1.5, 2)}


@pytest.mark.parametrize("case", LATE_CASES)
def test_a_late_answer_is_never_taken_for_another_request(slave, tmp_path: Path, case: str) -> None:
    """Unit 1 answers 0.35 s after each request (0.1 s after the client's 0.25 s timeout),
    unit 2 at once (or 0.15 s, so unit 1's late answer lands while the client waits for
    unit 2's), with other values: every tick stores unit 2's own values, and unit 1 only
    as error rows, never a value."""
    quick_s, rate_hz, duration_s, ticks = LATE_CASES[case]
    slow = PM(word_order=LOW_HIGH, units=CELSIUS, offset=500.0)
    quick = PM(word_order=LOW_HIGH, units=CELSIUS, offset=100.0)
    line = slave({1: pm_unit(slow, delay_s=0.35), 2: pm_unit(quick, delay_s=quick_s)})
    text = rtu_bus(line.path, {1: "slow", 2: "quick"}, timeout_s=0.25)
    rows = run_flow(tmp_path, text, rate_hz=rate_hz, duration_s=duration_s)
    slow_rows = [r for r in rows if r["device"] == "slow"]
    assert slow_rows and all(r["value"] is None for r in slow_rows)
    # Its timeouts, then the rest of its tick not sent, then backoff: no other error (a
    # late answer taken for another request would be a value, a bad frame or bad response).
    assert {r["error"].split(":")[0] for r in slow_rows} <= {"timeout", "backoff"}
    timed_out = {r["requested_at"] for r in slow_rows if r["error"].startswith("timeout")}
    assert len(timed_out) >= 2
    check_rows(rows, quick, "quick", min_ticks=ticks)
    late = [s for s in line.sent if s.unit == 1]
    assert len(late) >= 2  # unit 1's answers did go out on the line, late
    assert all(s.sent - s.requested >= 0.325 for s in late)
    if quick_s:  # some late answer of unit 1 went out while unit 2's answer was awaited
        waits = [(s.requested, s.sent) for s in line.sent if s.unit == 2]
        assert any(a < s.sent < b for s in late for a, b in waits)
    assert not line.dropped
