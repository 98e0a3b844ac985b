"""The interop rig: a pyModbusTCP server playing Watlow PMs, a PM as a unit of the hand-written
RTU slave, and the flow run from a config file with no overrides, its rows read back from a
JSON Lines sink and checked against what the PM holds."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bytewax.testing import run_main
from pyModbusTCP.constants import (
    EXP_DATA_ADDRESS,
    EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND,
    EXP_NONE,
)
from pyModbusTCP.server import DataHandler, ModbusServer

from flows.acquire import build_flow
from flows.config import load_config
from tests.interop.rtuslave import Unit
from tests.interop.watlow import PM


class PmHandler(DataHandler):
    """Holding registers per unit id, as a Modbus TCP gateway in front of PMs would serve
    them: a unit id nobody is at gets exception 11 (gateway target failed to respond), a
    register the PM does not have reads 0, input registers (a PM has none) exception 2."""

    def __init__(self, units: Mapping[int, Mapping[int, int]]) -> None:
        super().__init__()
        self.units = dict(units)
        self.lock = threading.Lock()
        self.reads: list[tuple[int, int, int]] = []  # (unit, address, count) answered

    def read_h_regs(self, address: int, count: int, srv_info: Any) -> DataHandler.Return:
        unit = srv_info.recv_frame.mbap.unit_id
        registers = self.units.get(unit)
        if registers is None:
            return DataHandler.Return(exp_code=EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND)
        with self.lock:
            self.reads.append((unit, address, count))
        words = [registers.get(a, 0) for a in range(address, address + count)]
        return DataHandler.Return(exp_code=EXP_NONE, data=words)

    def read_i_regs(self, address: int, count: int, srv_info: Any) -> DataHandler.Return:
        if srv_info.recv_frame.mbap.unit_id not in self.units:
            return DataHandler.Return(exp_code=EXP_GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND)
        return DataHandler.Return(exp_code=EXP_DATA_ADDRESS)


class PmServer:
    """A pyModbusTCP server on 127.0.0.1 (a free port) serving ``units``: unit id ->
    {PDU address: word}. ``serve()`` starts it; ``stop()`` ends it."""

    def __init__(self, units: Mapping[int, Mapping[int, int]]) -> None:
        self.handler = PmHandler(units)
        self.server = ModbusServer("127.0.0.1", 0, no_block=True, data_hdl=self.handler)
        self.port = 0

    def serve(self) -> PmServer:
        self.server.start()
        self.port = self.server._service.server_address[1]
        return self

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()


PM_SIZE = 3000  # registers 0-2999 exist (those not loaded read 0); beyond: exception 2


def pm_unit(pm: PM, delay_s: float = 0.0) -> Unit:
    """A PM as a unit of the hand-written RTU slave."""
    holding = dict.fromkeys(range(PM_SIZE), 0)
    holding.update(pm.registers())
    return Unit(holding=holding, delay_s=delay_s)


def run_flow(directory: Path, buses: str, *, rate_hz: float = 4, duration_s: float = 1.0):
    """Run the flow (build_flow + run_main) on a config file with ``buses`` (its ``[[bus]]``
    tables) and one JSON Lines sink; returns the rows it stored."""
    out = directory / "rows.jsonl"
    head = f"[acquisition]\nrate_hz = {rate_hz}\nduration_s = {duration_s}\n"
    sink = f'\n[[sink]]\nkind = "jsonl"\npath = "{out}"\n'
    path = directory / "acquire.toml"
    path.write_text(head + textwrap.dedent(buses) + sink, encoding="utf-8")
    run_main(build_flow(load_config(path)))
    with out.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def check_rows(rows: list[dict], pm: PM, device: str = "pm", *, min_ticks: int = 3) -> None:
    """Every row of ``device`` good, and each parameter PM knows stored as loaded."""
    mine = [r for r in rows if r["device"] == device]
    assert mine, f"no rows of {device}"
    bad = [(r["parameter"], r["value"], r["error"]) for r in mine if r["error"] is not None]
    assert not bad, f"{pm}: error rows {bad[:5]}"
    expected = pm.expected()
    for name, (value, unit, text) in expected.items():
        stored = [(r["value"], r["unit"], r["value_text"]) for r in mine if r["parameter"] == name]
        assert stored, f"{pm}: no rows of {name}"
        assert set(stored) == {(value, unit, text)}, f"{pm}: {name}"
    ticks = {r["requested_at"] for r in mine if r["parameter"] == "analog_input_value"}
    assert len(ticks) >= min_ticks
