"""Hostile names and huge strings through every sink: device and parameter names (the key)
with quotes, SQL, placeholders, line breaks, NUL and lone surrogates are written exactly, and
replayed without duplicates by the idempotent sinks, or refused whole with SinkValueError
naming the column; a refused batch leaves the partition usable; hostile column names are a
SinkSchemaError.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sinks.base import SinkSchemaError, SinkValueError
from tests.sinks.keyed import SCHEMA, row
from tests.sinks.pg import dsn, table  # noqa: F401 (the fixtures)
from tests.sinks.readback import KINDS, OLD_CSV, make, read

NAMES = {
    "sql": "'; DROP TABLE samples; --",
    "quotes": 'say "hi" it\'s `x`',
    "breaks": "line\nbreak\r\nfeed\rtab\t,;",
    "placeholders": "%s %(x)s ? $1 :name {0} \\N",
    "unicode": "Ofen-ÄÖÜ-温度-🌡-\u200b-\ufeff",
    "backslashes": "C:\\temp\\\\x",
    "nul": "pm\x00x",
    "surrogate": "pm\ud800x",
}
IDEMPOTENT = ("sqlite", "postgres")


@pytest.fixture
def where() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def pg(kind: str, request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("table") if kind == "postgres" else None


def refuses(kind: str, text: str) -> bool:
    """Whether ``kind`` refuses ``text`` (memory keeps anything)."""
    if kind == "memory":
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return "\0" in text and (kind == "postgres" or (kind == "csv" and OLD_CSV))


def written(kind: str, where: Path, pg_table: str | None, sink: Any) -> list[dict[str, Any]]:
    return read(kind, sink, where, pg_table, SCHEMA, "requested_at")


@pytest.mark.parametrize("name", list(NAMES))
@pytest.mark.parametrize("kind", KINDS)
def test_hostile_key_names_are_written_exactly_or_refused(
    kind: str, name: str, where: Path, request: pytest.FixtureRequest
) -> None:
    pg_table = pg(kind, request)
    text = NAMES[name]
    sink = make(kind, where, pg_table, SCHEMA)
    part = sink.build_partition(0, 1)
    batch = [row(0, device=text, parameter=f"{text}/p", unit=text), row(1, device=text)]
    if refuses(kind, text):
        with pytest.raises(SinkValueError, match="column 'device'"):
            part.write_batch(batch)
        part.close()
        assert written(kind, where, pg_table, sink) == []
        return
    part.write_batch(batch)
    part.write_batch(batch)  # a replay: the idempotent sinks add nothing
    part.close()
    copies = 1 if kind in IDEMPOTENT else 2
    expected = sorted(batch * copies, key=lambda r: r["requested_at"])
    assert written(kind, where, pg_table, sink) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_huge_strings_round_trip(kind: str, where: Path, request: pytest.FixtureRequest) -> None:
    pg_table = pg(kind, request)
    huge = "Grüße 🌡 '\"; DROP TABLE x;\n\r,\t" * 150_000  # 4.5 million characters
    batch = [row(0, unit=huge), row(1, unit=huge[::-1])]
    long_key = "".join(chr(0x4E00 + i % 2000) for i in range(1000))  # 3000 bytes of UTF-8
    sink = make(kind, where, pg_table, SCHEMA)
    part = sink.build_partition(0, 1)
    part.write_batch(batch)
    if kind == "postgres":  # an index entry holds 2704 bytes at most
        with pytest.raises(SinkValueError, match=r"column 'device'.* 3000 bytes"):
            part.write_batch([row(2, device=long_key)])
    else:
        batch.append(row(2, device=long_key))
        part.write_batch(batch[2:])
    part.close()
    back = written(kind, where, pg_table, sink)
    assert [len(r["unit"]) for r in back[:2]] == [len(huge)] * 2
    assert back == batch


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "memory"])
def test_a_refused_batch_leaves_the_partition_usable(
    kind: str, where: Path, request: pytest.FixtureRequest
) -> None:
    pg_table = pg(kind, request)
    bad = "\x00" if kind == "postgres" else "\udfff"
    sink = make(kind, where, pg_table, SCHEMA)
    part = sink.build_partition(0, 1)
    part.write_batch([row(0)])
    with pytest.raises(SinkValueError, match="column 'unit'"):
        part.write_batch([row(1), row(2, unit=f"a{bad}b")])
    part.write_batch([row(3)])
    part.close()
    assert written(kind, where, pg_table, sink) == [row(0), row(3)]


COLUMN_NAMES = ['x"; DROP TABLE samples; --', "a b", "", "é", "x\x00", "1st", "c" * 64]


@pytest.mark.parametrize("column", COLUMN_NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_hostile_column_names_are_refused(
    kind: str, column: str, where: Path, request: pytest.FixtureRequest
) -> None:
    pg_table = pg(kind, request)
    part = make(kind, where, pg_table, None).build_partition(0, 1)
    with pytest.raises(SinkSchemaError, match="not a valid identifier") as info:
        part.write_batch([{"ok": 1, column: 2}])
    assert repr(column) in str(info.value)
    part.close()
