"""The spool on disk (sinks.spool): records survive a reopen, a cut last record is dropped,
damage before the end is refused, forwarded records are not given again."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from sinks.spool import Spool, SpoolCorruptError

T = datetime(2026, 12, 5, 12, 0, 0, 123456, tzinfo=timezone.utc)


def batch(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"i": i, "at": T, "text": "SPL1 \x00 é", "none": None} for i in range(start, start + n)]


def drain(spool: Spool) -> list[list[dict[str, object]]]:
    out = []
    while (first := spool.first()) is not None:
        record, rows = first
        out.append(rows)
        spool.forwarded(record)
    return out


def test_batches_come_back_in_order_after_a_reopen(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "s")
    spool.append(batch(3))
    spool.append(batch(2, 3))
    assert (spool.rows, bool(spool)) == (5, True)
    assert spool.bytes == (tmp_path / "s.spool").stat().st_size
    spool.close()
    again = Spool.open(tmp_path / "s")
    assert again.rows == 5
    assert drain(again) == [batch(3), batch(2, 3)]  # datetimes keep their zone, text is exact
    assert not (tmp_path / "s.spool").exists() and not (tmp_path / "s.done").exists()


def test_a_forwarded_record_is_not_given_again_after_a_crash(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "s")
    for k in range(3):
        spool.append(batch(1, k))
    record, _ = spool.first() or pytest.fail("empty")
    spool.forwarded(record)
    # No close: as after kill -9, only what was fsynced counts.
    again = Spool.open(tmp_path / "s")
    assert drain(again) == [batch(1, 1), batch(1, 2)]


@pytest.mark.parametrize("cut", [1, 10, 30])
def test_a_record_cut_short_by_a_crash_is_dropped(tmp_path: Path, cut: int) -> None:
    spool = Spool.open(tmp_path / "s")
    spool.append(batch(2))
    whole = spool.bytes
    spool.append(batch(2, 2))
    spool.close()
    path = tmp_path / "s.spool"
    path.write_bytes(path.read_bytes()[: whole + cut])
    again = Spool.open(tmp_path / "s")
    assert again.rows == 2 and path.stat().st_size == whole
    again.append(batch(1, 9))  # appends after the cut go on from the last whole record
    assert drain(again) == [batch(2), batch(1, 9)]


def test_damage_before_the_last_record_is_refused(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "s")
    spool.append(batch(2))
    spool.append(batch(2, 2))
    spool.close()
    path = tmp_path / "s.spool"
    data = bytearray(path.read_bytes())
    data[30] ^= 0xFF  # inside the first payload
    path.write_bytes(bytes(data))
    with pytest.raises(SpoolCorruptError, match="damaged at byte 0"):
        Spool.open(tmp_path / "s")


def test_take_from_moves_another_spool_in(tmp_path: Path) -> None:
    mine, theirs = Spool.open(tmp_path / "a"), Spool.open(tmp_path / "b")
    mine.append(batch(1))
    theirs.append(batch(1, 1))
    theirs.append(batch(1, 2))
    mine.take_from(theirs)
    assert not (tmp_path / "b.spool").exists()
    assert drain(mine) == [batch(1), batch(1, 1), batch(1, 2)]


def test_a_cursor_without_its_spool_is_removed(tmp_path: Path) -> None:
    (tmp_path / "s.done").write_bytes(b"\x00" * 8)
    spool = Spool.open(tmp_path / "s")
    assert not spool and not (tmp_path / "s.done").exists()
