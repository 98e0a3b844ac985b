"""One contract for every sink: open, write, write, close, close, and read back what went in."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from sinks.base import Column, IntoSink, Schema, SinkError
from sinks.csv import IntoCsv
from sinks.jsonl import IntoJsonl
from sinks.memory import IntoMemory
from sinks.parquet import IntoParquet
from sinks.sqlite import IntoSqlite
from tests.sinks import readback

SCHEMA = Schema(
    columns=(
        Column("id", "int", nullable=False),
        Column("name", "text"),
        Column("value", "float"),
        Column("flag", "bool"),
        Column("at", "timestamp"),
    ),
    key=("id",),
)
UTC = timezone.utc
T0 = datetime(2026, 11, 22, 5, 1, 54, 123456, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
ROWS = [
    {"id": 1, "name": "plain", "value": 1.5, "flag": True, "at": T0},
    {"id": 2, "name": None, "value": None, "flag": None, "at": None},
    {"id": 3, "name": "Grüße, 温度 ✓ °C", "value": -0.0001, "flag": False, "at": T0},
    {"id": 4, "name": "'\"; DROP TABLE x; --", "value": 1e300, "flag": True, "at": T0},
    {"id": 5, "name": "x" * 1_000_000, "value": 2.0, "flag": False, "at": T0},
    # Another zone comes back as the same instant in UTC.
    {"id": 6, "name": "zoned", "value": 3.25, "flag": True, "at": T0.astimezone(CEST)},
]
EXPECTED = [{**r, "at": r["at"].astimezone(UTC) if r["at"] else None} for r in ROWS]


def typed(raw: dict[str, Any]) -> dict[str, Any]:
    """Values read back as text (CSV, SQLite, JSON) in the schema's types; "" is NULL."""
    return readback.typed(SCHEMA, raw, empty_is_null=True)


def read_csv(path: Path) -> list[dict[str, Any]]:
    csv.field_size_limit(10_000_000)  # the reader's default stops at 128 KiB per field
    with path.open(encoding="utf-8", newline="") as f:
        return [typed(r) for r in csv.DictReader(f)]


def read_sqlite(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [typed(dict(r)) for r in db.execute("SELECT * FROM samples ORDER BY id")]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [typed(json.loads(line)) for line in f]


def read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.dataset as ds

    return ds.dataset(path, format="parquet").to_table().to_pylist()


Case = tuple[Callable[[Path], IntoSink], Callable[[IntoSink, Path], list[dict[str, Any]]]]
CASES: dict[str, Case] = {
    "csv": (lambda d: IntoCsv(path=d / "s.csv", schema=SCHEMA), lambda s, d: read_csv(d / "s.csv")),
    "sqlite": (
        lambda d: IntoSqlite(path=d / "s.db", schema=SCHEMA),
        lambda s, d: read_sqlite(d / "s.db"),
    ),
    "jsonl": (
        lambda d: IntoJsonl(path=d / "s.jsonl", schema=SCHEMA),
        lambda s, d: read_jsonl(d / "s.jsonl"),
    ),
    "memory": (lambda d: IntoMemory(schema=SCHEMA), lambda s, d: list(s.rows)),
    "parquet": (
        lambda d: IntoParquet(path=d / "ds", schema=SCHEMA),
        lambda s, d: read_parquet(d / "ds"),
    ),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_round_trip(kind: str, tmp_path: Path) -> None:
    make, read = CASES[kind]
    sink = make(tmp_path)
    part = sink.build_partition(0, 1)
    part.write_batch(ROWS[:3])
    part.write_batch([])
    part.write_batch(ROWS[3:])
    part.close()
    part.close()
    assert part.columns == SCHEMA.names
    got = sorted(read(sink, tmp_path), key=lambda r: r["id"])
    assert got == EXPECTED
    assert all(r["at"] is None or r["at"].tzinfo is not None for r in got)
    with pytest.raises(SinkError):
        part.write_batch(ROWS[:1])


@pytest.mark.parametrize("kind", list(CASES))
def test_close_without_writes(kind: str, tmp_path: Path) -> None:
    make, _ = CASES[kind]
    part = make(tmp_path).build_partition(0, 1)
    part.close()
    part.close()


@pytest.mark.parametrize("kind", list(CASES))
def test_null_key_is_rejected_whole(kind: str, tmp_path: Path) -> None:
    make, read = CASES[kind]
    sink = make(tmp_path)
    part = sink.build_partition(0, 1)
    with pytest.raises(SinkError, match="'id'"):
        part.write_batch([ROWS[0], {**ROWS[1], "id": None}])
    part.close()
    assert read(sink, tmp_path) == []
