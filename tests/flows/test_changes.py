"""Report by exception (flows.changes): deadbands, error-state changes, heartbeats, and the
state that a resumed run keeps."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.changes import Deadband, _Sent, changes, passes
from flows.config import ConfigError, load_config
from tests.conftest import write_config

T0 = datetime(2026, 12, 5, tzinfo=timezone.utc)


def row(t: float, value: float | None = 1.0, *, error: str | None = None, text: str | None = None,
        parameter: str = "pv") -> dict[str, Any]:  # fmt: skip
    return {
        "device": "pm", "parameter": parameter, "instance": 1, "value": value,
        "value_text": text, "error": error, "requested_at": T0 + timedelta(seconds=t),
    }  # fmt: skip


def sent(band: Deadband, rows: list[dict[str, Any]]) -> list[float]:
    """The times of the rows that pass, in order, as the step keeps its last row."""
    last = None
    out = []
    for r in rows:
        if passes(band, last, r):
            out.append((r["requested_at"] - T0).total_seconds())
            last = _Sent(r["value"], r["value_text"], r["error"] is not None, r["requested_at"])
    return out


def test_an_absolute_deadband() -> None:
    values = [20.0, 20.3, 20.6, 20.4, 21.2, 21.2]
    rows = [row(t, v) for t, v in enumerate(values)]
    # 20.6 - 20.0 = 0.6 > 0.5 passes; then 21.2 - 20.6 = 0.6 passes.
    assert sent(Deadband(absolute=0.5), rows) == [0, 2, 4]
    assert sent(Deadband(), rows) == [0, 1, 2, 3, 4]  # any change; not an equal value


def test_a_percent_deadband() -> None:
    rows = [row(t, v) for t, v in enumerate([100.0, 101.5, 102.5, 100.0])]
    assert sent(Deadband(percent=2), rows) == [0, 2, 3]  # 2 % of 100, then of 102.5


def test_error_state_changes_pass_and_a_lasting_error_does_not() -> None:
    rows = [row(0, 20.0), row(1, None, error="timeout"), row(2, None, error="timeout"),
            row(3, 20.0), row(4, 20.0)]  # fmt: skip
    assert sent(Deadband(absolute=5), rows) == [0, 1, 3]


def test_a_heartbeat_proves_a_quiet_value_alive() -> None:
    rows = [row(t, 20.0) for t in range(0, 25, 2)]
    assert sent(Deadband(absolute=1, heartbeat_s=10), rows) == [0, 10, 20]
    errors = [row(t, None, error="timeout") for t in range(0, 25, 5)]
    assert sent(Deadband(heartbeat_s=10), errors) == [0, 10, 20]


def test_text_values_pass_when_their_text_changes() -> None:
    rows = [row(0, None, text="on"), row(1, None, text="on"), row(2, None, text="off")]
    assert sent(Deadband(), rows) == [0, 2]


def flow_of(items: list[Any], bands: dict[tuple[str, str], Deadband], out: list[Any]) -> Dataflow:
    flow = Dataflow("changes_test")
    rows = op.input("in", flow, TestingSource(items))
    op.output("out", changes(rows, bands), TestingSink(out))
    return flow


def test_parameters_are_kept_apart_in_the_dataflow() -> None:
    items = [row(0, 1.0), row(0, 5.0, parameter="sp"), row(1, 1.2), row(1, 5.0, parameter="sp"),
             row(2, 2.0), row(2, 6.0, parameter="sp")]  # fmt: skip
    out: list[Any] = []
    run_main(flow_of(items, {("pm", "pv"): Deadband(absolute=0.5)}, out))
    got = [(r["parameter"], (r["requested_at"] - T0).total_seconds()) for r in out]
    assert sorted(got) == [("pv", 0), ("pv", 2), ("sp", 0), ("sp", 2)]


def test_a_resumed_run_keeps_the_last_row_sent(tmp_path: Path) -> None:
    """Crash after 20.3, resume: 20.4 is within 0.5 of 20.0 (sent before the crash), so it
    stays out; a fresh state would have sent it."""
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    items = [row(0, 20.0), row(1, 20.3), TestingSource.ABORT(), row(2, 20.4), row(3, 21.0)]
    bands = {("pm", "pv"): Deadband(absolute=0.5)}
    out: list[Any] = []
    run_main(flow_of(items, bands, out), epoch_interval=timedelta(0), recovery_config=recovery)
    assert [r["value"] for r in out] == [20.0]
    run_main(flow_of(items, bands, out), epoch_interval=timedelta(0), recovery_config=recovery)
    assert [r["value"] for r in out] == [20.0, 21.0]


def test_config_keys_and_the_changes_stream(tmp_path: Path) -> None:
    text = """
    [[bus]]
    name = "gw"
    url = "tcp://10.0.0.5:502"
      [[bus.device]]
      name = "pm"
      profile = "watlow_pm"
      address = 1
      override = {{ analog_input_value = {{ {band} }} }}
    [[sink]]
    kind = "jsonl"
    path = "changes.jsonl"
    stream = "changes"
    """
    config = load_config(
        write_config(tmp_path, text.format(band="deadband = 0.5, heartbeat_s = 60"))
    )
    assert len(config.change_sinks) == 1 and not config.sinks
    pv = config.buses[0].devices[0].parameters[0]
    assert (pv.name, pv.deadband, pv.heartbeat_s) == ("analog_input_value", 0.5, 60)
    for band, line in [
        ("deadband = -1", "deadband: -1 is not a finite number >= 0"),
        ("heartbeat_s = 0", "heartbeat_s: 0 is not a finite number > 0"),
        ("deadband = 1, deadband_pct = 2", "give deadband (absolute) or deadband_pct, not both"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(line)):
            load_config(write_config(tmp_path, text.format(band=band)))


RUN = """
[acquisition]
rate_hz = {rate_hz}
duration_s = {duration_s}
[[bus]]
name = "sim"
url = "tcp://127.0.0.1:0"
simulate = true
  [[bus.device]]
  name = "pm"
  profile = "watlow_pm"
  address = 1
  parameters = {parameters}
  [bus.device.override]
{overrides}
[[sink]]
kind = "sqlite"
path = "out.sqlite"
[[sink]]
kind = "sqlite"
path = "out.sqlite"
table = "changes"
stream = "changes"
"""


def run_pm(tmp_path: Path, rate_hz: float, duration_s: float, overrides: dict[str, str]) -> Path:
    """Run the whole flow on one simulated PM reading the parameters of ``overrides`` (name ->
    inline table) into SQLite: its raw rows in ``samples``, its changes in ``changes``."""
    from flows.acquire import build_flow

    lines = "\n".join(f"  {name} = {{ {band} }}" for name, band in overrides.items())
    text = RUN.format(
        rate_hz=rate_hz, duration_s=duration_s, parameters=json.dumps(list(overrides)),
        overrides=lines,
    )  # fmt: skip
    run_main(build_flow(load_config(write_config(tmp_path, text))))
    return tmp_path / "out.sqlite"


def test_the_flow_sends_each_parameter_once_when_nothing_moves_enough(tmp_path: Path) -> None:
    """A whole run on a simulated PM, every parameter with a deadband nothing crosses: the
    changes sink holds each parameter's first row only, the raw sink every row."""
    bands = {"analog_input_value": "deadband = 1e9", "heat_power": "deadband = 1e9",
             "set_point": "deadband_pct = 1e9"}  # fmt: skip
    db_path = run_pm(tmp_path, 5, 1, bands)
    with sqlite3.connect(db_path) as db:
        raw = db.execute("SELECT count(*) FROM samples").fetchone()[0]
        sent = db.execute("SELECT parameter, count(*) FROM changes GROUP BY parameter").fetchall()
    assert raw == 3 * 5
    assert sorted(sent) == [("analog_input_value", 1), ("heat_power", 1), ("set_point", 1)]


def test_a_run_with_deadbands_sends_what_the_rule_says(tmp_path: Path) -> None:
    """A simulated PM heating, its process value with a deadband of 0.05 and a heartbeat of
    1 s: the changes table holds exactly the rows this test picks from the raw rows by the
    rule, worked out here on its own."""
    bands = {"analog_input_value": "deadband = 0.05, heartbeat_s = 1", "set_point": ""}
    db_path = run_pm(tmp_path, 10, 2, bands)
    with sqlite3.connect(db_path) as db:
        query = "SELECT parameter, requested_at, value FROM {} ORDER BY parameter, requested_at"
        raw = db.execute(query.format("samples")).fetchall()
        sent = db.execute(query.format("changes")).fetchall()
    expected = []
    last: dict[str, tuple[str, float]] = {}
    for parameter, at, value in raw:
        before = last.get(parameter)
        quiet = before is not None and (
            datetime.fromisoformat(at) - datetime.fromisoformat(before[0])
        ) >= timedelta(seconds=1)
        if parameter == "analog_input_value":
            moved = before is None or abs(value - before[1]) > 0.05 or quiet
        else:  # no band: any change
            moved = before is None or value != before[1]
        if moved:
            expected.append((parameter, at, value))
            last[parameter] = (at, value)
    assert sent == expected
    pv = [r for r in raw if r[0] == "analog_input_value"]
    assert 1 < len([r for r in sent if r[0] == "analog_input_value"]) < len(pv)
