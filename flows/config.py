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

from connectors.poller import Bus
from flows.buses import parse_bus
from flows.configtable import ConfigError, Table, check_positive
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
        if key == "path" and isinstance(value, str):
            value = base_dir / value
        settings[key] = value
    try:
        return stream, cls(**settings)
    except (TypeError, ValueError) as exc:
        raise t.error(str(exc), None) from None


def parse_config(
    data: dict[str, Any], *, source: str = "<config>", base_dir: Path = Path()
) -> Config:
    """Validate a parsed TOML document; relative sink paths resolve against ``base_dir``."""
    top = Table(data, "", source)
    acq = Table(top.get("acquisition", dict, default={}), "acquisition", source)
    acquisition = Acquisition(
        rate_hz=acq.get("rate_hz", (int, float), 1.0, check_positive),
        duration_s=acq.get("duration_s", (int, float), None, check_positive),
    )
    acq.done()
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
            length_s=wt.get("length_s", (int, float), check=check_positive),
            lateness_s=wt.get("lateness_s", (int, float), 1.0, lambda v: None if v >= 0 else "< 0"),
        )
        wt.done()
    sinks = [_sink(st, base_dir, windows) for st in top.tables("sink")]
    top.done()
    return Config(
        acquisition=acquisition,
        buses=tuple(buses),
        sinks=tuple(sink for stream, sink in sinks if stream == "samples"),
        windows=windows,
        window_sinks=tuple(sink for stream, sink in sinks if stream == "windows"),
        late_sinks=tuple(sink for stream, sink in sinks if stream == "late"),
        stats_sinks=tuple(sink for stream, sink in sinks if stream == "bus_stats"),
        source=source,
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate ``path``, else ``$ACQUIRE_CONFIG``, else ``./acquire.toml``."""
    name = os.fspath(path) if path is not None else os.environ.get("ACQUIRE_CONFIG", DEFAULT_PATH)
    file = Path(name)
    try:
        with file.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"{name}: no such file (set ACQUIRE_CONFIG or create {DEFAULT_PATH})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{name}: {exc.strerror}") from None
    return parse_config(data, source=name, base_dir=file.parent)
