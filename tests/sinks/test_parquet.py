"""IntoParquet against real dataset directories: types, encoding, rolling, restarts, crashes."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from flows.rows import SAMPLE_SCHEMA
from sinks.base import Column, Schema, SinkError, SinkPartition, SinkWriteError
from sinks.parquet import IntoParquet
from tests.sinks.keyed import T0, plain_row

CET = timezone(timedelta(hours=1))
SCHEMA = Schema(
    (
        Column("device", "text", nullable=False),
        Column("instance", "int"),  # nullable, but a key column: required all the same
        Column("requested_at", "timestamp", nullable=False),
        Column("value", "float"),
        Column("ok", "bool"),
        Column("unit", "text"),
    ),
    key=("device", "instance", "requested_at"),
)


def read(path: Path, by: str = "instance") -> list[dict[str, Any]]:
    """Every row of the dataset directory, ordered by column ``by``."""
    rows = ds.dataset(path, format="parquet").to_table().to_pylist()
    return sorted(rows, key=lambda r: r[by])


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def parts(worker: int, count: int) -> list[str]:
    """The names of the first ``count`` parts of ``worker``."""
    return [f"part-w{worker}-{i:06d}.parquet" for i in range(count)]


def test_round_trip_of_exact_values_types_compression_and_dictionary(tmp_path: Path) -> None:
    path = tmp_path / "data"
    part = IntoParquet(path, schema=SCHEMA).build_partition(0, 1)
    assert isinstance(part, SinkPartition)
    assert part.columns == SCHEMA.names
    long_text = "ü" + "x" * (1 << 20)
    first = [
        plain_row(0),
        plain_row(1, value=None, ok=None, unit=None),
        plain_row(2, value=7, unit="say \"hi\", 'yo'"),
    ]
    second = [
        plain_row(3, unit=long_text, requested_at=(T0 + timedelta(seconds=3)).astimezone(CET))
    ]
    second += [
        plain_row(4, unit="µS/cm ✓ 日本", value=-1e-300, requested_at=T0.replace(microsecond=1))
    ]
    part.write_batch(first)
    part.write_batch(second)
    part.close()
    part.close()
    assert names(path) == ["part-w0-000000.parquet"]
    expected = first + second
    expected[4] = {**expected[4], "requested_at": datetime(2026, 11, 22, 5, 1, 54, 1, timezone.utc)}
    found = read(path)
    assert found == expected
    for r in found:
        assert r["requested_at"].utcoffset() == timedelta(0)
    assert found[3]["requested_at"] == T0 + timedelta(seconds=3)  # same instant, now in UTC
    file = pq.ParquetFile(path / "part-w0-000000.parquet")
    assert file.schema_arrow == pa.schema(
        [
            pa.field("device", pa.string(), nullable=False),
            pa.field("instance", pa.int64(), nullable=False),
            pa.field("requested_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("value", pa.float64()),
            pa.field("ok", pa.bool_()),
            pa.field("unit", pa.string()),
        ]
    )
    assert file.metadata.num_row_groups == 2  # one per write_batch
    group = file.metadata.row_group(0)
    for i in range(group.num_columns):
        assert group.column(i).compression == "ZSTD"
    assert group.column(0).has_dictionary_page  # "device"
    assert "RLE_DICTIONARY" in group.column(0).encodings


def test_sample_schema(tmp_path: Path) -> None:
    sample = {
        "bus": "rs485",
        "device": "pm1",
        "address": 7,
        "protocol": "modbus-rtu",
        "parameter": "analog_input_value",
        "parameter_id": None,
        "instance": 1,
        "value": 21.5,
        "value_text": None,
        "unit": "°C",
        "requested_at": T0,
        "received_at": T0 + timedelta(microseconds=1500),
        "midpoint_at": T0 + timedelta(microseconds=750),
        "latency_s": 0.0015,
        "error": None,
    }
    sink = IntoParquet(tmp_path, schema=SAMPLE_SCHEMA)
    part = sink.build_partition(0, 1)
    part.write_batch([sample, {**sample, "instance": 2, "value": None, "value_text": "RUN"}])
    part.close()
    assert read(tmp_path) == [sample, {**sample, "instance": 2, "value": None, "value_text": "RUN"}]
    schema = pq.read_schema(tmp_path / "part-w0-000000.parquet")
    assert schema.names == list(SAMPLE_SCHEMA.names)
    for column in SAMPLE_SCHEMA.columns:
        assert schema.field(column.name).nullable == column.nullable


def test_inferred_schema_missing_and_unknown_keys_and_mixed_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    part = IntoParquet(tmp_path).build_partition(0, 1)
    assert part.columns is None
    with caplog.at_level(logging.WARNING):
        part.write_batch([{"n": 1, "f": 1.5, "b": True, "t": T0, "m": 1}, {"n": 2, "m": "x"}])
        part.write_batch([{"n": 3, "m": 2.5, "late": 1}, {"n": 4, "m": True, "late": 2}])
    assert part.columns == ("n", "f", "b", "t", "m")
    part.close()
    schema = pq.read_schema(tmp_path / "part-w0-000000.parquet")
    assert [(f.name, f.type, f.nullable) for f in schema] == [
        ("n", pa.int64(), True),
        ("f", pa.float64(), True),
        ("b", pa.bool_(), True),
        ("t", pa.timestamp("us", tz="UTC"), True),
        ("m", pa.string(), True),
    ]
    empty = {"f": None, "b": None, "t": None}
    assert read(tmp_path, by="n") == [
        {"n": 1, "f": 1.5, "b": True, "t": T0, "m": "1"},
        {"n": 2, **empty, "m": "x"},
        {"n": 3, **empty, "m": "2.5"},
        {"n": 4, **empty, "m": "true"},
    ]
    dropped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(dropped) == 1 and "'late'" in dropped[0]


def test_rolling_by_row_count_splits_batches_and_hides_the_open_part(tmp_path: Path) -> None:
    part = IntoParquet(tmp_path, rows_per_part=3).build_partition(0, 1)
    for start in (0, 2, 4):
        part.write_batch([plain_row(start), plain_row(start + 1)])
    part.write_batch([plain_row(6)])
    assert names(tmp_path) == [".part-w0-000002.parquet.tmp", *parts(0, 2)]
    assert [r["instance"] for r in read(tmp_path)] == [0, 1, 2, 3, 4, 5]
    part.close()
    assert names(tmp_path) == parts(0, 3)
    files = [pq.ParquetFile(tmp_path / n).metadata for n in names(tmp_path)]
    assert [(m.num_rows, m.num_row_groups) for m in files] == [(3, 2), (3, 2), (1, 1)]
    assert read(tmp_path) == [plain_row(i) for i in range(7)]
    big = IntoParquet(tmp_path / "big", rows_per_part=4).build_partition(0, 1)
    big.write_batch([plain_row(i) for i in range(10)])
    big.close()
    rows = [pq.ParquetFile(tmp_path / "big" / n).metadata.num_rows for n in names(tmp_path / "big")]
    assert rows == [4, 4, 2]


def test_rolling_by_age_at_the_next_write(tmp_path: Path) -> None:
    part = IntoParquet(tmp_path, part_age_s=0.3).build_partition(0, 1)
    part.write_batch([plain_row(0)])
    part.write_batch([plain_row(1)])
    assert names(tmp_path) == [".part-w0-000000.parquet.tmp"]
    time.sleep(0.35)
    part.write_batch([plain_row(2)])
    assert names(tmp_path) == [".part-w0-000001.parquet.tmp", "part-w0-000000.parquet"]
    assert [r["instance"] for r in read(tmp_path)] == [0, 1]
    part.close()
    assert names(tmp_path) == parts(0, 2)
    assert read(tmp_path) == [plain_row(0), plain_row(1), plain_row(2)]


def test_two_workers_and_restarts_never_overwrite_a_part(tmp_path: Path) -> None:
    sink = IntoParquet(tmp_path, schema=SCHEMA, rows_per_part=2)
    w0, w1 = sink.build_partition(0, 2), sink.build_partition(1, 2)
    w0.write_batch([plain_row(0), plain_row(1), plain_row(2)])
    w1.write_batch([plain_row(10), plain_row(11)])
    w0.close()
    w1.close()
    assert names(tmp_path) == [*parts(0, 2), *parts(1, 1)]
    before = {n: (tmp_path / n).read_bytes() for n in names(tmp_path)}
    ten = sink.build_partition(10, 11)  # "part-w10-..." must not count as worker 1's
    ten.write_batch([plain_row(20)])
    ten.close()
    for index, rows in ((0, [plain_row(3)]), (1, [plain_row(12)])):
        again = sink.build_partition(index, 2)
        again.write_batch(rows)
        again.close()
    assert names(tmp_path) == [*parts(0, 3), *parts(1, 2), *parts(10, 1)]
    assert all((tmp_path / n).read_bytes() == data for n, data in before.items())
    assert read(tmp_path) == [plain_row(i) for i in (0, 1, 2, 3, 10, 11, 12, 20)]


CRASH = """
import os, signal, sys
from sinks.parquet import IntoParquet
part = IntoParquet(sys.argv[1], rows_per_part=3).build_partition(0, 1)
for b in range(4):
    part.write_batch([{"i": 2 * b + k, "s": "x" * 1000} for k in range(2)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_crash_loses_only_the_open_part(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path)], capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert names(tmp_path) == [".part-w0-000002.parquet.tmp", *parts(0, 2)]
    for name in parts(0, 2):
        assert pq.read_table(tmp_path / name).num_rows == 3
    with pytest.raises(pa.ArrowInvalid):
        pq.ParquetFile(tmp_path / ".part-w0-000002.parquet.tmp")  # no footer
    assert read(tmp_path, by="i") == [{"i": i, "s": "x" * 1000} for i in range(6)]
    part = IntoParquet(tmp_path).build_partition(0, 1)
    part.write_batch([{"i": 6, "s": "y"}])
    part.close()
    assert names(tmp_path)[-1] == "part-w0-000002.parquet"
    assert [r["i"] for r in read(tmp_path, by="i")] == list(range(7))


MISSING = """
import sys
sys.modules["pyarrow"] = None
import sinks.parquet
from sinks.base import SinkDependencyError
try:
    sinks.parquet.IntoParquet(sys.argv[1]).build_partition(0, 1)
except SinkDependencyError as exc:
    print(exc)
"""


def test_pyarrow_is_needed_only_to_build_a_partition(tmp_path: Path) -> None:
    run = [sys.executable, "-c", MISSING, str(tmp_path / "data")]
    out = subprocess.run(run, capture_output=True, text=True, check=True)
    assert 'pip install ".[parquet]"' in out.stdout
    assert not (tmp_path / "data").exists()
    lazy = "import sys, sinks.parquet; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"requested_at": datetime(2026, 1, 1)}, "requested_at"),
        ({"requested_at": "2026-01-01T00:00:00+00:00"}, "requested_at"),
        ({"instance": 1.5}, "instance"),
        ({"instance": True}, "instance"),
        ({"instance": 2**70}, "instance"),
        ({"value": "21.5"}, "value"),
        ({"value": False}, "value"),
        ({"ok": 1}, "ok"),
        ({"unit": b"C"}, "unit"),
    ],
)
def test_a_misfit_rejects_the_batch_naming_the_column(
    tmp_path: Path, change: dict[str, Any], column: str
) -> None:
    part = IntoParquet(tmp_path, schema=SCHEMA).build_partition(0, 1)
    part.write_batch([plain_row(0)])
    with pytest.raises(SinkError, match=re.escape(repr(column))):
        part.write_batch([plain_row(1), plain_row(2, **change), plain_row(3)])
    part.close()
    assert read(tmp_path) == [plain_row(0)]


def test_empty_batch_close_and_write_after_close(tmp_path: Path) -> None:
    part = IntoParquet(tmp_path / "data").build_partition(0, 1)
    part.write_batch([])
    part.close()
    part.close()
    assert names(tmp_path / "data") == []
    with pytest.raises(SinkError, match="after close"):
        part.write_batch([{"a": 1}])


def test_backend_failures_are_write_errors_with_their_cause(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SinkWriteError) as info:
        IntoParquet(tmp_path / "file").build_partition(0, 1)
    assert isinstance(info.value.__cause__, OSError)
    part = IntoParquet(tmp_path / "gone").build_partition(0, 1)
    (tmp_path / "gone").rmdir()
    with pytest.raises(SinkWriteError) as info:
        part.write_batch([{"a": 1}])
    assert isinstance(info.value.__cause__, OSError)
    (tmp_path / "gone").mkdir()
    part.write_batch([{"a": 2}])  # the partition is still usable
    part.close()
    assert read(tmp_path / "gone", by="a") == [{"a": 2}]


def test_compression_and_dictionary_are_configurable(tmp_path: Path) -> None:
    part = IntoParquet(tmp_path, compression="SNAPPY", use_dictionary=False).build_partition(0, 1)
    part.write_batch([{"s": "same"}] * 100)
    part.close()
    column = pq.ParquetFile(tmp_path / "part-w0-000000.parquet").metadata.row_group(0).column(0)
    assert column.compression == "SNAPPY"
    assert not column.has_dictionary_page
    with pytest.raises(ValueError, match=r"IntoParquet\.compression_level"):
        IntoParquet(tmp_path, compression="snappy", compression_level=3).build_partition(0, 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"path": ""}, "IntoParquet.path"),
        ({"path": 3}, "IntoParquet.path"),
        ({"schema": ("a",)}, "IntoParquet.schema"),
        ({"rows_per_part": 0}, "IntoParquet.rows_per_part"),
        ({"rows_per_part": 1.5}, "IntoParquet.rows_per_part"),
        ({"part_age_s": 0}, "IntoParquet.part_age_s"),
        ({"part_age_s": float("nan")}, "IntoParquet.part_age_s"),
        ({"compression": "lzo"}, "IntoParquet.compression"),
        ({"compression": "none", "compression_level": 1}, "IntoParquet.compression_level"),
        ({"use_dictionary": "yes"}, "IntoParquet.use_dictionary"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        IntoParquet(**{"path": "data", **kwargs})


def test_as_the_sink_of_a_dataflow(tmp_path: Path) -> None:
    flow = Dataflow("parquet_sink")
    stream = op.input("in", flow, TestingSource([plain_row(i) for i in range(5)]))
    op.output("out", stream, IntoParquet(tmp_path / "out", schema=SCHEMA))
    run_main(flow)
    assert names(tmp_path / "out") == ["part-w0-000000.parquet"]
    assert read(tmp_path / "out") == [plain_row(i) for i in range(5)]
