"""``[[sink]]`` tables -> IntoSink dataclasses of the sinks package, imported by kind."""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path

from flows.config.table import Table
from sinks.base import IntoSink

__all__ = ["SINK_KINDS", "STREAMS", "check_targets", "parse_sink"]

# kind -> (module, class); imported only when a config names the kind.
SINK_KINDS = {
    "csv": ("sinks.csv", "IntoCsv"),
    "jsonl": ("sinks.jsonl", "IntoJsonl"),
    "sqlite": ("sinks.sqlite", "IntoSqlite"),
    "parquet": ("sinks.parquet", "IntoParquet"),
    "postgres": ("sinks.postgres", "IntoPostgres"),
}
# kind -> (the packages of its optional extra, the extra); checked with the config, so a
# missing one is a one-line error before anything runs, not a traceback once it has.
SINK_EXTRAS = {
    "parquet": (("pyarrow",), "parquet"),
    "postgres": (("asyncpg", "sqlalchemy"), "postgres"),
}


STREAMS = ("samples", "windows", "late", "bus_stats")


def parse_sink(t: Table, base_dir: Path, *, windows: bool) -> tuple[str, IntoSink]:
    """One ``[[sink]]`` table -> (its stream, the sink); ``windows``: a [windows] table exists."""
    kind = t.get("kind", str)
    stream = t.get(
        "stream", str, "samples", lambda v: None if v in STREAMS else "is not " + ", ".join(STREAMS)
    )
    if stream in ("windows", "late") and not windows:
        raise t.error(f"{stream!r} needs a [windows] table", "stream")
    if kind not in SINK_KINDS:
        raise t.error(f"{kind!r} is not a sink kind ({', '.join(SINK_KINDS)})", "kind")
    packages, extra = SINK_EXTRAS.get(kind, ((), ""))
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError:
            raise t.error(
                f"a {kind} sink needs {package}, which is not installed: "
                f"pip install -e '.[{extra}]'",
                "kind",
            ) from None
    module, cls_name = SINK_KINDS[kind]
    cls = getattr(importlib.import_module(module), cls_name)
    settable = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "schema"}
    settings = {}
    for key, value in t.data.items():
        if key in ("kind", "stream"):
            continue
        if key not in settable:
            known = ", ".join(sorted(settable | {"kind", "stream"}))
            raise t.error(f"unknown key for a {kind} sink (known keys: {known})", key)
        if key == "path" and isinstance(value, str) and value:
            value = base_dir / value
        settings[key] = value
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.init and required and f.name not in settings:
            raise t.error("missing", f.name)
    try:
        sink = cls(**settings)
    except (TypeError, ValueError) as exc:
        # The sinks' messages start with "IntoX.field: "; report them under the key path.
        field, sep, why = str(exc).partition(": ")
        name = field.removeprefix(f"{cls_name}.")
        if sep and name != field and name in settable:
            raise t.error(why, name) from None
        raise t.error(str(exc), None) from None
    path, given = getattr(sink, "path", None), t.data.get("path")
    if isinstance(path, Path) and kind == "parquet" and path.exists() and not path.is_dir():
        raise t.error(f"{given!r} is a file; a parquet sink writes a directory", "path")
    if isinstance(path, Path) and kind != "parquet" and path.is_dir():
        raise t.error(f"{given!r} is a directory; a {kind} sink writes a file", "path")
    return stream, sink


def _target(sink: IntoSink) -> tuple[str, str | None, str]:
    """What a sink writes: (file or database, table or None for all of it, key to blame)."""
    table = getattr(sink, "table", None)
    if hasattr(sink, "location"):  # postgres: host:port/database.schema.table
        return str(sink.location), None, "table"
    path = os.path.abspath(str(sink.path))  # type: ignore[attr-defined]
    return path, table, "table" if table is not None else "path"


def check_targets(top: Table, sinks: list[IntoSink]) -> None:
    """Two sinks writing one file or table would interleave or clobber their rows."""
    seen: list[tuple[str, str | None]] = []
    for j, sink in enumerate(sinks):
        where, table, key = _target(sink)
        for i, (other, other_table) in enumerate(seen):
            if where == other and (table is None or other_table is None or table == other_table):
                what = f"{table!r} in {where!r}" if table is not None else repr(where)
                raise top.error(f"{what} is already written by sink[{i}]", f"sink[{j}].{key}")
        seen.append((where, table))
