"""ControllerSource: a Bytewax source with one partition per bus."""

from __future__ import annotations

import math
import queue
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TypedDict

from anyio.from_thread import BlockingPortal, start_blocking_portal
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.poller import Bus, BusPoller
from connectors.sample import Sample
from connectors.simulator import BusSimulator
from connectors.transport import parse_bus_url

__all__ = ["BusState", "ControllerSource"]

# Longest a partition sleeps between looks at its stop event, so Ctrl-C on
# a slow schedule still ends the run within about a second.
_MAX_SLEEP_S = 1.0


class BusState(TypedDict):
    """What a resumed partition needs: the next tick to poll and the last one."""

    next_tick: int
    end_tick: int | None


class _BusPartition(StatefulSourcePartition[Sample, BusState]):
    """Runs one bus's poller on its own event-loop thread; ``next_batch`` only drains a queue."""

    def __init__(self, bus: Bus, rate_hz: float, state: BusState, stop: threading.Event) -> None:
        self._bus = bus
        self._stop = stop
        self._state = state
        self._queue: queue.SimpleQueue[tuple[int, list[Sample], int]] = queue.SimpleQueue()
        self._poller = BusPoller(bus, rate_hz=rate_hz, emit=self._emit)
        self._period = 1.0 / rate_hz
        self._stopping = False
        self._closed = False
        self._portal_cm = start_blocking_portal()
        self._portal: BlockingPortal = self._portal_cm.__enter__()
        self._done = self._portal.start_task_soon(self._run)

    def _emit(self, tick: int, samples: list[Sample], late: int) -> None:
        self._queue.put((tick, samples, late))

    async def _run(self) -> None:
        simulator = None
        if self._bus.simulate is not None:
            url = self._bus.url
            simulator = BusSimulator(
                url.scheme,
                self._bus.simulate,
                host=url.host or "127.0.0.1",
                port=url.port if url.scheme != "rtu" else 0,
                baudrate=url.baudrate,
            )
            self._poller.url = parse_bus_url(await simulator.start())
            if url.scheme == "sim":
                self._poller.client = simulator.client(self._bus.timeout_s)
        try:
            await self._poller.run(self._state["next_tick"], self._state["end_tick"])
        finally:
            if simulator is not None:
                await simulator.stop()

    def next_batch(self) -> list[Sample]:
        if self._stop.is_set() and not self._stopping:
            self._stopping = True
            self._poller.request_stop()
        batch: list[Sample] = []
        while True:
            try:
                tick, samples, late = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.extend(samples)
            self._state = {"next_tick": tick + 1 + late, "end_tick": self._state["end_tick"]}
        if not batch and self._done.done():
            self._done.result()  # a crashed poller fails the flow with its own error
            raise StopIteration
        return batch

    def next_awake(self) -> datetime | None:
        if not self._queue.empty() or self._done.done():
            return None
        now = time.time()
        poller = self._poller
        if poller.tick_running:
            # Samples arrive at the end of the tick: expect it about as long as the last one.
            expected = poller.tick_started + poller.last_duration * 1.1 + 0.002
            wake = expected if expected > now else now + self._period / 20
        else:
            wake = max(poller.next_start, now) + poller.last_duration + 0.002
        wake = min(wake, now + _MAX_SLEEP_S)
        return datetime.fromtimestamp(wake, timezone.utc)

    def snapshot(self) -> BusState:
        return dict(self._state)  # type: ignore[return-value]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._poller.request_stop()
        try:
            self._done.result()
        finally:
            self._portal_cm.__exit__(None, None, None)


class ControllerSource(FixedPartitionedSource[Sample, BusState]):
    """Polls every device of every bus once per tick; one partition per bus, keyed by bus name.

    ``rate_hz`` sets the tick rate; with ``duration_s`` each partition ends
    after its last tick, else it runs until ``stop`` is set (the flow sets it
    on SIGINT/SIGTERM), finishing the tick in progress so nothing acquired
    is lost. Modbus I/O runs on an event loop in a background thread per
    bus, never inside ``next_batch``.
    """

    def __init__(
        self,
        buses: Sequence[Bus],
        *,
        rate_hz: float,
        duration_s: float | None = None,
        stop: threading.Event | None = None,
        hostname: str | None = None,
    ) -> None:
        """``hostname`` (default: this machine's) decides which buses with a ``host`` are local."""
        names = [b.name for b in buses]
        if len(set(names)) != len(names):
            raise ValueError(f"bus names must be unique, got {names}")
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.buses = {b.name: b for b in buses}
        self.rate_hz = rate_hz
        self.duration_s = duration_s
        self.stop = stop if stop is not None else threading.Event()
        self.hostname = hostname or socket.gethostname()

    def list_parts(self) -> list[str]:
        return [
            name
            for name, bus in self.buses.items()
            if bus.host is None or bus.host == self.hostname
        ]

    def build_part(
        self, step_id: str, for_part: str, resume_state: BusState | None
    ) -> _BusPartition:
        state = resume_state or self._fresh_state()
        return _BusPartition(self.buses[for_part], self.rate_hz, state, self.stop)

    def _fresh_state(self) -> BusState:
        first = math.floor(time.time() * self.rate_hz) + 1
        end = None
        if self.duration_s is not None:
            end = first + max(1, math.ceil(self.duration_s * self.rate_hz - 1e-9))
        return {"next_tick": first, "end_tick": end}

    def __repr__(self) -> str:
        return f"ControllerSource(buses={list(self.buses)}, rate_hz={self.rate_hz})"
