"""Issue 19's whole path: coils, discrete inputs, two poll groups and a connect-once group on
simulated TCP, RTU, UDP and ASCII buses, through the flow into SQLite: exactly one row per
parameter per due tick, and none in a tick where it is not due."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from bytewax.testing import run_main

from connectors.groups import poll_groups
from flows.acquire import build_flow
from flows.config import load_config
from tests.conftest import SIM_URLS, write_config

RATE_HZ = 5
BUS = """
[[bus]]
name = "{kind}-bus"
url = "{url}"
simulate = true
timeout_s = 0.3

  [[bus.device]]
  name = "{kind}-io"
  profile = "digital_io"
  address = 1
  every_s = 0.4                       # group of 2 ticks

  [[bus.device]]
  name = "{kind}-pm"
  profile = "watlow_pm"
  address = 2
  parameters = ["analog_input_value", "set_point", "display_units"]

  [bus.device.override]
  set_point = {{ every_s = 0.6 }}      # group of 3 ticks
  display_units = {{ every_s = "connect" }}
"""


def test_coils_groups_and_every_transport_store_one_row_per_due_tick(tmp_path: Path) -> None:
    buses = "".join(
        BUS.format(kind=kind.replace("+", ""), url=SIM_URLS[kind])
        for kind in ("tcp", "rtu", "udp", "ascii")
    )
    sinks = (
        '[[sink]]\nkind = "sqlite"\npath = "out.sqlite"\n'
        '[[sink]]\nkind = "sqlite"\npath = "out.sqlite"\ntable = "bus_stats"\n'
        'stream = "bus_stats"\n'
    )
    text = f"[acquisition]\nrate_hz = {RATE_HZ}\nduration_s = 2\n{buses}\n{sinks}"
    config = load_config(write_config(tmp_path, text))
    run_main(build_flow(config))
    with sqlite3.connect(tmp_path / "out.sqlite") as db:
        rows = db.execute("SELECT device, parameter, requested_at, error FROM samples").fetchall()
        ticks = dict(db.execute("SELECT bus, group_concat(tick) FROM bus_stats GROUP BY bus"))
    assert [r for r in rows if r[3] is not None] == []
    per_device: dict[str, Counter[str]] = {}
    for device, parameter, _, _ in rows:
        per_device.setdefault(device, Counter())[parameter] += 1
    for bus in config.buses:
        ran = sorted(int(t) for t in ticks[bus.name].split(","))
        assert len(ran) >= 9, ran
        for device in bus.devices:
            expected: Counter[str] = Counter()
            for group in poll_groups(device, RATE_HZ):
                due = 1 if group.every is None else sum(group.due(t) for t in ran)
                for read in group.plan:
                    for p in read.parameters:
                        expected[p.name] += due
            assert per_device[device.name] == expected, device.name
        # The same, said plainly: every tick, every 2nd, every 3rd, once.
        n = len(ran)
        pm, io = per_device[f"{bus.name[:-4]}-pm"], per_device[f"{bus.name[:-4]}-io"]
        assert pm["analog_input_value"] == n and pm["display_units"] == 1
        assert pm["set_point"] in (n // 3, -(-n // 3))
        assert set(io.values()) <= {n // 2, -(-n // 2)} and len(io) == 8
    # The coils and discrete inputs are bits: 0.0 or 1.0, labelled.
    with sqlite3.connect(tmp_path / "out.sqlite") as db:
        bits = db.execute(
            "SELECT DISTINCT value, value_text FROM samples WHERE parameter = 'relay_3'"
        ).fetchall()
    assert set(bits) <= {(0.0, "off"), (1.0, "on")} and bits
