"""Prometheus metrics: the collector in process, and /metrics of Bytewax's dataflow API
server scraped during a real run, next to Bytewax's own metrics."""

from __future__ import annotations

import io
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench.machine import free_ports
from connectors.sample import ErrorKind
from flows.observe.metrics import BUCKETS
from flows.observe.summary import IntoSummary
from tests.conftest import write_config
from tests.flows.observe.test_status import CONFIG, TIMEOUT, sample, stats

ROOT = Path(__file__).resolve().parents[3]

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(text: str) -> Samples:
    """Sample name -> sorted labels -> value."""
    values: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[s.name][tuple(sorted(s.labels.items()))] = s.value
    return values


def by_device(values: Samples, name: str) -> dict[str, float]:
    return {dict(k)["device"]: v for k, v in values[name].items()}


def buckets(values: Samples, device: str) -> list[tuple[float, float]]:
    found = [
        (float(dict(k)["le"]), v)
        for k, v in values["daq_latency_seconds_bucket"].items()
        if dict(k)["device"] == device
    ]
    return sorted(found)


def test_collector_exposes_an_open_partition_only() -> None:
    part = IntoSummary(io.StringIO()).build("summary", 0, 1)
    ok = [sample("m-ok", 0, 1.0), sample("m-ok", 1, 30.0)]
    backoff = (ErrorKind.BACKOFF, "backoff: x")
    dead = [sample("m-dead", 0, 100.0, TIMEOUT), sample("m-dead", 1, 0.0, backoff)]
    part.write_batch([*ok, *dead, stats(0, late=2)])
    values = parse(generate_latest(REGISTRY).decode())
    assert by_device(values, "daq_polls_total") == {"m-ok": 2, "m-dead": 2}
    assert values["daq_errors_total"] == {
        (("bus", "b"), ("device", "m-dead"), ("kind", "backoff")): 1,
        (("bus", "b"), ("device", "m-dead"), ("kind", "timeout")): 1,
    }
    assert values["daq_late_ticks_total"] == {(("bus", "b"),): 2}
    assert values["daq_bus_up"] == {(("bus", "b"),): 1}
    le = dict(buckets(values, "m-ok"))
    assert (le[0.001], le[0.025], le[0.05], le[float("inf")]) == (0, 1, 2, 2)
    assert by_device(values, "daq_latency_seconds_sum")["m-ok"] == 0.031
    assert by_device(values, "daq_latency_seconds_count") == {"m-ok": 2, "m-dead": 1}
    part.close()
    assert "m-ok" not in generate_latest(REGISTRY).decode()


def scrape(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None


def test_metrics_are_scraped_next_to_bytewax_metrics_during_a_run(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "ACQUIRE_CONFIG": str(write_config(tmp_path, CONFIG.format(duration=8.0))),
        "BYTEWAX_DATAFLOW_API_ENABLED": "true",
        "BYTEWAX_DATAFLOW_API_PORT": str(port),
        # The server writes the dataflow description, dataflow.json, there (default: cwd).
        "BYTEWAX_DATAFLOW_API_CACHE_PATH": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.acquire"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        values: Samples = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            text = scrape(f"http://127.0.0.1:{port}/metrics")
            if text is not None:
                values = parse(text)
                polls = by_device(values, "daq_polls_total")
                ticks = values["daq_ticks_total"].get((("bus", "tcp-bus"),), 0)
                # 20 rows come within 3 ticks; 6 ticks (1.5 s at 4 Hz) outlast the first
                # 1 s status interval, whose line is asserted below.
                if len(polls) == 2 and min(polls.values()) >= 20 and ticks >= 6:
                    proc.send_signal(signal.SIGTERM)  # seen what it needs: end it cleanly
                    break
            time.sleep(0.3)
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    polls = by_device(values, "daq_polls_total")
    assert set(polls) == {"pm-ok", "pm-dead"} and min(polls.values()) >= 20, (polls, err)
    errors = values["daq_errors_total"]
    assert {dict(k)["device"] for k in errors} == {"pm-dead"}
    assert errors[(("bus", "tcp-bus"), ("device", "pm-dead"), ("kind", "timeout"))] > 0
    for device in ("pm-ok", "pm-dead"):
        found = buckets(values, device)
        assert [le for le, _ in found] == [*BUCKETS, float("inf")]
        counts = [n for _, n in found]
        assert counts == sorted(counts), found
        assert counts[-1] == by_device(values, "daq_latency_seconds_count")[device]
    assert by_device(values, "daq_latency_seconds_count")["pm-ok"] == polls["pm-ok"]
    assert values["daq_ticks_total"][(("bus", "tcp-bus"),)] > 0
    assert values["daq_bus_up"][(("bus", "tcp-bus"),)] == 1
    # Its SQLite sink, behind its spool, writing all along.
    sink = (("sink", "sink[0] sqlite out.sqlite:samples"), ("worker", "0"))
    states = {dict(k)["state"]: v for k, v in values["daq_sink_state"].items() if {*sink} < {*k}}
    assert states == {"writing": 1, "spooling": 0, "failed": 0, "closed": 0}, sorted(values)
    assert values["daq_sink_rows_written_total"][sink] > 0
    assert values["daq_sink_rows_spooled"][sink] == values["daq_sink_retries_total"][sink] == 0
    # Bytewax's own metrics are on the same page.
    out_counts = values["bytewax_item_out_count_total"]
    assert any(dict(k)["step_id"] == "acquire.controllers" for k in out_counts), sorted(values)
    # The scrape saw the run in progress: the summary counts at least as many rows.
    for device, n in polls.items():
        row = next(line.split() for line in out.splitlines() if f"tcp-bus/{device} " in line)
        assert int(row[1]) >= n, out
    assert "status: buses 1/1 up" in err
    assert (tmp_path / "dataflow.json").exists()


def test_documented_metrics_commands_run(tmp_path: Path) -> None:
    """The metrics commands of the docs (docs/operations.md): the run with the API server and
    its scrape of /metrics (on a free port). The run is long enough to be scraped on a loaded
    machine and is ended by one SIGINT once scraped, as an operator ends it (exit 0)."""
    from tests.test_readme import commands

    lines = commands()
    (run,) = [line for line in lines if line.startswith("BYTEWAX_DATAFLOW_API_ENABLED=true ")]
    (curl,) = [line for line in lines if line.startswith("curl -s http://127.0.0.1:3030/metrics")]
    (port,) = free_ports(1)
    words = shlex.split(run.replace(".venv/bin/python", sys.executable))
    env = {
        **os.environ,
        "ACQUIRE_CONFIG": str(write_config(tmp_path, CONFIG.format(duration=30.0))),
        "BYTEWAX_DATAFLOW_API_PORT": str(port),
        "BYTEWAX_DATAFLOW_API_CACHE_PATH": str(tmp_path),
    }
    while "=" in words[0]:
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    proc = subprocess.Popen(words, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        text = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            text = scrape(f"http://127.0.0.1:{port}/metrics")
            if text is not None and "daq_polls_total{" in text:
                break
            time.sleep(0.3)
        scraped = subprocess.run(
            curl.replace("3030", str(port)), shell=True, capture_output=True, text=True
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert 'daq_polls_total{bus="tcp-bus",device="pm-ok"}' in scraped.stdout, scraped
