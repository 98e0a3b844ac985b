"""``acquire.toml`` -> frozen, validated dataclasses.

Every error is one line naming the file, the key path and the bad value, e.g.
``acquire.toml: bus[1].device[0].address: 300 is not a Modbus unit id (1-247)``.
Unknown keys are errors: a typo must not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.poller import Bus, Device
from connectors.registers import ProfileError, load_profile
from connectors.simulator import SimulatedDevice
from connectors.transport import parse_bus_url
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
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}$")
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


class ConfigError(ValueError):
    """A config that cannot be used; ``str()`` is the one line to show the user."""


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


_MISSING: Any = object()
# Named by the last accepted type: (int, float) reads "a number".
_KIND_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "an array",
    dict: "a table",
}


class _Table:
    """One TOML table being read: knows its key path and reports unknown keys."""

    def __init__(self, data: Any, where: str, file: str) -> None:
        self.file, self.where = file, where
        if not isinstance(data, dict):
            raise self.error(f"{data!r} is not a table", key=None)
        self.data = data
        self.used: set[str] = set()

    def error(self, message: str, key: str | None) -> ConfigError:
        path = ".".join(p for p in (self.where, key) if p)
        return ConfigError(f"{self.file}: {path}: {message}" if path else f"{self.file}: {message}")

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = _MISSING,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise self.error("missing", key)
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise self.error(f"{value!r} is not {_KIND_NAMES[kinds[-1]]}", key)
        if check is not None and (problem := check(value)):
            raise self.error(f"{value!r} {problem}", key)
        return value

    def tables(self, key: str) -> list[_Table]:
        self.used.add(key)
        items = self.data.get(key, [])
        if not isinstance(items, list):
            raise self.error(f"must be an array of tables ([[{key}]])", key)
        prefix = f"{self.where}." if self.where else ""
        return [_Table(item, f"{prefix}{key}[{i}]", self.file) for i, item in enumerate(items)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise self.error(f"unknown key (known keys: {known})", unknown[0])


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def _name(value: str) -> str | None:
    return None if NAME.match(value) else "is not a name (letters, digits, _ . -; up to 63)"


def _unit_id(value: int) -> str | None:
    return None if 1 <= value <= 247 else "is not a Modbus unit id (1-247)"


def _device(t: _Table, simulated: bool, base_dir: Path) -> tuple[Device, SimulatedDevice | None]:
    name = t.get("name", str, check=_name)
    address = t.get("address", int, check=_unit_id)
    profile_name = t.get("profile", str)
    if profile_name.endswith(".toml"):
        profile_name = str(base_dir / profile_name)
    try:
        profile = load_profile(profile_name)
    except ProfileError as exc:
        raise t.error(str(exc), "profile") from None
    known = [p.name for p in profile.parameters]
    chosen = t.get("parameters", list, default=known)
    parameters = []
    for i, pname in enumerate(chosen):
        if not isinstance(pname, str) or pname not in known:
            raise t.error(
                f"{pname!r} is not a parameter of {profile.name} (known: {', '.join(known)})",
                f"parameters[{i}]",
            )
        parameters.append(profile.parameter(pname))
    if not parameters:
        raise t.error("lists no parameters", "parameters")
    instance = t.get("instance", int, default=1, check=lambda v: None if v >= 1 else "must be >= 1")
    sim = None
    if "simulate" in t.data:
        if not simulated:
            raise t.error("only a device on a simulated bus takes simulate settings", "simulate")
        s = _Table(t.get("simulate", dict), f"{t.where}.simulate", t.file)
        sim = SimulatedDevice(
            address=address,
            profile=profile_name,
            set_point=s.get("set_point", (int, float), default=None),
            delay_s=s.get("delay_s", (int, float), 0.0, lambda v: None if v >= 0 else "< 0"),
            dead=s.get("dead", bool, default=False),
            exception_code=s.get(
                "exception_code", int, None, lambda v: None if 1 <= v <= 255 else "not 1-255"
            ),
        )
        s.done()
    elif simulated:
        sim = SimulatedDevice(address=address, profile=profile_name)
    t.done()
    device = Device(name=name, address=address, parameters=tuple(parameters), instance=instance)
    return device, sim


def _bus(t: _Table, seen_devices: dict[str, str], base_dir: Path) -> Bus:
    name = t.get("name", str, check=_name)
    raw_url = t.get("url", str)
    try:
        url = parse_bus_url(raw_url)
    except ValueError as exc:
        raise t.error(str(exc), "url") from None
    simulate = t.get("simulate", bool, default=False)
    if url.scheme == "sim" and not simulate:
        raise t.error("a sim:// bus is simulated in process: set simulate = true", "url")
    devices, sims = [], []
    addresses: dict[int, str] = {}
    for dt in t.tables("device"):
        device, sim = _device(dt, simulate, base_dir)
        if device.name in seen_devices:
            raise dt.error(
                f"{device.name!r} is already the name of {seen_devices[device.name]}", "name"
            )
        if device.address in addresses:
            raise dt.error(
                f"{device.address} is already the unit id of {addresses[device.address]}", "address"
            )
        seen_devices[device.name] = dt.where
        addresses[device.address] = device.name
        devices.append(device)
        if sim is not None:
            sims.append(sim)
    if not devices:
        raise t.error("has no devices ([[bus.device]])", None)
    bus = Bus(
        name=name,
        url=url,
        devices=tuple(devices),
        timeout_s=t.get("timeout_s", (int, float), 1.0, _positive),
        retries=t.get("retries", int, 0, lambda v: None if 0 <= v <= 10 else "is not 0-10"),
        simulate=tuple(sims) if simulate else None,
        host=t.get("host", str, default=None),
    )
    t.done()
    return bus


def _sink(t: _Table, base_dir: Path, windows: Windows | None) -> tuple[str, IntoSink]:
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
    top = _Table(data, "", source)
    acq = _Table(top.get("acquisition", dict, default={}), "acquisition", source)
    acquisition = Acquisition(
        rate_hz=acq.get("rate_hz", (int, float), 1.0, _positive),
        duration_s=acq.get("duration_s", (int, float), None, _positive),
    )
    acq.done()
    seen: dict[str, str] = {}
    buses = [_bus(bt, seen, base_dir) for bt in top.tables("bus")]
    if not buses:
        raise top.error("defines no bus ([[bus]])", None)
    names = [b.name for b in buses]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise top.error(f"{n!r} is already the name of another bus", f"bus[{i}].name")
    windows = None
    if "windows" in top.data:
        wt = _Table(top.get("windows", dict), "windows", source)
        windows = Windows(
            length_s=wt.get("length_s", (int, float), check=_positive),
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
