"""ControllerSource against real pymodbus servers on loopback and on a pty."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import math
import socket
import threading
import time
from collections import Counter

import pytest

from connectors.bus import Bus, Device
from connectors.loopthread import LoopThread
from connectors.registers import load_profile
from connectors.sample import ErrorKind
from connectors.sim import SimulatedDevice
from connectors.source import ControllerSource
from connectors.transport import parse_bus_url
from tests.conftest import run_source, sim_bus

PM, SX = load_profile("watlow_pm"), load_profile("servomex_4100")


NAME = {"tcp": "tcp", "rtu": "rtu", "rtu+tcp": "rot", "sim": "sim"}  # a bus per kind


def per_kind(buses: dict[str, Bus], *, rate_hz: float, duration_s: float) -> dict[str, list]:
    """One run of a bus per kind at once (each its own partition; a test per kind reads its
    bus's samples as if it had run alone): kind -> that bus's samples."""
    samples = run_source(list(buses.values()), rate_hz=rate_hz, duration_s=duration_s)
    return {kind: [s for s in samples if s.bus == bus.name] for kind, bus in buses.items()}


@pytest.fixture(scope="module")
def every_kind() -> dict[str, list]:
    devices = [
        SimulatedDevice(address=1, profile="watlow_pm", set_point=80.0),
        SimulatedDevice(address=2, profile="servomex_4100"),
    ]
    buses = {kind: sim_bus(name, kind, devices) for kind, name in NAME.items()}
    return per_kind(buses, rate_hz=4, duration_s=1.0)


@pytest.mark.parametrize("kind", ["tcp", "rtu", "rtu+tcp", "sim"])
def test_every_device_and_parameter_once_per_tick(every_kind: dict[str, list], kind: str) -> None:
    samples, b = every_kind[kind], NAME[kind]
    ticks = sorted({s.tick for s in samples})
    assert len(ticks) == 4 and ticks == list(range(ticks[0], ticks[0] + 4))
    counts = Counter((s.device, s.parameter, s.tick) for s in samples)
    expected = {(f"{b}-1", p.name, t) for p in PM.parameters for t in ticks}
    expected |= {(f"{b}-2", p.name, t) for p in SX.parameters for t in ticks}
    assert set(counts) == expected
    assert set(counts.values()) == {1}
    assert [s for s in samples if s.error is not None] == []
    protocol = {
        "tcp": "modbus-tcp",
        "rtu": "modbus-rtu",
        "rtu+tcp": "modbus-rtu-over-tcp",
        "sim": "modbus-sim",
    }[kind]
    assert {s.protocol for s in samples} == {protocol}
    by = {(s.device, s.parameter): s.value for s in samples if s.tick == ticks[-1]}
    assert 15.0 < by[f"{b}-1", "analog_input_value"] < 80.5
    assert by[f"{b}-1", "set_point"] == 80.0
    assert by[f"{b}-1", "display_units"] == 15
    assert 0.0 <= by[f"{b}-1", "heat_power"] <= 100.0
    assert 20.7 < by[f"{b}-2", "measurement_1"] < 21.1
    assert by[f"{b}-2", "measurement_1_name"] == "O2"
    assert by[f"{b}-2", "measurement_1_units"] == "%"
    for s in samples:
        assert s.requested_at <= s.received_at
        assert s.requested_at.timestamp() >= s.tick / 4 - 0.001
        assert s.instance == 1


@pytest.fixture(scope="module")
def dead_device_runs() -> dict[str, list]:
    devices = [
        SimulatedDevice(address=1, profile="watlow_pm"),
        SimulatedDevice(address=2, profile="watlow_pm", dead=True),
        SimulatedDevice(address=3, profile="servomex_4100"),
    ]
    only = {1: ["analog_input_value"], 2: ["analog_input_value"], 3: ["measurement_1"]}
    buses = {
        kind: sim_bus(NAME[kind], kind, devices, parameters=only, timeout_s=0.1)
        for kind in ("tcp", "rtu", "sim")
    }
    return per_kind(buses, rate_hz=4, duration_s=1.0)


@pytest.mark.parametrize("kind", ["tcp", "rtu", "sim"])
def test_dead_device_does_not_stop_the_others(dead_device_runs: dict[str, list], kind: str) -> None:
    samples, b = dead_device_runs[kind], NAME[kind]
    ticks = sorted({s.tick for s in samples})
    assert len(ticks) == 4
    for device in (f"{b}-1", f"{b}-2", f"{b}-3"):
        mine = [s for s in samples if s.device == device]
        assert sorted(s.tick for s in mine) == ticks, device
    assert all(s.error is None and s.value is not None for s in samples if s.device != f"{b}-2")
    dead = sorted((s for s in samples if s.device == f"{b}-2"), key=lambda s: s.tick)
    assert all(s.value is None for s in dead)
    # Three silent ticks in a row, then the device is backed off (not asked at the 4th).
    asked, skipped = dead[:3], dead[3:]
    assert all(s.error == "timeout: no response" for s in asked)
    assert [s.error for s in skipped] == ["backoff: not polled after 3 timeouts"]
    latency = [(s.received_at - s.requested_at).total_seconds() for s in asked]
    assert all(0.075 < x < 0.3 for x in latency)


@pytest.fixture(scope="module")
def ghost_runs() -> dict[str, list]:
    buses = {}
    for kind in ("tcp", "sim"):
        bus = sim_bus(NAME[kind], kind, [SimulatedDevice(address=1, profile="watlow_pm")],
                      parameters={1: ["analog_input_value"]}, timeout_s=0.2)  # fmt: skip
        ghost = Device(name=f"{bus.name}-9", address=9, parameters=bus.devices[0].parameters)
        buses[kind] = dataclasses.replace(bus, devices=(*bus.devices, ghost))
    return per_kind(buses, rate_hz=2, duration_s=1.0)


@pytest.mark.parametrize("kind", ["tcp", "sim"])
def test_unit_id_nobody_simulates_stays_silent(ghost_runs: dict[str, list], kind: str) -> None:
    samples, b = ghost_runs[kind], NAME[kind]
    assert {s.device for s in samples} == {f"{b}-1", f"{b}-9"}
    assert all(s.error is None for s in samples if s.device == f"{b}-1")
    assert {s.error for s in samples if s.device == f"{b}-9"} == {"timeout: no response"}


@pytest.mark.parametrize("kind", ["tcp", "sim"])
def test_exception_code_becomes_error_rows(kind: str) -> None:
    devices = [
        SimulatedDevice(address=1, profile="watlow_pm", exception_code=2),
        SimulatedDevice(address=2, profile="watlow_pm"),
    ]
    samples = run_source([sim_bus("e", kind, devices)], rate_hz=4, duration_s=0.5)
    bad = [s for s in samples if s.device == "e-1"]
    assert bad and {s.error for s in bad} == {"illegal data address (2)"}
    assert all(s.error is None for s in samples if s.device == "e-2")


def test_slow_bus_does_not_block_the_healthy_one() -> None:
    slow = sim_bus(
        "slow",
        "tcp",
        [SimulatedDevice(address=1, profile="watlow_pm", delay_s=1.0)],
        parameters={1: ["analog_input_value"]},
        timeout_s=1.5,
    )
    healthy = sim_bus(
        "healthy",
        "rtu",
        [SimulatedDevice(address=1, profile="watlow_pm")],
        parameters={1: ["analog_input_value"]},
    )
    samples = run_source([slow, healthy], rate_hz=2, duration_s=2.0)
    fast = [s for s in samples if s.bus == "healthy"]
    assert len(fast) == 4
    for s in fast:
        drift = s.requested_at.timestamp() - s.tick / 2  # slot n begins at n / rate_hz
        assert 0 <= drift < 0.050, f"tick {s.tick} started {drift * 1000:.1f} ms late"
    slow_samples = [s for s in samples if s.bus == "slow"]
    assert slow_samples and all(s.error is None for s in slow_samples)
    # Each slow tick takes 1 s (two slots): the next one starts at the first free slot,
    # three slots later.
    first = min(s.tick for s in fast)
    assert [s.tick for s in slow_samples] == [first, first + 3]
    assert all((s.received_at - s.requested_at).total_seconds() >= 0.95 for s in slow_samples)


def drain(part, timeout: float = 10.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.extend(part.next_batch())
        except StopIteration:
            return got
        time.sleep(0.01)
    raise AssertionError("partition did not finish")


def test_snapshot_resumes_the_schedule() -> None:
    bus = sim_bus(
        "r",
        "tcp",
        [SimulatedDevice(address=1, profile="watlow_pm")],
        parameters={1: ["analog_input_value"]},
    )
    source = ControllerSource([bus], rate_hz=5)
    first = math.floor(time.time() * 5) + 2
    part = source.build_part("in", "r", {"next_tick": first, "end_tick": first + 3})
    samples = drain(part)
    assert [s.tick for s in samples] == [first, first + 1, first + 2]
    assert part.snapshot() == {"next_tick": first + 3, "end_tick": first + 3}
    part.close()
    part.close()


def test_stop_event_ends_after_the_tick_in_progress() -> None:
    bus = sim_bus(
        "s",
        "tcp",
        [SimulatedDevice(address=1, profile="watlow_pm")],
        parameters={1: ["analog_input_value"]},
    )
    stop = threading.Event()
    source = ControllerSource([bus], rate_hz=10, stop=stop)
    assert source.list_parts() == ["s"]
    part = source.build_part("in", "s", None)
    got: list = []
    while len(got) < 3:
        got.extend(part.next_batch())
        time.sleep(0.01)
    stop.set()
    got.extend(drain(part))
    ticks = [s.tick for s in got]
    assert ticks == sorted(set(ticks))
    assert part.snapshot()["next_tick"] == ticks[-1] + 1
    part.close()


def test_bus_on_another_host_is_not_listed() -> None:
    here = sim_bus("here", "tcp", [SimulatedDevice(address=1, profile="watlow_pm")])
    there = sim_bus("there", "tcp", [SimulatedDevice(address=1, profile="watlow_pm")])
    there = dataclasses.replace(there, host="plc-7")
    assert ControllerSource([here, there], rate_hz=1, hostname="lab-3").list_parts() == ["here"]
    assert ControllerSource([here, there], rate_hz=1, hostname="plc-7").list_parts() == [
        "here",
        "there",
    ]


def test_unreachable_buses_become_error_rows() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    gone = Bus(
        name="gone",
        url=parse_bus_url(f"tcp://127.0.0.1:{port}"),
        timeout_s=0.2,
        devices=(Device(name="x", address=1, parameters=PM.parameters[:2]),),
    )
    no_port = Bus(
        name="no-port",
        url=parse_bus_url("rtu:///dev/ttyNOSUCHPORT0"),
        timeout_s=0.2,
        devices=(Device(name="y", address=1, parameters=PM.parameters[:1]),),
    )
    samples = run_source([gone, no_port], rate_hz=4, duration_s=1.0)
    assert Counter(s.device for s in samples) == {"x": 8, "y": 4}
    assert all(s.value is None for s in samples)
    assert all(s.error.startswith("connection failed: cannot open") for s in samples)
    assert {s.error_kind for s in samples} == {ErrorKind.CONNECTION_FAILED}


def test_idle_partitions_wake_rarely_and_together() -> None:
    # Drive two partitions as Bytewax does: sleep until the earliest next_awake, then call
    # next_batch on every partition that is due. At 2 Hz each must wake a few times per
    # tick only, never be left without a wake-up time while waiting, deliver each tick soon
    # after it ends, and share its wake-up moments with the other partition.
    rate, seconds = 2.0, 2.0
    buses = [
        sim_bus(name, "sim", [SimulatedDevice(address=1, profile="watlow_pm")])
        for name in ("w1", "w2")
    ]
    source = ControllerSource(buses, rate_hz=rate, duration_s=seconds)
    parts = {name: source.build_part("in", name, None) for name in source.list_parts()}
    wake = {name: 0.0 for name in parts}
    calls: Counter[str] = Counter()
    moments: dict[str, set[float]] = {name: set() for name in parts}
    arrived: dict[tuple[str, int], float] = {}
    done: set[str] = set()
    deadline = time.time() + seconds + 5
    while len(done) < len(parts) and time.time() < deadline:
        time.sleep(max(0.0, min(wake[n] for n in parts if n not in done) - time.time()))
        now = time.time()
        for name, part in parts.items():
            if name in done or wake[name] > now:
                continue
            calls[name] += 1
            try:
                batch = part.next_batch()
            except StopIteration:
                done.add(name)
                continue
            for s in batch:
                arrived.setdefault((name, s.tick), now)
            awake = part.next_awake()
            if awake is None:
                assert batch, "next_awake is None only while there is more to take at once"
                wake[name] = now
                continue
            wake[name] = awake.timestamp()
            moments[name].add(round(wake[name], 6))
    for part in parts.values():
        part.close()
    assert done == set(parts)
    ticks = int(seconds * rate)
    assert {t for _, t in arrived} and len(arrived) == ticks * len(parts)
    for name in parts:
        # A tick's samples are there within 50 ms of its start (a sim tick takes < 5 ms).
        late = [now - t / rate for (n, t), now in arrived.items() if n == name]
        assert max(late) < 0.05
        assert calls[name] <= 4 * ticks + seconds + 3
    assert len(moments["w1"] & moments["w2"]) >= len(moments["w1"]) / 2


@pytest.mark.parametrize("user_young", [None, 50_000], ids=["default", "user-set"])
def test_polling_keeps_the_collector_off_the_heap_built_before(user_young: int | None) -> None:
    # With hundreds of buses, full collections over every device's plan and decoders held
    # the GIL for up to 0.5 s and made every bus late; the source freezes that heap when a
    # partition starts, and lets young collections come less often (unless set higher).
    saved = gc.get_threshold()
    gc.unfreeze()
    try:
        if user_young is not None:
            gc.set_threshold(user_young, *saved[1:])
        bus = sim_bus("g", "sim", [SimulatedDevice(address=1, profile="watlow_pm")])
        part = ControllerSource([bus], rate_hz=5, duration_s=0.2).build_part("in", "g", None)
        built = part._bus.devices[0].reads[0]  # part of the partition's heap
        assert gc.is_tracked(built) and gc.get_freeze_count() == 0
        drain(part)
        part.close()
        assert gc.get_freeze_count() > 0
        assert not any(o is built for o in gc.get_objects())  # frozen: not collected over
        assert gc.get_threshold() == (user_young or 10_000, *saved[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def test_buses_poll_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (Windows)")

    async def loop_class() -> type:
        return type(asyncio.get_running_loop())

    running = LoopThread.submit(loop_class())  # type: ignore[arg-type]
    try:
        assert running.result(timeout=5) is uvloop.Loop
    finally:
        LoopThread.release()
