"""Sink throughput against the bare driver, side by side in one run.

For each sink, the same acquisition rows (default 500,000, in batches of 10,000) go once
through the project's sink and once through the bare driver doing the same job:
``csv.writer``; ``sqlite3.executemany``, one transaction per batch, into a table with the
same primary key; ``json.dumps`` per line; ``pyarrow.Table`` + ``pq.write_table``; asyncpg
``copy_records_to_table`` into a table with the same key. Prints rows/s for both and the
ratio project/floor per sink (best of ``--repeat`` alternating runs of each), then the CPU
steal and load of the run; the last line lists the ratios, machine-readable
(``csv 1.10, sqlite 1.85, ...``; targets: each >= 0.9, the keyed SQLite sink >= 1.8).

Before each timed PostgreSQL run, floor and project alike, the server is checkpointed, so no
run pays for the dirty pages of the one before it.

With ``--spooled`` each project sink runs behind its spool (sinks.spooled), as the flow runs
it: the cost of the hand-over to the backend thread on the healthy path.

    python bench/sinks.py [--rows 500000] [--batch 10000] [--only csv,sqlite] [--repeat 3]
                          [--spooled]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_times, steal_since
from flows.rows import SAMPLE_SCHEMA
from sinks.base import IntoSink
from sinks.spooled import IntoSpooled

DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
Batches = list[list[dict[str, Any]]]


def make_batches(rows: int, batch: int) -> Batches:
    """Acquisition rows with distinct keys: 8 parameters x 50 devices per tick."""
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    params = ["analog_input_value", "input_error", "analog_input_2", "heat_power", "cool_power",
              "set_point", "closed_loop_set_point", "display_units"]  # fmt: skip
    out: Batches = []
    current: list[dict[str, Any]] = []
    for i in range(rows):
        tick, rest = divmod(i, 400)
        device, p = divmod(rest, 8)
        requested = t0 + timedelta(seconds=tick, microseconds=device * 1000)
        received = requested + timedelta(microseconds=800)
        current.append({
            "bus": f"bus-{device % 4}", "device": f"pm-{device}", "address": device % 247 + 1,
            "protocol": "modbus-tcp", "parameter": params[p],
            "parameter_id": 4001 if p == 0 else None,
            "instance": 1, "value": 20.0 + (i % 1000) / 7, "value_text": None, "unit": "degC",
            "requested_at": requested, "received_at": received,
            "midpoint_at": requested + timedelta(microseconds=400), "latency_s": 0.0008,
            "error": None,
        })  # fmt: skip
        if len(current) == batch:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def timed(fn: Callable[..., None], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def through_sink(sink: IntoSink, batches: Batches) -> None:
    part = sink.build_partition(0, 1)
    for b in batches:
        part.write_batch(b)
    part.close()


def floor_csv(path: Path, batches: Batches) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(SAMPLE_SCHEMA.names)
        for b in batches:
            writer.writerows(r.values() for r in b)
            f.flush()


def floor_sqlite(path: Path, batches: Batches) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    cols = ", ".join(SAMPLE_SCHEMA.names)
    db.execute(
        f"CREATE TABLE samples ({cols}, PRIMARY KEY (device, parameter, instance, requested_at))"
    )
    sql = f"INSERT OR IGNORE INTO samples VALUES ({', '.join('?' * len(SAMPLE_SCHEMA.names))})"
    for b in batches:
        db.execute("BEGIN")
        db.executemany(sql, (tuple(r.values()) for r in b))
        db.execute("COMMIT")
    db.close()


def floor_jsonl(path: Path, batches: Batches) -> None:
    with path.open("w", encoding="utf-8") as f:
        for b in batches:
            f.write("".join(json.dumps(r, default=datetime.isoformat) + "\n" for r in b))
            f.flush()


def floor_parquet(path: Path, batches: Batches) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir()
    for i, b in enumerate(batches):
        pq.write_table(pa.Table.from_pylist(b), path / f"{i}.parquet", compression="zstd")


async def _pg_floor(table: str, batches: Batches) -> None:
    import asyncpg

    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(
            f"CREATE TABLE {table} (bus text, device text, address bigint, protocol text,"
            " parameter text, parameter_id bigint, instance bigint, value double precision,"
            " value_text text, unit text, requested_at timestamptz, received_at timestamptz,"
            " midpoint_at timestamptz, latency_s double precision, error text,"
            " PRIMARY KEY (device, parameter, instance, requested_at))"
        )
        for b in batches:
            await conn.copy_records_to_table(table, records=[tuple(r.values()) for r in b])
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


def floor_postgres(_: Path, batches: Batches) -> None:
    asyncio.run(_pg_floor(f"bench_floor_{uuid.uuid4().hex[:8]}", batches))


def project_sink(kind: str, path: Path) -> IntoSink:
    if kind == "csv":
        from sinks.csv import IntoCsv

        return IntoCsv(path=path, schema=SAMPLE_SCHEMA)
    if kind == "sqlite":
        from sinks.sqlite import IntoSqlite

        return IntoSqlite(path=path, schema=SAMPLE_SCHEMA)
    if kind == "jsonl":
        from sinks.jsonl import IntoJsonl

        return IntoJsonl(path=path, schema=SAMPLE_SCHEMA)
    if kind == "parquet":
        from sinks.parquet import IntoParquet

        return IntoParquet(path=path, schema=SAMPLE_SCHEMA)
    from sinks.postgres import IntoPostgres

    return IntoPostgres(
        dsn=DSN, table=f"bench_sink_{uuid.uuid4().hex[:8]}", create_table=True, schema=SAMPLE_SCHEMA
    )


def pg_checkpoint() -> None:
    """Flush the server's dirty pages before a timed run, so no run pays for the writes of
    the one before it (a checkpoint falling inside one run would skew its ratio). Needs the
    ``pg_checkpoint`` role or a superuser; without it, the runs go as they are."""
    import asyncpg

    async def checkpoint() -> None:
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            pass
        finally:
            await conn.close()

    asyncio.run(checkpoint())


def drop_pg_table(sink: Any) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(DSN)
        await conn.execute(f"DROP TABLE IF EXISTS {sink.table}")
        await conn.close()

    asyncio.run(drop())


FLOORS = {
    "csv": floor_csv,
    "sqlite": floor_sqlite,
    "jsonl": floor_jsonl,
    "parquet": floor_parquet,
    "postgres": floor_postgres,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--only", default=",".join(FLOORS))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument(
        "--spooled", action="store_true", help="each sink behind its spool, as the flow runs it"
    )
    args = parser.parse_args()
    batches = make_batches(args.rows, args.batch)
    n = sum(len(b) for b in batches)
    ratios = []
    before = cpu_times()
    for kind in args.only.split(","):
        floor_s = project_s = float("inf")
        # Alternate floor and project and keep each one's best: a server still flushing the
        # previous run's writes would otherwise always tax whichever runs second.
        for _ in range(args.repeat):
            work = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
            try:
                if kind == "postgres":
                    pg_checkpoint()
                floor_s = min(floor_s, timed(FLOORS[kind], work / "floor", batches))
                sink = project_sink(kind, work / "project")
                run: IntoSink = sink
                if args.spooled:
                    run = IntoSpooled(sink, work / "spool", kind, where=kind)
                if kind == "postgres":
                    pg_checkpoint()
                project_s = min(project_s, timed(through_sink, run, batches))
                if kind == "postgres":
                    drop_pg_table(sink)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        ratio = floor_s / project_s
        ratios.append(f"{kind} {ratio:.2f}")
        print(
            f"{kind:>8}: project {n / project_s:>10,.0f} rows/s   "
            f"floor {n / floor_s:>10,.0f} rows/s   ratio {ratio:.2f}",
            flush=True,
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU steal {steal_since(before):.0%}, load {load:.1f}; targets >= 0.9, sqlite >= 1.8")
    print(", ".join(ratios))


if __name__ == "__main__":
    main()
