"""The flow against a pyModbusTCP server loaded with a Watlow PM's registers (packed here
with struct from Watlow's table, not with the project's codec), in both word orders, both
display units, and with 17043 served as one register: no override, no simulate; every value
stored exactly as loaded, temperatures in the PM's unit. The matrix is one run with a bus
(and a server) per PM, beside the gateway of four PMs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.interop.rig import PmServer, check_rows, run_flow
from tests.interop.watlow import CELSIUS, FAHRENHEIT, HIGH_LOW, LOW_HIGH, PM

MATRIX = [
    PM(word_order=order, units=units)
    for order in (LOW_HIGH, HIGH_LOW)
    for units in (CELSIUS, FAHRENHEIT)
] + [
    PM(word_order=HIGH_LOW, units=FAHRENHEIT, single_register=True),
    PM(word_order=LOW_HIGH, units=CELSIUS, single_register=True),
]


# Four PMs behind one gateway, each set differently (unit id -> PM).
ON_ONE = {
    u: PM(word_order=p.word_order, units=p.units, offset=u)
    for u, p in enumerate(MATRIX[:4], start=1)
}


@pytest.fixture(scope="module")
def one_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict], list]]:
    """One run of the flow with a bus per PM of MATRIX (its own pyModbusTCP server, device
    ``pm-<i>``) and a bus of the ON_ONE gateway (devices ``gw-<unit>``), no override: buses
    are independent partitions, so each is read as it would be alone. Returns the rows and
    the servers, MATRIX's in its order, then the gateway's."""
    servers = [PmServer({1: pm.registers()}).serve() for pm in MATRIX]
    try:
        servers.append(PmServer({u: pm.registers() for u, pm in ON_ONE.items()}).serve())
        text = "".join(
            bus(s.url, f"gateway-{i}", {1: f"pm-{i}"}) for i, s in enumerate(servers[:-1])
        )
        text += bus(servers[-1].url, "gateway", {u: f"gw-{u}" for u in ON_ONE})
        yield run_flow(tmp_path_factory.mktemp("interop"), text), servers
    finally:
        stops = [threading.Thread(target=s.stop) for s in servers]  # each waits ~0.25 s
        for t in stops:
            t.start()
        for t in stops:
            t.join()


def bus(url: str, name: str, devices: dict[int, str]) -> str:
    text = f'\n[[bus]]\nname = "{name}"\nurl = "{url}"\ntimeout_s = 0.5\n'
    for unit, device in devices.items():
        text += f'\n  [[bus.device]]\n  name = "{device}"\n  profile = "watlow_pm"\n'
        text += f"  address = {unit}\n"
    return text


@pytest.mark.parametrize("pm", MATRIX, ids=str)
def test_flow_stores_the_loaded_values_with_their_units(one_run, pm: PM) -> None:
    rows, servers = one_run
    i = MATRIX.index(pm)
    check_rows(rows, pm, f"pm-{i}")
    assert {r["bus"] for r in rows if r["device"] == f"pm-{i}"} == {f"gateway-{i}"}
    read = {(address, count) for _unit, address, count in servers[i].handler.reads}
    assert any(a <= 2488 < a + n and a + n >= 2490 for a, n in read), read  # 2488-2489 read


def test_pms_in_both_orders_and_units_on_one_gateway(one_run) -> None:
    """Four PMs behind one gateway, each set differently: each stored in its own way."""
    rows, _ = one_run
    for u, pm in ON_ONE.items():
        check_rows(rows, pm, f"gw-{u}")
    assert {r["bus"] for r in rows if r["device"].startswith("gw-")} == {"gateway"}
