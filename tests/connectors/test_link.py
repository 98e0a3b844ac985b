"""The one door to a bus (connectors.link): a simulated bus is served through it and stopped at
close, a real bus never loads the simulator, and an unknown scheme or register table is an
error, not a fall-through."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from connectors.bus import Bus, Device
from connectors.link import BusLink
from connectors.poller import BusPoller
from connectors.registers import Read, load_profile
from connectors.request import read_call
from connectors.sim import SimulatedDevice
from connectors.transport import BusUrl, open_client, parse_bus_url
from tests.conftest import sim_bus

ROOT = Path(__file__).resolve().parents[2]
PM = load_profile("watlow_pm")


def test_a_simulated_bus_is_served_through_its_link_and_stopped_at_close() -> None:
    asyncio.run(_served_and_stopped())


async def _served_and_stopped() -> None:
    bus = sim_bus("s", "tcp", [SimulatedDevice(address=1, profile="watlow_pm", set_point=80.0)])
    link = BusLink(bus)
    assert link.simulator is not None and link.url == bus.url
    await link.start()
    served = link.url
    assert served.scheme == "tcp" and served.port != 0 and bus.url.port == 0  # bus.url kept
    client = link.client()
    assert client is link.client()  # one client per link
    assert await client.connect()
    response = await client.read_holding_registers(2160, count=2, device_id=1)
    assert not response.isError() and len(response.registers) == 2
    await link.close()
    assert not client.connected
    # Stopped: nothing listens at the address it served at any more.
    other = AsyncModbusTcpClient(served.host, port=served.port, timeout=0.5, retries=0)
    assert not await other.connect()
    other.close()
    await link.close()  # idempotent


def test_a_sim_bus_gets_its_in_process_client_with_the_link() -> None:
    bus = sim_bus("i", "sim", [SimulatedDevice(address=1, profile="watlow_pm")])
    link = BusLink(bus)
    client = link.client()  # built with the link, before anything is served
    assert client.connected and type(client).__name__ == "InProcessClient"

    async def serve() -> None:
        await link.start()
        assert str(link.url) == "sim://local"
        response = await client.read_holding_registers(360, count=2, device_id=1)
        assert not response.isError()
        await link.close()

    asyncio.run(serve())


def test_a_real_bus_gets_a_pymodbus_client_for_its_url() -> None:
    bus = Bus(
        name="real",
        url=parse_bus_url("tcp://127.0.0.1:1502"),
        devices=(Device(name="pm", address=1, parameters=PM.parameters[:1]),),
    )
    link = BusLink(bus)
    assert link.simulator is None and link.url is bus.url

    async def open_and_close() -> None:
        await link.start()  # nothing to serve
        client = link.client()
        assert isinstance(client, AsyncModbusTcpClient) and not client.connected
        assert client.ctx.comm_params.host == "127.0.0.1"
        assert client.ctx.comm_params.port == 1502
        await link.close()

    asyncio.run(open_and_close())


def test_the_production_path_does_not_import_the_simulator() -> None:
    code = textwrap.dedent(
        """
        import asyncio
        import sys
        import connectors.poller, connectors.source, flows.acquire
        from connectors.bus import Bus, Device
        from connectors.link import BusLink
        from connectors.registers import load_profile
        from connectors.source import ControllerSource
        from connectors.transport import parse_bus_url

        loaded = sorted(m for m in sys.modules if m.startswith("connectors.sim"))
        assert not loaded, f"importing loaded {loaded}"
        pm = load_profile("watlow_pm").parameters[:1]
        bus = Bus(name="real", url=parse_bus_url("tcp://127.0.0.1:1502"),
                  devices=(Device(name="pm", address=1, parameters=pm),))
        async def open_client():
            BusLink(bus).client()

        asyncio.run(open_client())
        ControllerSource([bus], rate_hz=1.0, duration_s=1.0).build_part("in", "real", None)
        loaded = sorted(m for m in sys.modules if m.startswith("connectors.sim"))
        assert not loaded, f"a real bus loaded {loaded}"
        simulated = Bus(name="sim", url=parse_bus_url("sim://"), devices=(), simulate=True)
        BusLink(simulated)
        assert "connectors.sim" in sys.modules, "a simulated bus did not reach the simulator"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("scheme", "message"),
    [
        ("rtu+udp", "no Modbus client for a rtu+udp:// bus"),
        ("sim", "a sim:// bus has no Modbus client: it is served by its simulator"),
    ],
)
def test_a_scheme_without_a_client_is_an_error(scheme: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        open_client(BusUrl(scheme=scheme, host="127.0.0.1"), timeout=1.0, retries=0)
    assert str(info.value) == message


def test_a_register_table_without_a_read_is_an_error() -> None:
    asyncio.run(_no_read_for_the_table())


async def _no_read_for_the_table() -> None:
    client = open_client(parse_bus_url("tcp://127.0.0.1:1502"), timeout=1.0, retries=0)
    assert read_call(client, "holding") == client.read_holding_registers
    assert read_call(client, "input") == client.read_input_registers
    assert read_call(client, "coil") == client.read_coils
    assert read_call(client, "discrete") == client.read_discrete_inputs
    with pytest.raises(ValueError) as info:
        read_call(client, "file")
    assert str(info.value) == (
        "no read for register table 'file' (known: holding, input, coil, discrete)"
    )
    # A poller refuses a plan with such a read when it is made, not at its first tick.
    device = Device(name="pm", address=1, parameters=PM.parameters[:1])
    files = Read(table="file", address=0, count=1, parameters=())  # type: ignore[arg-type]
    object.__setattr__(device, "reads", (files,))
    bus = Bus(name="b", url=parse_bus_url("tcp://127.0.0.1:1502"), devices=(device,))
    with pytest.raises(ValueError, match="no read for register table 'file'"):
        BusPoller(bus, link=BusLink(bus), rate_hz=1.0, emit=lambda *_: None)
