"""Hosts on one Linux machine: network namespaces joined by a bridge, each with a hostname.

:class:`Hosts` makes ``n`` network namespaces on a private /24 subnet it picks (a bridge
in the root namespace at ``.1``, one veth pair per namespace, host ``i`` at ``.i+2``) and
removes them all on :meth:`Hosts.close`. :meth:`Hosts.command` wraps a command so that it
runs in host ``i``'s namespace under host ``i``'s name (a UTS namespace of its own, so
``socket.gethostname()`` differs per host). :func:`forward` serves a TCP port of the root
namespace (PostgreSQL on 127.0.0.1) at the bridge's address, for the hosts to reach.

Root only (``ip netns``, ``unshare``); :func:`unavailable` says why not where it is not.
Names carry a random tag, so runs side by side do not collide. Used by tests/cluster and
``bench/scale.py --hosts``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence

__all__ = ["Hosts", "forward", "unavailable"]


def _ip(*args: str, ns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", ns] if ns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True)


def unavailable() -> str | None:
    """None where namespaces can be made here, else why not (one line)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool!r} is not installed"
    probe = f"bdaq-probe-{uuid.uuid4().hex[:6]}"
    try:
        subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        return f"ip netns add failed: {exc.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{random.randint(64, 250)}.{random.randint(0, 255)}.0/24")
        if f"{net.network_address}/24" not in used and f" {net[1]} " not in used:
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet found")


class Hosts:
    """``n`` namespaces ``bdaq-<tag>-<i>`` named ``<prefix>-<i>``, on a bridge ``bd<tag>``."""

    def __init__(self, n: int, prefix: str = "daq") -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.net = _free_subnet()
        self.gateway = str(self.net[1])  # the root namespace, on the bridge
        self.addresses = [str(self.net[i + 2]) for i in range(n)]
        self.names = [f"{prefix}-{self.tag}-{i}" for i in range(n)]
        self.namespaces = [f"bdaq-{self.tag}-{i}" for i in range(n)]
        self._bridge = f"bd{self.tag}"
        self._made: list[str] = []
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def _make(self) -> None:
        _ip("link", "add", self._bridge, "type", "bridge")
        self._made.append("bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self._bridge)
        _ip("link", "set", self._bridge, "up")
        for i, ns in enumerate(self.namespaces):
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
            self._made.append(ns)
            outer, inner = f"bd{self.tag}{i}", f"bd{self.tag}{i}p"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "master", self._bridge, "up")
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", inner, "name", "eth0", ns=ns)
            _ip("addr", "add", f"{self.addresses[i]}/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)

    def command(self, i: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run in host ``i``'s namespace under its hostname (the process is ``argv``
        itself: ``ip netns exec``, ``unshare`` and ``sh`` each exec the next)."""
        script = 'hostname "$0" && exec "$@"'
        ns = self.namespaces[i]
        return [
            "ip",
            "netns",
            "exec",
            ns,
            "unshare",
            "-u",
            "sh",
            "-c",
            script,
            self.names[i],
            *argv,
        ]

    def close(self) -> None:
        """Remove every namespace, veth and the bridge this made (idempotent). Processes
        still running in a namespace are the caller's to end first."""
        for ns in reversed(self._made):
            if ns == "bridge":
                subprocess.run(["ip", "link", "del", self._bridge], capture_output=True)
            else:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for i in range(len(self.namespaces)):  # a root-side veth left by a failed _make
            subprocess.run(["ip", "link", "del", f"bd{self.tag}{i}"], capture_output=True)
        self._made.clear()

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    for s in (dst, src):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def forward(listen: tuple[str, int], target: tuple[str, int]) -> Iterator[tuple[str, int]]:
    """Serve ``target`` at ``listen`` (port 0: a free one) while the block runs: a plain TCP
    relay on threads. Yields the address it listens at."""
    server = socket.create_server(listen)
    address = server.getsockname()[:2]
    conns: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = server.accept()
                upstream = socket.create_connection(target)
                conns.extend((client, upstream))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield address
    finally:
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
        server.close()
        for s in conns:
            with contextlib.suppress(OSError):
                s.close()
