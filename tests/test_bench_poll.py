"""bench/poll.py: its wire-limit arithmetic, and a short run that prints both ratios."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_poll", ROOT / "bench" / "poll.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_poll"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("baudrate", "expected_ms"), [(9600, 45.8), (19200, 22.9), (38400, 12.9), (115200, 6.7)]
)
def test_wire_read_time_matches_design(baudrate: int, expected_ms: float) -> None:
    """DESIGN.md: a read of 10 registers, before the device's turnaround."""
    bench = load_bench()
    assert bench.wire_read_s(10, baudrate) * 1000 == pytest.approx(expected_ms, abs=0.06)
    assert bench.wire_read_s(10, baudrate, 0.005) == pytest.approx(
        bench.wire_read_s(10, baudrate) + 0.005
    )


def test_wire_read_time_agrees_with_the_simulator() -> None:
    from connectors.transport import wire_time_s

    bench = load_bench()
    for baudrate in (9600, 19200, 115200):
        request_and_answer = wire_time_s(8, baudrate) + wire_time_s(5 + 2 * 3, baudrate)
        assert bench.wire_read_s(3, baudrate) == pytest.approx(request_and_answer)


def test_steal_share_is_a_share() -> None:
    bench = load_bench()
    assert 0.0 <= bench.steal_since(bench.cpu_times()) <= 1.0


def test_short_run_prints_its_ratios() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "poll.py"), "--seconds", "1", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(
        r"wire \d+\.\d\d, cpu \d+\.\d\d, cpu_uvloop (\d+\.\d\d|n/a), cpu_paced (\d+\.\d\d|n/a)",
        lines[-1],
    ), proc.stdout
    assert re.search(r"CPU steal over the whole run: \d+%", proc.stdout)
    assert " 0 failed" in proc.stdout
