"""BusPoller faults, request fallback, backoff and enum text, against the real simulator. The
bus timing is tested in test_poller_timing.py."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from connectors.bus import Device
from connectors.faults import DeviceBackoff, Reconnect
from connectors.registers import load_profile
from connectors.sample import ErrorKind, Sample
from connectors.sim import BusSimulator, SimulatedDevice
from flows.rows import to_row
from tests.conftest import Tick, poll_bus, sim_bus

PM = load_profile("watlow_pm")


def mine(ticks: list[Tick], device: str) -> list[list[Sample]]:
    """Each tick's samples of one device."""
    return [[s for s in samples if s.device == device] for samples, _ in ticks]


@pytest.mark.parametrize("kind", ["tcp", "sim"])
def test_dead_device_backs_off_and_recovers(kind: str) -> None:
    devices = [
        SimulatedDevice(address=1, profile="watlow_pm"),
        SimulatedDevice(address=2, profile="watlow_pm", dead=True),
    ]
    only = {1: ["analog_input_value"], 2: ["analog_input_value", "set_point"]}
    bus = sim_bus("d", kind, devices, parameters=only, timeout_s=0.04)

    def revive(i: int, sim: BusSimulator) -> None:
        if i == 10:
            sim.set_fault(2, dead=False)

    ticks = poll_bus(bus, rate_hz=10, ticks=20, on_tick=revive)
    assert all(s.error is None for tick in mine(ticks, "d-1") for s in tick)
    seen = []
    for tick in mine(ticks, "d-2"):
        assert len(tick) == 2  # a row per parameter in every tick, polled or not
        errors = {s.error for s in tick}
        if errors == {None}:
            seen.append("ok")
        elif errors == {"backoff: not polled after 3 timeouts"} or all(
            e and e.startswith("backoff: not polled after") for e in errors
        ):
            assert {s.error_kind for s in tick} == {ErrorKind.BACKOFF}
            seen.append("skip")
        else:
            # One timeout per polled tick: the second read is not sent after it.
            first, second = tick
            assert first.error == "timeout: no response"
            assert first.error_kind is ErrorKind.TIMEOUT
            assert second.error.startswith("backoff: not sent after a timeout")
            assert second.error_kind is ErrorKind.BACKOFF
            seen.append("timeout")
    t, s, ok = "timeout", "skip", "ok"
    # Silent 3 ticks in a row: every 2nd tick, then every 4th, 8th...; revived after tick
    # 10, it answers at the next poll (tick 16) and is back at full rate.
    assert seen == [t, t, t, s, t, s, s, s, t, s, s, s, s, s, s, s, ok, ok, ok, ok]
    # Stats count requests sent and reads that became error rows.
    stats = [st for _, st in ticks]
    assert [st.reads for st in stats[:5]] == [2, 2, 2, 1, 2]
    assert [st.errors for st in stats[:5]] == [1, 1, 1, 0, 1]  # backoff rows: no request
    assert [st.reads for st in stats[16:]] == [3, 3, 3, 3]  # d-2's two reads, d-1's one
    assert all(st.errors == 0 for st in stats[16:])


def test_tcp_simulator_restarted_mid_run() -> None:
    bus = sim_bus(
        "r",
        "tcp",
        [SimulatedDevice(address=1, profile="watlow_pm")],
        parameters={1: ["analog_input_value", "heat_power"]},
        timeout_s=0.1,
    )

    def outage(i: int, sim: BusSimulator) -> Any:
        if i == 3:
            return sim.stop()
        if i == 8:
            return sim.start()
        return None

    ticks = poll_bus(bus, rate_hz=10, ticks=30, on_tick=outage)
    assert len(ticks) == 30  # every tick ran: nothing crashed
    rows = [tick for tick in mine(ticks, "r-1")]
    assert all(len(tick) == 2 for tick in rows)
    assert all(s.error is None for tick in rows[:4] for s in tick)
    down = [s.error for tick in rows[4:9] for s in tick]
    assert all(e is not None and e.startswith("connection") for e in down), down
    # Reopening the connection failed until the server was back (a request in flight when
    # it went away would have lost it: tests/connectors/test_error_kinds.py).
    kinds = {s.error_kind for tick in rows[4:9] for s in tick}
    assert ErrorKind.CONNECTION_FAILED in kinds
    assert kinds <= {ErrorKind.CONNECTION_LOST, ErrorKind.CONNECTION_FAILED}
    # Reconnected with backoff (at once, then 0.5 s, 1 s ...): rows resume and stay.
    good = [i for i, tick in enumerate(rows) if all(s.error is None for s in tick)]
    assert good[4] >= 9 and good[-1] == 29
    assert good[4:] == list(range(good[4], 30))
    later = [s.error for tick in rows[5:9] for s in tick]
    assert any("reconnecting in" in e for e in later)


@pytest.mark.parametrize("kind", ["tcp", "rtu", "sim"])
@pytest.mark.parametrize(
    ("code", "text"),
    [(1, "illegal function (1)"), (3, "illegal data value (3)"), (6, "server device busy (6)")],
)
def test_exception_codes_keep_their_name(kind: str, code: int, text: str) -> None:
    devices = [
        SimulatedDevice(address=1, profile="watlow_pm", exception_code=code),
        SimulatedDevice(address=2, profile="watlow_pm"),
    ]
    only = {1: ["analog_input_value", "input_error"], 2: ["analog_input_value"]}
    ticks = poll_bus(sim_bus("x", kind, devices, parameters=only), rate_hz=10, ticks=4)
    assert {s.error for tick in mine(ticks, "x-1") for s in tick} == {text}
    answers = {(s.error_kind, s.exception_code) for tick in mine(ticks, "x-1") for s in tick}
    assert answers == {(ErrorKind.EXCEPTION, code)}
    assert all(s.error is None for tick in mine(ticks, "x-2") for s in tick)
    assert all(st.errors == 1 and st.reads == 2 for _, st in ticks)  # answered: no backoff


def test_garbage_frame_on_the_pty_bus_then_good_reads() -> None:
    devices = [
        SimulatedDevice(address=1, profile="watlow_pm", garbage=True),
        SimulatedDevice(address=2, profile="watlow_pm"),
    ]
    only = {1: ["analog_input_value"], 2: ["analog_input_value"]}
    bus = sim_bus("g", "rtu", devices, parameters=only, timeout_s=1.0)

    def repair(i: int, sim: BusSimulator) -> None:
        if i == 1:
            sim.set_fault(1, garbage=False)

    ticks = poll_bus(bus, rate_hz=5, ticks=5, on_tick=repair)
    bad = [s for tick in mine(ticks, "g-1")[:2] for s in tick]
    assert all(s.error.startswith("bad frame: CRC check failed") for s in bad)
    assert {s.error_kind for s in bad} == {ErrorKind.BAD_FRAME}
    # Found at once, not after the 1 s timeout, and the bus is in step right after it.
    assert all((s.received_at - s.requested_at).total_seconds() < 0.5 for s in bad)
    assert all(s.error is None for tick in mine(ticks, "g-2") for s in tick)
    assert all(s.error is None and s.value for tick in mine(ticks, "g-1")[2:] for s in tick)


@pytest.mark.parametrize("kind", ["tcp", "rtu", "sim"])
def test_rejected_merged_read_falls_back_once(kind: str) -> None:
    # 2160 and 2172 merge across 10 unmapped registers, which the device rejects.
    device = SimulatedDevice(address=1, profile="watlow_pm", set_point=80.0)
    only = {1: ["set_point", "closed_loop_set_point"]}
    bus = sim_bus("m", kind, [device], parameters=only)
    assert len(bus.devices[0].reads) == 1
    ticks = poll_bus(bus, rate_hz=10, ticks=4)
    assert all(s.error is None and s.value == 80.0 for tick in mine(ticks, "m-1") for s in tick)
    assert all(len(tick) == 2 for tick in mine(ticks, "m-1"))
    # One failed merged read in the first tick only; then one read per parameter.
    assert [st.reads for _, st in ticks] == [3, 2, 2, 2]
    assert [st.errors for _, st in ticks] == [0, 0, 0, 0]


@pytest.mark.parametrize("kind", ["tcp", "sim"])
def test_device_timeout_and_retries_override_the_bus(kind: str) -> None:
    devices = [
        SimulatedDevice(address=1, profile="watlow_pm", dead=True),
        SimulatedDevice(address=2, profile="watlow_pm", dead=True),
        SimulatedDevice(address=3, profile="watlow_pm"),
    ]
    only = {n: ["analog_input_value"] for n in (1, 2, 3)}
    bus = sim_bus("o", kind, devices, parameters=only, timeout_s=5.0)
    a, b, c = bus.devices
    bus = dataclasses.replace(
        bus,
        devices=(
            dataclasses.replace(a, timeout_s=0.05),
            dataclasses.replace(b, timeout_s=0.05, retries=2),
            c,
        ),
    )
    assert [d.timing(bus) for d in bus.devices] == [(0.05, 0), (0.05, 2), (5.0, 0)]
    ticks = poll_bus(bus, rate_hz=2, ticks=2)

    def latency(device: str) -> list[float]:
        return [(s.received_at - s.requested_at).total_seconds() for t in mine(ticks, device)
                for s in t]  # fmt: skip

    assert all(0.045 <= x < 1.0 for x in latency("o-1"))
    assert all(0.145 <= x < 2.0 for x in latency("o-2"))  # 3 tries of 0.05 s
    assert all(s.error is None for t in mine(ticks, "o-3") for s in t)


@pytest.mark.parametrize("kind", ["tcp", "sim"])
def test_enum_label_goes_to_value_text(kind: str) -> None:
    units = dataclasses.replace(PM.parameter("display_units"), labels=((15, "C"), (30, "F")))
    bus = sim_bus("l", kind, [SimulatedDevice(address=1, profile="watlow_pm")],
                  parameters={1: ["analog_input_value"]})  # fmt: skip
    device = dataclasses.replace(
        bus.devices[0], parameters=(PM.parameter("analog_input_value"), units)
    )
    bus = dataclasses.replace(bus, devices=(device,))
    ticks = poll_bus(bus, rate_hz=10, ticks=1)
    by = {s.parameter: s for s in ticks[0][0]}
    assert by["display_units"].value == 15 and by["display_units"].text == "C"
    assert by["analog_input_value"].text is None
    row = to_row(by["display_units"])
    assert (row["value"], row["value_text"]) == (15.0, "C")
    assert to_row(by["analog_input_value"])["value_text"] is None


def test_plan_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    bus = sim_bus("v", "sim", [SimulatedDevice(address=1, profile="watlow_pm")])
    caplog.set_level("DEBUG", logger="connectors.poller")
    poll_bus(bus, rate_hz=10, ticks=1)
    assert any("bus v device v-1: plan" in r.getMessage() for r in caplog.records)
    assert Device(name="z", address=1, parameters=PM.parameters).max_gap == 10


def test_reconnect_waits_half_a_second_doubling_to_thirty() -> None:
    now = [100.0]
    reconnect = Reconnect(clock=lambda: now[0])
    assert reconnect.due()
    waits = []
    for _ in range(9):
        reconnect.failed("connection failed: cannot open x")
        waits.append(reconnect.next_at - now[0])
        assert not reconnect.due()
        now[0] = reconnect.next_at
        assert reconnect.due()
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert "reconnecting in" in reconnect.outage_text()
    assert reconnect.connected() == pytest.approx(sum(waits))
    reconnect.lost("connection lost")
    assert reconnect.due()  # the first attempt after a loss is at once


def test_backoff_doubles_to_its_cap_and_resets_on_an_answer() -> None:
    backoff = DeviceBackoff()
    polled = []
    for tick in range(200):
        if backoff.due():
            polled.append(tick)
            backoff.record(False)
    steps = [b - a for a, b in itertools.pairwise(polled)]
    assert steps[:8] == [1, 1, 2, 4, 8, 16, 32, 32] and set(steps[6:]) == {32}
    backoff.record(True)
    assert backoff.every == 1 and backoff.due() and backoff.due()
    backoff.record(None)  # nothing sent: no verdict
    assert backoff.silent == 0


def test_many_dead_devices_behind_one_gateway_do_not_cut_its_connection() -> None:
    # pymodbus closes a TCP connection after retries + 3 unanswered requests in a row; five
    # dead controllers before a live one would cut the gateway off in every tick.
    devices = [SimulatedDevice(address=u, profile="watlow_pm", dead=True) for u in range(1, 6)]
    devices.append(SimulatedDevice(address=6, profile="watlow_pm"))
    only = {u: ["analog_input_value"] for u in range(1, 7)}
    bus = sim_bus("g", "tcp", devices, parameters=only, timeout_s=0.02)
    ticks = poll_bus(bus, rate_hz=4, ticks=3)
    for unit in range(1, 6):
        for tick in mine(ticks, f"g-{unit}"):
            assert [s.error for s in tick] == ["timeout: no response"]
    assert all(s.error is None for tick in mine(ticks, "g-6") for s in tick)
    assert [st.errors for _, st in ticks] == [5, 5, 5]
