"""Error kinds are set where the failure happens: from what pymodbus raised (the one place that
reads its exceptions, connectors.transport.read_failure) and from real failures against the
real simulator. The other kinds (timeout, backoff, exception with its code, bad frame on the
pty bus, connection failed) are held in tests/connectors/test_poller.py and test_source.py."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from pymodbus.exceptions import ConnectionException, ModbusIOException, ParameterException

from connectors.sample import ErrorKind
from connectors.sim import BusSimulator, SimulatedDevice
from connectors.transport import BadFrameError, read_failure
from tests.conftest import poll_bus, sim_bus

TIMEOUT_WORDS = "No response received after 0 retries, continue with next request"


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (BadFrameError("CRC check failed on 9 bytes"), ErrorKind.BAD_FRAME,
         "bad frame: CRC check failed on 9 bytes"),
        (ModbusIOException(TIMEOUT_WORDS), ErrorKind.TIMEOUT, "timeout: no response"),
        (ConnectionException("Not connected[x]"), ErrorKind.CONNECTION_LOST, "connection lost"),
        (ConnectionResetError(104, "Connection reset by peer"), ErrorKind.CONNECTION_LOST,
         "[Errno 104] Connection reset by peer"),
        (ModbusIOException("ERROR: request uses device id=1 but received 2."),
         ErrorKind.BAD_RESPONSE,
         "[Input/Output] ERROR: request uses device id=1 but received 2."),
        (ParameterException("x"), ErrorKind.BAD_RESPONSE, "[Invalid Parameter] x"),
        (KeyError("k"), ErrorKind.INTERNAL, "internal error: KeyError('k')"),
    ],
)  # fmt: skip
def test_what_pymodbus_raised_becomes_a_kind_and_a_text(
    exc: Exception, kind: ErrorKind, text: str
) -> None:
    assert read_failure(exc) == (kind, text)


def test_a_connection_lost_mid_request_is_its_own_kind() -> None:
    # The device answers 0.15 s after each request (one read of two parameters); the server
    # goes away 0.07 s into the third tick's request, which fails at once.
    rate = 2.0
    devices = [SimulatedDevice(address=1, profile="watlow_pm", delay_s=0.15)]
    only = {1: ["analog_input_value", "input_error"]}
    bus = sim_bus("c", "tcp", devices, parameters=only, timeout_s=1.0)
    assert len(bus.devices[0].reads) == 1

    async def stop_mid_request(sim: BusSimulator) -> None:
        next_start = (math.floor(time.time() * rate) + 1) / rate
        await asyncio.sleep(next_start + 0.07 - time.time())
        await sim.stop()

    def on_tick(i: int, sim: BusSimulator) -> object:
        return stop_mid_request(sim) if i == 1 else None

    ticks = poll_bus(bus, rate_hz=rate, ticks=4, on_tick=on_tick)
    first, second, lost, after = (samples for samples, _ in ticks)
    assert len(lost) == 2
    assert all(s.error is None for s in first + second)
    assert [(s.error_kind, s.error) for s in lost] == [
        (ErrorKind.CONNECTION_LOST, "connection lost")
    ] * len(lost)
    assert (lost[0].received_at - lost[0].requested_at).total_seconds() < 0.5  # not timed out
    assert {s.error_kind for s in after} == {ErrorKind.CONNECTION_FAILED}
