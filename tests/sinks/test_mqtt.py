"""The MQTT sink against the real Mosquitto on 127.0.0.1:1883, read back by an independent
paho subscriber: every row arrives on its templated topic, in order per topic, its JSON equal
to the row; retain; config errors in one line; the password nowhere; a dark broker raises
SinkUnavailableError, and behind the spool every row is delivered once it is back.

Without a broker answering, these tests skip, except under CI (``CI=true``)."""

from __future__ import annotations

import json
import logging
import re
import sys
import textwrap
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bench.machine import free_ports
from flows.config import ConfigError, load_config
from sinks.base import (
    Column,
    Schema,
    SinkConfigError,
    SinkDependencyError,
    SinkUnavailableError,
    SinkValueError,
)
from sinks.columns import format_timestamp
from sinks.mqtt import IntoMqtt
from sinks.spooled import IntoSpooled
from tests.faults.proxy import FaultProxy
from tests.sinks.mqttsub import BROKER, URL, Subscriber, paho
from tests.sinks.mqttsub import broker as broker  # the fixture: its skip rule

SECRET = "pw-Zq8-never-shown"
T0 = datetime(2026, 12, 5, 16, 0, tzinfo=timezone.utc)


def json_message(msg: Any) -> tuple[str, dict[str, Any], bool]:
    return msg.topic, json.loads(msg.payload), bool(msg.retain)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def subscriber(prefix: str) -> Any:
    sub = Subscriber(f"{prefix}/#", json_message)
    yield sub
    sub.close()


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "bus": f"bus{i % 2}",
            "device": f"pm{i % 3}",
            "parameter": "analog_input_value",
            "instance": 1,
            "value": 20.5 + i,
            "value_text": None,
            "ok": i % 2 == 0,
            "requested_at": T0 + timedelta(seconds=i),
        }
        for i in range(start, start + n)
    ]


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: format_timestamp(v) if isinstance(v, datetime) else v for k, v in row.items()}


@pytest.mark.parametrize("qos", [0, 1])
def test_every_row_arrives_on_its_topic_in_order(qos: int, prefix: str, subscriber: Any) -> None:
    part = IntoMqtt(URL, prefix=prefix, qos=qos, max_inflight=5).build_partition(0, 1)
    batches = [rows(40, 0), rows(40, 40), rows(1, 80)]
    for batch in batches:
        part.write_batch(batch)
    part.write_batch([])
    part.close()
    part.close()
    sent = [r for b in batches for r in b]
    got = subscriber.wait(len(sent))
    assert len(got) == len(sent)
    for topic in {f"{prefix}/{r['bus']}/{r['device']}/{r['parameter']}" for r in sent}:
        expected = [as_json(r) for r in sent if f"{prefix}/{r['bus']}/{r['device']}/" in topic]
        assert [p for t, p, _ in got if t == topic] == expected


def test_a_custom_template_and_values_no_topic_can_hold(prefix: str, subscriber: Any) -> None:
    part = IntoMqtt(URL, topic=prefix + "/{device}/i{instance}/x", qos=1).build_partition(0, 1)
    part.write_batch(rows(3))
    got = subscriber.wait(3)
    assert [t for t, _, _ in got] == [f"{prefix}/pm{i}/i1/x" for i in range(3)]
    for value, why in [("a+b", "wildcard '+'"), ("#", "wildcard '#'"), ("a\0", "NUL"),
                       ("", "empty topic level"), ("a//b", "empty topic level"),
                       (None, "NULL"), ("\ud800", "lone surrogate"),
                       ("x" * 70000, "longer than an MQTT topic")]:  # fmt: skip
        bad = [*rows(2), {**rows(1)[0], "device": value}]
        with pytest.raises(SinkValueError, match=f"column 'device'.*{re.escape(why)}"):
            part.write_batch(bad)
    part.close()
    time.sleep(0.1)
    assert len(subscriber.messages) == 3  # a refused batch publishes nothing


def test_retain_keeps_each_topics_last_row(prefix: str) -> None:
    part = IntoMqtt(URL, prefix=prefix, retain=True).build_partition(0, 1)
    part.write_batch(rows(12))  # six topics, each written twice
    part.close()
    late = Subscriber(f"{prefix}/#", json_message)  # subscribes after the rows were published
    try:
        got = late.wait(6)
        assert sorted((t, p["value"], r) for t, p, r in got) == [
            (f"{prefix}/bus{i % 2}/pm{i % 3}/analog_input_value", 20.5 + i, True)
            for i in sorted(range(6, 12), key=lambda i: (i % 2, i % 3))
        ]
    finally:
        late.close()
        for topic, _, _ in got:  # leave the broker as found
            cleaner = paho.Client(paho.CallbackAPIVersion.VERSION2)
            cleaner.connect(*BROKER)
            cleaner.publish(topic, b"", 0, retain=True)
            cleaner.loop(0.1)
            cleaner.disconnect()


BASE = """
[[bus]]
name = "gw"
url = "tcp://10.0.0.5:502"

  [[bus.device]]
  name = "pm"
  profile = "watlow_pm"
  address = 7

[[sink]]
kind = "mqtt"
"""


U = f'url = "{URL}"\n'
S = U + 'payload = "sparkplug_b"\n'


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ('url = "http://broker"', "url: 'http://broker' is not mqtt://host[:port]"),
        ('url = "mqtt://broker:99999"', "url: 'mqtt://broker:99999' has a bad port"),
        (f'url = "mqtt://u:{SECRET}@broker"', "url: credentials go in username"),
        (U + 'topic = "a/+/{device}"', "topic: 'a/+/{device}' has the MQTT wildcard '+'"),
        (U + 'topic = "a/#"', "topic: 'a/#' has the MQTT wildcard '#'"),
        (U + 'topic = "{prefix}//{device}"', "topic: '{prefix}//{device}' has an empty level"),
        (U + 'topic = "a/{device}/"', "topic: 'a/{device}/' has an empty level"),
        (U + 'topic = "a/{device:>5}"', "topic: 'a/{device:>5}': {device} is not a plain"),
        (U + 'topic = "$SYS/{device}"', "topic: '$SYS/{device}': '$' topics are the broker's"),
        (U + 'prefix = "a+"', "prefix: 'a+' has the MQTT wildcard '+'"),
        (U + "qos = 2", "qos: 2 is not 0 or 1"),
        (U + 'retain = "yes"', "retain: 'yes' is not a bool"),
        (U + 'ca_file = "ca.pem"', "ca_file: needs an mqtts:// url"),
        ('url = "mqtts://broker"\nca_file = "no.pem"', "ca_file: 'no.pem' is not a file"),
        (U + "password = 12345", "password: is not a string"),
        (U + "max_inflight = 0", "max_inflight: 0 is not an integer in [1, 65535]"),
        (U + 'topics = "a"', "topics: unknown key for a mqtt sink"),
        (
            U + 'stream = "bus_stats"',
            "topic: '{prefix}/{bus}/{device}/{parameter}': unknown field {device}",
        ),
        ("", "url: missing"),
        (S + 'group_id = "a/b"', "group_id: 'a/b' has '/': not a Sparkplug B id"),
        (S + 'edge_node_id = "e+1"', "edge_node_id: 'e+1' has '+': not a Sparkplug B id"),
        (S + 'group_id = ""', "group_id: '' is empty: not a Sparkplug B id"),
        (S + "retain = true", "retain: Sparkplug B messages are never retained"),
        (S + 'topic = "x/{device}"', "topic: Sparkplug B topics are spBv1.0/<group_id>/"),
        (S + 'stream = "bus_stats"', "stream: a sparkplug_b sink publishes acquisition rows"),
        (S + "devices = []", "devices: unknown key for a mqtt sink"),
        (U + 'group_id = "g"', "group_id: is for payload = 'sparkplug_b' only"),
        (U + 'payload = "xml"', "payload: 'xml' is not json or sparkplug_b"),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, keys: str, expected: str) -> None:
    path = tmp_path / "acquire.toml"
    path.write_text(textwrap.dedent(BASE) + keys + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    line = str(info.value).removeprefix(f"{path}: ")
    assert line.startswith("sink[0]." + expected)
    assert "\n" not in line
    assert SECRET not in line and "12345" not in line


def test_a_good_config_and_the_topics_fields_against_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "acquire.toml"
    path.write_text(textwrap.dedent(BASE) + f'url = "{URL}"\nqos = 0\nusername = "daq"\n')
    sink = load_config(path).sinks[0]
    assert isinstance(sink, IntoSpooled) and sink.sink == IntoMqtt(URL, qos=0, username="daq")
    schema = Schema((Column("bus", "text"), Column("device", "text"), Column("value", "float")))
    with pytest.raises(SinkConfigError, match=r"IntoMqtt.topic: .*unknown field \{parameter\}"):
        sink.with_schema(schema)
    assert IntoMqtt(URL, topic="x/{device}").with_schema(schema).schema == schema


def test_a_sparkplug_sink_gets_the_devices_metrics_and_the_spool_dir(tmp_path: Path) -> None:
    path = tmp_path / "acquire.toml"
    path.write_text(textwrap.dedent(BASE) + S + 'stream = "changes"\nedge_node_id = "gw-1"\n')
    config = load_config(path)
    sink = config.change_sinks[0]
    assert isinstance(sink, IntoSpooled) and isinstance(sink.sink, IntoMqtt)
    ((device, metrics),) = sink.sink.devices
    (profile,) = [d.parameters for d in config.buses[0].devices]
    assert device == "pm" and [m.name for m in metrics] == [p.name for p in profile]
    kinds = {m.name: (m.datatype, m.unit) for m in metrics}
    assert kinds["analog_input_value"] == ("Float", "degC")  # float32 in the profile
    assert sink.sink.state_dir == str(tmp_path / "spool")
    assert sink.sink.effective_qos == 0 and sink.sink.edge_node(1, 2) == "gw-1-w1"


def test_a_missing_paho_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # import raises ImportError
    path = tmp_path / "acquire.toml"
    path.write_text(textwrap.dedent(BASE) + U)
    with pytest.raises(ConfigError, match=r"sink\[0\]\.kind: a mqtt sink needs paho.*\[mqtt\]"):
        load_config(path)
    with pytest.raises(SinkDependencyError, match=r'pip install "\.\[mqtt\]"'):
        IntoMqtt(URL).build_partition(0, 1)


def test_the_password_never_shows(caplog: pytest.LogCaptureFixture, prefix: str) -> None:
    caplog.set_level(logging.DEBUG)
    sink = IntoMqtt(URL, prefix=prefix, username="daq", password=SECRET)
    assert SECRET not in repr(sink)
    part = sink.build_partition(0, 1)  # Mosquitto takes any credentials here
    part.write_batch(rows(2))
    part.close()
    closed = IntoMqtt(f"mqtt://127.0.0.1:{free_ports(1)[0]}", username="daq", password=SECRET)
    with pytest.raises(SinkUnavailableError) as info:
        closed.build_partition(0, 1)
    spooled = IntoSpooled(sink, Path("."), "mqtt")
    assert SECRET not in f"{info.value} {closed!r} {spooled!r} {caplog.text}"


def test_an_unreachable_broker_is_unavailable_at_build_and_on_write(prefix: str) -> None:
    started = time.monotonic()
    with pytest.raises(SinkUnavailableError, match=r"cannot connect to MQTT broker 127\.0\.0\.1"):
        IntoMqtt(f"mqtt://127.0.0.1:{free_ports(1)[0]}").build_partition(0, 1)
    assert time.monotonic() - started < 1
    with FaultProxy(BROKER) as proxy:
        url = f"mqtt://127.0.0.1:{proxy.port}"
        part = IntoMqtt(url, prefix=prefix, ack_timeout_s=1).build_partition(0, 1)
        part.write_batch(rows(2))
        proxy.mode = "refuse"
        with pytest.raises(SinkUnavailableError, match=r"MQTT broker 127\.0\.0\.1"):
            part.write_batch(rows(2))
        proxy.mode = "pass"
        part.write_batch(rows(2))  # the next write reconnects
        part.close()
        part = IntoMqtt(url, prefix=prefix, ack_timeout_s=0.3).build_partition(0, 1)
        proxy.mode = "blackhole"  # the connection stays, the acks never come
        with pytest.raises(SinkUnavailableError, match="2 of 2 messages not acknowledged"):
            part.write_batch(rows(2))
        part.close()


def test_rows_spooled_while_the_broker_is_dark_are_all_delivered(
    tmp_path: Path, prefix: str, subscriber: Any
) -> None:
    with FaultProxy(BROKER) as proxy:
        mqtt = IntoMqtt(f"mqtt://127.0.0.1:{proxy.port}", prefix=prefix, ack_timeout_s=1)
        sink = IntoSpooled(mqtt, tmp_path, "mqtt", backoff_s=0.05, backoff_max_s=0.2)
        part = sink.build_partition(0, 1)
        part.write_batch(rows(10, 0))
        proxy.mode = "refuse"
        part.write_batch(rows(10, 10))
        part.write_batch(rows(10, 20))
        dark = part.state()
        assert (dark.state, dark.rows_spooled) == ("spooling", 20)  # acquisition went on
        proxy.mode = "pass"
        got = subscriber.wait(30)
        part.close()
    values = sorted(p["value"] for _, p, _ in got)
    assert sorted(set(values)) == [20.5 + i for i in range(30)]  # at least once, nothing lost
    assert [as_json(r) for r in rows(10, 10)] == [
        p for _, p, _ in got if 30.5 <= p["value"] < 40.5
    ][-10:]
