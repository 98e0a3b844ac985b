"""``[[sink]]`` tables -> IntoSink dataclasses of the sinks package, imported by kind."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from connectors.bus import Bus
from connectors.parameter import Parameter
from flows.config.table import Table, check_at_most
from sinks.base import IntoSink, Schema, SinkConfigError, SinkTarget
from sinks.sparkplug import Metric
from sinks.spooled import IntoSpooled

__all__ = [
    "SINK_KINDS",
    "STREAMS",
    "SpoolSettings",
    "check_targets",
    "parse_sink",
    "parse_spool",
    "sparkplug_catalog",
]

# kind -> (module, class); imported only when a config names the kind.
SINK_KINDS = {
    "csv": ("sinks.csv", "IntoCsv"),
    "jsonl": ("sinks.jsonl", "IntoJsonl"),
    "sqlite": ("sinks.sqlite", "IntoSqlite"),
    "parquet": ("sinks.parquet", "IntoParquet"),
    "postgres": ("sinks.postgres", "IntoPostgres"),
    "mqtt": ("sinks.mqtt", "IntoMqtt"),
}
# kind -> (the packages of its optional extra, the extra); checked with the config, so a
# missing one is a one-line error before anything runs, not a traceback once it has.
SINK_EXTRAS = {
    "parquet": (("pyarrow",), "parquet"),
    "postgres": (("asyncpg", "sqlalchemy"), "postgres"),
    "mqtt": (("paho.mqtt.client",), "mqtt"),
}


STREAMS = ("samples", "windows", "late", "bus_stats", "changes")

_MAX_MB = check_at_most(1e7, "MB")


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    """The ``[spool]`` table: where every sink spools while its backend is unavailable, how
    much each sink's spool may hold (``spool_max_mb`` of a sink overrides it), how long a
    write to a database sink may take before its batch is spooled, and the longest wait
    between two retries of an unavailable backend (see sinks.spooled)."""

    dir: Path
    max_mb: float = 512.0
    write_timeout_s: float = 2.0
    retry_max_s: float = 30.0


def parse_spool(t: Table, base_dir: Path) -> SpoolSettings:
    """The ``[spool]`` table; ``dir`` relative to the config file's directory, checked now
    (a directory, or one that can be made there)."""
    given = t.get("dir", str, "spool")
    max_mb = t.get("max_mb", (int, float), 512.0, _MAX_MB)
    seconds = check_at_most(86400, "seconds")
    write_timeout_s = t.get("write_timeout_s", (int, float), 2.0, seconds)
    retry_max_s = t.get("retry_max_s", (int, float), 30.0, seconds)
    t.done()
    directory = base_dir / given if given else base_dir
    why = _never_written(directory)
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if why is None and existing is not None:
        if not existing.is_dir():
            why = f"is under {str(existing)!r}, which is a file, not a directory"
        elif not os.access(existing, os.W_OK | os.X_OK):
            why = f"cannot be written here ({str(existing)!r} is not writable)"
    if why is not None:
        raise t.error(f"{given!r} {why}", "dir")
    return SpoolSettings(directory, float(max_mb), float(write_timeout_s), float(retry_max_s))


def parse_sink(
    t: Table,
    base_dir: Path,
    *,
    windows: bool,
    spool: SpoolSettings,
    index: int,
    buses: Sequence[Bus] = (),
) -> tuple[str, IntoSink]:
    """One ``[[sink]]`` table (``sink[index]``) -> (its stream, the sink behind its spool);
    ``windows``: a [windows] table exists; ``buses``: the devices a Sparkplug B sink births
    (:func:`sparkplug_catalog`)."""
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
    cls: type[IntoSink] = getattr(importlib.import_module(module), cls_name)
    settable = cls.settings()
    settings = {}
    max_mb = t.get("spool_max_mb", (int, float), spool.max_mb, _MAX_MB)
    for key, value in t.data.items():
        if key in ("kind", "stream", "spool_max_mb"):
            continue
        if key not in settable:
            known = ", ".join(sorted({*settable, "kind", "stream", "spool_max_mb"}))
            raise t.error(f"unknown key for a {kind} sink (known keys: {known})", key)
        if key == "path" and isinstance(value, str) and value:
            value = base_dir / value
        settings[key] = value
    for name, required in settable.items():
        if required and name not in settings:
            raise t.error("missing", name)
    if kind == "mqtt" and settings.get("payload") == "sparkplug_b":
        if stream not in SPARKPLUG_STREAMS:
            raise t.error(
                f"a sparkplug_b sink publishes acquisition rows (stream "
                f"{' or '.join(map(repr, SPARKPLUG_STREAMS))}), not {stream!r}",
                "stream",
            )
        settings["devices"] = sparkplug_catalog(buses)
        settings["state_dir"] = str(spool.dir)
    try:
        sink = cls(**settings)
        # Settings that depend on the columns (a topic template's fields) are checked now,
        # against the schema the flow will give the sink, not when the flow is built.
        sink.with_schema(_stream_schema(stream))
    except SinkConfigError as exc:
        field = exc.field if exc.field in settable else None
        raise t.error(exc.reason if field else str(exc), field) from None
    except (TypeError, ValueError) as exc:
        raise t.error(str(exc), None) from None
    target, given = sink.target, t.data.get("path")
    if target.kind in ("file", "directory") and (why := _never_written(Path(target.location))):
        raise t.error(f"{given!r} {why}", "path")
    if target.kind == "directory":
        path = Path(target.location)
        if path.exists() and not path.is_dir():
            raise t.error(f"{given!r} is a file; a {kind} sink writes a directory", "path")
    elif target.kind == "file" and Path(target.location).is_dir():
        raise t.error(f"{given!r} is a directory; a {kind} sink writes a file", "path")
    where = target.location
    if target.kind in ("file", "directory"):
        # Shown as given: relative to the config file when it lies below it.
        with contextlib.suppress(ValueError):
            where = str(Path(where).relative_to(base_dir.resolve()))
    if target.table is not None:
        where += f":{target.table}"
    digest = hashlib.sha1(f"{target.location}\0{target.table}".encode()).hexdigest()[:10]
    spooled = IntoSpooled(
        sink,
        directory=spool.dir,
        name=f"{kind}-{digest}",
        where=f"sink[{index}] {kind} {where}",
        max_mb=float(max_mb),
        write_timeout_s=spool.write_timeout_s,
        backoff_s=min(1.0, spool.retry_max_s),
        backoff_max_s=spool.retry_max_s,
    )
    return stream, spooled


# Sparkplug B datatypes of the profiles' data types with neither scale nor offset; any
# other number is a Double (ints and bools reach the rows as floats, and go back here).
_SPARKPLUG_TYPES = {
    "int8": "Int8", "uint8": "UInt8", "int16": "Int16", "uint16": "UInt16",
    "int32": "Int32", "uint32": "UInt32", "int64": "Int64", "uint64": "UInt64",
    "float16": "Float", "float32": "Float", "float64": "Double",
    "bit": "Boolean", "string": "String",
}  # fmt: skip
# Streams whose rows are acquisition rows, each device's on one worker (flows.changes keys
# its state by device for that reason).
SPARKPLUG_STREAMS = ("samples", "changes")


def _datatype(p: Parameter) -> str:
    codec = p.codec
    if codec.scale != 1 or codec.offset != 0:
        return "Double"
    return _SPARKPLUG_TYPES.get(codec.type, "Double")


def sparkplug_catalog(buses: Sequence[Bus]) -> tuple[tuple[str, tuple[Metric, ...]], ...]:
    """Every device of ``buses`` with the metrics its DBIRTH names: one per parameter,
    with the Sparkplug B datatype of its data type and its unit."""
    return tuple(
        (d.name, tuple(Metric(p.name, _datatype(p), p.unit) for p in d.parameters))
        for bus in buses
        for d in bus.devices
    )


def _stream_schema(stream: str) -> Schema:
    """The schema flows.acquire.write gives a sink of ``stream`` that has none of its own."""
    if stream == "windows":
        from flows.windows import WINDOW_SCHEMA

        return WINDOW_SCHEMA
    if stream == "bus_stats":
        from flows.observe.busstats import BUS_STATS_SCHEMA

        return BUS_STATS_SCHEMA
    from flows.rows import SAMPLE_SCHEMA

    return SAMPLE_SCHEMA


# Pseudo-filesystems: what looks like a file there is the kernel's, never a sink's.
_KERNEL_DIRS = (Path("/proc"), Path("/sys"))


def _never_written(path: Path) -> str | None:
    """Why a sink can never write ``path`` (None when it may): a kernel pseudo-file, or
    something there already that is no file or directory (a device, a pipe, a socket)."""
    resolved = path.resolve()
    if any(resolved == d or d in resolved.parents for d in _KERNEL_DIRS):
        return "is under /proc or /sys, where a sink can write no file"
    if resolved.exists() and not (resolved.is_file() or resolved.is_dir()):
        return "is a device, pipe or socket, not a file a sink can write"
    return None


def check_targets(top: Table, sinks: list[IntoSink]) -> None:
    """Two sinks writing one file or table would interleave or clobber their rows."""
    seen: list[SinkTarget] = []
    for j, sink in enumerate(sinks):
        target = sink.target
        for i, other in enumerate(seen):
            if target.overlaps(other):
                where, table = target.location, target.table
                what = f"{table!r} in {where!r}" if table is not None else repr(where)
                raise top.error(
                    f"{what} is already written by sink[{i}]", f"sink[{j}].{target.key}"
                )
        seen.append(target)
