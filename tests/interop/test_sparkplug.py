"""The MQTT sink's Sparkplug B payloads, read back from the real Mosquitto by a subscriber
that decodes them with Eclipse Tahu's sparkplug_b.proto compiled in the test (see
tests/interop/sparkplug.py): births before data with every metric and its datatype, aliases
that resolve, values equal to the rows, seq wrapping at 255, a rebirth for a metric no birth
named, the NDEATH with the NBIRTH's bdSeq both on close and as the will of a cut
connection, and bdSeq carried across runs in the state directory."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from sinks.base import SinkUnavailableError
from sinks.mqtt import IntoMqtt
from sinks.sparkplug import DATATYPES, Metric
from tests.faults.proxy import FaultProxy
from tests.interop.sparkplug import Message, compiled, sparkplug_subscriber, value_of
from tests.sinks.mqttsub import BROKER, URL, Subscriber
from tests.sinks.mqttsub import broker as broker  # the fixture: its skip rule

T0 = datetime(2026, 12, 5, 16, 0, tzinfo=timezone.utc)
CATALOG = (
    ("pm-1", (Metric("pv", "Float", "C"), Metric("offset", "Int16"), Metric("heat", "Double", "%"),
              Metric("alarm", "Boolean"), Metric("count", "UInt32"))),
    ("o2", (Metric("o2", "Double", "%"), Metric("name", "String"), Metric("ticks", "Int64"))),
)  # fmt: skip
DATATYPE = {m.name: m.datatype for _, metrics in CATALOG for m in metrics}


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return compiled(tmp_path_factory.mktemp("proto"))


@pytest.fixture
def group() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def subscriber(pb: Any, group: str) -> Iterator[Subscriber[Message]]:
    sub = sparkplug_subscriber(pb, group)
    yield sub
    sub.close()


def rows(tick: int) -> list[dict[str, Any]]:
    at = T0 + timedelta(seconds=tick)
    values = {
        **{"pv": 20.1 + tick, "offset": -3.0 - tick, "heat": 1 / 3 + tick},
        **{"alarm": float(tick % 2), "count": 4e9 + tick, "o2": 20.9, "name": None},
        "ticks": -(2.0**40) - tick,
    }
    out = []
    for device, metrics in CATALOG:
        for m in metrics:
            failed = m.name == "o2" and tick % 5 == 3  # an error row now and then
            out.append({"device": device, "parameter": m.name, "instance": 1,
                        "value": None if failed else values[m.name],
                        "value_text": "O2" if m.name == "name" else None,
                        "error": "timeout" if failed else None, "requested_at": at})  # fmt: skip
    return out


def expected(row: dict[str, Any], datatype: str) -> Any:
    """What the decoder must read for a row's value as ``datatype``."""
    if row["value"] is None and datatype != "String":
        return None
    return {
        "String": lambda r: r["value_text"],
        "Float": lambda r: struct.unpack("<f", struct.pack("<f", r["value"]))[0],
        "Double": lambda r: r["value"],
        "Boolean": lambda r: bool(r["value"]),
    }.get(datatype, lambda r: int(r["value"]))(row)


def check_session(pb: Any, got: list[Message], qos: int = 0) -> dict[tuple[str, str], list[Any]]:
    """Check the Sparkplug rules over one edge node's messages in order; return the DDATA
    metrics per (device, metric name)."""
    names = {v: k for k, v in DATATYPES.items()}
    births: dict[str, dict[int, tuple[str, int]]] = {}  # device -> alias -> (name, datatype)
    data: dict[tuple[str, str], list[Any]] = {}
    seq = bdseq = None
    for m in got:
        assert not m.retain
        p = m.payload
        if m.kind == "NDEATH":
            assert not p.HasField("seq") and [x.name for x in p.metrics] == ["bdSeq"]
            assert p.metrics[0].long_value == bdseq, "NDEATH's bdSeq is the NBIRTH's"
            continue
        assert m.qos == qos, f"{m.kind} at QoS {m.qos}"
        assert p.HasField("seq") and p.timestamp > 0
        if m.kind == "NBIRTH":
            assert p.seq == 0
            bd, rebirth = p.metrics
            assert (bd.name, bd.datatype, bd.HasField("alias")) == ("bdSeq", pb.Int64, False)
            assert (rebirth.name, rebirth.datatype, rebirth.boolean_value) == (
                "Node Control/Rebirth", pb.Boolean, False)  # fmt: skip
            assert not rebirth.HasField("alias")
            bdseq, seq, births = bd.long_value, 0, {}
            continue
        assert seq is not None, f"{m.kind} before any NBIRTH"
        assert p.seq == (seq + 1) % 256, (m.topic, p.seq, seq)
        seq = p.seq
        if m.kind == "DBIRTH":
            births[m.device] = {x.alias: (x.name, x.datatype) for x in p.metrics}
            assert all(x.HasField("timestamp") and x.datatype for x in p.metrics)
            units = {x.name: dict(zip(x.properties.keys, x.properties.values, strict=True))
                     for x in p.metrics}  # fmt: skip
            assert units["pv"]["engUnit"].string_value == "C" if m.device == "pm-1" else True
            aliases = [a for d in births.values() for a in d]
            assert len(aliases) == len(set(aliases)), "aliases unique across the edge node"
        elif m.kind == "DDATA":
            assert m.device in births, f"DDATA of {m.device} before its DBIRTH"
            for x in p.metrics:
                assert not x.name, "DDATA carries aliases only"
                name, datatype = births[m.device][x.alias]
                quality = dict(zip(x.properties.keys, x.properties.values, strict=True))
                failed = "Quality" in quality and quality["Quality"].int_value == 0
                value = value_of(pb, x, datatype)
                found = (x.timestamp, value, names[datatype], failed)
                data.setdefault((m.device, name), []).append(found)
    return data


@pytest.mark.parametrize("qos", [None, 1])  # the specification's 0, or acknowledged
def test_births_aliases_values_and_seq(
    pb: Any, group: str, subscriber: Subscriber[Message], qos: int | None
) -> None:
    sink = IntoMqtt(
        URL, payload="sparkplug_b", qos=qos, group_id=group, edge_node_id="edge", devices=CATALOG
    )
    part = sink.build_partition(0, 1)
    ticks = range(140)  # 2 DDATA a tick: seq wraps past 255
    for tick in ticks:
        part.write_batch(rows(tick))
    extra = {**rows(140)[0], "parameter": "extra", "value": 7.5}  # no birth names it: a rebirth
    part.write_batch([extra, *rows(141)])
    part.close()
    got = subscriber.wait(lambda ms: any(m.kind == "NDEATH" for m in ms))
    kinds = [m.kind for m in got]
    assert kinds[:3] == ["NBIRTH", "DBIRTH", "DBIRTH"] and kinds[-1] == "NDEATH"
    assert kinds.count("NBIRTH") == 2 and kinds.index("NBIRTH", 1) == 3 + 2 * len(ticks)
    assert [m.payload.seq for m in got[:-1]].count(255) == 1, "seq wrapped once"
    first = {m.device: m for m in got if m.kind == "DBIRTH"}  # the rebirth's DBIRTHs
    for device, metrics in CATALOG:
        birth = {x.name: x.datatype for x in first[device].payload.metrics}
        assert {
            n: DATATYPES[m.datatype] for n, m in ((m.name, m) for m in metrics)
        }.items() <= birth.items()
    assert first["pm-1"].payload.metrics[-1].name == "extra"
    data = check_session(pb, got, qos or 0)
    sent = [r for t in [*ticks, 141] for r in rows(t)] + [extra]
    assert sum(map(len, data.values())) == len(sent)
    for row in sent:
        datatype = "Double" if row["parameter"] == "extra" else DATATYPE[row["parameter"]]
        ms = int(
            (row["requested_at"] - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 1000
        )
        want = (ms, expected(row, datatype), datatype, row["error"] is not None)
        assert want in data[(row["device"], row["parameter"])], (
            row,
            data[(row["device"], row["parameter"])][:2],
        )


def test_ndeath_is_the_will_of_a_cut_connection_and_bdseq_goes_on(
    pb: Any, group: str, subscriber: Subscriber[Message], tmp_path: Path
) -> None:
    with FaultProxy(BROKER) as proxy:
        sink = IntoMqtt(f"mqtt://127.0.0.1:{proxy.port}", payload="sparkplug_b", group_id=group,
                        edge_node_id="edge", devices=CATALOG, state_dir=str(tmp_path))  # fmt: skip
        part = sink.build_partition(0, 1)
        part.write_batch(rows(0))
        subscriber.wait(lambda ms: len(ms) == 5)  # NBIRTH, 2 DBIRTH, 2 DDATA
        proxy.mode = "cut"  # both ends reset: the broker publishes the will
        will = subscriber.wait(lambda ms: any(m.kind == "NDEATH" for m in ms))[-1]
        try:
            part.write_batch(rows(1))  # reconnects: a new session
        except SinkUnavailableError:  # it came before paho saw the reset: as the spool would,
            part.write_batch(rows(1))  # write it again
        part.close()
        # Leaving the proxy FINs both ends without passing on what it holds: a DISCONNECT
        # still there would be lost, and the broker would publish the will too.
        deadline = time.monotonic() + 2
        while proxy.connections and time.monotonic() < deadline:
            time.sleep(0.01)
    again = IntoMqtt(URL, payload="sparkplug_b", group_id=group, edge_node_id="edge",
                     devices=CATALOG, state_dir=str(tmp_path)).build_partition(0, 1)  # fmt: skip
    again.write_batch(rows(2))  # the next run
    again.close()
    got = subscriber.wait(lambda ms: [m.kind for m in ms].count("NDEATH") == 3)
    assert (will.kind, will.qos, will.retain) == ("NDEATH", 1, False)
    sessions: list[list[Message]] = []
    for m in got:
        if m.kind == "NBIRTH":
            sessions.append([])
        sessions[-1].append(m)
    assert [[m.kind for m in s] for s in sessions] == [
        ["NBIRTH", "DBIRTH", "DBIRTH", "DDATA", "DDATA", "NDEATH"]] * 3  # fmt: skip
    bdseqs = [s[0].payload.metrics[0].long_value for s in sessions]
    assert bdseqs == [0, 1, 2]
    for session in sessions:
        check_session(pb, session)  # each NDEATH's bdSeq is its NBIRTH's
    assert (tmp_path / f"sparkplug-{group}-edge.bdseq").read_text() == "2\n"


def test_an_ncmd_rebirth_births_everything_again(
    pb: Any, group: str, subscriber: Subscriber[Message]
) -> None:
    import paho.mqtt.client as paho

    sink = IntoMqtt(
        URL, payload="sparkplug_b", group_id=group, edge_node_id="edge", devices=CATALOG
    )
    part = sink.build_partition(0, 1)
    part.write_batch(rows(0))
    command = pb.Payload()
    command.timestamp = 1
    metric = command.metrics.add()
    metric.name, metric.datatype, metric.boolean_value = "Node Control/Rebirth", pb.Boolean, True
    host = paho.Client(paho.CallbackAPIVersion.VERSION2)
    host.connect(*BROKER)
    host.loop_start()
    host.publish(f"spBv1.0/{group}/NCMD/edge", command.SerializeToString(), qos=1).wait_for_publish(
        2
    )
    host.disconnect()
    host.loop_stop()
    subscriber.wait(lambda ms: any(m.kind == "NCMD" for m in ms))
    time.sleep(0.1)  # the edge node's own delivery of the NCMD
    part.write_batch(rows(1))
    part.close()
    got = subscriber.wait(lambda ms: any(m.kind == "NDEATH" for m in ms))
    kinds = [m.kind for m in got if m.kind != "NCMD"]
    assert kinds == ["NBIRTH", "DBIRTH", "DBIRTH", "DDATA", "DDATA"] * 2 + ["NDEATH"]
    check_session(pb, [m for m in got if m.kind != "NCMD"])
