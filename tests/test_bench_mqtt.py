"""bench/mqtt.py, small: 2,000 rows through the sink and the bare client, 2 buses for 3 s;
the subscriber counted every message of every run, both sent the same messages, and the last
line has its shape.

Without a broker on 127.0.0.1:1883 this skips, except under CI (``CI=true``)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("paho.mqtt.client")

ROOT = Path(__file__).resolve().parents[1]


def test_small_bench_counts_every_row() -> None:
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no MQTT broker on 127.0.0.1:1883 ({exc}); CI must run this")
        pytest.skip(f"no MQTT broker on 127.0.0.1:1883 ({exc})")
    args = ["--rows", "2000", "--batch", "500", "--repeat", "1", "--seconds", "3", "--buses", "2"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "mqtt.py"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.fullmatch(r"ratio mqtt \d+\.\d\d, p99 latency \d+\.\d ms", out.splitlines()[-1]), out
    for run in ("floor0", "project0"):
        assert re.search(rf"  {run}: [\d,]+ rows/s; subscriber received 2000 of 2000\n", out), out
    assert "subscriber: 0 missing, same messages from both: yes" in out, out
    got = re.search(r"(\d+) rows, 0 late ticks; subscriber received (\d+) of \1;", out)
    assert got and int(got[1]) > 0 and int(got[1]) % (2 * 8 * 4) == 0, out  # 2 buses x 8 x 4
    assert re.search(r"CPU steal \d+%", out), out
