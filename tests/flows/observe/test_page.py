"""The status page's config ([status] http, $ACQUIRE_STATUS_HTTP), its process and port, and
what its server answers, fed by a summary partition (no flow: the browser test runs one)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from connectors.sample import ErrorKind
from flows.config import ConfigError, load_config
from flows.observe.page import PAGE, StatusPage, process_of_run
from flows.observe.summary import IntoSummary
from tests.conftest import T0, make_sample, make_stats, write_config

ROOT = Path(__file__).resolve().parents[3]
CONFIG = """
[status]
{status}

[[bus]]
name = "b"
url = "tcp://127.0.0.1:0"
simulate = true

  [[bus.device]]
  name = "d"
  profile = "watlow_pm"
  address = 1
"""


def http_of(tmp_path: Path, status: str) -> tuple[str, int] | None:
    return load_config(write_config(tmp_path, CONFIG.format(status=status))).status.http


def test_http_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACQUIRE_STATUS_HTTP", raising=False)
    assert http_of(tmp_path, "") is None
    assert http_of(tmp_path, 'http = ""') is None
    assert http_of(tmp_path, 'http = "8080"') == ("127.0.0.1", 8080)
    assert http_of(tmp_path, 'http = "0.0.0.0:9000"') == ("0.0.0.0", 9000)
    assert http_of(tmp_path, 'http = "[::1]:9000"') == ("::1", 9000)
    assert http_of(tmp_path, 'http = "daq-host.local:80"') == ("daq-host.local", 80)
    for value, problem in (
        ('"127.0.0.1:99999"', "'127.0.0.1:99999' has a port beyond 65535"),
        ('"http://x:1"', "'http://x:1' is not HOST:PORT, [IPv6]:PORT or PORT"),
        ("8080", "8080 is not a string"),
    ):
        with pytest.raises(ConfigError) as info:
            http_of(tmp_path, f"http = {value}")
        assert str(info.value).startswith(f"{tmp_path / 'acquire.toml'}: status.http: {problem}")
    monkeypatch.setenv("ACQUIRE_STATUS_HTTP", "127.0.0.1:7000")
    assert http_of(tmp_path, 'http = "8080"') == ("127.0.0.1", 7000)
    monkeypatch.setenv("ACQUIRE_STATUS_HTTP", "")
    assert http_of(tmp_path, 'http = "8080"') is None
    monkeypatch.setenv("ACQUIRE_STATUS_HTTP", "localhost:x")
    with pytest.raises(ConfigError) as info:
        http_of(tmp_path, "")
    assert str(info.value) == (
        "ACQUIRE_STATUS_HTTP: 'localhost:x' is not HOST:PORT, [IPv6]:PORT or PORT "
        "(e.g. 127.0.0.1:8080)"
    )


def test_process_of_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BYTEWAX_PROCESS_ID", raising=False)
    monkeypatch.delenv("BYTEWAX_ADDRESSES", raising=False)
    assert process_of_run(["flows.acquire"]) == (0, 1)
    assert process_of_run(["flows.acquire", "-w", "4"]) == (0, 1)
    argv = ["flows.acquire", "-i", "1", "-a", "h1:2101;h2:2101;h3:2101", "-w", "2"]
    assert process_of_run(argv) == (1, 3)
    monkeypatch.setenv("BYTEWAX_PROCESS_ID", "2")
    monkeypatch.setenv("BYTEWAX_ADDRESSES", "h1:1;h2:1;h3:1")
    assert process_of_run(["flows.acquire"]) == (2, 3)


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, object]]:
    """A summary partition of worker 2 of process 2/2 serving its page on port 0."""
    monkeypatch.setattr(sys, "argv", ["run.py", "flows.acquire", "-i", "1", "-a", "a:1;b:1"])
    config = 'a <script>alert("x")</script> & b.toml'
    part = IntoSummary(
        page=StatusPage("127.0.0.1", 0, config, 2.0, (("ok", ("odd", "temp")),)), metrics=True
    ).build("s", 1, 2)
    assert PAGE.address is not None
    yield f"http://127.0.0.1:{PAGE.address[1]}/", part
    part.close()
    assert PAGE.address is None


def test_status_json_and_page(served: tuple[str, object]) -> None:
    url, part = served
    part.write_batch(  # type: ignore[attr-defined]
        [
            make_sample(device="ok", parameter="temp", value=21.5, unit="degC"),
            make_sample(device="ok", parameter="mode", value=2, text="auto"),
            make_sample(device="ok", parameter="odd", value=math.inf),
            make_sample(device="ok", parameter="temp", value=22.5, unit="degC", tick=2),
            make_sample(device="dead", parameter="temp", value=None, error="timeout: no response",
                        error_kind=ErrorKind.TIMEOUT),
            make_sample(device="dead", parameter="mode", value=None, received_at=T0 + timedelta(1),
                        error="backoff: not sent", error_kind=ErrorKind.BACKOFF),
            make_stats(bus="b", reads=4, errors=1, late=3),
        ]
    )  # fmt: skip
    code, kind, text = get(url + "status")
    assert (code, kind) == (200, "application/json")
    status = json.loads(text)
    assert status["process"].startswith("process 2/2 (pid ")
    assert (status["process_index"], status["process_count"], status["workers"]) == (1, 2, [1])
    assert status["rate_hz"] == 2.0 and status["refresh_s"] == 0.5
    (bus,) = status["buses"]
    assert {k: bus[k] for k in ("name", "up", "state", "ticks", "late", "reads", "errors")} == {
        "name": "b", "up": True, "state": "up", "ticks": 1, "late": 3, "reads": 4, "errors": 1,
    }  # fmt: skip
    dead, ok = bus["devices"]
    assert (dead["name"], dead["answering"], dead["rows"], dead["errors"]) == ("dead", False, 2, 2)
    assert dead["last_error"] == "timeout: no response" and dead["values"] == []
    assert ok["answering"] and ok["address"] == 1
    # In the order given (the profile's), parameters it does not name after them.
    assert [v["parameter"] for v in ok["values"]] == ["odd", "temp", "mode"]
    values = {v["parameter"]: (v["value"], v["text"], v["unit"]) for v in ok["values"]}
    assert values == {
        "temp": (22.5, None, "degC"),
        "mode": (2, "auto", None),
        "odd": ("inf", None, None),
    }
    assert all(v["age_s"] > 0 for v in ok["values"])
    code, kind, text = get(url)
    assert (code, kind) == (200, "text/html; charset=utf-8")
    assert "a &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; b.toml" in text
    assert "<script>alert" not in text and "process 2/2" in text
    code, kind, text = get(url + "metrics")
    assert code == 200 and kind.startswith("text/plain")
    assert 'daq_polls_total{bus="b",device="ok"} 4.0' in text
    assert get(url + "page.js")[:2] == (200, "text/javascript; charset=utf-8")
    assert get(url + "nothing")[0] == 404


def test_port_per_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Process 2 of 2 listens on the configured port + 1.
    monkeypatch.setattr(sys, "argv", ["run.py", "flows.acquire", "-i", "1", "-a", "a:1;b:1"])
    part = IntoSummary(page=StatusPage("127.0.0.1", port - 1)).build("s", 1, 2)
    assert PAGE.address == ("127.0.0.1", port)
    part.close()
    # Its port taken: one warning, and the run goes on without the page.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        part = IntoSummary(page=StatusPage("127.0.0.1", port - 1)).build("s", 1, 2)
        assert PAGE.address is None
        part.close()
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.startswith(f"status page: cannot listen on 127.0.0.1:{port} (")
    assert line.endswith("); running without it")


TWO_BUSES = """
[acquisition]
rate_hz = 4
duration_s = 30

[status]
interval_s = 0
http = "127.0.0.1:{port}"

[[bus]]
name = "bus-a"
url = "sim://"
simulate = true

  [[bus.device]]
  name = "pm-a"
  profile = "watlow_pm"
  address = 1

[[bus]]
name = "bus-b"
url = "sim://"
simulate = true

  [[bus.device]]
  name = "pm-b"
  profile = "watlow_pm"
  address = 1
"""


def adjacent_free_ports() -> int:
    """A port that is free, and the one after it too."""
    while True:
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with contextlib.suppress(OSError):
                b.bind(("127.0.0.1", port + 1))
                return port


def test_two_processes_each_serve_their_own_buses(tmp_path: Path) -> None:
    """``bytewax.run -i 0`` and ``-i 1``: pages on port and port + 1, each saying which
    process it is, with the buses of that process only."""
    ports = []
    with socket.socket() as a, socket.socket() as b:  # two free ports for the cluster
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    page = adjacent_free_ports()
    config = write_config(tmp_path, TWO_BUSES.format(port=page))
    env = {**os.environ, "ACQUIRE_CONFIG": str(config)}
    cluster = ";".join(f"127.0.0.1:{p}" for p in ports)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "flows.acquire", "-i", str(i), "-a", cluster],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    try:
        seen: dict[int, dict] = {}
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            for i in (0, 1):
                with contextlib.suppress(OSError, ValueError):
                    status = json.loads(get(f"http://127.0.0.1:{page + i}/status")[2])
                    if status["buses"]:
                        seen[i] = status
            time.sleep(0.2)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        errors = [proc.communicate(timeout=30)[1] for proc in procs]
    assert sorted(seen) == [0, 1], errors
    for i, status in seen.items():
        assert status["process"].startswith(f"process {i + 1}/2 (pid ")
        assert (status["process_index"], status["process_count"]) == (i, 2)
    buses = [{b["name"] for b in seen[i]["buses"]} for i in (0, 1)]
    assert buses[0] | buses[1] == {"bus-a", "bus-b"} and not buses[0] & buses[1], buses
