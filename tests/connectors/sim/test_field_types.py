"""A simulated Modbus TCP bus serving a profile of the field's one-register types (int8 and
uint8 in the two bytes of one register, float16, a string of one character per register,
scale, offset and range on them), configured in TOML and polled end to end: each Sample holds
exactly the value served, and the words on the wire are the independent encoders' ones."""

from __future__ import annotations

import asyncio
import random
import struct
import textwrap
from pathlib import Path

import pytest

from connectors.link import BusLink
from connectors.sim import models
from flows.config import load_config
from flows.rows import to_row
from tests.conftest import run_poller

PROFILE = """
name = "field_types"
[defaults]
table = "holding"

[[parameter]]
name = "status"
address = 10
type = "int8"
byte = "high"

[[parameter]]
name = "mode"
address = 10
type = "uint8"
byte = "low"
labels = { 200 = "auto" }

[[parameter]]
name = "flow"
address = 11
type = "float16"

[[parameter]]
name = "level"
address = 12
type = "float16"
byte_order = "BADC"
scale = 0.5
unit = "%"

[[parameter]]
name = "gas"
address = 13
type = "string"
length = 4
byte = "low"

[[parameter]]
name = "temperature"
address = 17
type = "uint8"
byte = "low"
scale = 0.5
offset = -40
range = [-40, 87.5]
unit = "degC"

[[parameter]]
name = "pressure"
table = "input"
address = 0
type = "int8"
byte = "low"
scale = 0.5
offset = -40
range = [0, 50]
"""

CONFIG = """
[acquisition]
rate_hz = 10

[[bus]]
name = "plant"
url = "tcp://127.0.0.1:0"
simulate = true

  [[bus.device]]
  name = "skid"
  address = 3
  profile = "field_types.toml"

[[sink]]
kind = "csv"
path = "rows.csv"
"""

# What the model serves (engineering values), and what each Sample must then hold.
SERVED = {
    "status": -100,
    "mode": 200,
    "flow": 65504.0,
    "level": 21.5,  # raw 43.0 in float16
    "gas": "N2O",
    "temperature": 60.0,  # raw 200: out of a range of raw values, inside the scaled one
    "pressure": -20.0,  # raw 40: in the range of raw values, outside the scaled one
}
EXPECTED: dict[str, tuple[object, str | None]] = {
    "status": (-100, None),
    "mode": (200, None),
    "flow": (65504.0, None),
    "level": (21.5, None),
    "gas": ("N2O", None),
    "temperature": (60.0, None),
    "pressure": (None, "out of range: -20.0 not in [0, 50]"),
}
# The registers on the wire, by independent encoders (int.to_bytes, struct's "e").
WIRE = {
    ("holding", 10): [int.from_bytes((-100).to_bytes(1, "big", signed=True) + bytes([200]), "big")],
    ("holding", 11): [int.from_bytes(struct.pack(">e", 65504.0), "big")],
    ("holding", 12): [int.from_bytes(struct.pack("<e", 43.0), "big")],  # BADC: bytes swapped
    ("holding", 13): list(b"N2O\0"),
    ("holding", 17): [200],
    ("input", 0): [40],
}


def _model(elapsed: float, unit: int, rng: random.Random, sp: float) -> dict[str, float | str]:
    return dict(SERVED)


def test_field_types_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "field_types.toml").write_text(textwrap.dedent(PROFILE))
    (tmp_path / "acquire.toml").write_text(textwrap.dedent(CONFIG))
    monkeypatch.setitem(models.MODELS, "field_types", _model)
    (bus,) = load_config(tmp_path / "acquire.toml").buses
    (device,) = bus.devices
    # int8 and uint8 share register 10, merged into one read with the rest.
    assert [(r.table, r.address, r.count) for r in device.reads] == [
        ("holding", 10, 8), ("input", 0, 1)
    ]  # fmt: skip
    link = BusLink(bus)
    assert link.simulator is not None
    state = link.simulator.device(3)
    state.served = {}
    ticks = asyncio.run(run_poller(bus, link, rate_hz=10, ticks=2))
    assert len(ticks) == 2
    for samples, stats in ticks:
        got = {s.parameter: (s.value, s.error) for s in samples}
        assert got == EXPECTED
        for s in samples:
            assert type(s.value) is type(EXPECTED[s.parameter][0])
        mode = next(s for s in samples if s.parameter == "mode")
        assert to_row(mode)["value_text"] == "auto"
        assert to_row(next(s for s in samples if s.parameter == "gas"))["value_text"] == "N2O"
        assert (stats.reads, stats.errors) == (2, 1)  # the out-of-range read counts once
    served = {key: words for key, words in state.served.items()}
    assert set(served) == {("holding", 10, 8), ("input", 0, 1)}
    (holding,) = served["holding", 10, 8]
    (inputs,) = served["input", 0, 1]
    for (table, address), words in WIRE.items():
        got = holding[address - 10 :][: len(words)] if table == "holding" else inputs
        assert list(got) == words, (table, address)
