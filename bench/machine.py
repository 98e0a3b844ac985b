"""What the benchmarks need from the machine: free loopback ports and the CPU steal share."""

from __future__ import annotations

import socket
from pathlib import Path

__all__ = ["cpu_times", "free_ports", "steal_since"]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies of the machine so far, from /proc/stat (0, 0 where absent)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_since(start: tuple[int, int]) -> float:
    """Share of the machine's CPU time the hypervisor took since ``start`` (a VM on a busy
    host runs slower; figures measured under heavy steal understate the project)."""
    steal, total = cpu_times()
    return (steal - start[0]) / max(1, total - start[1])
