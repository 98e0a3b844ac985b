"""How a command-line run ends: signals, a sink that fails for good, and the exit codes.

Each run is ``python -m bytewax.run flows.acquire`` on one simulated bus polled at 5 Hz into
SQLite (plus the sink a test makes fail), so each takes a second or two.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from bytewax.testing import run_main

import flows.acquire
from bench.machine import free_ports
from flows.acquire import EXIT_BUS, EXIT_SINK, build_flow, end_run
from flows.config import load_config
from sinks.spool import Spool
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[acquisition]
rate_hz = 5
{duration}
[[bus]]
name = "tcp-bus"
url = "tcp://127.0.0.1:0"
simulate = true
timeout_s = 0.3

  [[bus.device]]
  name = "pm-a"
  profile = "watlow_pm"
  address = 1

[[sink]]
kind = "sqlite"
path = "out/acquire.sqlite"
"""

ABORT = re.compile(
    r"^(SIGINT|SIGTERM) again: aborting now, without closing the sinks; rows not yet written "
    r"are lost unless the recovery journal or a sink's spool holds them$"
)


def config(tmp_path: Path, extra: str = "", duration: float | None = None) -> Path:
    text = CONFIG.format(duration="" if duration is None else f"duration_s = {duration}\n")
    return write_config(tmp_path, text + extra)


def start(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.acquire"],
        cwd=ROOT,
        env={**os.environ, "ACQUIRE_CONFIG": str(path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def catching(proc: subprocess.Popen[str], at_s: float) -> None:
    """Wait until ``at_s`` seconds after ``proc`` started, and at least until it catches
    SIGINT and SIGTERM (Linux: /proc/PID/status): on a loaded machine Python may still be starting
    when the time comes, before flows.acquire has put its handlers in, and no code of the
    project can run earlier than that."""
    began = time.monotonic()
    status = Path(f"/proc/{proc.pid}/status")
    # Python catches SIGINT from its start (KeyboardInterrupt): SIGTERM's bit says the
    # project's handlers are in, both at once.
    bit = 1 << (signal.SIGTERM - 1)
    while time.monotonic() - began < 10:
        try:
            caught = re.search(r"^SigCgt:\s*([0-9a-f]+)", status.read_text(), re.MULTILINE)
        except OSError:  # no /proc here, or the process is gone
            break
        if caught is None or int(caught[1], 16) & bit:
            break
        time.sleep(0.002)
    time.sleep(max(0.0, at_s - (time.monotonic() - began)))


def polled(out: str) -> int:
    """The rows the run polled, from its summary (0 without one)."""
    match = re.search(r"total: (\d+) rows", out)
    return int(match[1]) if match else 0


def stored(tmp_path: Path) -> int:
    db = tmp_path / "out" / "acquire.sqlite"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        except sqlite3.OperationalError:  # the sink made the file, not the table yet
            return 0


def no_crash(err: str) -> None:
    assert "Traceback" not in err and "panicked" not in err, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_second_signal_aborts_at_once_with_one_line(
    tmp_path: Path, signum: signal.Signals
) -> None:
    rng = random.Random(signum)
    aborted = 0
    # While starting, as polling starts, while polling. One signal can end a run within
    # 30 ms (no tick in progress): a run over before the second signal is tried again.
    for first_at in (0.15, 0.6, 1.2, 0.9, 1.1, 0.7):
        gap = rng.uniform(0.01, 0.05)
        proc = start(config(tmp_path))
        catching(proc, first_at)
        proc.send_signal(signum)
        time.sleep(gap)
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.communicate()[1]
            continue
        proc.send_signal(signum)
        began = time.monotonic()
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - began
        what = f"second {signum.name} {gap * 1000:.0f} ms after one at {first_at} s"
        assert proc.returncode == 128 + signum, f"{what}: {proc.returncode}\n{err}"
        first, *rest = err.splitlines()
        assert first == f"{signum.name}: finishing the tick in progress (again to abort)", err
        assert len(rest) == 1 and ABORT.match(rest[0]), f"{what}:\n{err}"
        assert took < 2, f"{what}: took {took:.1f} s to abort"
        assert "run summary" not in out
        aborted += 1
        if aborted == 3:
            return
    pytest.fail(f"only {aborted} of the runs were still running at the second signal")


@pytest.mark.parametrize(
    ("signum", "after_s"),
    [(signal.SIGTERM, 0.2), (signal.SIGTERM, 0.5), (signal.SIGTERM, 1.0), (signal.SIGINT, 0.2)],
    ids=lambda v: v.name if isinstance(v, signal.Signals) else f"{v}s",
)
def test_a_signal_during_startup_ends_cleanly(
    tmp_path: Path, signum: signal.Signals, after_s: float
) -> None:
    """The handler is in about 40 ms after the process starts (docs/operations.md): a signal
    while the config is read, the flow built or the buses opened ends the run as any one
    signal does."""
    proc = start(config(tmp_path))
    catching(proc, after_s)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err.splitlines() == [f"{signum.name}: finishing the tick in progress (again to abort)"]
    no_crash(err)
    # The summary lists what was polled; a run stopped before its first tick says so.
    assert stored(tmp_path) == polled(out)
    if polled(out):
        assert out.startswith("run summary:\n"), out
    else:
        assert out == "run summary: nothing polled (the run stopped before its first tick)\n"


def test_a_sink_that_fails_for_good_ends_the_run_with_exit_3(tmp_path: Path) -> None:
    """A CSV file whose header does not fit the rows (SinkSchemaError: permanent): one line
    naming the sink, the summary, exit 3; the CSV file is left as it was."""
    csv_path = tmp_path / "out" / "samples.csv"
    csv_path.parent.mkdir()
    csv_path.write_text("a,b,c\n1,2,3\n")
    proc = start(config(tmp_path, '\n[[sink]]\nkind = "csv"\npath = "out/samples.csv"\n'))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_SINK, err
    no_crash(err)
    lines = [line for line in err.splitlines() if "incompatible header" in line]
    assert len(lines) == 1 and re.match(r"sink\[1\] csv \S*samples\.csv: ", lines[0]), err
    assert out.startswith("run summary:\n") and "sink[1] csv " in out, out
    assert stored(tmp_path) == polled(out)
    assert csv_path.read_text() == "a,b,c\n1,2,3\n"


def test_a_full_spool_ends_the_run_with_exit_3_and_the_other_sinks_hold_every_row(
    tmp_path: Path,
) -> None:
    """PostgreSQL unreachable (a closed port): its rows go to the spool until it passes
    spool_max_mb, mid-run; then the run ends as for any sink failing for good."""
    (port,) = free_ports(1)
    sink = (
        f'\n[[sink]]\nkind = "postgres"\ndsn = "postgresql://postgres@127.0.0.1:{port}/test"\n'
        "retries = 0\nconnect_timeout_s = 0.5\nspool_max_mb = 0.01\n"
    )
    proc = start(config(tmp_path, sink))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_SINK, err
    no_crash(err)
    lines = [line for line in err.splitlines() if "above spool_max_mb" in line]
    assert len(lines) == 1 and lines[0].startswith("sink[1] postgres 127.0.0.1:"), err
    assert polled(out) > 0
    assert stored(tmp_path) == polled(out)
    (path,) = (tmp_path / "spool").glob("postgres-*-w0.spool")
    spool = Spool.open(path.with_suffix(""))
    assert spool.rows == polled(out)  # kept for the next run
    spool.close()


def test_end_run_in_library_use_stops_the_run_and_not_the_process(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert not flows.acquire._Run.command_line  # no exit hook, no handlers in pytest
    flow = build_flow(load_config(config(tmp_path)))  # no duration: runs until stopped
    runner = threading.Thread(target=run_main, args=(flow,))
    runner.start()
    deadline = time.monotonic() + 20
    while stored(tmp_path) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    end_run("test: giving up", EXIT_SINK)
    runner.join(timeout=10)
    assert not runner.is_alive()
    err = capfd.readouterr().err
    assert err.count("test: giving up\n") == 1
    assert stored(tmp_path) > 0
    # A flow built afterwards is not stopped by it.
    again = tmp_path / "again"
    again.mkdir()
    capfd.readouterr()
    run_main(build_flow(load_config(config(again, duration=0.4))))
    # Its 2 tick slots at 5 Hz, each polled or skipped after a tick that overran (late), and
    # pm-a's 8 parameters in each tick polled.
    out = capfd.readouterr().out
    ticks = re.search(r"bus tcp-bus: (\d+) ticks, (\d+) late", out)
    assert ticks is not None, out
    assert int(ticks[1]) >= 1 and int(ticks[1]) + int(ticks[2]) == 2, out
    assert stored(again) == polled(out) == 8 * int(ticks[1])


def test_a_bus_that_cannot_start_ends_the_run_with_exit_4(tmp_path: Path) -> None:
    """A recovery journal that cannot be made (a file where its directory goes): one line
    naming the bus, the summary, exit 4 (EXIT_BUS); no traceback or panic."""
    store = tmp_path / "recovery"
    store.mkdir()
    made = subprocess.run([sys.executable, "-m", "bytewax.recovery", str(store), "1"], cwd=ROOT)
    assert made.returncode == 0
    (store / "journal").write_text("not a directory")
    run = [sys.executable, "-m", "bytewax.run", "flows.acquire", "-r", str(store), "-s", "1"]
    proc = subprocess.run(
        [*run, "-b", "0"],
        cwd=ROOT, env={**os.environ, "ACQUIRE_CONFIG": str(config(tmp_path, duration=1))},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == EXIT_BUS, proc.stderr
    no_crash(proc.stderr)
    assert [line for line in proc.stderr.splitlines() if "tcp-bus" in line] == [
        f"bus 'tcp-bus': cannot start: [Errno 17] File exists: '{store / 'journal'}'"
    ]
    assert proc.stdout.startswith("run summary:")


def test_a_closed_stdout_costs_the_summary_only(tmp_path: Path) -> None:
    """stdout a pipe whose reader is gone: the run ends with exit 0 and one line on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.acquire"],
        cwd=ROOT, env={**os.environ, "ACQUIRE_CONFIG": str(config(tmp_path, duration=1))},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    no_crash(err)
    assert "run summary not printed: stdout is closed" in err
    assert stored(tmp_path) > 0
