"""A plant of three hosts for tests/cluster: their configs, one Bytewax process per host,
and what their sinks hold.

Buses: ``gateway``, a Modbus TCP gateway on the plant network (a standalone simulator in the
root namespace, at the bridge's address), three simulated Modbus TCP buses served by
whichever process polls them, and ``serial``, a simulated RTU bus on a pty pinned by
``host`` to host 1. Each host has its own config file (the same buses; its own SQLite
file, spool and recovery store); every host also writes to one shared PostgreSQL table
(reached through the bridge).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.netns import Hosts

ROOT = Path(__file__).resolve().parents[2]
RATE_HZ = 5
PORT = 2101  # every host's Bytewax port; each host has its own address
PARAMS = '["analog_input_value", "heat_power"]'
TCP_BUSES = ("tcp-a", "tcp-b", "tcp-c")
BUSES = ("gateway", *TCP_BUSES, "serial")
DEVICES = {bus: (f"{bus}-1", f"{bus}-2") for bus in (*BUSES, "absent")}
PIN = 1  # the host the serial bus is plugged into
ABSENT_ON = 2  # the host whose pinned serial port is missing (with ``absent``)

Key = tuple[str, str, int, str]  # device, parameter, instance, requested_at


def _devices(bus: str, first_unit: int) -> str:
    return "".join(
        f'  [[bus.device]]\n  name = "{name}"\n  profile = "watlow_pm"\n'
        f"  address = {first_unit + u}\n  parameters = {PARAMS}\n"
        for u, name in enumerate(DEVICES[bus])
    )


def config_text(
    hosts: Hosts,
    gateway: int,
    out: Path,
    duration_s: float,
    pg: tuple[str, str],
    *,
    absent: bool = False,
) -> str:
    """A host's config: the plant's buses (the gateway's simulator at port ``gateway`` of the
    bridge), its own SQLite file and spool under ``out``, and the PostgreSQL table ``pg``
    (DSN, table) shared by every host. ``absent``: one more bus, ``absent``, a serial port
    pinned to host :data:`ABSENT_ON` that is not there."""
    parts = [
        f"[acquisition]\nrate_hz = {RATE_HZ}\nduration_s = {duration_s}\n",
        f'[spool]\ndir = "{out}/spool"\n',
        f'[[bus]]\nname = "gateway"\nurl = "tcp://{hosts.gateway}:{gateway}"\ntimeout_s = 1.0\n'
        + _devices("gateway", 1),
    ]
    for bus in TCP_BUSES:
        parts.append(f'[[bus]]\nname = "{bus}"\nurl = "tcp://127.0.0.1:0"\nsimulate = true\n')
        parts.append(_devices(bus, 1))
    parts.append(
        f'[[bus]]\nname = "serial"\nurl = "rtu://pty"\nsimulate = true\n'
        f'host = "{hosts.names[PIN]}"\n' + _devices("serial", 1)
    )
    if absent:
        parts.append(
            f'[[bus]]\nname = "absent"\nurl = "rtu:///dev/ttyNONE{hosts.tag}"\n'
            f'host = "{hosts.names[ABSENT_ON]}"\n' + _devices("absent", 1)
        )
    parts += [
        f'[[sink]]\nkind = "sqlite"\npath = "{out}/samples.sqlite"\n',
        f'[[sink]]\nkind = "sqlite"\npath = "{out}/samples.sqlite"\ntable = "bus_stats"\n'
        'stream = "bus_stats"\n',
        f'[[sink]]\nkind = "postgres"\ndsn = "{pg[0]}"\ntable = "{pg[1]}"\n'
        "create_table = true\nconnect_timeout_s = 2\n",
    ]
    return "\n".join(parts)


@dataclass
class Run:
    """One process per host, started together."""

    procs: list[subprocess.Popen[str]]
    outs: list[Path]
    errs: list[Path]
    started: float

    def wait(self, timeout: float = 30) -> list[int]:
        return [p.wait(timeout=timeout) for p in self.procs]

    def stdout(self, i: int) -> str:
        return self.outs[i].read_text()

    def stderr(self, i: int) -> str:
        return self.errs[i].read_text()

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def start(
    hosts: Hosts, configs: list[Path], tag: str, *, recovery: bool = False, **env: str
) -> Run:
    """``python -m bytewax.run flows.acquire -i N -a ...`` in every host's namespace; stdout
    and stderr to files beside each host's config (``<tag>.out``, ``<tag>.err``)."""
    addresses = ";".join(f"{a}:{PORT}" for a in hosts.addresses)
    procs, outs, errs = [], [], []
    for i, config in enumerate(configs):
        argv = [sys.executable, "-m", "bytewax.run", "flows.acquire", "-i", str(i)]
        argv += ["-a", addresses]
        if recovery:
            argv += ["-r", str(config.parent / "recovery"), "-s", "1", "-b", "0"]
        out, err = config.parent / f"{tag}.out", config.parent / f"{tag}.err"
        with out.open("w") as so, err.open("w") as se:
            procs.append(
                subprocess.Popen(
                    hosts.command(i, argv),
                    cwd=ROOT,
                    env={**os.environ, "ACQUIRE_CONFIG": str(config), **env},
                    stdout=so,
                    stderr=se,
                    text=True,
                )
            )
        outs.append(out)
        errs.append(err)
    return Run(procs, outs, errs, time.time())


def make_stores(configs: list[Path]) -> None:
    """A recovery store of one partition per host: made once with as many partitions as
    hosts, partition ``i`` moved to host ``i``'s store."""
    first = configs[0].parent / "recovery"
    first.mkdir()
    subprocess.run(
        [sys.executable, "-m", "bytewax.recovery", str(first), str(len(configs))],
        check=True,
        cwd=ROOT,
    )
    for i, config in enumerate(configs[1:], start=1):
        store = config.parent / "recovery"
        store.mkdir()
        (first / f"part-{i}.sqlite3").rename(store / f"part-{i}.sqlite3")


def sqlite_keys(db: Path) -> Counter[Key]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT device, parameter, instance, requested_at FROM samples"
        ).fetchall()
    return Counter(rows)


def buses_in(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {bus for (bus,) in conn.execute("SELECT DISTINCT bus FROM samples")}


def ticks_in(db: Path) -> dict[str, list[tuple[int, str]]]:
    """bus -> (tick, started_at) of each tick its bus_stats rows name, sorted."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT bus, tick, started_at FROM bus_stats ORDER BY bus, tick"
        ).fetchall()
    out: dict[str, list[tuple[int, str]]] = {}
    for bus, tick, started in rows:
        out.setdefault(bus, []).append((tick, started))
    return out
