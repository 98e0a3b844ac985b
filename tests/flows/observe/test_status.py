"""The live status line and the per-device summary table: [status] config, exact figures
with an injected clock, and a real run with a dead device against the rows it stored."""

from __future__ import annotations

import io
import logging
import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.testing import run_main

from connectors.sample import ErrorKind, Sample, TickStats
from flows.acquire import build_flow
from flows.config import ConfigError, Status, load_config, parse_config
from flows.observe.figures import NOT_SENT, kind_name, latency_key
from flows.observe.summary import IntoSummary, percentile
from tests.conftest import T0, make_sample, make_stats, write_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG = """
[acquisition]
rate_hz = 4
duration_s = {duration}

[status]
interval_s = 1

[[bus]]
name = "tcp-bus"
url = "tcp://127.0.0.1:0"
simulate = true
timeout_s = 0.1

  [[bus.device]]
  name = "pm-ok"
  profile = "watlow_pm"
  address = 1

  [[bus.device]]
  name = "pm-dead"
  profile = "watlow_pm"
  address = 2
  simulate = {{ dead = true }}

[[sink]]
kind = "sqlite"
path = "out.sqlite"
"""

LINE = re.compile(
    r"status: buses (\d+)/(\d+) up, devices (\d+)/(\d+) answering; "
    r"last ([\d.]+) s: (\d+) rows \(([\d.]+) rows/s\), (\d+) late ticks, (\d+) errors"
    r"(?: \(worst (\S+): (\d+), (['\"])(.*?)\12\))?(?:; sinks (\d+)/(\d+) writing(.*))?$"
)


def status_of(text: str) -> Status:
    bus = '[[bus]]\nname = "b"\nurl = "tcp://127.0.0.1:0"\nsimulate = true\n'
    device = '[[bus.device]]\nname = "d"\nprofile = "watlow_pm"\naddress = 1\n'
    data = tomllib.loads(bus + device)
    data.update(tomllib.loads(text))
    return parse_config(data, source="t.toml").status


def test_status_config() -> None:
    assert status_of("") == Status(enabled=True, interval_s=10.0)
    assert status_of("[status]\ninterval_s = 2.5").every_s == 2.5
    assert status_of("[status]\ninterval_s = 0").every_s is None
    assert status_of("[status]\nenabled = false").every_s is None
    for text, message in (
        ("[status]\ninterval_s = -1", "t.toml: status.interval_s: -1 must be >= 0"),
        ("[status]\ninterval_s = 'x'", "t.toml: status.interval_s: 'x' is not a number"),
        ("[status]\nenabled = 1", "t.toml: status.enabled: 1 is not true or false"),
        ("[status]\nintervl_s = 1", "t.toml: status.intervl_s: unknown key"),
        (
            "[status]\ninterval_s = 1e10",
            "t.toml: status.interval_s: 10000000000.0 is more than 1e+09",
        ),
    ):
        with pytest.raises(ConfigError) as info:
            status_of(text)
        assert str(info.value).startswith(message), str(info.value)
        assert "\n" not in str(info.value)


TIMEOUT = (ErrorKind.TIMEOUT, "timeout: no response")


def sample(
    device: str, tick: int, latency_ms: float, failure: tuple[ErrorKind, str] | None = None
) -> Sample:
    """A Sample of bus ``b``; with ``failure``, an error row of that kind and text."""
    kind, error = failure or (None, None)
    return make_sample(
        device=device, tick=tick, value=None if error else 1.0,
        received_at=T0 + timedelta(milliseconds=latency_ms), error=error, error_kind=kind,
        exception_code=2 if kind is ErrorKind.EXCEPTION else None,
    )  # fmt: skip


def stats(tick: int, late: int = 0) -> TickStats:
    return make_stats(tick=tick, errors=1, late=late)


def test_status_line_figures_with_an_injected_clock(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flows.status")
    now = [100.0]
    out = io.StringIO()
    summary = IntoSummary(out, status_s=2.0, clock=lambda: now[0], spools=list)  # no sinks
    part = summary.build("summary", 0, 1)
    backoff = (ErrorKind.BACKOFF, "backoff: not sent")
    exception = (ErrorKind.EXCEPTION, "illegal data address (2)")
    part.write_batch([sample("ok", 0, 1.0), sample("dead", 0, 100.0, TIMEOUT), stats(0)])
    now[0] = 101.0  # not due yet
    part.write_batch([sample("ok", 1, 3.0), sample("dead", 1, 0, backoff), stats(1)])
    assert caplog.messages == []
    now[0] = 102.5
    part.write_batch([sample("ok", 2, 2.0), sample("dead", 2, 0, backoff), stats(2, 3)])
    now[0] = 105.0
    part.write_batch([sample("ok", 6, 2.0), sample("dead", 6, 100.0, exception)])
    part.close()
    assert caplog.messages == [
        "status: buses 1/1 up, devices 1/2 answering; last 2.5 s: 6 rows (2.4 rows/s), "
        "3 late ticks, 3 errors (worst b/dead: 3, 'timeout: no response')",
        "status: buses 1/1 up, devices 1/2 answering; last 2.5 s: 2 rows (0.8 rows/s), "
        "0 late ticks, 1 errors (worst b/dead: 1, 'illegal data address (2)')",
    ]
    lines = out.getvalue().splitlines()
    # dead: latency of the two requests sent (100 ms each), not of the backoff rows.
    assert lines[2].split() == ["b/dead", "4", "4", "100.0", "3", "100.0", "100.0"]
    assert lines[3].split() == ["b/ok", "4", "0", "0.0", "3", "2.0", "3.0"]


def test_status_lines_of_several_workers_say_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flows.status")
    now = [0.0]
    part = IntoSummary(io.StringIO(), status_s=1.0, clock=lambda: now[0]).build("s", 1, 2)
    now[0] = 1.0
    try:
        part.write_batch([sample("ok", 0, 1.0)])
    finally:
        part.close()  # an open partition stays in the metrics registry
    assert caplog.messages[0].startswith("status (worker 2/2, its buses): buses 1/1 up")


def test_error_kind_names_and_latency_bins() -> None:
    assert kind_name(ErrorKind.TIMEOUT) == "timeout"
    assert kind_name(ErrorKind.EXCEPTION) == "exception"
    assert kind_name(ErrorKind.CONNECTION_LOST) == "connection lost"
    assert kind_name(None) == "unknown"  # journaled before rows had kinds
    assert {ErrorKind.BACKOFF, ErrorKind.CONNECTION_FAILED} == NOT_SENT
    assert [latency_key(s) for s in (0.0, 0.00049, 0.0999, 0.1234, 2.345, 12.3)] == [
        0, 4, 999, 1230, 23400, 123000
    ]  # fmt: skip


NOT_SENT_TEXTS = ("backoff:", "connection failed:")


def stored(path: Path) -> list[tuple[str, str | None, float]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT device, error, latency_s FROM samples").fetchall()


def test_a_real_run_logs_status_lines_that_match_its_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="flows.status")
    run_main(build_flow(load_config(write_config(tmp_path, CONFIG.format(duration=3.0)))))
    rows = stored(tmp_path / "out.sqlite")
    dead_errors = {e for d, e, _ in rows if d == "pm-dead"}
    assert None not in dead_errors and all(e is None for d, e, _ in rows if d == "pm-ok")
    lines = [m for m in caplog.messages if m.startswith("status")]
    assert len(lines) >= 2, caplog.messages
    logged_rows = logged_errors = 0
    for line in lines:
        m = LINE.match(line)
        assert m, line
        assert m.group(1, 2, 3, 4) == ("1", "1", "1", "2"), line
        n, per_s, elapsed = int(m[6]), float(m[7]), float(m[5])
        assert abs(per_s - n / elapsed) <= 0.05 * per_s + 0.1 / elapsed * per_s + 0.1, line
        logged_rows += n
        logged_errors += int(m[9])
        assert int(m[9]) > 0 and m[10] == "tcp-bus/pm-dead" and m[11] == m[9], line
        assert m[13] in dead_errors, line
        # Its SQLite sink writes all along: counted, never named.
        assert m[14] is not None and str(tmp_path) not in m[16], line
    # The lines count the rows as they come: all but those after the last line.
    assert logged_rows <= len(rows)
    assert logged_errors <= sum(d == "pm-dead" for d, _, _ in rows)
    # Only the rows after the last line (less than 1.5 s of the 3 s run) are not in one.
    assert len(rows) - logged_rows < 1.5 / 3 * len(rows)
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:4]}
    late = re.search(r"bus tcp-bus: \d+ ticks, (\d+) late", out)
    assert late, out
    for device in ("pm-ok", "pm-dead"):
        mine = [(e, lat) for d, e, lat in rows if d == device]
        # The stored rows carry no kind; the texts of rows not sent start so.
        sent = [lat for e, lat in mine if e is None or not e.startswith(NOT_SENT_TEXTS)]
        p50, p99 = (
            latency_key(percentile(sent, q)) / 10 for q in (50, 99)
        )  # ms, to the summary's bins
        reads, errors, _, late_ticks, s50, s99 = table[f"tcp-bus/{device}"]
        assert (int(reads), int(errors)) == (len(mine), sum(e is not None for e, _ in mine))
        assert late_ticks == late[1]
        assert (float(s50), float(s99)) == pytest.approx((p50, p99), abs=0.051), out
    # The SQLite sink, behind its spool, wrote every row it stored, none through the spool.
    sink = re.search(
        r"^  sink\[0\] sqlite out\.sqlite:samples: (\d+) rows written$",
        out,
        re.M,
    )
    assert sink and int(sink[1]) == len(rows), out
