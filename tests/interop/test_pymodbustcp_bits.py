"""Coils and discrete inputs read by the flow from pyModbusTCP's own server and DataBank (a
Modbus implementation the project did not write): a pattern of bits loaded there, read in
merged FC01/FC02 reads (one of 2000 coils, the most one read carries), stored as
0.0 / 1.0 with their labels, next to a holding register on the same unit; and the project's
simulator's coils and discrete inputs read by pyModbusTCP's client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyModbusTCP.client import ModbusClient
from pyModbusTCP.constants import EXP_DATA_ADDRESS
from pyModbusTCP.server import DataBank, ModbusServer

from connectors.sim import SimulatedDevice
from flows.config import load_config
from tests.connectors.test_scan import served
from tests.interop.rig import run_flow

COILS = [*range(0, 2011, 10), 3, 1999]  # every 10th coil to 2010, and two between
INPUTS = range(16)


def on(address: int) -> bool:
    """The loaded pattern: irregular, so a read shifted by any bit or byte shows."""
    return address * 7 % 5 < 2 or address % 13 == 0


@pytest.fixture
def server() -> Iterator[ModbusServer]:
    bank = DataBank()
    bank.set_coils(0, [on(a) for a in range(2100)])
    bank.set_discrete_inputs(0, [not on(a) for a in INPUTS])
    bank.set_holding_registers(0, [4242])
    srv = ModbusServer("127.0.0.1", 0, no_block=True, data_bank=bank)
    srv.start()
    yield srv
    srv.stop()


def config(url: str) -> str:
    tables = [
        f'\n    [[bus.device.parameter]]\n    name = "coil_{a}"\n    table = "coil"\n'
        f"    address = {a}\n"
        for a in COILS
    ]
    tables += [
        f'\n    [[bus.device.parameter]]\n    name = "input_{a}"\n    table = "discrete"\n'
        f'    address = {a}\n    labels = {{ 0 = "open", 1 = "closed" }}\n'
        for a in INPUTS
    ]
    tables.append(
        '\n    [[bus.device.parameter]]\n    name = "level"\n    table = "holding"\n'
        '    address = 0\n    type = "uint16"\n'
    )
    head = f'[[bus]]\nname = "gw"\nurl = "{url}"\ntimeout_s = 0.5\n\n'
    return head + '  [[bus.device]]\n  name = "io"\n  address = 1\n' + "".join(tables)


def test_flow_stores_the_bits_pymodbustcp_serves(server: ModbusServer, tmp_path: Path) -> None:
    port = server._service.server_address[1]
    rows = run_flow(tmp_path, config(f"tcp://127.0.0.1:{port}"), rate_hz=5, duration_s=0.6)
    (device,) = load_config(tmp_path / "acquire.toml").buses[0].devices
    assert [(r.table, r.address, r.count) for r in device.reads] == [
        ("coil", 0, 2000), ("coil", 2000, 11), ("discrete", 0, 16), ("holding", 0, 1)
    ]  # fmt: skip
    ticks = {r["requested_at"] for r in rows if r["parameter"] == "level"}
    assert len(ticks) >= 2
    assert len(rows) == len(ticks) * (len(COILS) + len(INPUTS) + 1)
    assert [r for r in rows if r["error"] is not None] == []
    for r in rows:
        name, value, text = r["parameter"], r["value"], r["value_text"]
        if name == "level":
            assert (value, text) == (4242.0, None)
            continue
        table, address = name.split("_")
        if table == "coil":
            assert (value, text) == (float(on(int(address))), None), name
        else:
            bit = not on(int(address))
            assert (value, text) == (float(bit), "closed" if bit else "open"), name
    assert {r["value"] for r in rows if r["parameter"].startswith("coil")} == {0.0, 1.0}


def test_simulated_bits_read_by_the_pymodbustcp_client() -> None:
    """The project's simulator's FC01/FC02 answers, as pyModbusTCP's client decodes them: the
    digital_io model's bits, and exception 2 for a bit no parameter has."""
    devices = [SimulatedDevice(address=unit, profile="digital_io") for unit in (1, 2)]
    with served("tcp", devices) as url:
        port = int(url.rsplit(":", 1)[1])
        for unit in (1, 2):
            c = ModbusClient(host="127.0.0.1", port=port, unit_id=unit, timeout=2.0)
            relays = c.read_coils(0, 4)
            assert relays is not None and len(relays) == 4, c.last_error_as_txt
            assert [relays[0], relays[1], relays[3]] == [True, False, unit % 2 == 1]
            assert c.read_discrete_inputs(0, 1) == [True]  # the door, closed
            assert c.read_discrete_inputs(2, 2) == [False, False]
            assert c.read_coils(3, 2) is None and c.last_except == EXP_DATA_ADDRESS
            assert c.read_discrete_inputs(100, 1) is None
            c.close()
