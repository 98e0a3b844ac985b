"""IntoCsv against real files: exact contents, headers, per-worker files, and a real dataflow."""

from __future__ import annotations

import csv
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main, run_main

from sinks.base import Column, Schema, SinkError, SinkPartition, SinkSchemaError
from sinks.csv import IntoCsv
from tests.sinks.keyed import T0, plain_row

SCHEMA = Schema(
    (
        Column("device", "text", nullable=False),
        Column("instance", "int", nullable=False),
        Column("requested_at", "timestamp", nullable=False),
        Column("value", "float"),
        Column("ok", "bool"),
        Column("unit", "text"),
    ),
    key=("device", "instance", "requested_at"),
)
HEADER = "device,instance,requested_at,value,ok,unit\r\n"


def raw(path: Path) -> str:
    """The file's text with its line endings untouched."""
    return path.read_bytes().decode("utf-8")


def read_rows(path: Path, delimiter: str = ",") -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter=delimiter))


def test_exact_contents_of_one_batch(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    part = IntoCsv(path, schema=SCHEMA).build_partition(0, 1)
    assert isinstance(part, SinkPartition)
    part.write_batch(
        [plain_row(0), plain_row(1, value=None, unit=None), plain_row(2, value=0.1, ok=None)]
    )
    part.close()
    assert raw(path) == (
        HEADER
        + "pm1,0,2026-11-22T05:01:54.123456+00:00,20.0,true,°C\r\n"
        + "pm1,1,2026-11-22T05:01:55.123456+00:00,,false,\r\n"
        + "pm1,2,2026-11-22T05:01:56.123456+00:00,0.1,,°C\r\n"
    )


def test_header_once_across_batches_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    sink = IntoCsv(path, schema=SCHEMA)
    part = sink.build_partition(0, 1)
    part.write_batch([plain_row(0)])
    part.write_batch([plain_row(1)])
    part.close()
    again = sink.build_partition(0, 1)
    again.write_batch([plain_row(2)])
    again.close()
    lines = raw(path).splitlines()
    assert lines[0] + "\r\n" == HEADER
    assert lines.count(lines[0]) == 1
    assert [r[1] for r in read_rows(path)[1:]] == ["0", "1", "2"]


def test_header_once_with_an_inferred_schema_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "free.csv"
    for i in range(2):
        part = IntoCsv(path).build_partition(0, 1)
        part.write_batch([{"a": i, "b": "x"}])
        part.close()
    assert raw(path) == "a,b\r\n0,x\r\n1,x\r\n"


def test_existing_file_with_another_header_is_a_schema_error(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    path.write_text("device,instance,when\r\npm1,1,x\r\n", encoding="utf-8")
    with pytest.raises(SinkSchemaError) as info:
        IntoCsv(path, schema=SCHEMA).build_partition(0, 1)
    message = str(info.value)
    assert str(path) in message
    assert "['device', 'instance', 'when']" in message
    assert repr(list(SCHEMA.names)) in message
    assert raw(path) == "device,instance,when\r\npm1,1,x\r\n"


def test_appending_after_a_partial_last_line_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "free.csv"
    path.write_text("a,b\r\n1,x\r\n2,", encoding="utf-8")
    part = IntoCsv(path).build_partition(0, 1)
    part.write_batch([{"a": 3, "b": "y"}])
    part.close()
    assert read_rows(path) == [["a", "b"], ["1", "x"], ["2", ""], ["3", "y"]]


def test_one_file_per_worker_and_parent_directory_created(tmp_path: Path) -> None:
    sink = IntoCsv(tmp_path / "deep" / "dir" / "samples.csv", schema=SCHEMA)
    assert sink.file_for(0, 1) == tmp_path / "deep" / "dir" / "samples.csv"
    parts = [sink.build_partition(i, 3) for i in range(3)]
    for i, part in enumerate(parts):
        part.write_batch([plain_row(i)])
        part.close()
    names = sorted(p.name for p in (tmp_path / "deep" / "dir").iterdir())
    assert names == ["samples-w0.csv", "samples-w1.csv", "samples-w2.csv"]
    for i in range(3):
        rows = read_rows(tmp_path / "deep" / "dir" / f"samples-w{i}.csv")
        assert rows[0] == list(SCHEMA.names)
        assert [r[1] for r in rows[1:]] == [str(i)]


def test_timestamps_and_floats_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rt.csv"
    floats = [0.1, 1 / 3, 1e-300, -2.5e300, 123456789.123456789, float("inf")]
    stamps = [T0, T0.astimezone(timezone(timedelta(hours=-7))), T0.replace(microsecond=0)]
    part = IntoCsv(path).build_partition(0, 1)
    part.write_batch([{"f": f, "t": stamps[i % 3]} for i, f in enumerate(floats)])
    part.close()
    body = read_rows(path)[1:]
    assert [float(r[0]) for r in body] == floats
    assert [datetime.fromisoformat(r[1]) for r in body] == [stamps[i % 3] for i in range(6)]
    assert body[1][1] == "2026-11-22T05:01:54.123456+00:00"  # converted to UTC
    assert body[2][1] == "2026-11-22T05:01:54.000000+00:00"


def test_naive_timestamp_rejects_the_batch_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    part = IntoCsv(path, schema=SCHEMA).build_partition(0, 1)
    with pytest.raises(SinkError, match="naive"):
        part.write_batch([plain_row(0), plain_row(1, requested_at=datetime(2026, 1, 1))])
    part.close()
    assert raw(path) == HEADER


def test_missing_keys_are_empty_and_unknown_keys_dropped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "free.csv"
    part = IntoCsv(path).build_partition(0, 1)
    with caplog.at_level(logging.WARNING):
        part.write_batch([{"a": 1, "b": "x"}])
        part.write_batch([{"a": 2, "late": 1}, {"b": "y", "late": 2, "later": 3}])
        part.write_batch([{"a": 3, "late": 1}])
    part.close()
    assert read_rows(path) == [["a", "b"], ["1", "x"], ["2", ""], ["", "y"], ["3", ""]]
    dropped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(dropped) == 2
    assert "'late'" in dropped[0] and str(path) in dropped[0]
    assert "'later'" in dropped[1]


def test_delimiter_quoting_and_utf8(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    values = ["a;b", 'say "hi"', "two\nlines", "µS/cm", ""]
    part = IntoCsv(path, delimiter=";").build_partition(0, 1)
    part.write_batch([{"s": v, "n": None} for v in values])
    part.close()
    assert read_rows(path, ";") == [["s", "n"]] + [[v, ""] for v in values]


def test_empty_batch_close_and_write_after_close(tmp_path: Path) -> None:
    path = tmp_path / "free.csv"
    part = IntoCsv(path).build_partition(0, 1)
    part.write_batch([])
    part.close()
    part.close()
    assert not path.exists()  # nothing written, schema unknown: no file
    with pytest.raises(SinkError, match="after close"):
        part.write_batch([{"a": 1}])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"path": ""}, "IntoCsv.path"),
        ({"path": 3}, "IntoCsv.path"),
        ({"path": "x.csv", "delimiter": ",,"}, "IntoCsv.delimiter"),
        ({"path": "x.csv", "delimiter": '"'}, "IntoCsv.delimiter"),
        ({"path": "x.csv", "delimiter": "\n"}, "IntoCsv.delimiter"),
        ({"path": "x.csv", "schema": ("a",)}, "IntoCsv.schema"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        IntoCsv(**kwargs)


def test_as_the_sink_of_a_dataflow(tmp_path: Path) -> None:
    path = tmp_path / "out" / "samples.csv"
    flow = Dataflow("csv_sink")
    stream = op.input("in", flow, TestingSource([plain_row(i) for i in range(5)]))
    op.output("out", stream, IntoCsv(path, schema=SCHEMA))
    run_main(flow)
    rows = read_rows(path)
    assert rows[0] == list(SCHEMA.names)
    assert [r[1] for r in rows[1:]] == ["0", "1", "2", "3", "4"]


def test_as_the_sink_of_a_two_worker_dataflow(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    flow = Dataflow("csv_sink_2w")
    stream = op.input("in", flow, TestingSource([plain_row(i) for i in range(40)]))
    stream = op.redistribute("spread", stream)
    op.output("out", stream, IntoCsv(path, schema=SCHEMA))
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert not path.exists()
    found = []
    for i in range(2):
        rows = read_rows(tmp_path / f"samples-w{i}.csv")
        assert rows[0] == list(SCHEMA.names)
        found += [int(r[1]) for r in rows[1:]]
    assert sorted(found) == list(range(40))
