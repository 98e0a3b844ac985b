"""The one door to a bus: the client its poller talks through, by the bus's URL scheme and its
``simulate`` flag.

A real bus gets a pymodbus client for ``bus.url`` (connectors.transport.open_client). A bus
configured ``simulate = true`` is served by a simulator: connectors.sim is imported here, when
the link of such a bus is made, and nowhere else on the production path, so a real bus never
loads it. ``bus.url`` stays the one configured URL; the address a simulator serves at belongs
to the link (:attr:`BusLink.url`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pymodbus.pdu import ModbusPDU

from connectors.bus import Bus
from connectors.transport import BusUrl, open_client, parse_bus_url

if TYPE_CHECKING:
    from connectors.sim import BusSimulator

__all__ = ["BusLink", "Client"]


class Client(Protocol):
    """What a poller uses of a client: pymodbus's async clients, and the simulator's in-process
    one for a ``sim://`` bus."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> bool: ...

    def close(self) -> None: ...

    async def read_holding_registers(
        self, address: int, *, count: int = 1, device_id: int = 1
    ) -> ModbusPDU: ...

    async def read_input_registers(
        self, address: int, *, count: int = 1, device_id: int = 1
    ) -> ModbusPDU: ...

    async def read_coils(
        self, address: int, *, count: int = 1, device_id: int = 1
    ) -> ModbusPDU: ...

    async def read_discrete_inputs(
        self, address: int, *, count: int = 1, device_id: int = 1
    ) -> ModbusPDU: ...


class BusLink:
    """Where one bus's client comes from, and what serves a simulated bus.

    Made on the thread that sets the bus up: for a simulated bus the simulator is built here
    (its devices' profiles loaded), and a ``sim://`` bus's in-process client too, so that work
    does not fall on the event loop the running buses share. Then, on that loop:
    :meth:`start` serves a simulated bus (nothing for a real one), :meth:`client` gives the
    client (made on first call, unconnected), :meth:`close` closes it and stops the simulator.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._client: Client | None = None
        self._served_at: BusUrl | None = None
        self.simulator: BusSimulator | None = None
        """The simulator of a simulated bus (None for a real one); tests change its faults."""
        if bus.simulate:
            from connectors.sim import simulator_for  # only a simulated bus loads the simulator

            self.simulator = simulator_for(bus)
            if bus.url.scheme == "sim":
                self._client = self.simulator.client(bus.timeout_s)

    @property
    def url(self) -> BusUrl:
        """Where the client connects: the bus's URL, or the address its simulator serves at."""
        return self._served_at or self._bus.url

    async def start(self) -> None:
        """Serve a simulated bus on the running loop; nothing for a real bus. Idempotent."""
        if self.simulator is not None and self._served_at is None:
            self._served_at = parse_bus_url(await self.simulator.start())

    def client(self) -> Client:
        """The bus's client: made on the first call (unconnected, with the bus's timeout and
        retries), the same one after."""
        if self._client is None:
            bus = self._bus
            self._client = open_client(self.url, timeout=bus.timeout_s, retries=bus.retries)
        return self._client

    async def close(self) -> None:
        """Close the client, then stop serving a simulated bus. Idempotent."""
        if self._client is not None:
            self._client.close()
        if self.simulator is not None and self._served_at is not None:
            self._served_at = None
            await self.simulator.stop()
