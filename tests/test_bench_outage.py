"""bench/outage.py, small: two buses, PostgreSQL refused for 1 s; nothing lost, duplicated or
late, and the Postgres sink went through its spool and drained it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.sinks.pg import dsn  # noqa: F401 (the fixture: skips without a server, outside CI)

ROOT = Path(__file__).resolve().parents[1]


def test_short_outage_loses_nothing(dsn: str) -> None:  # noqa: F811 (the fixture)
    # Retries 0: the sink gives up a refused write at once, so the 1 s outage is spooled.
    args = ["--buses", "2", "--dark-s", "1", "--before-s", "1", "--after-s", "2"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "outage.py"), *args, "--pg-retries", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "lost 0, duplicated 0, late 0", proc.stdout
    for sink in ("sqlite", "postgres", "parquet"):
        assert re.search(
            rf"  {sink}: (\d+) rows of \1 expected .*: lost 0, duplicated 0", proc.stdout
        )
    assert re.search(r"spool directory: peak \d+\.\d+ MiB on disk; .* empty", proc.stdout)
    spooled = re.search(
        r"summary: sink\[2\] postgres .*rows written, (\d+) through the spool", proc.stdout
    )
    assert spooled and int(spooled[1]) > 0, proc.stdout
