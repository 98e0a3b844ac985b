"""The simulator's fault knobs and wire-true timing, through bare pymodbus clients."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from pymodbus.exceptions import ModbusIOException

from bench.machine import free_ports
from connectors.sim import BusSimulator
from connectors.sim import device as simdevice
from connectors.sim.device import SimulatedDevice
from connectors.transport import BadFrameError, open_client, parse_bus_url, set_timing, wire_time_s


@pytest.mark.parametrize(
    ("baud", "ms"), [(9600, 45.8), (19200, 22.9), (38400, 12.9), (115200, 6.7)]
)
def test_wire_time_of_a_ten_register_read(baud: int, ms: float) -> None:
    # DESIGN.md: (8 + 5 + 2N) characters of 11 bits plus two 3.5-character gaps.
    total = wire_time_s(8, baud) + wire_time_s(5 + 2 * 10, baud)
    assert total * 1000 == pytest.approx(ms, abs=0.06)


async def _read(url: str, unit: int, timeout: float = 0.3) -> object:
    client = open_client(parse_bus_url(url), timeout=timeout, retries=0)
    assert await client.connect()
    try:
        return await client.read_holding_registers(360, count=2, device_id=unit)
    finally:
        client.close()


def test_faults_change_while_running_and_tcp_restarts_on_its_port() -> None:
    async def main() -> None:
        sim = BusSimulator("tcp", [SimulatedDevice(address=1, profile="watlow_pm")])
        url = await sim.start()
        try:
            assert not (await _read(url, 1)).isError()
            sim.set_fault(1, dead=True)
            with pytest.raises(ModbusIOException):
                await _read(url, 1, timeout=0.1)
            sim.set_fault(1, dead=False, exception_code=4)
            assert (await _read(url, 1)).exception_code == 4
            sim.set_fault(1, exception_code=None)
            await sim.stop()
            assert await sim.start() == url  # the same port again
            assert not (await _read(url, 1)).isError()
        finally:
            await sim.stop()

    asyncio.run(main())


def test_garbage_answer_on_rtu_is_a_bad_frame_and_the_next_read_works() -> None:
    async def main() -> None:
        devices = [SimulatedDevice(address=1, profile="watlow_pm", garbage=True)]
        sim = BusSimulator("rtu", devices)
        client = open_client(parse_bus_url(await sim.start()), timeout=1.0, retries=0)
        try:
            assert await client.connect()
            started = time.monotonic()
            with pytest.raises(BadFrameError, match="CRC check failed"):
                await client.read_holding_registers(360, count=2, device_id=1)
            assert time.monotonic() - started < 0.5  # at once, not after the timeout
            sim.set_fault(1, garbage=False)
            await asyncio.sleep(0.02)
            assert not (await client.read_holding_registers(360, count=2, device_id=1)).isError()
        finally:
            client.close()
            await sim.stop()

    asyncio.run(main())


def test_wire_time_holds_answers_back_by_the_baud_rate() -> None:
    baud, turnaround = 4800, 0.01

    async def main() -> list[float]:
        devices = [SimulatedDevice(address=1, profile="watlow_pm")]
        sim = BusSimulator("rtu", devices, baudrate=baud, wire_time=True, turnaround_s=turnaround)
        client = open_client(parse_bus_url(await sim.start()), timeout=1.0, retries=0)
        took = []
        try:
            assert await client.connect()
            set_timing(client, timeout=1.0, retries=0)
            for _ in range(5):
                started = time.monotonic()
                response = await client.read_holding_registers(360, count=2, device_id=1)
                took.append(time.monotonic() - started)
                assert not response.isError()
                await asyncio.sleep(0.01)
        finally:
            client.close()
            await sim.stop()
        return took

    took = asyncio.run(main())
    # Request, end-of-frame gap, turnaround, then the 9-character answer (2 registers).
    floor = wire_time_s(8, baud) + turnaround + 9 * 11 / baud
    assert min(took) >= floor - 1e-4 and max(took) < floor + 0.3


def test_turnaround_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="turnaround_s"):
        BusSimulator("rtu", [], turnaround_s=-1)


def test_in_process_client_answers_as_the_server_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sim:// client skips the server's datastore; its answers must not differ from it.
    monkeypatch.setattr(simdevice, "_REFRESH_S", 3600.0)  # the same values for both reads
    reads = [
        ("holding", 360, 2),  # one float32
        ("holding", 360, 1),  # the first word of it only
        ("holding", 361, 2),  # its second word and the next parameter's first
        ("holding", 1904, 4),  # two parameters back to back
        ("holding", 2160, 14),  # across unmapped registers: exception 2
        ("holding", 5000, 1),  # nothing there: exception 2
        ("input", 0, 2),  # a PM has no input registers: exception 2
    ]

    def answer(response: object) -> object:
        if response.isError():  # type: ignore[attr-defined]
            return ("exception", response.exception_code)  # type: ignore[attr-defined]
        return ("registers", list(response.registers))  # type: ignore[attr-defined]

    async def main() -> tuple[list[object], list[object]]:
        device = SimulatedDevice(address=3, profile="watlow_pm", set_point=123.5)
        sim = BusSimulator("tcp", [device], seed=7)
        client = open_client(parse_bus_url(await sim.start()), timeout=1.0, retries=0)
        local = sim.client(timeout=1.0)
        assert await client.connect()
        served, in_process = [], []
        try:
            for table, address, count in reads:
                for got, c in ((served, client), (in_process, local)):
                    call = (
                        c.read_holding_registers if table == "holding" else c.read_input_registers
                    )
                    got.append(answer(await call(address, count=count, device_id=3)))
        finally:
            client.close()
            await sim.stop()
        return served, in_process

    served, in_process = asyncio.run(main())
    assert in_process == served
    assert [a[0] for a in served] == ["registers"] * 4 + ["exception"] * 3
    assert {a[1] for a in served if a[0] == "exception"} == {2}


def test_answered_reads_are_counted_and_logged(tmp_path: Path) -> None:
    # The simulator's own log is what fault tests hold stored rows against: value answers
    # only, whether served over Modbus or in process, and one line each with --log.
    (port,) = free_ports(1)
    log = tmp_path / "answered.txt"
    command = [sys.executable, "-m", "connectors.sim", "--tcp", f"127.0.0.1:{port}"]
    server = subprocess.Popen(
        [*command, "--device", "1:watlow_pm", "--log", str(log)], stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None and b"serving" in server.stdout.readline()

        async def reads() -> None:
            sim = BusSimulator("sim", [SimulatedDevice(address=2, profile="watlow_pm")])
            local = sim.client(timeout=0.05)
            remote = open_client(parse_bus_url(f"tcp://127.0.0.1:{port}"), timeout=1, retries=0)
            assert await remote.connect()
            for client, unit in ((local, 2), (remote, 1)):
                for address, count in ((360, 2), (360, 2), (1904, 4), (5000, 1)):
                    await client.read_holding_registers(address, count=count, device_id=unit)
                with pytest.raises(ModbusIOException):  # nobody there: silence, not counted
                    await local.read_holding_registers(360, count=2, device_id=9)
            remote.close()
            assert sim.answered() == Counter(
                {(2, "holding", 360, 2): 2, (2, "holding", 1904, 4): 1}
            )

        asyncio.run(reads())
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert log.read_text().splitlines() == [
        "1 holding 360 2",
        "1 holding 360 2",
        "1 holding 1904 4",
    ]
