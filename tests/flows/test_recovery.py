"""Crash recovery end to end: the flow killed with SIGKILL at random moments and resumed,
held against the simulators' own logs of the reads they answered.

The allowance, and the only one: a read the simulator answered while its tick was still
being polled when the kill came is lost (it was never journaled, and a controller cannot be
asked for the past). That is at most one tick per bus per kill, so at most one read per
parameter per kill. Set RECOVERY_SEED to replay a run's kill moments.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flows.recovery import JOURNAL_DIR, journal_dir, recovery_directory
from tests.flows.killrun import (
    BUSES,
    PART_AGE_S,
    RATE_HZ,
    SNAPSHOT_S,
    Key,
    KilledRun,
    keys_of,
    parquet_keys,
    run_with_kills,
    sqlite_keys,
    text_rows,
    tick_of,
)

KILLS = 5
BUS_OF = {name: bus for bus, (_, _, devices) in BUSES.items() for name, *_ in devices.values()}
REPLAYED = re.compile(
    r"bus '([^']+)': resumed .*; emitting \d+ journaled ticks again \((\d+) to (\d+)\)"
)


def postgres_dsn() -> tuple[str | None, str]:
    """The test server's DSN, or None and why not (a failure under CI)."""
    try:
        from tests.sinks.pg import DSN, query

        query("SELECT 1")
    except Exception as exc:
        return None, f"no PostgreSQL server answers (TEST_POSTGRES_DSN): {exc!r}"
    return DSN, ""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KilledRun]:
    dsn, _ = postgres_dsn()
    table = f"t_recovery_{uuid.uuid4().hex[:12]}"
    seed = int(os.environ.get("RECOVERY_SEED", time.time_ns() % 2**32))
    tmp = tmp_path_factory.mktemp("recovery")
    try:
        yield run_with_kills(tmp, KILLS, None if dsn is None else (dsn, table), seed)
    finally:
        if dsn is not None:
            from tests.sinks.pg import query

            query(f'DROP TABLE IF EXISTS public."{table}"')


def replays(run: KilledRun) -> dict[str, list[range]]:
    """bus -> the tick ranges the resumed runs emitted again, from their log lines."""
    out: dict[str, list[range]] = {}
    for err in run.errors:
        for bus, low, high in REPLAYED.findall(err):
            out.setdefault(bus, []).append(range(int(low), int(high) + 1))
    return out


def assert_nothing_lost_nothing_twice(keys: Counter[Key], run: KilledRun) -> None:
    why = f"(RECOVERY_SEED={run.seed})"
    assert [k for k, n in keys.items() if n > 1] == [], why
    stored = Counter((device, parameter) for device, parameter, _, _ in keys)
    assert set(stored) == set(run.answered), why
    for what, answered in run.answered.items():
        # Never more rows than answered reads (a replay with other values would add rows);
        # fewer only by the reads of a tick in flight at a kill.
        assert 0 <= answered - stored[what] <= KILLS, (what, answered, stored[what], why)
    print(f"lost {sum(run.answered.values()) - sum(stored.values())} duplicated 0 {why}")


def test_sqlite_loses_nothing_and_duplicates_nothing(run: KilledRun) -> None:
    assert "run summary:" in run.final_stdout
    assert_nothing_lost_nothing_twice(sqlite_keys(run.out / "samples.sqlite"), run)
    assert replays(run), f"no resume emitted journaled ticks (RECOVERY_SEED={run.seed})"


def test_postgres_loses_nothing_and_duplicates_nothing(run: KilledRun) -> None:
    dsn, why = postgres_dsn()
    if dsn is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI must run the PostgreSQL tests")
        pytest.skip(why)
    from tests.sinks.pg import query

    rows = query(
        f'SELECT device, parameter, instance, requested_at FROM public."{run.pg_table}" '
        "WHERE error IS NULL"
    )
    keys = Counter((r[0], r[1], r[2], r[3]) for r in rows)
    assert_nothing_lost_nothing_twice(keys, run)
    assert keys == sqlite_keys(run.out / "samples.sqlite")


def tick_finder(run: KilledRun) -> Callable[[Key], tuple[str, int]]:
    """The (bus, tick) a row was read in: the last tick of its bus started by then."""
    ticks = tick_of(run.out / "samples.sqlite")
    starts = {bus: [at for at, _ in rows] for bus, rows in ticks.items()}

    def tick(key: Key) -> tuple[str, int]:
        bus = BUS_OF[key[0]]
        return bus, ticks[bus][bisect.bisect_right(starts[bus], key[3]) - 1][1]

    return tick


def assert_copies_only_of_replayed_ticks(keys: Counter[Key], run: KilledRun) -> int:
    """Every row written more than once is of a tick emitted again that many times; returns
    how many rows are copies."""
    ranges, tick = replays(run), tick_finder(run)
    copies = 0
    for key, n in keys.items():
        if n > 1:
            bus, t = tick(key)
            again = sum(t in r for r in ranges.get(bus, []))
            assert n - 1 <= again, (key, n, bus, t, f"RECOVERY_SEED={run.seed}")
            copies += n - 1
    return copies


@pytest.mark.parametrize("name", ["samples.csv", "samples.jsonl"])
def test_csv_and_jsonl_are_at_least_once(run: KilledRun, name: str) -> None:
    """They append, so the rows of the epoch Bytewax replays are written again; a kill
    mid-write leaves at most one cut line, which the resumed sink starts a new line after."""
    keys, torn = keys_of(text_rows(run.out / name))
    assert torn <= KILLS
    assert set(keys) == set(sqlite_keys(run.out / "samples.sqlite"))
    copies = assert_copies_only_of_replayed_ticks(keys, run)
    print(f"{name}: lost 0, duplicated {copies}, cut lines {torn} (RECOVERY_SEED={run.seed})")


def test_parquet_loses_at_most_the_parts_open_at_the_kills(run: KilledRun) -> None:
    """Every visible part is complete; a part open at a kill stays hidden and unfinished, so
    its rows are gone unless their epoch is replayed; rows of replayed epochs are written
    again."""
    keys = parquet_keys(run.out / "parquet")  # every visible part reads
    complete = sqlite_keys(run.out / "samples.sqlite")
    assert set(keys) <= set(complete)
    copies = assert_copies_only_of_replayed_ticks(keys, run)
    assert len(list((run.out / "parquet").glob(".*.tmp"))) <= KILLS
    ranges, tick = replays(run), tick_finder(run)
    kills = [datetime.fromtimestamp(k, timezone.utc) for k in run.kills]
    open_for = timedelta(seconds=PART_AGE_S + 1.0)  # a part's age, and a write's delay
    lost = set(complete) - set(keys)
    for key in lost:
        bus, t = tick(key)
        near_a_kill = any(k - open_for <= key[3] <= k for k in kills)
        assert near_a_kill or any(t in r for r in ranges.get(bus, [])), (key, run.seed)
    print(f"parquet: lost {len(lost)}, duplicated {copies} (RECOVERY_SEED={run.seed})")


def test_journal_keeps_only_what_a_resume_can_need(run: KilledRun) -> None:
    files = sorted(p.name for p in (run.recovery / JOURNAL_DIR).glob("*.sqlite3"))
    assert files == sorted(f"{bus}.sqlite3" for bus in BUSES)
    for name in files:
        with sqlite3.connect(run.recovery / JOURNAL_DIR / name) as db:
            (kept,) = db.execute("SELECT COUNT(*) FROM ticks").fetchone()
        # The ticks since the snapshot before the latest: about two epochs.
        assert kept <= 3 * SNAPSHOT_S * RATE_HZ, (name, kept)


def test_recovery_directory_as_bytewax_run_reads_it() -> None:
    run = "bytewax.run"
    env = {"BYTEWAX_RECOVERY_DIRECTORY": "from-env"}
    assert recovery_directory(["flows.acquire", "-r", "rec", "-s", "1"], {}, run) == Path("rec")
    assert recovery_directory(["flows.acquire", "-rrec"], env, run) == Path("rec")
    assert recovery_directory(["--recovery-directory=rec", "flows.acquire"], env, run) == Path(
        "rec"
    )
    assert recovery_directory(["flows.acquire", "-s", "1"], env, run) == Path("from-env")
    assert recovery_directory(["flows.acquire"], {}, run) is None
    assert recovery_directory(["flows.acquire", "-r", "rec"], env, "pytest") is None
    assert journal_dir(["flows.acquire", "-r", "rec"], {}, run) == Path("rec") / "journal"
    assert journal_dir(["flows.acquire"], {}, run) is None


def test_documented_recovery_commands_run(tmp_path: Path) -> None:
    """The recovery commands of the docs (docs/operations.md), in a fresh directory: create
    the store, run, run again (as after a crash: a finished run resumes finished)."""
    from tests.test_readme import RECOVERY, SHORT, commands

    lines = [c for c in commands() if any(marker in c for marker in RECOVERY)]
    assert len(lines) == 2, lines
    (tmp_path / "acquire.toml").write_text(SHORT)
    env = {**os.environ, "ACQUIRE_CONFIG": str(tmp_path / "acquire.toml")}
    for line in [*lines, lines[-1]]:
        command = line.replace(".venv/bin/python", sys.executable)
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, (line, result.stderr)
    assert sorted(p.name for p in (tmp_path / "recovery" / JOURNAL_DIR).iterdir()) == [
        "lab-tcp.sqlite3",
        "line-rtu.sqlite3",
    ]
    missing = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.acquire", "-r", "nowhere", "-s", "1",
         "-b", "0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr == (
        "recovery directory 'nowhere' does not exist; create a store: "
        "mkdir -p nowhere && python -m bytewax.recovery nowhere 1\n"
    )


def test_a_resume_with_another_rate_or_without_a_bus_refuses_with_one_line(
    tmp_path: Path,
) -> None:
    """The store remembers what a resume depends on (acquire-run.json): a resume at another
    rate, or without one of its buses, ends with one line and exit 2 saying what changed and
    how to start over; the same config resumes; a new bus is fine; a store whose journal is
    gone resumes with a WARNING."""
    from tests.test_readme import SHORT

    store = tmp_path / "recovery"
    store.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(store), "1"], check=True)
    config = tmp_path / "acquire.toml"
    env = {**os.environ, "ACQUIRE_CONFIG": str(config)}

    def run(text: str) -> subprocess.CompletedProcess[str]:
        config.write_text(text)
        return subprocess.run(
            [sys.executable, "-m", "bytewax.run", "flows.acquire", "-r", str(store), "-s", "1",
             "-b", "0"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    first = run(SHORT)
    assert first.returncode == 0, first.stderr
    assert json.loads((store / "acquire-run.json").read_text()) == {
        "rate_hz": 1.0, "buses": ["lab-tcp", "line-rtu"]
    }  # fmt: skip
    start_over = (
        f"run with the config that made it, or start over: rm -rf {store} && mkdir -p {store} "
        f"&& python -m bytewax.recovery {store} 1\n"
    )
    faster = run(SHORT.replace("rate_hz = 1.0", "rate_hz = 2.0"))
    assert faster.returncode == 2
    assert faster.stderr == (
        f"recovery store {str(store)!r} was made by a run with other settings (rate_hz was 1, "
        f"is 2): {start_over}"
    )
    renamed = run(SHORT.replace('name = "line-rtu"', 'name = "line-2"'))
    assert renamed.returncode == 2
    assert "(bus 'line-rtu' gone)" in renamed.stderr and renamed.stderr.count("\n") == 1
    again = run(SHORT)
    assert again.returncode == 0, again.stderr
    assert "no journal" not in again.stderr
    shutil.rmtree(store / JOURNAL_DIR)
    journal_gone = run(SHORT)
    assert journal_gone.returncode == 0, journal_gone.stderr
    assert "has no journal" in journal_gone.stderr
