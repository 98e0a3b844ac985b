"""Device faults through the whole flow, into SQLite and PostgreSQL: a dead device, a slow
one, exception codes, garbage (CRC-failed) frames on an RTU pty bus.

Each run polls three PMs at 5 Hz for 3 s; the faulty one is healed mid-run. Every read the
simulator answered with values is stored once; every tick of every device has one row per
parameter, the faulty device's error rows naming the fault; the healthy ones have none.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from connectors.sim import SimulatedDevice
from tests.faults.audit import Audit, audit, report
from tests.faults.rig import PROFILE, BusSpec, SimLoop, run_flow, write_config
from tests.faults.stores import Store

RATE_HZ, DURATION_S = 5, 2
# After the start: before tick 8, when a device silent since tick 0 is polled again (its
# backoff polls ticks 0, 1, 2, 4, 8 ...), so the healed device is read within the run.
HEAL_AT_S = 1.2
BACKOFF = ("timeout: no response", "backoff: ")


def pms(*units: int, **faults: object) -> list[SimulatedDevice]:
    return [SimulatedDevice(address=u, profile=PROFILE, **faults) for u in units]


def run(
    sims: SimLoop, store: Store, tmp: Path, fault: str, kind: str, **knobs: object
) -> tuple[Audit, BusSpec]:
    """Serve units 1 and 3 healthy and unit 2 with ``knobs`` on a ``kind`` bus, run the
    flow, heal unit 2 at HEAL_AT_S, and audit the store against the simulator's log."""
    sim = sims.serve(kind, [*pms(1, 3), *pms(2, **knobs)])
    # The faulty unit fails fast; the others keep a timeout no scheduling hiccup reaches.
    bus = BusSpec(fault, sim.url, (1, 2, 3), device_timeouts=((2, 0.05),))
    config = write_config(
        tmp / "acquire.toml", [bus], store.sinks(), rate_hz=RATE_HZ, duration_s=DURATION_S
    )
    healthy = {k: False if isinstance(v, bool) else None for k, v in knobs.items()}
    if "delay_s" in healthy:
        healthy["delay_s"] = 0.0
    run_flow(config, [(HEAL_AT_S, lambda: sims.set_fault(sim, 2, **healthy))])
    result = audit(store, [bus], {bus.name: sims.answered(sim)}, {bus.name: sims.served(sim)})
    assert result.slots == RATE_HZ * DURATION_S
    answered, stored = result.per_device[f"{fault}-pm2"]
    assert stored > 0 and answered > 0, "the healed device is read again"
    return result, bus


def test_dead_device(sims: SimLoop, store: Store, tmp_path: Path) -> None:
    result, _ = run(sims, store, tmp_path, "dead", "tcp", dead=True)
    report("dead device", store.name, result)
    result.assert_clean()
    result.assert_errors({"dead-pm2": BACKOFF}, {"dead-pm2": "timeout: no response"})
    assert any(k.startswith("backoff: not polled") for k in result.errors["dead-pm2"])


def test_slow_device(sims: SimLoop, store: Store, tmp_path: Path) -> None:
    # Answers 0.12 s after each request, past its 0.05 s timeout: the poller has moved on,
    # and pymodbus drops the answer when it comes (its transaction and unit ids are not
    # those of the request in flight, if any). Every value stored is one its own device
    # served for that parameter (the audit's ``wrong``), so a late answer taken for another
    # request's cannot pass.
    result, _ = run(sims, store, tmp_path, "slow", "tcp", delay_s=0.12)
    late = result.timeouts_by
    report("slow device", store.name, result, late=sum(late.values()))
    assert sum(late.values()) > 0 and set(late) == {("slow-pm2", "analog_input_value")}
    # Only reads that timed out were answered and not stored (a timed-out request that asked
    # the device how to read it, not for a parameter, is answered late without a loss), and
    # nothing else is missing or wrong.
    lost = result.lost_by
    assert all(0 < lost[k] <= late[k] for k in lost) and set(lost) <= set(late), (lost, late)
    result.assert_clean(late_answers=lost)
    result.assert_errors({"slow-pm2": BACKOFF}, {"slow-pm2": "timeout: no response"})


def test_slow_device_within_its_timeout_loses_nothing(
    sims: SimLoop, store: Store, tmp_path: Path
) -> None:
    sim = sims.serve("tcp", [*pms(1, 3), *pms(2, delay_s=0.03)])
    bus = BusSpec("lag", sim.url, (1, 2, 3), device_timeouts=((2, 0.15),))
    config = write_config(tmp_path / "a.toml", [bus], store.sinks(), rate_hz=5, duration_s=2)
    run_flow(config)
    result = audit(store, [bus], {bus.name: sims.answered(sim)}, {bus.name: sims.served(sim)})
    report("slow device within its timeout", store.name, result)
    result.assert_clean()
    assert not result.errors and result.value_rows == 3 * 3 * 10
    latencies = [r.latency_s for r in store.samples() if r.device == "lag-pm2"]
    assert min(latencies) >= 0.03


def test_exception_codes(sims: SimLoop, store: Store, tmp_path: Path) -> None:
    result, _ = run(sims, store, tmp_path, "busy", "tcp", exception_code=6)
    report("exception code 6", store.name, result)
    result.assert_clean()
    result.assert_errors({"busy-pm2": ("server device busy (N)",)}, {"busy-pm2": "server device"})
    # Answered, so never backed off: an error row per parameter in every faulty tick.
    assert sum(result.errors["busy-pm2"].values()) % 3 == 0


def test_garbage_frames_on_an_rtu_pty_bus(sims: SimLoop, store: Store, tmp_path: Path) -> None:
    result, bus = run(sims, store, tmp_path, "noise", "rtu", garbage=True)
    report("garbage frames (RTU pty)", store.name, result)
    assert bus.url.startswith("rtu:///dev/")
    result.assert_clean()
    result.assert_errors(
        {"noise-pm2": ("bad frame: CRC check failed",)}, {"noise-pm2": "bad frame: CRC"}
    )
    assert result.timeouts_by == Counter()  # found at once, not after a timeout


def test_late_answers_are_never_stored_under_another_device(
    sims: SimLoop, store: Store, tmp_path: Path
) -> None:
    # Issue 17's cross-talk, at 0.4 of its time: unit 2 answers in 0.12 s, unit 3 in 0.32 s,
    # past the bus's 0.2 s timeout, so unit 3's late answer comes while unit 2's next request
    # is in flight. (The simulator once sent it under that request's ids: unit 3's values
    # were stored as unit 2's, and unit 2's as unit 3's.)
    sim = sims.serve("tcp", [*pms(2, delay_s=0.12), *pms(3, delay_s=0.32)])
    bus = BusSpec("xtalk", sim.url, (2, 3), timeout_s=0.2)
    config = write_config(tmp_path / "a.toml", [bus], store.sinks(), rate_hz=5, duration_s=3)
    run_flow(config)
    result = audit(store, [bus], {bus.name: sims.answered(sim)}, {bus.name: sims.served(sim)})
    report("late answers on a shared connection", store.name, result)
    assert result.wrong == 0, result.line()  # every value is one its own device served
    rows = store.samples()
    hot = [r for r in rows if r.device == "xtalk-pm2" and r.error is None]
    assert hot and min(r.latency_s for r in hot) >= 0.12
    assert not [r for r in rows if r.device == "xtalk-pm3" and r.error is None]
    assert result.timeouts_by[("xtalk-pm3", "analog_input_value")] > 0
    assert set(result.errors) == {"xtalk-pm3"}, result.errors
