"""Tests for the read planning of connectors.registers: plan_reads merging, splitting and
gaps, decode_read, split_read and describe_plan.

Profiles are tested in test_profiles.py, the codecs in test_codec.py."""

from __future__ import annotations

import struct

import pytest

from connectors.codec import Codec
from connectors.encode import encode
from connectors.parameter import Parameter
from connectors.registers import (
    Read,
    decode_read,
    describe_plan,
    load_profile,
    plan_reads,
    split_read,
)


def spans(reads: tuple[Read, ...]) -> list[tuple[str, int, int]]:
    return [(r.table, r.address, r.count) for r in reads]


def reg(
    name: str, address: int, type_: str = "uint16", table: str = "holding", **kw: object
) -> Parameter:
    return Parameter(name, table, address, Codec(type_, **kw))  # type: ignore[arg-type]


def test_plan_reads_merges_contiguous() -> None:
    watlow, servomex = load_profile("watlow_pm"), load_profile("servomex_4100")
    pv, err = watlow.parameter("analog_input_value"), watlow.parameter("input_error")
    reads = plan_reads([err, pv])
    assert spans(reads) == [("holding", 360, 3)]
    assert reads[0].parameters == (pv, err)
    block = [servomex.parameter(f"measurement_1{s}") for s in ("", "_name", "_units")]
    assert spans(plan_reads(block)) == [("input", 0, 7)]
    four = [p for p in servomex.parameters if p.name.startswith("measurement_")]
    assert len(four) == 12
    assert spans(plan_reads(reversed(four))) == [("input", 0, 28)]
    assert spans(plan_reads(four + four)) == [("input", 0, 28)]
    assert len(plan_reads(four + four)[0].parameters) == 12


def test_plan_reads_splits() -> None:
    watlow = load_profile("watlow_pm")
    gap = [watlow.parameter("analog_input_value"), watlow.parameter("analog_input_2")]
    assert spans(plan_reads(gap)) == [("holding", 360, 2), ("holding", 440, 2)]
    tables = [reg("a", 0, table="input"), reg("b", 1)]
    assert spans(plan_reads(tables)) == [("holding", 1, 1), ("input", 0, 1)]
    words = [reg(f"r{i}", i) for i in range(130)]
    assert spans(plan_reads(words)) == [("holding", 0, 125), ("holding", 125, 5)]
    floats = [reg(f"f{i}", 2 * i, "float32", table="input") for i in range(63)]
    assert spans(plan_reads(floats)) == [("input", 0, 124), ("input", 124, 2)]
    assert spans(plan_reads(words[:10], max_registers=4)) == [
        ("holding", 0, 4), ("holding", 4, 4), ("holding", 8, 2)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="exceed max_registers"):
        plan_reads([reg("s", 0, "string", table="input", length=6)], max_registers=4)
    assert plan_reads([]) == ()


def test_plan_reads_overlap() -> None:
    whole, low = reg("whole", 10, "float32"), reg("low", 11)
    assert spans(plan_reads([whole, low])) == [("holding", 10, 2)]
    assert spans(plan_reads([low, whole, reg("n", 12)])) == [("holding", 10, 3)]


@pytest.mark.parametrize(
    ("gap", "max_gap", "expected"),
    [
        (0, 0, [("holding", 0, 4)]),
        (1, 0, [("holding", 0, 2), ("holding", 3, 2)]),
        (9, 10, [("holding", 0, 13)]),  # below max_gap: merged
        (10, 10, [("holding", 0, 14)]),  # at max_gap: merged
        (11, 10, [("holding", 0, 2), ("holding", 13, 2)]),  # above: split
        (3, 3, [("holding", 0, 7)]),
        (4, 3, [("holding", 0, 2), ("holding", 6, 2)]),
    ],
)
def test_plan_reads_gaps(gap: int, max_gap: int, expected: list[tuple[str, int, int]]) -> None:
    a, b = reg("a", 0, "float32"), reg("b", 2 + gap, "float32")
    reads = plan_reads([b, a], max_gap=max_gap)
    assert spans(reads) == expected
    assert [p.name for r in reads for p in r.parameters] == ["a", "b"]


def test_plan_reads_default_gap_is_10() -> None:
    assert spans(plan_reads([reg("a", 0), reg("b", 11)])) == [("holding", 0, 12)]
    assert spans(plan_reads([reg("a", 0), reg("b", 12)])) == [("holding", 0, 1), ("holding", 12, 1)]


def test_plan_reads_two_tables() -> None:
    params = [reg("h0", 0), reg("i0", 0, table="input"), reg("h1", 1),
              reg("i5", 5, "float32", table="input"), reg("h40", 40)]  # fmt: skip
    reads = plan_reads(params)
    assert spans(reads) == [("holding", 0, 2), ("holding", 40, 1), ("input", 0, 7)]
    assert [[p.name for p in r.parameters] for r in reads] == [["h0", "h1"], ["h40"], ["i0", "i5"]]


def test_plan_reads_past_125_registers() -> None:
    # 100 float32 with a 1-register gap each: 300 registers of span, 200 of data.
    params = [reg(f"f{i}", 3 * i, "float32") for i in range(100)]
    reads = plan_reads(params)
    assert spans(reads) == [("holding", 0, 125), ("holding", 126, 125), ("holding", 252, 47)]
    assert [len(r.parameters) for r in reads] == [42, 42, 16]
    assert sum(len(r.parameters) for r in reads) == 100
    assert all(r.count <= 125 for r in reads)


def test_plan_reads_exactly_125() -> None:
    block = reg("block", 10, "string", length=125)
    assert spans(plan_reads([block])) == [("holding", 10, 125)]
    assert spans(plan_reads([block, reg("next", 135)])) == [
        ("holding", 10, 125),
        ("holding", 135, 1),
    ]
    # Two parameters whose span, gap included, is exactly 125 registers share one read.
    assert spans(plan_reads([reg("a", 0, "float32"), reg("b", 123, "float32")], max_gap=125)) == [
        ("holding", 0, 125)
    ]
    assert spans(plan_reads([reg("a", 0, "float32"), reg("b", 124, "float32")], max_gap=125)) == [
        ("holding", 0, 2), ("holding", 124, 2)
    ]  # fmt: skip
    # A string longer than one read can carry is refused where it is described, not planned.
    with pytest.raises(ValueError, match=r"length: 126 is not an integer in 0\.\.125"):
        reg("block", 0, "string", length=126)
    with pytest.raises(ValueError, match="block: 6 registers exceed max_registers=5"):
        plan_reads([reg("block", 0, "string", length=6)], max_registers=5)


def test_plan_reads_duplicates() -> None:
    a, b = reg("a", 0), reg("b", 1)
    reads = plan_reads([a, b, a, b, a])
    assert spans(reads) == [("holding", 0, 2)]
    assert reads[0].parameters == (a, b)
    # Two names for one register are two parameters, read once.
    alias = reg("a_alias", 0)
    (read,) = plan_reads([a, alias])
    assert (read.count, [p.name for p in read.parameters]) == (1, ["a", "a_alias"])
    # Bits of one status register share it.
    bits = [reg(f"bit{n}", 7, "bit", bit=n) for n in (9, 0, 3)]
    (read,) = plan_reads(bits)
    assert spans((read,)) == [("holding", 7, 1)]
    values = {p.name: v for p, v in decode_read(read, [0x0201])}
    assert values == {"bit9": True, "bit0": True, "bit3": False}


def test_plan_reads_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_registers must be at least 1"):
        plan_reads([], max_registers=0)
    with pytest.raises(ValueError, match="max_gap must be at least 0"):
        plan_reads([], max_gap=-1)


def test_decode_read() -> None:
    servomex = load_profile("servomex_4100")
    (read,) = plan_reads(p for p in servomex.parameters if p.address < 7)
    o2 = struct.unpack(">2H", struct.pack(">f", 20.9))
    words = [*o2, 0x4F78, 0x7967, 0x656E, 0x2520, 0x2000]
    assert [(p.name, v) for p, v in decode_read(read, words)] == [
        ("measurement_1", 20.9), ("measurement_1_name", "Oxygen"),
        ("measurement_1_units", "%"),
    ]  # fmt: skip
    watlow = load_profile("watlow_pm")
    (read,) = plan_reads([watlow.parameter("analog_input_value"), watlow.parameter("input_error")])
    assert [v for _, v in decode_read(read, [0x0000, 0x4296, 0x0000])] == [75.0, 0]
    with pytest.raises(ValueError, match="expected 3 registers"):
        decode_read(read, [0, 0])


def test_decode_read_inverts_encode() -> None:
    """What the simulator does: encode every parameter into a register image, then read it."""
    servomex = load_profile("servomex_4100")
    values = {p.name: (f"N{p.address}" if p.codec.type == "string" else p.address + 0.5)
              for p in servomex.parameters}  # fmt: skip
    image = [0] * 70
    for p in servomex.parameters:
        image[p.address : p.address + p.count] = encode(p.codec, values[p.name])
    decoded = {}
    for read in plan_reads(servomex.parameters):
        words = image[read.address : read.address + read.count]
        decoded.update((p.name, v) for p, v in decode_read(read, words))
    assert decoded == values


def test_split_read() -> None:
    watlow = load_profile("watlow_pm")
    names = ("analog_input_value", "input_error", "analog_input_2")
    (merged,) = plan_reads([watlow.parameter(n) for n in names], max_gap=80)
    assert (merged.address, merged.count) == (360, 82)
    single = split_read(merged)
    assert spans(single) == [("holding", 360, 2), ("holding", 362, 1), ("holding", 440, 2)]
    assert [r.parameters for r in single] == [(p,) for p in merged.parameters]
    assert split_read(single[0]) == (single[0],)
    # Every single read decodes on its own.
    assert [v for r in single for _, v in decode_read(r, [0] * r.count)] == [0.0, 0, 0.0]


def test_describe_plan() -> None:
    watlow, servomex = load_profile("watlow_pm"), load_profile("servomex_4100")
    params = [watlow.parameter("analog_input_value"), watlow.parameter("input_error"),
              servomex.parameter("measurement_1"), watlow.parameter("heat_power")]  # fmt: skip
    assert describe_plan(plan_reads(params)) == (
        "holding 360+3 [analog_input_value, input_error], holding 1904+2 [heat_power], "
        "input 0+2 [measurement_1]"
    )
    assert describe_plan(()) == "no reads"
