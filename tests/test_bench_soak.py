"""bench/soak.py: a 3 s run of 64 buses through the real flow prints its figures as its last
line, and every expected row is stored."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAST = re.compile(
    r"soak (\d+) s, 64 buses x 8 devices x 4 parameters at 1 Hz: "
    r"RSS growth after warm-up ([+-]\d+\.\d)% \(target < 5 %\), "
    r"late ticks (\d+) \(target 0\), "
    r"rows stored (\d+) / expected (\d+) \(target equal\)"
)


def test_short_soak_stores_every_expected_row() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = LAST.fullmatch(proc.stdout.splitlines()[-1])
    assert match, proc.stdout
    seconds, growth, _late, stored, expected = match.groups()
    assert seconds == "3" and abs(float(growth)) < 100
    assert int(expected) == 3 * 64 * 8 * 4
    assert int(stored) == int(expected), proc.stdout
    assert re.search(r"RSS at +\d+ s: +\d+\.\d MiB", proc.stdout)
