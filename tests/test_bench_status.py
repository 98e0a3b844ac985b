"""bench/status.py runs and prints its per-row cost and, last, its ratio; with --page, the
status page's cost in a small run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_status_runs() -> None:
    result = subprocess.run(
        [sys.executable, "bench/status.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("write_batch: ") and lines[0].endswith(" us/row")
    assert lines[-1].startswith("ratio: ")


def test_bench_status_page_runs_small() -> None:
    small = ["--page", "--buses", "4", "--seconds", "1.5", "--rounds", "1"]
    result = subprocess.run(
        [sys.executable, "bench/status.py", *small],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    off, on, facts, last = result.stdout.strip().splitlines()
    assert off.startswith("page off: ") and off.endswith(" late ticks")
    assert on.startswith("page on, ") and " requests: " in on
    assert int(on.split(",")[1].split()[0]) >= 1  # the client was answered
    assert facts.startswith("4 buses at 1 Hz, 1.5 s x 1 runs each; ")
    assert last.startswith("page: ") and last.endswith(" late ticks with the page on")
