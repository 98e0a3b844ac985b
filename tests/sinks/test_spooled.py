"""Spool and forward (sinks.spooled) around real sinks: what a failing backend could not take
is spooled and written later, in order and once; what no retry fixes is one line."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sinks.base import SinkError
from sinks.csv import IntoCsv
from sinks.jsonl import IntoJsonl
from sinks.postgres import IntoPostgres
from sinks.spool import Spool
from sinks.spooled import IntoSpooled, SpoolState
from sinks.sqlite import IntoSqlite
from tests.sinks.keyed import SCHEMA, row

ROOT = Path(__file__).resolve().parents[2]


def rows(start: int, n: int = 10) -> list[dict[str, object]]:
    return [{"i": i, "text": f"row {i}"} for i in range(start, start + n)]


def spooled(sink: object, tmp_path: Path, **kwargs: object) -> IntoSpooled:
    kwargs.setdefault("backoff_s", 0.05)
    kwargs.setdefault("backoff_max_s", 0.2)
    return IntoSpooled(sink, tmp_path / "spool", "test", where="sink[0] test", **kwargs)  # type: ignore[arg-type]


def wait_for(state: Callable[[], SpoolState], want: str, timeout: float = 10.0) -> SpoolState:
    deadline = time.monotonic() + timeout
    while (now := state()).state != want:
        assert time.monotonic() < deadline, f"still {now}"
        time.sleep(0.02)
    return now


def csv_numbers(path: Path) -> list[int]:
    lines = path.read_text().splitlines()
    assert lines[0] == "i,text"
    return [int(line.split(",")[0]) for line in lines[1:]]


def test_a_blocked_directory_spools_then_drains_in_order(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file where the directory should be")
    part = spooled(IntoCsv(tmp_path / "out" / "x.csv"), tmp_path).build_partition(0, 1)
    for k in range(5):
        part.write_batch(rows(10 * k))
    state = part.state()
    assert (state.state, state.rows_spooled, state.rows_written) == ("spooling", 50, 0)
    assert state.retries >= 1 and "cannot create the directory" in (state.last_error or "")
    assert state.oldest_age_s is not None and Path(state.path).exists()
    (tmp_path / "out").unlink()
    back = wait_for(part.state, "writing")
    assert (back.rows_spooled, back.rows_written, back.spool_bytes) == (0, 50, 0)
    assert back.drain_s is not None and back.peak_bytes > 0
    part.write_batch(rows(50))
    part.close()
    assert csv_numbers(tmp_path / "out" / "x.csv") == list(range(60))
    assert not list((tmp_path / "spool").iterdir())


def test_what_stays_spooled_is_written_first_by_the_next_run(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("blocker")
    sink = spooled(IntoCsv(tmp_path / "out" / "x.csv"), tmp_path)
    first = sink.build_partition(0, 1)
    first.write_batch(rows(0))
    first.close()  # the backend is still unavailable: the rows stay on disk
    assert first.state().rows_spooled == 10
    (tmp_path / "out").unlink()
    second = sink.build_partition(0, 1)
    second.write_batch(rows(10))
    wait_for(second.state, "writing")
    second.write_batch(rows(20))
    second.close()
    assert csv_numbers(tmp_path / "out" / "x.csv") == list(range(30))


def test_a_spool_of_a_worker_that_no_longer_exists_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("blocker")
    sink = spooled(IntoJsonl(tmp_path / "out" / "x.jsonl"), tmp_path)
    gone = sink.build_partition(1, 2)
    gone.write_batch(rows(0))
    gone.close()
    (tmp_path / "out").unlink()
    alone = sink.build_partition(0, 1)
    wait_for(alone.state, "writing")
    alone.close()
    lines = (tmp_path / "out" / "x.jsonl").read_text().splitlines()
    assert [json.loads(line)["i"] for line in lines] == list(range(10))


def test_an_idempotent_write_that_hangs_is_spooled_and_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    sink = spooled(IntoSqlite(path, schema=SCHEMA, busy_timeout_s=3), tmp_path, write_timeout_s=0.2)
    part = sink.build_partition(0, 1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write waits for this lock past write_timeout_s
    started = time.monotonic()
    part.write_batch([row(i) for i in range(5)])
    assert time.monotonic() - started < 1.5  # the worker did not wait for the lock
    assert part.state().state == "spooling"
    part.write_batch([row(i) for i in range(5, 8)])
    holder.rollback()
    holder.close()
    wait_for(part.state, "writing")
    part.close()
    with sqlite3.connect(path) as db:
        (count,) = db.execute("SELECT count(*) FROM samples").fetchone()
    assert count == 8  # the timed-out batch was written, then written again: stored once


def test_a_permanent_error_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("other,header\n")
    lines: list[str] = []
    sink = spooled(IntoCsv(tmp_path / "x.csv", schema=None), tmp_path, on_fatal=lines.append)
    part = sink.build_partition(0, 1)
    part.write_batch(rows(0))  # the header is checked with the first batch: refused
    part.write_batch(rows(10))
    part.close()  # never raises
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("sink[0] test: ") and "incompatible header" in lines[0]
    assert "kept in" in lines[0] and part.state().state == "failed"
    rejected = tmp_path / "spool" / "test-w0-rejected.spool"
    assert rejected.exists() and (tmp_path / "spool" / "test-w0.spool").exists()


def test_without_on_fatal_a_permanent_error_raises(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("other,header\n")
    part = spooled(IntoCsv(tmp_path / "x.csv"), tmp_path).build_partition(0, 1)
    with pytest.raises(SinkError, match="incompatible header"):
        part.write_batch(rows(0))
    part.close()


def test_a_full_spool_ends_the_run_with_one_line_and_drops_nothing(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("blocker")
    lines: list[str] = []
    sink = IntoSpooled(
        IntoCsv(tmp_path / "out" / "x.csv"), tmp_path / "spool", "t", where="sink[2] csv",
        max_mb=0.001, backoff_s=60, on_fatal=lines.append,
    )  # fmt: skip
    part = sink.build_partition(0, 1)
    for k in range(10):
        part.write_batch(rows(10 * k))
    assert len(lines) == 1 and "spool_max_mb = 0.001" in lines[0]
    assert lines[0].startswith("sink[2] csv: ")
    assert part.state().rows_spooled == 100  # the batches after the bound are kept too
    part.close()


def test_postgres_unreachable_at_start_spools(tmp_path: Path) -> None:
    sink = IntoPostgres(
        host="127.0.0.1", port=1, database="test", user="postgres", schema=SCHEMA,
        connect_timeout_s=0.5, retries=0,
    )  # fmt: skip
    started = time.monotonic()
    part = spooled(sink, tmp_path, write_timeout_s=2).build_partition(0, 1)
    part.write_batch([row(0)])
    assert time.monotonic() - started < 5
    state = part.state()
    assert (state.state, state.rows_spooled) == ("spooling", 1)
    assert state.where == "sink[0] test"
    part.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="chattr +i needs root")
def test_an_immutable_file_spools_until_it_is_writable(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    part = spooled(IntoJsonl(path), tmp_path).build_partition(0, 1)
    part.write_batch(rows(0))
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        part.write_batch(rows(10))
        part.write_batch(rows(20))
        assert part.state().state == "spooling"
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    wait_for(part.state, "writing")
    part.close()
    assert [json.loads(x)["i"] for x in path.read_text().splitlines()] == list(range(30))


FULL_DISK = """
import json, resource, sys, time
from pathlib import Path
from sinks.jsonl import IntoJsonl
from sinks.spooled import IntoSpooled
out = Path(sys.argv[1])
sink = IntoSpooled(IntoJsonl(out / "x.jsonl"), out / "spool", "t", backoff_s=0.05)
part = sink.build_partition(0, 1)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, hard))  # a disk full at 20 kB per file
for k in range(30):
    part.write_batch([{"i": i, "pad": "x" * 60} for i in range(10 * k, 10 * k + 10)])
spooling = part.state()
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
while part.state().state != "writing":
    time.sleep(0.02)
part.close()
print(json.dumps({"spooled": spooling.rows_spooled, "state": spooling.state,
                  "error": spooling.last_error}))
"""


def test_a_full_disk_spools_and_no_row_is_torn_or_doubled(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["state"] == "spooling" and report["spooled"] > 0
    assert "File too large" in report["error"]
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    assert [json.loads(line)["i"] for line in lines] == list(range(300))


def test_a_damaged_spool_is_set_aside_and_a_new_one_begun(tmp_path: Path) -> None:
    left = Spool.open(tmp_path / "spool" / "test-w0")
    left.append(rows(100))
    left.append(rows(200))
    left.close()
    path = tmp_path / "spool" / "test-w0.spool"
    path.write_bytes(path.read_bytes()[:30] + b"?" + path.read_bytes()[31:])  # the first record
    part = spooled(IntoCsv(tmp_path / "x.csv"), tmp_path).build_partition(0, 1)
    part.write_batch(rows(0))
    part.close()
    assert csv_numbers(tmp_path / "x.csv") == list(range(10))
    (aside,) = (tmp_path / "spool").glob("test-w0.damaged-*")
    assert aside.read_bytes().startswith(b"SPL1")


def test_a_parquet_directory_gone_mid_run_spools_and_every_row_lands_once(tmp_path: Path) -> None:
    import pyarrow.dataset as ds

    from sinks.parquet import IntoParquet

    path = tmp_path / "ds"
    part = spooled(IntoParquet(path, rows_per_part=10), tmp_path).build_partition(0, 1)
    part.write_batch(rows(0))
    path.rename(tmp_path / "away")
    path.write_text("a file where the dataset's directory was")
    part.write_batch(rows(10))
    part.write_batch(rows(20))
    assert part.state().state == "spooling"
    path.unlink()
    (tmp_path / "away").rename(path)
    wait_for(part.state, "writing")
    part.write_batch(rows(30))
    part.close()
    assert sorted(ds.dataset(path).to_table().column("i").to_pylist()) == list(range(40))
