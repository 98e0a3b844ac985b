"""A Bytewax cluster over three hosts: three network namespaces, each with its own hostname
and address on a bridge, one ``python -m bytewax.run flows.acquire -i N -a "A;B;C"`` process
per host (tests/cluster/plant.py). Root only: skipped with the reason elsewhere, except under
CI (``CI=true``), where it fails.

- A clean run: each bus polled by one process, the pinned serial bus only on its host,
  every (device, parameter, tick) stored once across the hosts' SQLite files and once in the
  shared PostgreSQL table; each process's summary names its buses.
- A host killed with SIGKILL: the other processes end at once with one line each; every
  process restarted on its store resumes, and the keyed sinks hold every tick polled once
  (the dead host's buses too); only the ticks of the downtime are missing.
- One host's config is bad: that host says so in one line; the others say which address
  they wait for and give up after ACQUIRE_JOIN_TIMEOUT_S with one line.
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from bench.machine import free_ports
from bench.netns import Hosts, forward, unavailable
from flows.acquire import EXIT_CONFIG
from flows.cluster import EXIT_CLUSTER
from tests.cluster.plant import (
    ABSENT_ON,
    BUSES,
    DEVICES,
    PARAMS,
    PIN,
    PORT,
    RATE_HZ,
    ROOT,
    Key,
    buses_in,
    config_text,
    make_stores,
    sqlite_keys,
    start,
    ticks_in,
)

PARAMETERS = PARAMS.strip("[]").replace('"', "").split(", ")
BUS_OF = {device: bus for bus, names in DEVICES.items() for device in names}


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the cluster tests: {reason}")
        pytest.skip(reason)
    with Hosts(3) as made:
        yield made


@pytest.fixture(scope="module")
def plant(hosts: Hosts) -> Iterator[tuple[int, tuple[str, int]]]:
    """The gateway's simulator (its port on the bridge) and PostgreSQL served on the bridge."""
    from tests.sinks.pg import DSN, query

    try:
        query("SELECT 1")
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL server answers (TEST_POSTGRES_DSN): {exc!r}")
    (port,) = free_ports(1)
    devices = [arg for unit in (1, 2) for arg in ("--device", f"{unit}:watlow_pm")]
    sim = subprocess.Popen(
        [sys.executable, "-m", "connectors.sim", "--tcp", f"{hosts.gateway}:{port}", *devices],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sim.stdout is not None and "serving" in sim.stdout.readline()
        server = DSN.split("@", 1)[1].split("/", 1)[0]
        host, _, pg_port = server.partition(":")
        with forward((hosts.gateway, 0), (host, int(pg_port or 5432))) as pg:
            yield port, pg
    finally:
        sim.terminate()
        sim.wait(timeout=10)


@pytest.fixture
def pg_table(plant: tuple[int, tuple[str, int]]) -> Iterator[tuple[str, str]]:
    from tests.sinks.pg import query

    table = f"t_cluster_{uuid.uuid4().hex[:12]}"
    try:
        yield f"postgresql://postgres@{plant[1][0]}:{plant[1][1]}/test", table
    finally:
        query(f'DROP TABLE IF EXISTS public."{table}"')


def configs(
    tmp: Path,
    hosts: Hosts,
    plant: tuple[int, tuple[str, int]],
    duration_s: float,
    pg: tuple,
    absent: bool = False,
) -> list[Path]:
    out = []
    for i in range(3):
        d = tmp / f"host{i}"
        d.mkdir()
        text = config_text(hosts, plant[0], d, duration_s, pg, absent=absent)
        (d / "acquire.toml").write_text(text)
        out.append(d / "acquire.toml")
    return out


def pg_keys(table: str) -> Counter[Key]:
    from tests.sinks.pg import query

    rows = query(f'SELECT device, parameter, instance, requested_at FROM public."{table}"')
    return Counter((d, p, i, t.isoformat()) for d, p, i, t in rows)


Ticks = dict[str, list[tuple[int, str]]]  # bus -> (tick, started_at), sorted


def tick_of(ticks: Ticks, bus: str, requested_at: str) -> int:
    """The tick a row was polled in: the last one of its bus started by ``requested_at`` (a
    tick polled late, after a resume, is polled after its own slot)."""
    when = datetime.fromisoformat(requested_at)
    starts = [datetime.fromisoformat(started) for _, started in ticks[bus]]
    return ticks[bus][bisect.bisect_right(starts, when) - 1][0]


def stored(cfgs: list[Path]) -> tuple[Counter[Key], Ticks]:
    """Every host's SQLite rows (keys, counted across hosts) and bus ticks (bus_stats)."""
    keys: Counter[Key] = Counter()
    ticks: Ticks = {}
    for config in cfgs:
        keys += sqlite_keys(config.parent / "samples.sqlite")
        for bus, polled in ticks_in(config.parent / "samples.sqlite").items():
            assert bus not in ticks, f"bus {bus} has ticks on two hosts"
            ticks[bus] = polled
    return keys, ticks


def check_once(keys: Counter[Key], ticks: Ticks, table: str, buses: tuple = BUSES) -> None:
    """Each (device, parameter, tick) of every tick polled is stored once on one host and
    once in PostgreSQL (a value or an error row), and nothing else is."""
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:5]
    assert set(ticks) == set(buses)
    per_tick = Counter((d, p, tick_of(ticks, BUS_OF[d], t)) for d, p, _, t in keys)
    assert max(per_tick.values()) == 1
    expected = {
        (d, p, n)
        for d, bus in BUS_OF.items()
        if bus in buses
        for p in PARAMETERS
        for n, _ in ticks[bus]
    }
    assert set(per_tick) == expected
    assert pg_keys(table) == {k: 1 for k in keys}  # the same rows, each once


def test_every_bus_on_one_host_every_tick_stored_once(
    tmp_path: Path, hosts: Hosts, plant: tuple[int, tuple[str, int]], pg_table: tuple[str, str]
) -> None:
    cfgs = configs(tmp_path, hosts, plant, 2.0, pg_table, absent=True)
    run = start(hosts, cfgs, "run")
    try:
        codes = run.wait(timeout=60)
    finally:
        run.kill()
    assert codes == [0, 0, 0], [run.stderr(i) for i in range(3)]
    keys, ticks = stored(cfgs)
    check_once(keys, ticks, pg_table[1], (*BUSES, "absent"))
    assert all(len(polled) == 2.0 * RATE_HZ for polled in ticks.values()), ticks
    on_host = [buses_in(c.parent / "samples.sqlite") for c in cfgs]
    assert sum(map(len, on_host)) == len(set().union(*on_host)) == len(BUSES) + 1  # disjoint
    assert "serial" in on_host[PIN]  # the pty lives in host 1's namespace only
    assert "absent" in on_host[ABSENT_ON]
    for i, buses in enumerate(on_host):
        assert set(re.findall(r"^  bus (\S+): \d+ ticks", run.stdout(i), re.M)) == buses
    # The missing port: error rows and a line per attempt on its host only, the others go on.
    said = [[line for line in run.stderr(i).splitlines() if "absent" in line] for i in range(3)]
    assert said[ABSENT_ON] and not any(said[i] for i in range(3) if i != ABSENT_ON)
    assert all("bus absent: connection failed: cannot open" in line for line in said[ABSENT_ON])
    rows = sum(keys.values())
    print(f"CLUSTER clean: {rows} rows, hosts' buses {on_host}; {said[ABSENT_ON][0]}")


def test_host_killed_and_every_process_resumed(
    tmp_path: Path, hosts: Hosts, plant: tuple[int, tuple[str, int]], pg_table: tuple[str, str]
) -> None:
    duration = 5.0
    cfgs = configs(tmp_path, hosts, plant, duration, pg_table)
    make_stores(cfgs)
    run = start(hosts, cfgs, "first", recovery=True)
    try:
        deadline = time.monotonic() + 30
        # Past the first snapshot (-s 1): the resume continues this run's schedule.
        while len(ticks_in_safe(cfgs[PIN].parent / "samples.sqlite").get("serial", [])) < 9:
            assert time.monotonic() < deadline, run.stderr(PIN)
            time.sleep(0.05)
        run.procs[PIN].kill()  # SIGKILL, the host with the pinned serial bus
        killed = time.time()
        codes = [p.wait(timeout=20) for p in run.procs]
        ended = time.time() - killed
    finally:
        run.kill()
    peers = [i for i in range(3) if i != PIN]
    assert codes[PIN] == -9
    for i in peers:
        err = run.stderr(i)
        assert codes[i] == EXIT_CLUSTER, err
        lines = [line for line in err.splitlines() if "lost its connection" in line]
        assert len(lines) == 1 and "panic" not in err.lower() and "Traceback" not in err, err
    print(f"CLUSTER kill: peers exited {codes} within {ended:.2f} s: {lines[0]}")

    resumed = start(hosts, cfgs, "resumed", recovery=True)
    try:
        codes = resumed.wait(timeout=60)
    finally:
        resumed.kill()
    assert codes == [0, 0, 0], [resumed.stderr(i) for i in range(3)]
    keys, ticks = stored(cfgs)
    check_once(keys, ticks, pg_table[1])
    gaps = {}
    for bus, polled_at in ticks.items():
        polled = [n for n, _ in polled_at]
        # The schedule is the first run's: duration_s from its first tick.
        missing = sorted(set(range(polled[0], polled[0] + int(duration * RATE_HZ))) - set(polled))
        assert polled[-1] < polled[0] + duration * RATE_HZ, (bus, polled)
        # Lost: only ticks slotted from the one in progress at the kill on (the downtime).
        assert all(n + 1 >= killed * RATE_HZ for n in missing), (bus, missing, killed)
        if missing:
            assert missing == list(range(missing[0], missing[-1] + 1)), (bus, missing)
        gaps[bus] = len(missing)
    print(f"CLUSTER resumed: {sum(keys.values())} rows, 0 duplicated, ticks missing {gaps}")


def ticks_in_safe(db: Path) -> dict[str, list[int]]:
    """ticks_in, or nothing yet while the file or its table is not there."""
    try:
        return ticks_in(db)
    except Exception:
        return {}


def test_bad_config_on_one_host(
    tmp_path: Path, hosts: Hosts, plant: tuple[int, tuple[str, int]], pg_table: tuple[str, str]
) -> None:
    cfgs = configs(tmp_path, hosts, plant, 2.0, pg_table)
    cfgs[0].write_text(cfgs[0].read_text().replace(f"rate_hz = {RATE_HZ}", 'rate_hz = "fast"'))
    began = time.monotonic()
    run = start(hosts, cfgs, "run", ACQUIRE_JOIN_TIMEOUT_S="3")
    try:
        codes = run.wait(timeout=30)
    finally:
        run.kill()
    took = time.monotonic() - began
    assert codes == [EXIT_CONFIG, EXIT_CLUSTER, EXIT_CLUSTER], [run.stderr(i) for i in range(3)]
    assert len(run.stderr(0).splitlines()) == 1 and "rate_hz" in run.stderr(0)
    bad = f"{hosts.addresses[0]}:{PORT}"
    for i in (1, 2):
        waiting, gave_up = run.stderr(i).splitlines()[-2:]
        assert "waiting for" in waiting and bad in waiting, run.stderr(i)
        assert "within 3 s" in gave_up and bad in gave_up, run.stderr(i)
    assert took < 20
    print(f"CLUSTER bad config on host 0 ({took:.1f} s): {run.stderr(0).strip()}")
    for i in (1, 2):
        print(f"  host {i} stdout, first line: {run.stdout(i).splitlines()[:1]}")
        print(f"  host {i} stderr:", *run.stderr(i).splitlines(), sep="\n    ")


def test_bench_scale_across_hosts(tmp_path: Path, hosts: Hosts) -> None:
    from bench.scale import across_hosts

    rows, late = across_hosts(tmp_path, buses=2, seconds=2, hosts=2)
    assert (rows, late) == (2 * 2 * 8 * 4, 0)  # 2 buses x 2 ticks x 8 devices x 4 parameters
