"""What flows.plot reads: a run's window rows or raw rows, per device, from a SQLite file
of the sqlite sink or a Parquet dataset of the parquet sink (see flows.plot)."""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from flows.rows import SAMPLE_SCHEMA
from flows.windows import WINDOW_SCHEMA
from sinks.base import check_identifier

__all__ = ["COLUMNS", "TABLES", "Loaded", "PlotError", "load", "need", "parse_time", "utc"]

Kind = Literal["windows", "samples"]
Row = dict[str, Any]
Tables = tuple[str, str]
TABLES: Tables = ("samples", "windows")
# A table or dataset without one of these columns is not what the flow wrote.
COLUMNS: dict[Kind, tuple[str, ...]] = {
    "windows": WINDOW_SCHEMA.names,
    "samples": SAMPLE_SCHEMA.names,
}


class PlotError(Exception):
    """Bad input or a missing extra: the one line the command prints before exiting 2."""


@dataclass
class Loaded:
    """The rows read, per device, and which kind they are."""

    kind: Kind
    rows: dict[str, list[Row]]
    where: str
    """Where they were read: ``table 'windows'``, ``the dataset``."""
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    """device -> text parameter -> its last text, when raw rows were read."""
    labels: dict[str, dict[str, dict[float, str]]] = field(default_factory=dict)
    """device -> parameter -> value -> its enum label, seen in raw rows."""


def need(package: str, extra: str) -> None:
    """PlotError with the install hint unless ``package`` imports (an optional extra)."""
    try:
        importlib.import_module(package)
    except ImportError:
        raise PlotError(
            f"python -m flows.plot needs {package}, which is not installed: "
            f"pip install -e '.[{extra}]'"
        ) from None


def utc(at: datetime) -> datetime:
    """``at`` with a time zone: a naive time is UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time of an option (UTC unless it says otherwise); PlotError if not one."""
    try:
        return utc(datetime.fromisoformat(text))
    except ValueError:
        raise PlotError(f"{option}: {text!r} is not an ISO 8601 time") from None


def load(
    path: Path,
    devices: Sequence[str] = (),
    *,
    raw: bool = False,
    tables: Tables = TABLES,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Loaded:
    """The window rows (else, or with ``raw``, the raw rows) of ``devices`` (default: all) in
    a SQLite file (``tables``: raw rows, window rows) or a Parquet dataset, from ``since``
    (window start or midpoint at or after it) until ``until`` (before it); PlotError, naming
    ``path``, for anything else."""
    if not path.exists():
        raise PlotError(f"{path}: no such file or directory")
    try:
        if path.is_dir():
            magic = b"PAR1"  # a dataset directory
        else:
            with open(path, "rb") as f:
                magic = f.read(16)
        if magic.startswith(b"PAR1"):
            loaded = _load_parquet(path, devices, raw)
        elif magic == b"SQLite format 3\x00":
            loaded = _load_sqlite(path, devices, raw, *tables)
        else:
            raise PlotError(f"{path}: not a SQLite file or a Parquet dataset")
    except (OSError, sqlite3.Error) as exc:
        raise PlotError(f"{path}: {exc}") from None
    if since is not None or until is not None:
        at = "window_start" if loaded.kind == "windows" else "midpoint_at"
        lo = since or datetime.min.replace(tzinfo=timezone.utc)
        hi = until or datetime.max.replace(tzinfo=timezone.utc)
        kept = {d: [r for r in rows if lo <= utc(r[at]) < hi] for d, rows in loaded.rows.items()}
        loaded.rows = {d: rows for d, rows in kept.items() if rows}
        loaded.where += "" if since is None else f" from {since.isoformat()}"
        loaded.where += "" if until is None else f" until {until.isoformat()}"
    missing = [d for d in devices if d not in loaded.rows]
    if missing or not loaded.rows:
        which = f" of device {', '.join(map(repr, missing))}" if missing else ""
        raise PlotError(f"{path}: no rows{which} in {loaded.where}")
    return loaded


def _load_sqlite(
    path: Path, devices: Sequence[str], raw: bool, samples: str, windows: str
) -> Loaded:
    try:
        check_identifier(samples, "--samples-table")
        check_identifier(windows, "--windows-table")
    except ValueError as exc:
        raise PlotError(str(exc)) from None
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        tables: list[tuple[Kind, str]] = [("samples", samples)]
        if not raw:
            tables.insert(0, ("windows", windows))
        present = [(kind, table) for kind, table in tables if table in names]
        if not present:
            wanted = " or ".join(repr(t) for _, t in tables)
            raise PlotError(
                f"{path}: no table {wanted} (tables: {', '.join(sorted(names)) or 'none'})"
            )
        for kind, table in present:  # window rows if there are any, else raw rows
            rows = _select(db, path, kind, table, devices)
            if rows:
                break
        else:
            where = "tables " + " and ".join(repr(t) for _, t in present)
            return Loaded(kind, {}, where if len(present) > 1 else f"table {table!r}")
        texted = rows if kind == "samples" else []
        if kind == "windows" and samples in names:
            texted = _select(db, path, "samples", samples, devices, texts=True)
        return Loaded(kind, _by_device(rows), f"table {table!r}", _texts(texted), _labels(texted))
    finally:
        db.close()


def _select(
    db: sqlite3.Connection,
    path: Path,
    kind: Kind,
    table: str,
    devices: Sequence[str],
    *,
    texts: bool = False,
) -> list[Row]:
    have = {r[1] for r in db.execute(f'PRAGMA table_info("{table}")')}
    lacking = [c for c in COLUMNS[kind] if c not in have]
    if lacking:
        raise PlotError(f"{path}: table {table!r} has no column {', '.join(lacking)}")
    where = [f"device IN ({', '.join('?' * len(devices))})"] if devices else []
    if texts:
        where.append("value_text IS NOT NULL AND error IS NULL")
    columns = ", ".join(f'"{c}"' for c in COLUMNS[kind])
    sql = f'SELECT {columns} FROM "{table}"' + (f" WHERE {' AND '.join(where)}" if where else "")
    rows = [dict(r) for r in db.execute(sql, tuple(devices))]
    for row in rows:  # the SQLite sink stores timestamps as ISO 8601 text
        for name in row.keys() & {"window_start", "window_end", "midpoint_at"}:
            try:
                row[name] = datetime.fromisoformat(row[name])
            except (TypeError, ValueError):
                raise PlotError(
                    f"{path}: table {table!r}: {name} {row[name]!r} is not an ISO 8601 time"
                ) from None
    return rows


def _load_parquet(path: Path, devices: Sequence[str], raw: bool) -> Loaded:
    need("pyarrow", "parquet")
    import pyarrow
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(path, format="parquet", exclude_invalid_files=True)
        if not dataset.files:
            raise PlotError(f"{path}: no Parquet files in the dataset")
        names = dataset.schema.names
        kinds = [k for k in COLUMNS if set(COLUMNS[k]) <= set(names)]
        kinds = [k for k in kinds if not (raw and k == "windows")]
        if not kinds:
            what = "raw rows" if raw else "window rows or raw rows"
            raise PlotError(f"{path}: not a dataset of {what} (columns: {', '.join(names)})")
        chosen = ds.field("device").isin(list(devices)) if devices else None
        rows = dataset.to_table(columns=list(COLUMNS[kinds[0]]), filter=chosen).to_pylist()
    except pyarrow.ArrowException as exc:
        raise PlotError(f"{path}: {exc}") from None
    texted = rows if kinds[0] == "samples" else []
    return Loaded(kinds[0], _by_device(rows), "the dataset", _texts(texted), _labels(texted))


def _by_device(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(row["device"], []).append(row)
    return dict(sorted(out.items()))


def _texts(rows: list[Row]) -> dict[str, dict[str, str]]:
    last: dict[str, dict[str, tuple[datetime, str]]] = {}
    for r in rows:
        if r["value"] is None and r["value_text"] is not None and r["error"] is None:
            seen = last.setdefault(r["device"], {}).get(r["parameter"])
            if seen is None or r["midpoint_at"] >= seen[0]:
                last[r["device"]][r["parameter"]] = (r["midpoint_at"], r["value_text"])
    return {d: {p: t for p, (_, t) in ps.items()} for d, ps in last.items()}


def _labels(rows: list[Row]) -> dict[str, dict[str, dict[float, str]]]:
    out: dict[str, dict[str, dict[float, str]]] = {}
    for r in rows:
        if r["value"] is not None and r["value_text"] is not None and r["error"] is None:
            out.setdefault(r["device"], {}).setdefault(r["parameter"], {})[r["value"]] = r[
                "value_text"
            ]
    return out
