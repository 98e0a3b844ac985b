"""The default config with an MQTT sink added: an independent subscriber receives every row
the run stored, each exactly once (issue 20's first done-when), as JSON and as Sparkplug B
(decoded with Eclipse Tahu's proto, see tests/interop/sparkplug.py); one run publishes both."""

from __future__ import annotations

import json
import sqlite3
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import cluster_main, run_main

from flows.acquire import build_flow
from flows.config import load_config
from tests.interop.sparkplug import Message, compiled, sparkplug_subscriber, value_of
from tests.sinks.mqttsub import URL, Subscriber
from tests.sinks.mqttsub import broker as broker  # the fixture: its skip rule

ROOT = Path(__file__).resolve().parents[2]
STORED = "SELECT device, parameter, requested_at, value, value_text FROM samples"


def run(
    tmp_path: Path, sink: str, start: Callable[[], Any], workers: int = 1
) -> tuple[list[tuple[Any, ...]], Any]:
    """Run the default config for 2 s on ``workers`` workers with ``sink`` (TOML) added,
    ``start()``'s subscriber listening; the rows the run stored in SQLite, and the
    subscriber."""
    text = (ROOT / "acquire.toml").read_text().replace("duration_s = 10", "duration_s = 2")
    (tmp_path / "acquire.toml").write_text(
        text + f'\n[[sink]]\nkind = "mqtt"\nurl = "{URL}"\n{sink}'
    )
    config = load_config(tmp_path / "acquire.toml")
    sub = start()
    try:
        if workers == 1:
            run_main(build_flow(config))
        else:
            cluster_main(build_flow(config), [], 0, worker_count_per_proc=workers)
        time.sleep(0.5)
    finally:
        sub.close()
    with sqlite3.connect(tmp_path / "data" / "acquire.sqlite") as db:
        stored = db.execute(STORED).fetchall()
    assert len(stored) > 100
    return stored, sub


def json_key(message: Any) -> tuple[str, str, str]:
    row = json.loads(message.payload)
    return row["device"], row["parameter"], row["requested_at"]


@pytest.fixture(scope="module")
def default_run(broker: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One default run with two MQTT sinks, JSON under a prefix and Sparkplug B under a
    group, each with its subscriber: the directory, the rows stored, both subscribers and
    the compiled proto."""
    tmp = tmp_path_factory.mktemp("publish")
    pb = compiled(tmp)
    prefix, group = (f"daqtest{uuid.uuid4().hex[:8]}" for _ in range(2))
    subs: dict[str, Any] = {}

    def start() -> Any:
        subs["json"] = Subscriber(f"{prefix}/#", json_key)
        subs["sparkplug"] = sparkplug_subscriber(pb, group)
        return type("Both", (), {"close": lambda self: [s.close() for s in subs.values()]})()

    sinks = (
        f'prefix = "{prefix}"\n'
        f'[[sink]]\nkind = "mqtt"\nurl = "{URL}"\npayload = "sparkplug_b"\n'
        f'group_id = "{group}"\nedge_node_id = "lab"\n'
    )
    stored, _ = run(tmp, sinks, start)
    return {"dir": tmp, "stored": stored, "pb": pb, **subs}


def test_every_row_of_a_default_run_is_received_once(default_run: dict[str, Any]) -> None:
    stored, sub = default_run["stored"], default_run["json"]
    got = sub.messages
    counts = Counter(got)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:3]
    assert len(got) == len(stored)


def test_every_row_of_a_default_run_as_sparkplug_b(default_run: dict[str, Any]) -> None:
    pb, stored, sub = default_run["pb"], default_run["stored"], default_run["sparkplug"]
    tmp_path = default_run["dir"]
    config = load_config(tmp_path / "acquire.toml")
    catalog = {d.name: {p.name for p in d.parameters} for b in config.buses for d in b.devices}
    births: dict[str, dict[int, tuple[str, int]]] = {}
    got: Counter[tuple[str, str, int]] = Counter()
    values: dict[tuple[str, str, int], Any] = {}
    kinds = [m.kind for m in sub.messages]
    assert kinds[0] == "NBIRTH" and kinds[-1] == "NDEATH" and kinds.count("NBIRTH") == 1
    for m in sub.messages:
        if m.kind == "DBIRTH":
            births[m.device] = {x.alias: (x.name, x.datatype) for x in m.payload.metrics}
            assert {n for n, _ in births[m.device].values()} == catalog[m.device]
            assert all(dt for _, dt in births[m.device].values())
        elif m.kind == "DDATA":
            assert m.device in births, f"DDATA of {m.device} before its DBIRTH"
            for x in m.payload.metrics:
                name, datatype = births[m.device][x.alias]
                key = (m.device, name, x.timestamp)
                got[key] += 1
                values[key] = value_of(pb, x, datatype), datatype
    assert set(births) == set(catalog)
    assert sum(got.values()) == len(stored) and max(got.values()) == 1
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for device, parameter, at, value, text in stored:
        ms = (datetime.fromisoformat(at) - epoch) // timedelta(milliseconds=1)
        found, datatype = values[(device, parameter, ms)]
        if datatype == pb.String:
            assert found == text
        elif value is None:
            assert found is None
        elif datatype == pb.Float:
            assert found == struct.unpack("<f", struct.pack("<f", value))[0]
        else:
            assert found == value, (device, parameter, found, value)


def test_two_workers_birth_each_device_on_the_edge_node_that_publishes_it(tmp_path: Path) -> None:
    """Two workers, two edge nodes per stream: each device (of the raw rows, and of the
    changes, whose step keys by device) is born and published by one edge node only."""
    pb = compiled(tmp_path)
    group = f"daqtest{uuid.uuid4().hex[:8]}"
    subs: list[Subscriber[Message]] = []

    def start() -> Any:
        subs.extend(sparkplug_subscriber(pb, f"{group}{s}") for s in ("s", "c"))
        return type("Both", (), {"close": lambda self: [s.close() for s in subs]})()

    sinks = (
        f'payload = "sparkplug_b"\ngroup_id = "{group}s"\nedge_node_id = "lab"\n'
        f'[[sink]]\nkind = "mqtt"\nurl = "{URL}"\npayload = "sparkplug_b"\n'
        f'group_id = "{group}c"\nedge_node_id = "lab"\nstream = "changes"\n'
    )
    stored, _ = run(tmp_path, sinks, start, workers=2)
    config = load_config(tmp_path / "acquire.toml")
    devices = {d.name for b in config.buses for d in b.devices}
    for sub in subs:
        born: dict[str, set[str]] = {}  # edge node -> devices it birthed
        published: dict[str, set[str]] = {}
        for m in sub.messages:
            if m.kind == "DBIRTH":
                born.setdefault(m.edge_node, set()).add(str(m.device))
            elif m.kind == "DDATA":
                assert m.device in born.get(m.edge_node, set()), (m.edge_node, m.device)
                published.setdefault(m.edge_node, set()).add(str(m.device))
        assert published["lab-w0"].isdisjoint(published["lab-w1"])
        assert published["lab-w0"] | published["lab-w1"] == devices
    rows = sum(len(m.payload.metrics) for m in subs[0].messages if m.kind == "DDATA")
    assert rows == len(stored)
