"""flows.cluster on its own: the join timeout's setting, which peers a process still waits
for (read from its real sockets), and a process whose peer never comes: a bad timeout, a
SIGTERM while it waits. The whole cluster, over three hosts, runs in tests/cluster."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.machine import free_ports
from flows.acquire import EXIT_CONFIG
from flows.cluster import (
    DEFAULT_JOIN_TIMEOUT_S,
    JOIN_TIMEOUT_ENV,
    Cluster,
    join_timeout,
    missing_peers,
)
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]


def test_join_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(JOIN_TIMEOUT_ENV, raising=False)
    assert join_timeout() == DEFAULT_JOIN_TIMEOUT_S
    monkeypatch.setenv(JOIN_TIMEOUT_ENV, "2.5")
    assert join_timeout() == 2.5
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv(JOIN_TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=f"^{JOIN_TIMEOUT_ENV}='{bad}' is not a number"):
            join_timeout()


def test_missing_peers_are_the_ones_not_connected() -> None:
    lower = socket.create_server(("127.0.0.1", 0))  # process 0, which process 1 dials
    mine = socket.create_server(("127.0.0.1", 0))  # process 1's own port
    absent = socket.create_server(("127.0.0.1", 0))  # process 2's port; it never dials
    ports = [s.getsockname()[1] for s in (lower, mine, absent)]
    cluster = Cluster(1, tuple(f"127.0.0.1:{p}" for p in ports))
    try:
        assert missing_peers(cluster) == [cluster.addresses[0], cluster.addresses[2]]
        dialled = socket.create_connection(("127.0.0.1", ports[0]))
        assert missing_peers(cluster) == [cluster.addresses[2]]
        # Process 2 dials in: an accepted connection on this process's port.
        incoming = socket.create_connection(("127.0.0.1", ports[1]))
        accepted, _ = mine.accept()
        assert missing_peers(cluster) == []
        for s in (dialled, incoming, accepted):
            s.close()
    finally:
        for s in (lower, mine, absent):
            s.close()


def start(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    """Process 0 of a cluster of two whose process 1 never comes."""
    config = write_config(
        tmp_path,
        """
        [acquisition]
        rate_hz = 5
        duration_s = 1
        [[bus]]
        name = "b"
        url = "sim://"
        simulate = true
          [[bus.device]]
          name = "d"
          profile = "watlow_pm"
          address = 1
          parameters = ["analog_input_value"]
        """,
    )
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.acquire", "-i", "0", "-a", addresses],
        cwd=ROOT,
        env={**os.environ, "ACQUIRE_CONFIG": str(config), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_bad_join_timeout_is_one_line(tmp_path: Path) -> None:
    proc = start(tmp_path, ACQUIRE_JOIN_TIMEOUT_S="soon")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_CONFIG
    assert err == f"{JOIN_TIMEOUT_ENV}='soon' is not a number of seconds > 0\n"


def test_sigterm_while_waiting_for_peers_ends_at_once(tmp_path: Path) -> None:
    proc = start(tmp_path)
    try:
        time.sleep(0.5)  # the handlers are in after about 40 ms; the flow may still load
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.splitlines()[-1].startswith("SIGTERM while waiting for 127.0.0.1:"), err
