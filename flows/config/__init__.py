"""``acquire.toml`` -> frozen, validated dataclasses.

Every error is one line naming the file, the key path and the bad value, e.g.
``acquire.toml: bus[1].device[0].address: 300 is not a Modbus unit id (1-247)``.
Unknown keys are errors: a typo must not be silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from connectors.bus import Bus
from connectors.groups import ticks_of
from flows.config.buses import parse_bus
from flows.config.sinks import check_targets, parse_sink, parse_spool
from flows.config.table import (
    ConfigError,
    Table,
    check_at_most,
    check_http,
    parse_http,
)
from sinks.base import IntoSink

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "Acquisition",
    "Config",
    "ConfigError",
    "Status",
    "Windows",
    "load_config",
    "parse_config",
]

DEFAULT_PATH = "acquire.toml"
HTTP_ENV = "ACQUIRE_STATUS_HTTP"  # overrides [status] http


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
    while ``enabled``; ``interval_s = 0`` turns it off as well. ``http``: where the status
    page listens, ``(host, port)`` (flows.observe.page), None when off."""

    enabled: bool = True
    interval_s: float = 10.0
    http: tuple[str, int] | None = None

    @property
    def every_s(self) -> float | None:
        """Seconds between status lines, None when off."""
        return self.interval_s if self.enabled and self.interval_s > 0 else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A whole validated config: acquisition schedule, buses with devices, windows, sinks.

    ``sinks`` take the raw rows, ``window_sinks`` the window rows and ``late_sinks`` the raw
    rows that arrived too late for their window (they are in ``sinks`` too); ``stats_sinks``
    the per-bus, per-tick statistics rows; ``change_sinks`` the raw rows that report by
    exception lets through (flows.changes).
    """

    acquisition: Acquisition
    buses: tuple[Bus, ...]
    sinks: tuple[IntoSink, ...]
    windows: Windows | None = None
    window_sinks: tuple[IntoSink, ...] = ()
    late_sinks: tuple[IntoSink, ...] = ()
    stats_sinks: tuple[IntoSink, ...] = ()
    change_sinks: tuple[IntoSink, ...] = ()
    status: Status = Status()
    source: str = "<config>"


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
        http=parse_http(st.get("http", str, "", check_http)),
    )
    st.done()
    seen: dict[str, tuple[str, str]] = {}
    buses = [parse_bus(bt, seen, base_dir) for bt in top.tables("bus")]
    if not buses:
        raise top.error("defines no bus ([[bus]])", None)
    first: dict[str, tuple[str, int]] = {}  # case-folded name -> (name, index)
    for i, n in enumerate(b.name for b in buses):
        if (earlier := first.setdefault(n.casefold(), (n, i))) != (n, i):
            other, j = earlier
            if other == n:
                raise top.error(f"{n!r} is already the name of another bus", f"bus[{i}].name")
            raise top.error(
                f"{n!r} differs only in case from the name of bus[{j}] (bus names name "
                "files, e.g. the recovery journal)",
                f"bus[{i}].name",
            )
    _check_groups(top, buses, acquisition.rate_hz)
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
    spool = parse_spool(Table(top.get("spool", dict, default={}), "spool", source), base_dir)
    sinks = [
        parse_sink(st, base_dir, windows=windows is not None, spool=spool, index=i, buses=buses)
        for i, st in enumerate(top.tables("sink"))
    ]
    check_targets(top, [sink for _, sink in sinks])
    top.done()
    return Config(
        acquisition=acquisition,
        buses=tuple(buses),
        sinks=tuple(sink for stream, sink in sinks if stream == "samples"),
        windows=windows,
        window_sinks=tuple(sink for stream, sink in sinks if stream == "windows"),
        late_sinks=tuple(sink for stream, sink in sinks if stream == "late"),
        stats_sinks=tuple(sink for stream, sink in sinks if stream == "bus_stats"),
        change_sinks=tuple(sink for stream, sink in sinks if stream == "changes"),
        status=status,
        source=source,
    )


def _check_groups(top: Table, buses: list[Bus], rate_hz: float) -> None:
    """Every poll group's period is a whole number of ticks."""
    tick = f"the tick is {1 / rate_hz:g} s at rate_hz = {rate_hz:g}"
    for i, bus in enumerate(buses):
        for j, device in enumerate(bus.devices):
            where = f"bus[{i}].device[{j}]"
            # (period, key path, what the message names before the value)
            periods = [(device.every_s, f"{where}.every_s", "")] + [
                (p.every_s, where, f"parameter {p.name!r}: every_s = ") for p in device.parameters
            ]
            for every, key, lead in periods:
                if isinstance(every, float | int) and ticks_of(every, rate_hz) is None:
                    raise top.error(f"{lead}{every!r} is not a whole number of ticks ({tick})", key)


def _error(file: str, message: str) -> ConfigError:
    """An error about the file as a whole (no key path)."""
    return ConfigError(file=file, path="", message=message)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate ``path``, else ``$ACQUIRE_CONFIG``, else ``./acquire.toml``; then
    ``$ACQUIRE_STATUS_HTTP``, when set, replaces ``[status] http`` ("" turns the page off)."""
    name = os.fspath(path) if path is not None else os.environ.get("ACQUIRE_CONFIG", DEFAULT_PATH)
    file = Path(name)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise _error(name, f"no such file (set ACQUIRE_CONFIG or create {DEFAULT_PATH})") from None
    except OSError as exc:
        raise _error(name, str(exc.strerror)) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raise _error(name, "starts with a byte order mark, which TOML does not allow")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _error(
            name, f"line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8 (TOML is UTF-8 text)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise _error(name, str(exc)) from None
    config = parse_config(data, source=name, base_dir=file.parent)
    http = os.environ.get(HTTP_ENV)
    if http is None:
        return config
    problem = check_http(http)
    if problem is not None:
        raise _error(HTTP_ENV, f"{http!r} {problem}")
    return replace(config, status=replace(config.status, http=parse_http(http)))
