"""PostgreSQL taken away from the whole flow by the fault proxy: refused, black-holed, cut,
unreachable at start, and the process killed with SIGKILL while it spools.

Each run writes SQLite and PostgreSQL (through the proxy) from simulated Modbus TCP buses.
Held against the simulator's own log: 0 lost, 0 duplicated, one row per device, parameter and
tick, no late tick, in both stores; PostgreSQL ends up with exactly SQLite's rows, and the
spool says it took the outage and gave every row back (sinks.spooled.states()).

The spool is timed for outages of a second or two: ``[spool] write_timeout_s = 0.5`` (a
black-holed write is spooled after 0.5 s) and ``retry_max_s = 0.3`` (retried every 0.3 s).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from connectors.sim import BusSimulator, SimulatedDevice
from sinks import spooled
from tests.faults.audit import Audit, audit, report
from tests.faults.proxy import FaultProxy
from tests.faults.rig import PROFILE, ROOT, BusSpec, SimLoop, at_phase, run_flow, write_config
from tests.faults.stores import PostgresStore, SqliteStore

RATE_HZ = 5
UNITS = (1, 2, 3)
SPOOL = "[spool]\nwrite_timeout_s = 0.5\nretry_max_s = 0.3\n"


@pytest.fixture
def proxy(dsn: str) -> Iterator[FaultProxy]:
    parts = urlsplit(dsn)
    with FaultProxy((parts.hostname or "127.0.0.1", parts.port or 5432)) as p:
        yield p


@dataclasses.dataclass
class Outcome:
    sqlite: Audit
    postgres: Audit
    states: list[spooled.SpoolState]  # the Postgres sinks' spools: samples, then bus_stats


def setup(
    sims: SimLoop, pg: PostgresStore, tmp: Path, duration_s: float
) -> tuple[BusSimulator, BusSpec, SqliteStore, Path]:
    """One simulated TCP bus of three PMs, and a config writing SQLite and ``pg``."""
    sim = sims.serve("tcp", [SimulatedDevice(address=u, profile=PROFILE) for u in UNITS])
    bus = BusSpec("spool", sim.url, UNITS, timeout_s=1.0)
    sqlite = SqliteStore(tmp)
    sinks = f"{SPOOL}\n{sqlite.sinks()}\n{pg.sinks()}"
    config = write_config(
        tmp / "acquire.toml", [bus], sinks, rate_hz=RATE_HZ, duration_s=duration_s
    )
    return sim, bus, sqlite, config


def spool_states(proxy: FaultProxy, pg: PostgresStore) -> list[spooled.SpoolState]:
    """The spools of ``pg``'s two sinks (samples, bus statistics), found by where they write."""
    at = f"127.0.0.1:{proxy.port}/"
    found = {s.where.rpartition(".")[2]: s for s in spooled.states() if at in s.where}
    return [found[pg.table], found[pg.stats_table]]


def check(name: str, sqlite: SqliteStore, pg: PostgresStore, result: Outcome) -> None:
    """Both stores clean against the simulator; Postgres holds exactly SQLite's rows."""
    report(name, "sqlite", result.sqlite)
    report(name, "postgres", result.postgres)
    for s in result.states:
        print(f"  spool {s.where}: {s.state}, {s.rows_spooled_total} rows through the spool, "
              f"{s.rows_spooled} left, peak {s.peak_bytes} B, {s.retries} retries, "
              f"drain {s.drain_s}")  # fmt: skip
    result.sqlite.assert_clean()
    result.postgres.assert_clean()
    assert not result.postgres.errors and result.postgres.rows > 0
    assert sorted(pg.samples(), key=repr) == sorted(sqlite.samples(), key=repr)
    assert sorted(pg.ticks(), key=repr) == sorted(sqlite.ticks(), key=repr)
    assert all(s.rows_spooled == 0 and s.state == "closed" for s in result.states), result.states


def spooled_and_drained(states: list[spooled.SpoolState]) -> None:
    for s in states:
        assert s.rows_spooled_total > 0 and s.drain_s is not None and s.retries >= 1, s
        assert s.rows_written >= s.rows_spooled_total, s


def outage(
    sims: SimLoop,
    proxy: FaultProxy,
    dsn: str,
    tmp: Path,
    actions: list[tuple[float, Callable[[], object]]],
    duration_s: float,
) -> tuple[SqliteStore, PostgresStore, Outcome]:
    """Run the flow for ``duration_s`` with ``actions`` on the proxy; audit both stores."""
    pg = PostgresStore(proxy.dsn(dsn))  # writes through the proxy, reads the server itself
    try:
        sim, bus, sqlite, config = setup(sims, pg, tmp, duration_s)
        run_flow(config, actions)
        answered, served = {bus.name: sims.answered(sim)}, {bus.name: sims.served(sim)}
        result = Outcome(
            audit(sqlite, [bus], answered, served),
            audit(pg, [bus], answered, served),
            spool_states(proxy, pg),
        )
        return sqlite, pg, result
    except BaseException:
        pg.drop()
        raise


def switch(proxy: FaultProxy, mode: str) -> Callable[[], None]:
    return lambda: setattr(proxy, "mode", mode)


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_postgres_dark_mid_run(
    sims: SimLoop, proxy: FaultProxy, dsn: str, tmp_path: Path, mode: str
) -> None:
    # Dark from the middle of a tick slot for 1.5 s; the spool drains before the run ends.
    dark = at_phase(RATE_HZ, 0.1, switch(proxy, mode))
    sqlite, pg, result = outage(
        sims, proxy, dsn, tmp_path, [(0.8, dark), (2.4, switch(proxy, "pass"))], 4.5
    )
    try:
        check(f"postgres {mode} 1.5 s", sqlite, pg, result)
        spooled_and_drained(result.states)
    finally:
        pg.drop()


def test_postgres_connections_cut(
    sims: SimLoop, proxy: FaultProxy, dsn: str, tmp_path: Path
) -> None:
    # Cut at several points of a tick slot: idle, and while a batch is written.
    cuts = [(0.6 + 0.45 * i, at_phase(RATE_HZ, 0.01 * i, switch(proxy, "cut"))) for i in range(4)]
    sqlite, pg, result = outage(sims, proxy, dsn, tmp_path, cuts, 3.0)
    try:
        check("postgres connections cut x4", sqlite, pg, result)
        # The sink reconnects at once, so it may never need the spool; the cuts did hit.
        assert proxy.resets >= 4
    finally:
        pg.drop()


def test_postgres_unreachable_at_start(
    sims: SimLoop, proxy: FaultProxy, dsn: str, tmp_path: Path
) -> None:
    proxy.mode = "refuse"
    sqlite, pg, result = outage(sims, proxy, dsn, tmp_path, [(2.0, switch(proxy, "pass"))], 3.5)
    try:
        check("postgres unreachable for the first 2 s", sqlite, pg, result)
        spooled_and_drained(result.states)
    finally:
        pg.drop()


def flow_process(config: Path, out: Path) -> subprocess.Popen[bytes]:
    with out.open("w") as f:  # a file, not a pipe nobody reads
        return subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "flows.acquire"],
            cwd=ROOT, env={**os.environ, "ACQUIRE_CONFIG": str(config)}, stdout=f, stderr=f,
        )  # fmt: skip


def test_killed_while_spooling_then_drained_by_the_next_run(
    sims: SimLoop, proxy: FaultProxy, dsn: str, tmp_path: Path
) -> None:
    proxy.mode = "refuse"
    pg = PostgresStore(proxy.dsn(dsn))
    try:
        sim, bus, sqlite, config = setup(sims, pg, tmp_path, 60)
        first = flow_process(config, tmp_path / "first.out")
        spool = tmp_path / "spool"
        deadline = time.monotonic() + 30
        while not any(f.stat().st_size for f in spool.glob("*.spool")):
            assert first.poll() is None, (tmp_path / "first.out").read_text()
            assert time.monotonic() < deadline, "nothing spooled"
            time.sleep(0.05)
        time.sleep(1.0)
        # Mid-slot: the tick's rows are written (to SQLite and the spool), the next not yet.
        at_phase(RATE_HZ, 0.5 / RATE_HZ, lambda: first.send_signal(signal.SIGKILL))()
        first.wait(timeout=10)
        left = {f.name: f.stat().st_size for f in spool.glob("*.spool")}
        assert len(left) == 2 and all(left.values()), left  # samples and bus statistics
        killed = {(r.device, r.parameter, r.requested_at) for r in sqlite.samples()}
        assert killed

        proxy.mode = "pass"
        sinks = f"{SPOOL}\n{sqlite.sinks()}\n{pg.sinks()}"
        write_config(config, [bus], sinks, rate_hz=RATE_HZ, duration_s=1.5)
        second = flow_process(config, tmp_path / "second.out")
        assert second.wait(timeout=60) == 0, (tmp_path / "second.out").read_text()
        answered, served = {bus.name: sims.answered(sim)}, {bus.name: sims.served(sim)}
        result = Outcome(
            audit(sqlite, [bus], answered, served), audit(pg, [bus], answered, served), []
        )
        check("SIGKILL while spooling, then a run with postgres back", sqlite, pg, result)
        stored = {(r.device, r.parameter, r.requested_at) for r in pg.samples()}
        assert killed <= stored, f"{len(killed - stored)} rows of the killed run missing"
        assert not list(spool.glob("*.spool")), "the spool is drained and removed"
        print(f"  killed run: {len(killed)} rows spooled and then stored once; "
              f"left spools {left}")  # fmt: skip
    finally:
        pg.drop()
