"""The flow against a pyModbusTCP server loaded with a Watlow PM's registers (packed here
with struct from Watlow's table, not with the project's codec), in both word orders, both
display units, and with 17043 served as one register: no override, no simulate; every value
stored exactly as loaded, temperatures in the PM's unit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.rig import check_rows, run_flow
from tests.interop.watlow import CELSIUS, FAHRENHEIT, HIGH_LOW, LOW_HIGH, PM

MATRIX = [
    PM(word_order=order, units=units)
    for order in (LOW_HIGH, HIGH_LOW)
    for units in (CELSIUS, FAHRENHEIT)
] + [
    PM(word_order=HIGH_LOW, units=FAHRENHEIT, single_register=True),
    PM(word_order=LOW_HIGH, units=CELSIUS, single_register=True),
]


def bus(url: str, unit: int = 1) -> str:
    return f"""
        [[bus]]
        name = "gateway"
        url = "{url}"
        timeout_s = 0.5

          [[bus.device]]
          name = "pm"
          profile = "watlow_pm"
          address = {unit}
    """


@pytest.mark.parametrize("pm", MATRIX, ids=str)
def test_flow_stores_the_loaded_values_with_their_units(pm_server, tmp_path: Path, pm: PM) -> None:
    server = pm_server({1: pm.registers()})
    rows = run_flow(tmp_path, bus(server.url))
    check_rows(rows, pm)
    read = {(address, count) for _unit, address, count in server.handler.reads}
    assert any(a <= 2488 < a + n and a + n >= 2490 for a, n in read), read  # 2488-2489 read


def test_pms_in_both_orders_and_units_on_one_gateway(pm_server, tmp_path: Path) -> None:
    """Four PMs behind one gateway, each set differently: each stored in its own way."""
    pms = {unit: pm for unit, pm in enumerate(MATRIX[:4], start=1)}
    pms = {u: PM(word_order=p.word_order, units=p.units, offset=u) for u, p in pms.items()}
    server = pm_server({u: pm.registers() for u, pm in pms.items()})
    devices = "".join(
        f'\n  [[bus.device]]\n  name = "pm-{u}"\n  profile = "watlow_pm"\n  address = {u}\n'
        for u in pms
    )
    text = f'[[bus]]\nname = "gateway"\nurl = "{server.url}"\ntimeout_s = 0.5\n{devices}'
    rows = run_flow(tmp_path, text)
    for u, pm in pms.items():
        check_rows(rows, pm, f"pm-{u}")
