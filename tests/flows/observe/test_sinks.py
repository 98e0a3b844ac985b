"""The sinks in the status line, the summary and the metrics: real spooled partitions (a CSV
file that is written, one whose directory is a file, PostgreSQL on a closed port, a spool
too small to hold a batch) against what the lines and the scrape say of them."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest

from flows.observe.figures import sink_states
from flows.observe.metrics import SINK_STATES
from flows.observe.status import ERROR_CHARS, _cut, sinks_text
from flows.observe.summary import IntoSummary, sink_line
from sinks.base import IntoSink
from sinks.csv import IntoCsv
from sinks.postgres import IntoPostgres
from sinks.spooled import IntoSpooled, SpoolState, states
from tests.flows.observe.test_metrics import parse
from tests.flows.observe.test_status import sample

ROWS = [{"device": "d", "value": float(i)} for i in range(5)]
PG = "sink[1] postgres 127.0.0.1:1/test.public.samples"
# Nothing listens on port 1: every connection is refused at once.
DOWN = IntoPostgres(dsn="postgresql://postgres@127.0.0.1:1/test", retries=0, connect_timeout_s=0.5)


class Sinks:
    """Spooled partitions of this test, closed when it ends."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.parts: list[Any] = []
        self.fatal: list[str] = []

    def open(
        self, sink: IntoSink, name: str, where: str, worker: int = 0, workers: int = 1, **kw: Any
    ) -> Any:
        into = IntoSpooled(
            sink, self.tmp_path / "spool", name, where=where, on_fatal=self.fatal.append, **kw
        )
        part = into.build_partition(worker, workers)
        self.parts.append(part)
        return part

    def states(self) -> list[SpoolState]:
        """This test's partitions' states (sinks.spooled.states() has every test's)."""
        return [s for s in states() if s.path.startswith(str(self.tmp_path))]


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Sinks]:
    made = Sinks(tmp_path)
    try:
        yield made
    finally:
        for part in made.parts:
            part.close()


def wait_for(check: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def four_sinks(sinks: Sinks) -> dict[str, str]:
    """sink[0] writes; sink[1] (PostgreSQL down) spools; sink[2] spooled, then drained; sink[3]
    failed (its spool full). Returns their CSV paths by "ok", "back" and "full"."""
    tmp = sinks.tmp_path
    (tmp / "blocked").write_text("a file where the sinks want a directory")
    paths = {k: str(tmp / p) for k, p in (("ok", "ok.csv"), ("back", "blocked/back.csv"))}
    paths["full"] = str(tmp / "blocked" / "full.csv")
    ok = sinks.open(IntoCsv(path=tmp / "ok.csv"), "ok", f"sink[0] csv {paths['ok']}")
    pg = sinks.open(DOWN, "pg", PG, backoff_s=60)
    back = sinks.open(
        IntoCsv(path=tmp / "blocked/back.csv"), "back", f"sink[2] csv {paths['back']}",
        backoff_s=0.05, backoff_max_s=0.05,
    )  # fmt: skip
    full = sinks.open(
        IntoCsv(path=tmp / "blocked/full.csv"), "full", f"sink[3] csv {paths['full']}",
        max_mb=1e-4, backoff_s=60,
    )  # fmt: skip
    for part in (ok, pg, back, full):
        part.write_batch(ROWS)
    (tmp / "blocked").unlink()  # back.csv can be written now; full.csv's sink failed for good
    wait_for(lambda: [s.state for s in sinks.states()][2] == "writing")
    return paths


def test_each_sink_in_the_status_line(sinks: Sinks, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flows.status")
    now = [0.0]
    summary = IntoSummary(io.StringIO(), status_s=1.0, clock=lambda: now[0], spools=sinks.states)
    part = summary.build("summary", 0, 1)
    paths = four_sinks(sinks)
    now[0] = 1.0
    part.write_batch([sample("ok", 0, 1.0)])
    part.close()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "flows.status"]
    head, _, tail = line.partition("; sinks ")
    assert head.startswith("status: buses 1/1 up, devices 1/1 answering; last 1.0 s: 1 rows")
    parts = tail.split("; ")
    assert parts[0] == "2/4 writing"
    m = re.fullmatch(
        rf"{re.escape(PG)}: spooling 5 rows, oldest ([\d.]+) s, 1 retries \((.*)\)", parts[1]
    )
    assert m, parts[1]
    assert 0 <= float(m[1]) < 5
    # The error cut in its middle: where it happened, and why.
    assert m[2].startswith(f'"PostgreSQL table {PG[17:]}: opening failed after 1 attempt')
    assert m[2].endswith(" ... or: [Errno 111] Connect call failed ('127.0.0.1', 1)\"")
    full = f"sink[3] csv {paths['full']}: failed, 5 rows spooled, oldest "
    assert parts[2].startswith(full), parts[2]
    # Cut to ERROR_CHARS in its middle: how much of the path shows depends on how long it is.
    error = sinks.states()[3].last_error
    assert error.startswith(f"its spool {sinks.tmp_path / 'spool' / 'full-w0.spool'} holds ")
    assert parts[2].endswith(f", 1 retries ({_cut(error, ERROR_CHARS)!r})"), parts[2]
    assert parts[2].endswith(" ... topping the run, the next run writes the spool first')")
    assert len(parts) == 3  # the two writing sinks are counted, not named
    assert sinks.fatal == [f"sink[3] csv {paths['full']}: " + sinks.states()[3].last_error]


def test_every_sink_writing_and_none() -> None:
    writing = SpoolState(
        where="sink[0] sqlite x.sqlite:samples", name="sqlite-1", worker=0, state="writing",
        rows_written=10, rows_spooled=0, rows_spooled_total=0, spool_bytes=0, peak_bytes=0,
        oldest_age_s=None, retries=0, last_error=None, drain_s=None, path="spool/sqlite-1-w0",
    )  # fmt: skip
    assert sinks_text([writing, writing]) == "sinks 2/2 writing"
    assert sinks_text([replace(writing, state="closed")]) == ""
    assert sinks_text([]) == ""
    assert sink_line(writing) == "  sink[0] sqlite x.sqlite:samples: 10 rows written"
    # A flow built again in one process: the later partition of a sink and worker stands.
    later = replace(writing, retries=3)
    other = replace(writing, worker=1)
    assert sink_states([writing, other, later]) == [later, other]
    assert sink_states([writing, other, later], worker=1) == [other]


def test_the_summary_has_a_line_per_sink(sinks: Sinks) -> None:
    out = io.StringIO()
    part = IntoSummary(out, metrics=False, spools=sinks.states).build("summary", 0, 1)
    paths = four_sinks(sinks)
    part.write_batch([sample("ok", 0, 1.0)])
    for spooled in sinks.parts:  # the summary is the flow's last step: it closes last
        spooled.close()
    part.close()
    lines = out.getvalue().splitlines()
    assert lines[-5] == "  total: 1 rows, 0 error rows"
    ok, pg, back, full = lines[-4:]
    assert ok == f"  sink[0] csv {paths['ok']}: 5 rows written"
    # PostgreSQL stayed down: close tried once more, and the rows wait for the next run.
    spool = sinks.tmp_path / "spool"
    size = (spool / "pg-w0.spool").stat().st_size  # one batch, the same in every spool
    assert pg == (
        f"  {PG}: 0 rows written, 5 through the spool (peak {size} B), 2 retries; 5 rows still "
        f"spooled in {spool / 'pg-w0.spool'} (the next run writes them first)"
    )
    m = re.fullmatch(
        rf"  sink\[2\] csv {re.escape(paths['back'])}: 5 rows written, 5 through the spool "
        rf"\(peak {size} B\), (\d+) retries, last outage drained in ([\d.]+) s",
        back,
    )
    assert m, back
    assert int(m[1]) >= 1 and 0 < float(m[2]) < 3
    assert full.startswith(
        f"  sink[3] csv {paths['full']}: 0 rows written, 5 through the spool (peak {size} B), "
        f"1 retries; 5 rows still spooled in {spool / 'full-w0.spool'} (the next run writes "
        f"them first); failed: its spool {spool / 'full-w0.spool'} holds 0.000143 MB, above "
        "spool_max_mb = 0.0001"
    ), full


def test_several_workers_each_say_their_own(sinks: Sinks, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flows.status")
    ok = IntoCsv(path=sinks.tmp_path / "ok.csv")
    for worker in (0, 1):
        sinks.open(ok, "ok", "sink[0] csv ok.csv", worker, 2).write_batch(ROWS)
    sinks.open(DOWN, "pg", PG, 1, 2, backoff_s=60).write_batch(ROWS)
    now = [0.0]
    summary = IntoSummary(io.StringIO(), status_s=1.0, clock=lambda: now[0], spools=sinks.states)
    parts = [summary.build("summary", worker, 2) for worker in (0, 1)]
    now[0] = 1.0
    for part in parts:
        part.write_batch([sample("ok", 0, 1.0)])
        part.close()
    first, second = [r.getMessage() for r in caplog.records if r.name == "flows.status"]
    assert first.startswith("status (worker 1/2, its buses): ")
    assert first.endswith("; sinks 1/1 writing")
    assert second.startswith("status (worker 2/2, its buses): ")
    assert (
        "; sinks 1/2 writing; sink[1] postgres 127.0.0.1:1/test.public.samples: spooling 5 "
        in second
    )


def test_the_sinks_are_scraped(sinks: Sinks) -> None:
    part = IntoSummary(io.StringIO(), spools=sinks.states).build("summary", 0, 1)
    try:
        paths = four_sinks(sinks)
        values = parse(generate_latest(REGISTRY).decode())
    finally:
        part.close()
    mine = {
        f"sink[0] csv {paths['ok']}",
        PG,
        *(f"sink[{i}] csv {paths[k]}" for i, k in ((2, "back"), (3, "full"))),
    }

    def of(name: str) -> dict[str, float]:
        return {
            dict(k)["sink"]: v
            for k, v in values[name].items()
            if dict(k)["sink"] in mine and dict(k)["worker"] == "0"
        }

    assert all(k.startswith("daq_sink_") for k in values if "sink" in k)
    by_state = {
        (dict(k)["sink"], dict(k)["state"]): v
        for k, v in values["daq_sink_state"].items()
        if dict(k)["sink"] in mine
    }
    ok, back, full = (f"sink[{i}] csv {paths[k]}" for i, k in ((0, "ok"), (2, "back"), (3, "full")))
    current = {ok: "writing", PG: "spooling", back: "writing", full: "failed"}
    assert by_state == {(s, st): float(current[s] == st) for s in mine for st in SINK_STATES}
    assert of("daq_sink_rows_written_total") == {ok: 5, PG: 0, back: 5, full: 0}
    assert of("daq_sink_spooled_rows_total") == {ok: 0, PG: 5, back: 5, full: 5}
    assert of("daq_sink_rows_spooled") == {ok: 0, PG: 5, back: 0, full: 5}
    # The same rows in each spool: one record of the same size, the spool file's.
    size = (sinks.tmp_path / "spool" / "pg-w0.spool").stat().st_size
    assert of("daq_sink_spool_bytes") == {ok: 0, PG: size, back: 0, full: size}
    assert of("daq_sink_spool_peak_bytes") == {ok: 0, PG: size, back: size, full: size}
    retries = of("daq_sink_retries_total")
    assert (retries[ok], retries[PG], retries[full]) == (0, 1, 1) and retries[back] >= 1
    oldest = of("daq_sink_oldest_spooled_seconds")
    assert (oldest[ok], oldest[back]) == (0, 0) and 0 < oldest[PG] < 5 and 0 < oldest[full] < 5
    assert set(of("daq_sink_drain_seconds")) == {back}
    # Closed with the summary: not served after the run.
    assert PG not in generate_latest(REGISTRY).decode()
