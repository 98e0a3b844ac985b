"""JSONL and memory sinks: what the shared contract test does not cover."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from sinks.jsonl import IntoJsonl
from sinks.memory import IntoMemory

T = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_infers_schema_and_writes_one_object_per_line(tmp_path: Path) -> None:
    part = IntoJsonl(path=tmp_path / "rows.jsonl").build_partition(0, 1)
    part.write_batch([{"b": 1, "t": T, "s": "ü"}, {"b": 2, "s": None}])
    part.close()
    text = (tmp_path / "rows.jsonl").read_text(encoding="utf-8")
    assert text.splitlines()[0] == '{"b": 1, "t": "2026-01-02T03:04:05.678901+00:00", "s": "ü"}'
    assert lines(tmp_path / "rows.jsonl")[1] == {"b": 2, "t": None, "s": None}


def test_jsonl_non_finite_floats_are_null(tmp_path: Path) -> None:
    part = IntoJsonl(path=tmp_path / "f.jsonl").build_partition(0, 1)
    part.write_batch([{"v": math.nan}, {"v": math.inf}, {"v": 1.25}])
    part.close()
    assert [r["v"] for r in lines(tmp_path / "f.jsonl")] == [None, None, 1.25]


def test_jsonl_appends_and_recovers_from_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"v": 1}\n{"v": ', encoding="utf-8")  # a crash mid-line
    part = IntoJsonl(path=path).build_partition(0, 1)
    part.write_batch([{"v": 2}])
    part.close()
    assert path.read_text().splitlines() == ['{"v": 1}', '{"v": ', '{"v": 2}']


def test_jsonl_one_file_per_worker(tmp_path: Path) -> None:
    sink = IntoJsonl(path=tmp_path / "rows.jsonl")
    for worker in (0, 1):
        part = sink.build_partition(worker, 2)
        part.write_batch([{"w": worker}])
        part.close()
    assert lines(tmp_path / "rows-w0.jsonl") == [{"w": 0}]
    assert lines(tmp_path / "rows-w1.jsonl") == [{"w": 1}]


def test_jsonl_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"IntoJsonl\.path"):
        IntoJsonl(path="")


def test_memory_shared_by_workers_and_projected(caplog: pytest.LogCaptureFixture) -> None:
    sink = IntoMemory()
    first, second = sink.build_partition(0, 2), sink.build_partition(1, 2)
    first.write_batch([{"a": 1, "b": "x"}])
    second.write_batch([{"a": 2, "b": "y"}])
    first.write_batch([{"a": 3, "c": 9}, {"a": 4, "c": 10}])
    assert sink.rows == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 3, "b": None},
        {"a": 4, "b": None},
    ]
    assert [r.message.count("'c'") for r in caplog.records] == [1]


@pytest.mark.parametrize("kind", ["jsonl", "memory"])
def test_as_bytewax_output(kind: str, tmp_path: Path) -> None:
    sink = IntoJsonl(path=tmp_path / "o.jsonl") if kind == "jsonl" else IntoMemory()
    flow = Dataflow("sink_test")
    rows = op.input("in", flow, TestingSource([{"n": i, "t": T} for i in range(5)]))
    op.output("out", rows, sink)
    run_main(flow)
    got = lines(tmp_path / "o.jsonl") if kind == "jsonl" else sink.rows
    assert [r["n"] for r in got] == [0, 1, 2, 3, 4]
