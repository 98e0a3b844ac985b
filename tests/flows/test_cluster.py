"""flows.cluster on its own: the join timeout's setting, and which peers a process still
waits for, read from its real sockets (the whole cluster runs in tests/cluster)."""

from __future__ import annotations

import socket

import pytest

from flows.cluster import (
    DEFAULT_JOIN_TIMEOUT_S,
    JOIN_TIMEOUT_ENV,
    Cluster,
    join_timeout,
    missing_peers,
)


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
