"""A command-line run over several processes (``-i N -a "A;B;C"``): joining and losing peers.

Before the dataflow starts, Timely (under Bytewax) connects the processes: process ``i``
dials every lower id (printing ``worker i: error connecting to worker j: ...; retrying``
every second on stdout while it cannot) and waits for every higher id to dial it (silently).
Both wait forever, and the main thread, inside Rust all that time, runs no Python signal
handler: SIGTERM would not end it. :func:`watch_join` bounds the wait: a process not joined
after :data:`NOTICE_S` says once which addresses it waits for; one not joined after
``ACQUIRE_JOIN_TIMEOUT_S`` (default 60) seconds gives up with one line and exit code
:data:`EXIT_CLUSTER`; a SIGINT or SIGTERM while it waits ends it at once with one line.

Once running, a peer that dies (``kill -9``, a reboot, a cable) ends the whole cluster:
Bytewax's communication threads panic in every surviving process. :func:`on_peer_lost` turns
that panic into one line and :data:`EXIT_CLUSTER`; restart every process (with recovery,
the run resumes).
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

__all__ = [
    "EXIT_CLUSTER",
    "JOIN_TIMEOUT_ENV",
    "Cluster",
    "command_line_cluster",
    "join_timeout",
    "missing_peers",
    "on_peer_lost",
    "watch_join",
]

EXIT_CLUSTER = 5
JOIN_TIMEOUT_ENV = "ACQUIRE_JOIN_TIMEOUT_S"
DEFAULT_JOIN_TIMEOUT_S = 60.0
NOTICE_S = 2.0  # a normal start joins well within this: the waiting line is for a real wait
_PEER_PANICS = ("Send thread panic", "Recv thread panic", "timely communication")


@dataclass(frozen=True)
class Cluster:
    """This process's id and every process's ``host:port``, as given to ``bytewax.run``."""

    process_id: int
    addresses: tuple[str, ...]

    @property
    def me(self) -> str:
        return f"process {self.process_id} ({self.addresses[self.process_id]})"

    def peers(self) -> list[int]:
        return [i for i in range(len(self.addresses)) if i != self.process_id]


def command_line_cluster() -> Cluster | None:
    """The cluster of this ``python -m bytewax.run`` run (its ``-i``/``-a`` or their
    variables, parsed by bytewax.run itself), or None for a single process."""
    parse = getattr(sys.modules.get("__main__"), "_parse_args", None)
    if parse is None:
        return None
    args = parse()
    if args.process_id is None or not args.addresses:
        return None
    addresses = tuple(args.addresses.split(";"))
    return Cluster(args.process_id, addresses) if len(addresses) > 1 else None


def join_timeout() -> float:
    """Seconds to wait for the peers at start (``$ACQUIRE_JOIN_TIMEOUT_S``, default 60);
    raises ValueError with one line for a value that is not a positive number."""
    text = os.environ.get(JOIN_TIMEOUT_ENV)
    if text is None:
        return DEFAULT_JOIN_TIMEOUT_S
    with contextlib.suppress(ValueError):
        if (value := float(text)) > 0:
            return value
    raise ValueError(f"{JOIN_TIMEOUT_ENV}={text!r} is not a number of seconds > 0")


@functools.lru_cache(maxsize=64)  # resolved once, not at every look
def _ips(address: str) -> tuple[frozenset[str], int]:
    host, _, port = address.rpartition(":")
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        return frozenset(info[4][0].removeprefix("::ffff:") for info in infos), int(port)
    return frozenset(), int(port)


def _hex_ip(text: str) -> str:
    raw = bytes.fromhex(text)
    # /proc/net/tcp* prints each 32-bit word in host (little-endian) order.
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(raw) == 16 and raw[:12] == b"\0" * 10 + b"\xff\xff":
        raw = raw[12:]
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, raw)


def _connections() -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """(local, remote) of this process's established TCP connections."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if (link := os.readlink(f"/proc/self/fd/{fd}")).startswith("socket:["):
                    inodes.add(link[8:-1])
    out = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] != "01" or fields[9] not in inodes:  # 01: ESTABLISHED
                    continue
                ends = [(_hex_ip(a), int(p, 16)) for a, p in (x.split(":") for x in fields[1:3])]
                out.append((ends[0], ends[1]))
    return out


def missing_peers(cluster: Cluster) -> list[str]:
    """The addresses of the peers not connected to this process yet (from its sockets in
    /proc). A higher id dials in from a port of its own: it is told apart by its IP, so
    peers sharing an IP are all listed while any of them is missing."""
    conns = _connections()
    _, my_port = _ips(cluster.addresses[cluster.process_id])
    accepted = [remote[0] for local, remote in conns if local[1] == my_port]
    missing = []
    for i in cluster.peers():
        ips, port = _ips(cluster.addresses[i])
        if i < cluster.process_id:
            if not any(r[0] in ips and r[1] == port for _, r in conns):
                missing.append(cluster.addresses[i])
            continue
        higher = [_ips(cluster.addresses[j])[0] for j in cluster.peers() if j > cluster.process_id]
        sharing = [other for other in higher if other & ips]
        if sum(ip in ips for ip in accepted) < len(sharing):
            missing.append(cluster.addresses[i])
    return missing


def _say(line: str) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os.write(2, (line + "\n").encode())


def watch_join(
    cluster: Cluster, timeout_s: float, caught: Callable[[], int | None] = lambda: None
) -> threading.Event:
    """Watch the start of ``cluster`` from a daemon thread (see the module docstring).
    Call from the main thread, before ``bytewax.run`` connects. ``caught()``: the signal
    already caught before this call, if any (it ends the wait as one during it does).
    Returns the event set once every peer is connected."""
    joined = threading.Event()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

    def watch() -> None:
        start = time.monotonic()
        told = False
        while True:
            if not (missing := missing_peers(cluster)):
                joined.set()
                return
            waited = time.monotonic() - start
            if waited >= timeout_s:
                _say(
                    f"cluster: {cluster.me}: no connection with {', '.join(missing)} within "
                    f"{timeout_s:g} s ({JOIN_TIMEOUT_ENV}); giving up: start every process of "
                    "-a, or check the addresses and the firewall"
                )
                os._exit(EXIT_CLUSTER)
            if waited >= NOTICE_S and not told:
                told = True
                _say(
                    f"cluster: {cluster.me} waiting for {', '.join(missing)} to join "
                    f"(gives up after {timeout_s:g} s, {JOIN_TIMEOUT_ENV})"
                )
            signum = caught()
            if signum is None and select.select([wake_r], [], [], 0.25)[0]:
                signum = os.read(wake_r, 1)[0]
            if signum is not None:
                name = signal.Signals(signum).name
                _say(f"{name} while waiting for {', '.join(missing)} to join: exiting")
                os._exit(128 + signum)

    threading.Thread(target=watch, name="cluster-join", daemon=True).start()
    return joined


def on_peer_lost(cluster: Cluster) -> None:
    """Make the panic a lost peer causes one line and exit code :data:`EXIT_CLUSTER` (any
    other uncaught exception keeps Python's traceback)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if kind.__name__ == "PanicException" and any(p in str(exc) for p in _PEER_PANICS):
            others = ", ".join(cluster.addresses[i] for i in cluster.peers())
            _say(
                f"cluster: {cluster.me} lost its connection to a peer ({others}): the whole "
                "cluster stops; restart every process (with -r and the same stores, the run "
                "resumes)"
            )
            os._exit(EXIT_CLUSTER)
        previous(kind, exc, tb)

    sys.excepthook = hook
