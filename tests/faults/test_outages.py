"""Outages through the whole flow: the TCP simulator stopped and restarted while a request is
in flight, killed with SIGKILL and restarted (a subprocess), and PostgreSQL connections
terminated mid-run, idle and in the middle of a write.

Zero lost (every read the simulator answered with values is stored), zero duplicated, one
row per device, parameter and tick, no late tick; while the bus is down its rows name the
outage, and values resume once it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import asyncpg
import pytest

from bench.machine import free_ports
from connectors.sim import SimulatedDevice
from tests.faults.audit import Audit, audit, report
from tests.faults.rig import (
    PROFILE,
    BusSpec,
    SimLoop,
    SimProcess,
    at_phase,
    run_flow,
    write_config,
)
from tests.faults.stores import PostgresStore, Store
from tests.sinks.pg import terminate

RATE_HZ, DURATION_S = 5, 3
UNITS = (1, 2, 3)
OUTAGE = ("connection lost", "connection failed: ")


def check_outage(result: Audit, store: Store, bus: BusSpec) -> None:
    """Clean; every device's error rows are the outage's; its last tick has values again."""
    result.assert_clean()
    devices = list(bus.devices())
    result.assert_errors(dict.fromkeys(devices, OUTAGE), dict.fromkeys(devices, "connection"))
    last = {}
    for row in sorted(store.samples(), key=lambda r: r.requested_at):
        last[row.device] = row
    assert all(last[d].error is None for d in devices), "values resume after the outage"


def test_tcp_simulator_stopped_with_a_request_in_flight(
    sims: SimLoop, store: Store, tmp_path: Path
) -> None:
    # Unit 2 answers 40 ms after each request (within its timeout): the stop lands 20 ms
    # into that wait, so the server has the request and the poller waits for its answer.
    devices = [SimulatedDevice(address=u, profile=PROFILE, delay_s=0.04 * (u == 2)) for u in UNITS]
    sim = sims.serve("tcp", devices)
    bus = BusSpec("stop", sim.url, UNITS)
    config = write_config(
        tmp_path / "acquire.toml", [bus], store.sinks(), rate_hz=RATE_HZ, duration_s=DURATION_S
    )
    stop = at_phase(RATE_HZ, 0.022, lambda: sims.stop(sim))
    run_flow(config, [(0.5, stop), (1.1, lambda: sims.start(sim))])
    result = audit(store, [bus], {bus.name: sims.answered(sim)}, {bus.name: sims.served(sim)})
    report("TCP simulator stopped mid-request, restarted", store.name, result)
    check_outage(result, store, bus)
    # The read in flight failed as the connection closed, not after its 0.5 s timeout.
    cut = [r for r in store.samples() if r.error == "connection lost" and r.device == "stop-pm2"]
    assert cut and all(r.latency_s < 0.2 for r in cut), cut


def test_tcp_simulator_killed_and_restarted(store: Store, tmp_path: Path) -> None:
    sim = SimProcess(free_ports(1)[0], UNITS, tmp_path / "answered.log")
    sim.start()
    bus = BusSpec("kill", sim.url, UNITS)
    config = write_config(
        tmp_path / "acquire.toml", [bus], store.sinks(), rate_hz=RATE_HZ, duration_s=DURATION_S
    )

    # Mid-slot, between two ticks: SIGKILL can land between the simulator's log line and its
    # answer (the log is written first), which would count an answer never sent. The restart
    # follows the kill by a slot and a half, so at least one tick finds nothing listening
    # (timed from the flow's start instead, it could follow the aligned kill at once, and the
    # poller's immediate reconnect would then see no outage at all).
    def kill_then_restart() -> None:
        sim.kill()
        time.sleep(1.5 / RATE_HZ)
        sim.start()

    try:
        run_flow(config, [(0.4, at_phase(RATE_HZ, 0.1, kill_then_restart))])
    finally:
        sim.kill()
    result = audit(store, [bus], {bus.name: sim.answered()})
    report("TCP simulator SIGKILLed, restarted", store.name, result)
    check_outage(result, store, bus)


async def _terminate_mid_write(dsn: str, table: str, application_name: str) -> int:
    """Lock ``table`` so the sink's next write waits inside its transaction, terminate the
    sink's backends while it waits, then let go; returns how many writes were waiting."""
    locker, watch = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        async with locker.transaction():
            await locker.execute(f'LOCK TABLE public."{table}" IN ACCESS EXCLUSIVE MODE')
            waiting: list[asyncpg.Record] = []
            for _ in range(300):
                # Outside a transaction: pg_stat_activity is read once per transaction.
                waiting = await watch.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
                    "AND wait_event_type = 'Lock'",
                    application_name,
                )
                if waiting:
                    break
                await asyncio.sleep(0.01)
            await watch.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                application_name,
            )
        return len(waiting)
    finally:
        await locker.close()
        await watch.close()


def test_postgres_connections_terminated_mid_run(
    sims: SimLoop, postgres: PostgresStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = sims.serve("tcp", [SimulatedDevice(address=u, profile=PROFILE) for u in UNITS])
    bus = BusSpec("pgkill", sim.url, UNITS)
    config = write_config(
        tmp_path / "acquire.toml", [bus], postgres.sinks(), rate_hz=10, duration_s=DURATION_S
    )
    idle: list[int] = []
    mid_write: list[int] = []

    def kill_idle() -> None:
        idle.append(terminate(postgres.application_name))

    def kill_mid_write() -> None:
        args = (postgres.dsn, postgres.table, postgres.application_name)
        mid_write.append(asyncio.run(_terminate_mid_write(*args)))

    actions = [(0.4 + 0.6 * i, kill_idle) for i in range(4)]
    actions += [(0.7 + 0.6 * i, kill_mid_write) for i in range(4)]
    with caplog.at_level(logging.WARNING, logger="sinks.postgres"):
        run_flow(config, actions)
    result = audit(postgres, [bus], {bus.name: sims.answered(sim)}, {bus.name: sims.served(sim)})
    report("pg_terminate_backend", postgres.name, result)
    result.assert_clean()
    assert not result.errors and result.value_rows == result.rows == 3 * 3 * 10 * DURATION_S
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    print(f"  terminated {sum(idle)} idle backends; {sum(mid_write)} writes cut while waiting, "
          f"{len(retries)} retried")  # fmt: skip
    assert sum(idle) >= 4 and mid_write == [1, 1, 1, 1] and len(retries) >= 4
