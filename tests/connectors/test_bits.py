"""Coils and discrete inputs (FC01/FC02): their parameters and keys (connectors.parameter),
read planning and decoding (connectors.registers), answers (connectors.request), and the
simulator serving them, polled end to end over TCP, RTU and in process."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from connectors.codec import Codec, FieldError
from connectors.parameter import make_parameter, override_parameter
from connectors.registers import MAX_BITS, ProfileError, decode_read, load_profile, plan_reads
from connectors.request import answer_words
from connectors.sim import SimulatedDevice
from connectors.tomltable import Table
from tests.conftest import poll_bus, sim_bus


def coil(name: str, address: int, table: str = "coil", **fields: object) -> object:
    return make_parameter({"name": name, "table": table, "address": address, **fields})


def test_a_coil_needs_no_type_and_is_one_bit() -> None:
    p = coil("relay", 7, labels=((0, "off"), (1, "on")))
    assert (p.table, p.address, p.count, p.codec) == ("coil", 7, 1, Codec("bit", bit=0))
    assert (p.label(True), p.label(False)) == ("on", "off")
    assert coil("door", 3, "discrete", type="bit").codec == Codec("bit", bit=0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "uint16"}, "type: 'uint16': a coil is one bit; give no type, or 'bit'"),
        ({"type": "float32"}, "type: 'float32': a coil is one bit; give no type, or 'bit'"),
        ({"type": "bit", "bit": 3}, "bit: 3: a coil is one bit, it has no bit number"),
        ({"byte_order": "CDAB"}, "byte_order: 'CDAB': a coil has no byte order"),
        ({"scale": 2}, "scale: scale and offset do not apply to type 'bit'"),
        ({"labels": ((0, "off"), (2, "tripped"))}, "labels.2: a coil is 0 or 1"),
        ({"range": (0, 1)}, "range: a range applies to numbers, not type 'bit'"),
    ],
)
def test_a_coil_refuses_what_a_bit_does_not_have(fields: dict, message: str) -> None:
    with pytest.raises(FieldError) as info:
        coil("relay", 0, **fields)
    assert str(info.value) == message


def _bits(*addresses: int, table: str = "coil") -> list:
    return [coil(f"c{a}", a, table) for a in addresses]


def test_bit_reads_merge_up_to_2000_bits_across_gaps_of_max_gap() -> None:
    reads = plan_reads([*_bits(0, 5, 16, 28), *_bits(0, 1, table="discrete")], max_gap=10)
    assert [(r.table, r.address, r.count) for r in reads] == [
        ("coil", 0, 17), ("coil", 28, 1), ("discrete", 0, 2)
    ]  # fmt: skip
    assert [(r.address, r.count) for r in plan_reads(_bits(0, 5), max_gap=3)] == [(0, 1), (5, 1)]
    # 2000 bits in one read (registers stop at 125), the 2001st in the next.
    spread = _bits(*range(0, 2001, 10))
    assert [(r.address, r.count) for r in plan_reads(spread)] == [(0, 1991), (2000, 1)]
    many = _bits(*range(2001))
    assert [(r.address, r.count) for r in plan_reads(many)] == [(0, MAX_BITS), (2000, 1)]
    assert [(r.address, r.count) for r in plan_reads(many, max_bits=1000)][:2] == [
        (0, 1000), (1000, 1000)
    ]  # fmt: skip


def test_a_bit_read_decodes_its_bits() -> None:
    (read,) = plan_reads(_bits(0, 2, 3))
    assert [(p.name, v) for p, v in decode_read(read, [1, 0, 0, 1])] == [
        ("c0", True), ("c2", False), ("c3", True)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="read at 0: expected 4 bits, got 8"):
        decode_read(read, [0] * 8)


def test_answer_words_cut_the_padding_of_whole_bytes() -> None:
    padded = SimpleNamespace(bits=[True, False, False, True] + [False] * 4)
    assert answer_words("coil", padded, 4) == [1, 0, 0, 1]
    assert answer_words("discrete", SimpleNamespace(bits=[True] * 16), 4) == [1] * 16  # too long
    assert answer_words("holding", SimpleNamespace(registers=[7, 8]), 2) == [7, 8]


def test_one_based_numbers_of_coils_and_discrete_inputs(tmp_path: Path) -> None:
    path = tmp_path / "io.toml"
    path.write_text(
        'name = "io"\naddress_base = 1\n[defaults]\ntable = "input"\ntype = "float32"\n'
        'byte_order = "CDAB"\nunit = "%"\n'
        '[[parameter]]\nname = "o2"\naddress = 30001\n'
        '[[parameter]]\nname = "relay"\ntable = "coil"\naddress = 17\n'
        '[[parameter]]\nname = "fault"\ntable = "discrete"\naddress = 100001\n'
    )
    profile = load_profile(path)
    relay, fault = profile.parameter("relay"), profile.parameter("fault")
    # The number keys of [defaults] (type, byte order, unit) are the float's, not the bits'.
    assert (relay.address, relay.codec, relay.unit) == (16, Codec("bit", bit=0), None)
    assert (fault.table, fault.address) == ("discrete", 0)
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("address = 100001", "address = 30001"))
    with pytest.raises(ProfileError) as info:
        load_profile(bad)
    assert (info.value.path, info.value.message) == (
        "parameter[2].address",
        "30001 of 'fault' is not a 1-based discrete register number (10001-19999 or 100001-165536)",
    )


def test_an_override_makes_a_register_a_coil_and_changes_labels() -> None:
    pv = load_profile("watlow_pm").parameter("analog_input_value")
    t = Table({"table": "discrete", "address": 4}, "override.analog_input_value", "x.toml")
    made = override_parameter(pv, t)
    assert (made.table, made.address, made.codec, made.unit) == (
        "discrete", 4, Codec("bit", bit=0), pv.unit
    )  # fmt: skip
    relay = load_profile("digital_io").parameter("relay_1")
    t = Table({"labels": {"0": "open", "1": "shut"}}, "override.relay_1", "x.toml")
    assert override_parameter(relay, t).labels == ((0, "open"), (1, "shut"))
    t = Table({"type": "int16"}, "override.relay_1", "x.toml")
    with pytest.raises(Exception) as info:
        override_parameter(relay, t)
    assert str(info.value) == (
        "x.toml: override.relay_1.type: 'int16': a coil is one bit; give no type, or 'bit'"
    )


@pytest.mark.parametrize("kind", ["tcp", "rtu", "sim"])
def test_simulated_coils_and_discrete_inputs_are_polled(kind: str) -> None:
    io = [SimulatedDevice(address=unit, profile="digital_io") for unit in (1, 2)]
    bus = sim_bus("b", kind, io)
    assert len(bus.devices[0].reads) == 2  # the coils, the discrete inputs
    sims: list = []
    ticks = poll_bus(bus, rate_hz=20, ticks=3, on_tick=lambda i, sim: sims.append(sim))
    for samples, stats in ticks:
        assert (stats.errors, stats.reads, len(samples)) == (0, 4, 16)
        rows = {s.parameter: (s.value, s.text) for s in samples if s.device == "b-1"}
        assert len(rows) == 8
        assert rows["relay_1"] == (True, "on") and rows["relay_2"] == (False, "off")
        assert rows["door"] == (True, "closed") and rows["fault"] == (False, None)
        assert rows["relay_4"] == (True, "on")  # unit 1: odd
        assert rows["running"][0] == rows["relay_3"][0]
        two = {s.parameter: s.value for s in samples if s.device == "b-2"}
        assert two["relay_4"] is False  # unit 2: even
    answered = sims[0].answered()
    assert answered == {(u, t, 0, 4): 3 for u in (1, 2) for t in ("coil", "discrete")}


def test_a_merged_bit_read_across_a_gap_falls_back_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Coils 0 and 5 merge into one read of 6; the simulator has no coils 1-4 and answers
    exception 2, so the device is read one coil per request from then on, its rows intact."""
    path = tmp_path / "gappy.toml"
    path.write_text(
        'name = "gappy"\n[[parameter]]\nname = "a"\ntable = "coil"\naddress = 0\n'
        '[[parameter]]\nname = "b"\ntable = "coil"\naddress = 5\n'
    )
    bus = sim_bus("b", "sim", [SimulatedDevice(address=1, profile=str(path))])
    assert [(r.address, r.count) for r in bus.devices[0].reads] == [(0, 6)]
    with caplog.at_level("INFO", logger="connectors.poller"):
        ticks = poll_bus(bus, rate_hz=20, ticks=3)
    assert [stats.reads for _, stats in ticks] == [3, 2, 2]
    assert all(stats.errors == 0 for _, stats in ticks)
    for samples, _ in ticks:
        assert [(s.parameter, s.value, s.error) for s in samples] == [
            ("a", False, None), ("b", False, None)
        ]  # fmt: skip
    said = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert said == [
        "bus b device b-1: read of 6 coils at 0 rejected (illegal data address); reading its "
        "parameters one by one from now on"
    ]


def test_a_wide_bit_read_off_a_register_boundary_is_served(tmp_path: Path) -> None:
    """42 coils from 100 (bit 4 of the simulator's block register 6, spanning 3 of them) in
    one read; the profile borrows the digital_io model by its name (relays 1 and 4 on)."""
    path = tmp_path / "wide.toml"
    coils = [(f"c{a}", a) for a in range(100, 140)] + [("relay_1", 140), ("relay_4", 141)]
    path.write_text(
        'name = "digital_io"\n[defaults]\ntable = "coil"\n'
        + "".join(f'[[parameter]]\nname = "{n}"\naddress = {a}\n' for n, a in coils)
    )
    bus = sim_bus("b", "tcp", [SimulatedDevice(address=1, profile=str(path))])
    assert [(r.address, r.count) for r in bus.devices[0].reads] == [(100, 42)]
    for samples, stats in poll_bus(bus, rate_hz=20, ticks=2):
        assert (stats.reads, stats.errors) == (1, 0)
        on = [s.parameter for s in samples if s.value]
        assert on == ["relay_1", "relay_4"] and len(samples) == 42
