"""Modbus ASCII framing held against the Modbus specification, not against pymodbus.

The worked example is Modicon's (PI-MBUS-300 rev. J, "Read Holding Registers"; the same
exchange as Modbus over Serial Line V1.02's LRC example): slave 17 (0x11) is asked for the
three holding registers 40108-40110 (PDU address 0x006B) and answers 0x022B, 0x0000, 0x0064.
In ASCII each byte is two upper-case hex characters between ':' and CR LF, after an LRC that
is the two's complement of the 8-bit sum of the address and PDU bytes.

The bytes of each frame are written here by hand (and the LRC computed by :func:`lrc`), on the
master end of a pseudo-terminal: the project's client (connectors.transport, an ``ascii://``
URL) talks to that, and the project's simulator answers a hand-built request.
"""

from __future__ import annotations

import asyncio
import os
import re

import pytest

from connectors.sim import BusSimulator, SimulatedDevice
from connectors.sim.cable import open_pty
from connectors.transport import BadFrameError, open_client, parse_bus_url

QUERY = b":1103006B00037E\r\n"
RESPONSE = b":110306022B0000006455\r\n"
_FRAME = re.compile(rb":((?:[0-9A-F]{2})+)\r\n")


def lrc(data: bytes) -> int:
    """Modbus ASCII's LRC: the 8-bit sum of ``data``, negated (two's complement)."""
    return -sum(data) & 0xFF


def frame(body: bytes) -> bytes:
    """``body`` (address and PDU) as an ASCII frame, by the spec."""
    return b":" + (body + bytes([lrc(body)])).hex().upper().encode() + b"\r\n"


def test_the_specs_example_frames() -> None:
    assert lrc(bytes.fromhex("1103006B0003")) == 0x7E
    assert frame(bytes.fromhex("1103006B0003")) == QUERY
    assert frame(bytes.fromhex("110306022B00000064")) == RESPONSE


async def _exchange(answer: bytes) -> tuple[list[bytes], object]:
    """Read 3 holding registers at 0x6B from unit 17 through an ``ascii://`` client; the far
    end of the line answers ``answer`` by hand. (what the line carried to it, the result)."""
    loop = asyncio.get_running_loop()
    master, slave, path = open_pty()
    os.set_blocking(master, False)
    received: list[bytes] = []
    buffer = bytearray()

    def carried() -> None:
        buffer.extend(os.read(master, 4096))
        while (end := buffer.find(b"\r\n")) >= 0:
            received.append(bytes(buffer[: end + 2]))
            del buffer[: end + 2]
            os.write(master, answer)

    loop.add_reader(master, carried)
    client = open_client(parse_bus_url(f"ascii://{path}?parity=N&bytesize=8"), timeout=1, retries=0)
    try:
        assert await client.connect()
        try:
            result: object = await client.read_holding_registers(0x6B, count=3, device_id=17)
        except BadFrameError as exc:
            result = exc
    finally:
        client.close()
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)
    return received, result


def test_the_client_sends_the_specs_query_and_reads_its_response() -> None:
    received, response = asyncio.run(_exchange(RESPONSE))
    assert received == [QUERY]
    assert response.registers == [0x022B, 0x0000, 0x0064]  # type: ignore[attr-defined]


def test_a_response_whose_lrc_is_wrong_is_a_bad_frame() -> None:
    wrong = RESPONSE.replace(b"55\r\n", b"56\r\n")
    _, error = asyncio.run(_exchange(wrong))
    assert isinstance(error, BadFrameError) and error.text.startswith("LRC check failed")


@pytest.mark.parametrize(("table", "function"), [("holding", 3), ("input", 4)])
def test_the_simulator_answers_a_hand_built_request_by_the_spec(table: str, function: int) -> None:
    profile, address = ("watlow_pm", 360) if table == "holding" else ("servomex_4100", 0)

    async def main() -> bytes:
        sim = BusSimulator("ascii", [SimulatedDevice(address=17, profile=profile)])
        url = parse_bus_url(await sim.start())
        fd = os.open(url.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        got = asyncio.get_running_loop().create_future()
        buffer = bytearray()

        def carried() -> None:
            buffer.extend(os.read(fd, 4096))
            if buffer.endswith(b"\r\n") and not got.done():
                got.set_result(bytes(buffer))

        asyncio.get_running_loop().add_reader(fd, carried)
        try:
            os.write(fd, frame(bytes([17, function]) + address.to_bytes(2, "big") + b"\x00\x02"))
            return await asyncio.wait_for(got, 2)
        finally:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
            await sim.stop()

    answer = asyncio.run(main())
    match = _FRAME.fullmatch(answer)
    assert match is not None, answer  # ':', upper-case hex pairs, CR LF
    data = bytes.fromhex(match[1].decode())
    assert lrc(data[:-1]) == data[-1]
    assert data[:3] == bytes([17, function, 4]) and len(data) == 3 + 4 + 1
