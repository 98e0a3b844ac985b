"""The cross-talk of issue 17: a slow device's late answer sent under the ids of the request
received after it, so one device's values were stored as another's.

Root cause: pymodbus 3.16's ServerRequestHandler.handle_request stamps a response with the
transaction and unit ids of ``self.last_pdu`` (and sends it to ``self.last_addr``) after
awaiting the datastore, where a simulated device waits out its delay; a request received
meanwhile has replaced ``last_pdu``. The simulator answers each request under its own ids
(connectors.sim.handler.RequestHandler). A set point of +1000 on one device and -1000 on the
other makes a value stored under the wrong one obvious.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from connectors.bus import Bus, Device, Simulation
from connectors.link import BusLink
from connectors.poller import BusPoller
from connectors.registers import load_profile
from connectors.sample import ErrorKind, Sample
from connectors.sim import BusSimulator, SimulatedDevice
from connectors.transport import parse_bus_url

HOT, COLD = 2, 3
SET_POINTS = {HOT: 1000.0, COLD: -1000.0}


def _request(tid: int, unit: int, address: int, count: int) -> bytes:
    """A Modbus TCP read of holding registers (FC03)."""
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, address, count)


def _answer(sock: socket.socket) -> tuple[int, int, float]:
    """The next response on ``sock``: (transaction id, unit id, its float32, low word first)."""
    head = b""
    while len(head) < 7:
        head += sock.recv(7 - len(head))
    tid, _, length, unit = struct.unpack(">HHHB", head)
    body = b""
    while len(body) < length - 1:
        body += sock.recv(length - 1 - len(body))
    assert body[:2] == b"\x03\x04", body  # FC03, 4 bytes
    low, high = struct.unpack(">2H", body[2:6])
    return tid, unit, struct.unpack(">f", struct.pack(">2H", high, low))[0]


def test_two_requests_in_flight_are_each_answered_under_their_own_ids() -> None:
    """A raw client sends the slow device's request, then the fast one's before the first is
    answered: each answer carries its request's transaction and unit ids and its own
    device's set point. (pymodbus's own handler answers both under the second's ids.)"""

    async def main() -> list[tuple[int, int, float]]:
        devices = [
            SimulatedDevice(address=HOT, profile="watlow_pm", set_point=1000.0, delay_s=0.1),
            SimulatedDevice(address=COLD, profile="watlow_pm", set_point=-1000.0, delay_s=0.3),
        ]
        sim = BusSimulator("tcp", devices)
        await sim.start()
        try:

            def exchange() -> list[tuple[int, int, float]]:
                with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
                    sock.sendall(_request(7, COLD, 2160, 2))
                    time.sleep(0.05)  # the slow answer is being prepared
                    sock.sendall(_request(8, HOT, 2160, 2))
                    return [_answer(sock), _answer(sock)]

            return await asyncio.to_thread(exchange)
        finally:
            await sim.stop()

    answers = asyncio.run(main())
    # The fast device answers first; each answer under its own request's ids.
    assert answers == [(8, HOT, 1000.0), (7, COLD, -1000.0)]


def _poll(schemes: tuple[str, ...], ticks: int) -> dict[str, list[Sample]]:
    """The issue's reproduction, scaled to 0.4 of its time: a simulated bus (timeout 0.2 s)
    with "hot" (unit 2, set point +1000, answering in 0.12 s) and "cold" (unit 3, set point
    -1000, answering in 0.32 s, past the timeout), polled at 5 Hz by the project's poller. A
    tick takes 0.32 s, so cold's late answer comes while hot's next request is in flight.
    One such bus per scheme, polled at once on one event loop (each its own link and
    poller, as the source runs buses): scheme -> its samples."""
    names = ("analog_input_value", "set_point", "closed_loop_set_point")
    parameters = tuple(p for p in load_profile("watlow_pm").parameters if p.name in names)

    def device(name: str, unit: int, delay_s: float) -> Device:
        simulation = Simulation(profile="watlow_pm", set_point=SET_POINTS[unit], delay_s=delay_s)
        return Device(name=name, address=unit, parameters=parameters, simulation=simulation)

    buses = [
        Bus(
            name=f"crosstalk-{scheme}",
            url=parse_bus_url(f"{scheme}://127.0.0.1:0"),
            devices=(device("hot", HOT, 0.12), device("cold", COLD, 0.32)),
            timeout_s=0.2,
            simulate=True,
        )
        for scheme in schemes
    ]
    samples: dict[str, list[Sample]] = {scheme: [] for scheme in schemes}

    def poller(bus: Bus, link: BusLink, mine: list[Sample]) -> BusPoller:
        return BusPoller(bus, link=link, rate_hz=5, emit=lambda _t, s, _st: mine.extend(s))

    async def main() -> None:
        links = [BusLink(bus) for bus in buses]
        try:
            await asyncio.gather(*(link.start() for link in links))
            pollers = [
                poller(b, k, samples[s]) for b, k, s in zip(buses, links, schemes, strict=True)
            ]
            first = int(time.time() * 5) + 1
            await asyncio.gather(*(p.run(first, first + ticks) for p in pollers))
        finally:
            await asyncio.gather(*(link.close() for link in links))

    asyncio.run(main())
    return samples


@pytest.fixture(scope="module")
def polled() -> dict[str, list[Sample]]:
    return _poll(("tcp", "rtu+tcp"), ticks=12)


@pytest.mark.parametrize("scheme", ["tcp", "rtu+tcp"])
def test_a_late_answer_is_never_stored_under_another_device(
    polled: dict[str, list[Sample]], scheme: str
) -> None:
    samples = polled[scheme]
    hot = [s for s in samples if s.device == "hot"]
    cold = [s for s in samples if s.device == "cold"]
    # Every value is the device's own: hot's set points are +1000 and its process value
    # between ambient and +1000; cold, which answers only after its timeout, stores none.
    values = [s for s in hot if s.error is None]
    assert len(values) >= len(hot) // 2, [s.error for s in hot]
    for s in values:
        if s.parameter == "analog_input_value":
            assert 21.0 < s.value < 1000.0, s  # type: ignore[operator]
        else:
            assert s.value == 1000.0, s
        # No answer comes sooner than the device takes.
        assert (s.received_at - s.requested_at).total_seconds() >= 0.12, s
    assert cold and all(s.error is not None for s in cold), [s.value for s in cold]
    kinds = {s.error_kind for s in cold}
    assert kinds <= {ErrorKind.TIMEOUT, ErrorKind.BACKOFF}, kinds
    assert ErrorKind.TIMEOUT in kinds
