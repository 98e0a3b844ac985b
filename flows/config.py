"""``acquire.toml`` -> frozen, validated dataclasses.

Every error is one line naming the file, the key path and the bad value, e.g.
``acquire.toml: bus[1].device[0].address: 300 is not a Modbus unit id (1-247)``.
Unknown keys are errors: a typo must not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.bus import Bus
from flows.buses import parse_bus
from flows.configtable import ConfigError, Table, check_at_most
from sinks.base import IntoSink

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "SINK_KINDS",
    "Acquisition",
    "Config",
    "ConfigError",
    "Status",
    "Windows",
    "load_config",
    "parse_config",
]

DEFAULT_PATH = "acquire.toml"
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Acquisition:
    """The tick rate and, for a finite run, how long to acquire."""

    rate_hz: float = 1.0
    duration_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Windows:
    """Tumbling event-time windows: their length and how late a row may still join one."""

    length_s: float
    lateness_s: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """The live status line: logged every ``interval_s`` seconds (``flows.status`` logger)
    while ``enabled``; ``interval_s = 0`` turns it off as well."""

    enabled: bool = True
    interval_s: float = 10.0

    @property
    def every_s(self) -> float | None:
        """Seconds between status lines, None when off."""
        return self.interval_s if self.enabled and self.interval_s > 0 else None


STREAMS = ("samples", "windows", "late", "bus_stats")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A whole validated config: acquisition schedule, buses with devices, windows, sinks.

    ``sinks`` take the raw rows, ``window_sinks`` the window rows and ``late_sinks`` the raw
    rows that arrived too late for their window (they are in ``sinks`` too); ``stats_sinks``
    the per-bus, per-tick statistics rows.
    """

    acquisition: Acquisition
    buses: tuple[Bus, ...]
    sinks: tuple[IntoSink, ...]
    windows: Windows | None = None
    window_sinks: tuple[IntoSink, ...] = ()
    late_sinks: tuple[IntoSink, ...] = ()
    stats_sinks: tuple[IntoSink, ...] = ()
    status: Status = Status()
    source: str = "<config>"


def _sink(t: Table, base_dir: Path, windows: Windows | None) -> tuple[str, IntoSink]:
    kind = t.get("kind", str)
    stream = t.get(
        "stream", str, "samples", lambda v: None if v in STREAMS else "is not " + ", ".join(STREAMS)
    )
    if stream in ("windows", "late") and windows is None:
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


def _check_targets(top: Table, sinks: list[IntoSink]) -> None:
    """Two sinks writing one file or table would interleave or clobber their rows."""
    seen: list[tuple[str, str | None]] = []
    for j, sink in enumerate(sinks):
        where, table, key = _target(sink)
        for i, (other, other_table) in enumerate(seen):
            if where == other and (table is None or other_table is None or table == other_table):
                what = f"{table!r} in {where!r}" if table is not None else repr(where)
                raise top.error(f"{what} is already written by sink[{i}]", f"sink[{j}].{key}")
        seen.append((where, table))


def parse_config(
    data: dict[str, Any], *, source: str = "<config>", base_dir: Path = Path()
) -> Config:
    """Validate a parsed TOML document; relative sink paths resolve against ``base_dir``."""
    top = Table(data, "", source)
    acq = Table(top.get("acquisition", dict, default={}), "acquisition", source)
    acquisition = Acquisition(
        rate_hz=acq.get("rate_hz", (int, float), 1.0, check_at_most(1e6, "ticks per second")),
        duration_s=acq.get("duration_s", (int, float), None, check_at_most(1e9, "seconds")),
    )
    acq.done()
    st = Table(top.get("status", dict, default={}), "status", source)
    status = Status(
        enabled=st.get("enabled", bool, True),
        interval_s=st.get(
            "interval_s", (int, float), 10.0, check_at_most(1e9, "seconds", zero=True)
        ),
    )
    st.done()
    seen: dict[str, str] = {}
    buses = [parse_bus(bt, seen, base_dir) for bt in top.tables("bus")]
    if not buses:
        raise top.error("defines no bus ([[bus]])", None)
    names = [b.name for b in buses]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise top.error(f"{n!r} is already the name of another bus", f"bus[{i}].name")
    windows = None
    if "windows" in top.data:
        wt = Table(top.get("windows", dict), "windows", source)
        windows = Windows(
            length_s=wt.get("length_s", (int, float), check=check_at_most(1e9, "seconds")),
            lateness_s=wt.get(
                "lateness_s", (int, float), 1.0, check_at_most(1e9, "seconds", zero=True)
            ),
        )
        wt.done()
    sinks = [_sink(st, base_dir, windows) for st in top.tables("sink")]
    _check_targets(top, [sink for _, sink in sinks])
    top.done()
    return Config(
        acquisition=acquisition,
        buses=tuple(buses),
        sinks=tuple(sink for stream, sink in sinks if stream == "samples"),
        windows=windows,
        window_sinks=tuple(sink for stream, sink in sinks if stream == "windows"),
        late_sinks=tuple(sink for stream, sink in sinks if stream == "late"),
        stats_sinks=tuple(sink for stream, sink in sinks if stream == "bus_stats"),
        status=status,
        source=source,
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate ``path``, else ``$ACQUIRE_CONFIG``, else ``./acquire.toml``."""
    name = os.fspath(path) if path is not None else os.environ.get("ACQUIRE_CONFIG", DEFAULT_PATH)
    file = Path(name)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{name}: no such file (set ACQUIRE_CONFIG or create {DEFAULT_PATH})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{name}: {exc.strerror}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(f"{name}: starts with a byte order mark, which TOML does not allow")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{name}: line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8 (TOML is UTF-8 text)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return parse_config(data, source=name, base_dir=file.parent)
