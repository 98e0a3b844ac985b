"""Hostile rows through every sink: any row comes back as written (up to each backend's
documented conversions) or the batch is rejected whole with SinkError naming the column.

A property test (hypothesis) draws text with NUL, quotes, line breaks and lone surrogates,
floats with NaN, infinities and -0.0, integers at and past the 64-bit edges, None, and
datetimes in any zone. test_hostile_names.py adds hostile key names, huge strings, replays and
column names; test_contract.py holds the plain round trip.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks.base import Column, Schema, SinkError, SinkValueError
from sinks.postgres import IntoPostgres
from tests.sinks.pg import dsn, query  # noqa: F401 (dsn: the fixture)
from tests.sinks.readback import KINDS, OLD_CSV, make, read

UTC = timezone.utc
INT64 = (-(2**63), 2**63 - 1)
SCHEMA = Schema(
    (
        Column("k", "int", nullable=False),
        Column("t", "text"),
        Column("f", "float"),
        Column("r", "float", nullable=False),
        Column("i", "int"),
        Column("b", "bool"),
        Column("ts", "timestamp"),
    ),
    key=("k",),
)


@pytest.fixture(scope="module")
def pg_table(dsn: str) -> Iterator[str]:  # noqa: F811 (the imported fixture)
    name = f"t_{uuid.uuid4().hex}"
    IntoPostgres(dsn, table=name, schema=SCHEMA, create_table=True).build_partition(0, 1).close()
    yield name
    query(f'DROP TABLE IF EXISTS public."{name}"')


def holds(kind: str, column: Column, value: Any) -> bool:
    """Whether ``kind`` can store ``value`` in ``column`` (the documented limits)."""
    if kind == "memory" or value is None:
        return True
    if isinstance(value, datetime):
        try:
            value.astimezone(UTC)
        except OverflowError:
            return False
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate
            return False
        return not ("\0" in value and (kind == "postgres" or (kind == "csv" and OLD_CSV)))
    if isinstance(value, int) and not isinstance(value, bool):
        return INT64[0] <= value <= INT64[1] or kind in ("csv", "jsonl")
    if isinstance(value, float) and math.isnan(value):
        return not (kind == "sqlite" and not column.nullable)
    return True


def stored(kind: str, column: Column, value: Any) -> Any:
    """What ``kind`` gives back for ``value``: the documented conversions, nothing else."""
    if kind == "memory":
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if kind == "csv" and value == "":
        return None  # CSV cannot tell None from an empty string
    if isinstance(value, float):
        if kind == "jsonl" and not math.isfinite(value):
            return None  # JSON has no NaN or infinity
        if kind == "sqlite" and math.isnan(value):
            return None  # SQLite has no NaN
        if kind == "sqlite" and value == 0:
            return 0.0  # nor a negative zero
    return value


def same(a: Any, b: Any, utc: bool) -> bool:
    """Equal, with NaN equal to NaN, -0.0 apart from 0.0, and datetimes the same instant (in
    UTC, with ``utc``)."""
    if isinstance(a, float) and isinstance(b, float):
        sign = math.copysign(1, a) == math.copysign(1, b)
        return (math.isnan(a) and math.isnan(b)) or (a == b and sign)
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b and (not utc or b.utcoffset() == timedelta(0))
    return type(a) is type(b) and a == b


def check(kind: str, rows: list[dict[str, Any]], where: Path, table: str | None) -> None:
    """Write ``rows`` as one batch, then check they came back or were refused whole."""
    sink = make(kind, where, table, SCHEMA)
    bad = {c.name for r in rows for c in SCHEMA.columns if not holds(kind, c, r[c.name])}
    part = sink.build_partition(0, 1)
    try:
        part.write_batch(rows)
    except SinkError as exc:
        assert bad, f"{kind} refused a batch it can hold: {exc}"
        assert isinstance(exc, SinkValueError), exc
        assert any(f"column {name!r}" in str(exc) for name in bad), (bad, str(exc))
        rows = []
    else:
        assert not bad, f"{kind} took values it cannot hold in {sorted(bad)}"
    finally:
        part.close()
    back = read(kind, sink, where, table, SCHEMA, "k")
    want = [{c.name: stored(kind, c, r[c.name]) for c in SCHEMA.columns} for r in rows]
    assert len(back) == len(want)
    for got, expected in zip(back, want, strict=True):
        for name, value in expected.items():
            assert same(value, got[name], kind != "memory"), (kind, name, value, got[name])


surrogates = st.integers(0xD800, 0xDFFF).map(chr)
hostile = st.sampled_from(["\0", "'", '"', "\r", "\n", "\r\n", ",", ";", "\\", "%s", "🌡", "é"])
pieces = st.one_of(st.characters(), hostile)
texts = st.one_of(
    st.lists(pieces, max_size=20).map("".join),
    st.lists(st.one_of(pieces, surrogates), min_size=1, max_size=8).map("".join),
)
floats = st.one_of(st.floats(), st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308]))
ints = st.one_of(
    st.integers(*INT64),
    st.sampled_from([INT64[0], INT64[1], INT64[1] + 1, INT64[0] - 1, 2**64 - 1]),
)
zones = st.one_of(
    st.just(UTC),
    st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23, minutes=59)).map(timezone),
    st.timezones(),
)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "t": st.none() | texts,
            "f": st.none() | floats,
            "r": floats,
            "i": st.none() | ints,
            "b": st.none() | st.booleans(),
            "ts": st.none() | st.datetimes(timezones=zones),
        }
    ),
    min_size=1,
    max_size=3,
).map(lambda rs: [{"k": k, **r} for k, r in enumerate(rs)])


@pytest.mark.parametrize("kind", KINDS)
def test_any_row_round_trips_or_is_refused(kind: str, request: pytest.FixtureRequest) -> None:
    table = request.getfixturevalue("pg_table") if kind == "postgres" else None

    @settings(
        max_examples=40 if kind == "postgres" else 60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(rows)
    def run(batch: list[dict[str, Any]]) -> None:
        with tempfile.TemporaryDirectory() as where:
            check(kind, batch, Path(where), table)

    run()


PLAIN = {"t": "x", "f": 1.5, "r": 2.5, "i": 3, "b": True, "ts": datetime(2026, 1, 2, tzinfo=UTC)}
EDGES = {
    "year-1-east": {"ts": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))},
    "year-9999-west": {"ts": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))},
    "int64-max": {"i": INT64[1]},
    "int64-max+1": {"i": INT64[1] + 1},
    "int64-min-1": {"i": INT64[0] - 1},
    "nan-required": {"r": math.nan},
    "nan": {"f": math.nan},
    "-inf": {"f": -math.inf},
    "-0.0": {"r": -0.0},
    "surrogate-pair": {"t": "\ud83c\udf21"},
    "nul": {"t": "\0"},
    "empty": {"t": ""},
}


@pytest.mark.parametrize("edge", list(EDGES))
@pytest.mark.parametrize("kind", KINDS)
def test_edge_values(kind: str, edge: str, request: pytest.FixtureRequest) -> None:
    """The edges the property test may or may not draw, every time."""
    table = request.getfixturevalue("pg_table") if kind == "postgres" else None
    with tempfile.TemporaryDirectory() as where:
        check(kind, [{"k": 0, **PLAIN}, {"k": 1, **PLAIN, **EDGES[edge]}], Path(where), table)
