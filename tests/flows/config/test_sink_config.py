"""[[sink]] tables use only what a sink declares: its settings, its config errors' field, its
target; and the flow gives a sink its schema through ``with_schema``. A sink the config code
has never seen (a broker sink, a wrapper) needs no special case."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from flows.acquire import write
from flows.config import ConfigError, load_config
from flows.config import sinks as sink_config
from sinks.base import Column, IntoSink, Schema, SinkConfigError, SinkPartition, SinkTarget
from sinks.memory import IntoMemory

BASE = """
[acquisition]
rate_hz = 2

[[bus]]
name = "gw"
url = "tcp://10.0.0.5:502"

  [[bus.device]]
  name = "pm"
  profile = "watlow_pm"
  address = 7
"""


@dataclass(frozen=True)
class IntoTopic(IntoSink):
    """A broker-like sink: no path, no table; refuses a topic with a wildcard."""

    broker: str
    topic: str = "samples"
    schema: Schema | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or "#" in self.topic:
            raise SinkConfigError("IntoTopic", "topic", f"{self.topic!r}: wildcards: none")

    @property
    def target(self) -> SinkTarget:
        return SinkTarget("database", f"{self.broker}/{self.topic}", "topic")

    def build_partition(self, worker_index: int, worker_count: int) -> SinkPartition:
        return IntoMemory(schema=self.schema).build_partition(worker_index, worker_count)


@dataclass(frozen=True)
class IntoWrapped(IntoSink):
    """A wrapper (as a spool would be): schema and target are those of what it wraps."""

    inner: IntoSink

    @property  # type: ignore[override]
    def schema(self) -> Schema | None:
        return self.inner.schema

    def with_schema(self, schema: Schema | None) -> IntoSink:
        return IntoWrapped(self.inner.with_schema(schema))

    @property
    def target(self) -> SinkTarget:
        return self.inner.target

    def build_partition(self, worker_index: int, worker_count: int) -> SinkPartition:
        return self.inner.build_partition(worker_index, worker_count)


@pytest.fixture
def topic_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sink_config.SINK_KINDS, "topic", (__name__, "IntoTopic"))


def load(tmp_path: Path, sinks: str) -> Any:
    path = tmp_path / "acquire.toml"
    path.write_text(textwrap.dedent(BASE) + textwrap.dedent(sinks))
    return load_config(path)


def refusal(tmp_path: Path, sinks: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, sinks)
    return str(info.value).removeprefix(f"{tmp_path / 'acquire.toml'}: ")


@pytest.mark.usefixtures("topic_kind")
def test_a_new_kind_is_read_from_what_it_declares(tmp_path: Path) -> None:
    config = load(tmp_path, '[[sink]]\nkind = "topic"\nbroker = "mq:1883"\n')
    assert [s.sink for s in config.sinks] == [IntoTopic(broker="mq:1883")]
    assert refusal(tmp_path, '[[sink]]\nkind = "topic"\n') == "sink[0].broker: missing"
    assert refusal(tmp_path, '[[sink]]\nkind = "topic"\nbroker = "b"\nqos = 1\n') == (
        "sink[0].qos: unknown key for a topic sink (known keys: broker, kind, spool_max_mb, "
        "stream, topic)"
    )
    # The field comes as data: a reason with ": " in it is not cut there.
    assert refusal(tmp_path, '[[sink]]\nkind = "topic"\nbroker = "b"\ntopic = "a/#"\n') == (
        "sink[0].topic: 'a/#': wildcards: none"
    )
    two = '[[sink]]\nkind = "topic"\nbroker = "b"\n'
    assert refusal(tmp_path, two + two.replace('"b"\n', '"b"\nstream = "bus_stats"\n')) == (
        "sink[1].topic: 'b/samples' is already written by sink[0]"
    )


def test_a_wrapper_declares_the_target_of_what_it_wraps() -> None:
    rows: list[dict[str, Any]] = []
    assert IntoWrapped(IntoMemory(rows)).target.overlaps(IntoMemory(rows).target)


def test_the_flow_gives_a_wrapped_sink_its_schema() -> None:
    schema = Schema((Column("b", "int"), Column("a", "text")))
    inner = IntoMemory()
    flow = Dataflow("wrapped")
    rows = op.input("in", flow, TestingSource([{"a": "x", "b": 1, "extra": 0}]))
    write(rows, [IntoWrapped(inner)], schema=schema)
    run_main(flow)
    assert inner.rows == [{"b": 1, "a": "x"}]  # projected onto the schema the flow gave
