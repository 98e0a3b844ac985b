"""bench/status.py runs and prints its per-row cost and, last, its ratio."""

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
