"""Making a sink of each kind and reading back what it wrote, for the hostile-input tests."""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sinks.base import IntoSink, Schema
from sinks.csv import IntoCsv
from sinks.jsonl import IntoJsonl
from sinks.memory import IntoMemory
from sinks.parquet import IntoParquet
from sinks.postgres import IntoPostgres
from sinks.sqlite import IntoSqlite
from tests.sinks.pg import DSN, query

KINDS = ["csv", "jsonl", "sqlite", "parquet", "postgres", "memory"]
# Python 3.10's csv module can neither write nor read a NUL: the CSV sink refuses it there.
OLD_CSV = sys.version_info < (3, 11)


def make(kind: str, where: Path, table: str | None, schema: Schema | None) -> IntoSink:
    """A sink of ``kind`` writing under ``where``; ``table``: the PostgreSQL table, emptied
    (or created from ``schema``) first."""
    if kind == "postgres":
        assert table is not None
        if query("SELECT to_regclass($1)", f'public."{table}"')[0][0] is not None:
            query(f'TRUNCATE public."{table}"')
        return IntoPostgres(DSN, table=table, schema=schema, create_table=True, retries=0)
    return {
        "csv": lambda: IntoCsv(where / "s.csv", schema=schema),
        "jsonl": lambda: IntoJsonl(where / "s.jsonl", schema=schema),
        "sqlite": lambda: IntoSqlite(where / "s.db", schema=schema),
        "parquet": lambda: IntoParquet(where / "ds", schema=schema),
        "memory": lambda: IntoMemory(schema=schema),
    }[kind]()


def typed(schema: Schema, raw: dict[str, Any], empty_is_null: bool) -> dict[str, Any]:
    """A row read back as text or JSON in the schema's types."""
    out = {}
    for c in schema.columns:
        v = raw[c.name]
        if v is None or (v == "" and (empty_is_null or c.type != "text")):
            out[c.name] = None
        elif c.type == "int":
            out[c.name] = int(v)
        elif c.type == "float":
            out[c.name] = float(v)
        elif c.type == "bool":
            out[c.name] = v in (True, 1, "true")
        elif c.type == "timestamp":
            out[c.name] = datetime.fromisoformat(v)
        else:
            out[c.name] = v
    return out


def read(
    kind: str, sink: IntoSink, where: Path, table: str | None, schema: Schema, order: str
) -> list[dict[str, Any]]:
    """Every row the sink wrote, in ``schema``'s types, ordered by column ``order``."""
    if kind == "csv":
        csv.field_size_limit(100_000_000)
        with (where / "s.csv").open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    elif kind == "jsonl":
        with (where / "s.jsonl").open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
    elif kind == "sqlite":
        with sqlite3.connect(where / "s.db") as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM samples")]
    elif kind == "parquet":
        import pyarrow.dataset as ds

        rows = ds.dataset(where / "ds", format="parquet").to_table().to_pylist()
    elif kind == "postgres":
        rows = [dict(r) for r in query(f'SELECT * FROM public."{table}"')]
    else:
        rows = list(sink.rows)  # type: ignore[attr-defined]
    if kind in ("csv", "jsonl", "sqlite"):
        rows = [typed(schema, r, kind == "csv") for r in rows]
    return sorted(rows, key=lambda r: r[order])
