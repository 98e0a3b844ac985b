"""``[[bus]]`` and ``[[bus.device]]`` tables -> Bus and Device (profiles, overrides, inline
parameters, simulated devices)."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.bus import Bus, Device, Simulation
from connectors.parameter import Parameter, every_problem, override_parameter, read_parameter
from connectors.registers import Profile, ProfileError, load_profile
from connectors.transport import SERIAL, parse_bus_url
from flows.config.table import (
    Table,
    check_at_most,
    check_max_gap,
    check_name,
    check_non_negative,
    check_positive,
    check_retries,
    check_text,
    check_unit_id,
)

log = logging.getLogger(__name__)

__all__ = ["parse_bus"]

# RFC 1123 host names, with the underscores that plant networks use anyway.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")


def _defaults(cls: type) -> dict[str, Any]:
    """The default of each field of dataclass ``cls`` that has one: what a key left out means."""
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


_BUS, _DEVICE = _defaults(Bus), _defaults(Device)
_WORKAROUNDS = ("max_registers", "one_request_per_parameter", "step_down")
_NETWORK = ("tcp", "udp", "rtu+tcp")  # the schemes whose URL names a host and port


def check_host(value: str) -> str | None:
    """None for a host name or an IP address."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    return None if _HOSTNAME.match(value) else "is not a host name or IP address"


def _parse_url(t: Table, raw: str) -> Any:
    """parse_bus_url, plus what it lets through: spaces and control characters, a user or
    password, a #fragment, a host that is not a host name."""
    try:
        if problem := check_text(raw):
            raise ValueError(problem)
        if " " in raw:
            raise ValueError("contains a space")
        parts = urlsplit(raw)
        if parts.fragment or raw.endswith("#"):
            raise ValueError("a bus URL takes no #fragment")
        if parts.scheme.lower() not in SERIAL and "@" in parts.netloc:
            raise ValueError("a bus URL takes no user or password")
        url = parse_bus_url(raw)
        if url.scheme in _NETWORK and (problem := check_host(url.host)):
            raise ValueError(f"the host {url.host!r} {problem}")
    except ValueError as exc:
        message = str(exc)
        if repr(raw) not in message:
            message = f"{raw!r}: {message}"
        raise t.error(message, "url") from None
    return url


def _text_problem(p: Parameter) -> tuple[str, str, str] | None:
    """(key, text, why) for the first name, unit or label of ``p`` that is not printable."""
    texts = [("name", p.name), ("unit", p.unit), *((f"labels.{v}", x) for v, x in p.labels)]
    for key, text in texts:
        if text is not None and (problem := check_text(text)):
            return key, text, problem
    return None


def _current(t: Table, profile: Profile, name: str, key: str) -> str:
    """``name``, or the name the profile gave that parameter since (logged once per use)."""
    new = profile.renamed.get(name)
    if new is None:
        return name
    where = ".".join(p for p in (t.where, key) if p)
    log.warning(
        "%s: %s: %r is now %r in profile %s (the old name goes in the next release)",
        t.file, where, name, new, profile.name,
    )  # fmt: skip
    return new


# Override keys that pin a field against what the device says of itself (connectors.describe).
_PINS = {"byte_order": "byte_order", "word_order": "byte_order", "unit": "unit"}


def _profile_parameters(t: Table, profile_name: str) -> tuple[Profile, tuple[Parameter, ...]]:
    """The profile, and its parameters chosen by ``parameters``, with ``[override.<name>]``
    applied."""
    try:
        profile = load_profile(profile_name)
    except ProfileError as exc:
        raise t.error(str(exc), "profile") from exc
    known = [p.name for p in profile.parameters]
    overrides = {
        _current(t, profile, pname, f"override.{pname}"): entry
        for pname, entry in t.get("override", dict, default={}).items()
    }
    by_name = {p.name: p for p in profile.parameters}
    for pname, entry in overrides.items():
        where = f"override.{pname}"
        if pname not in by_name:
            raise t.error(
                f"{pname!r} is not a parameter of {profile.name} (known: {', '.join(known)})",
                where,
            )
        by_name[pname] = override_parameter(by_name[pname], t.table(where, entry))
    chosen = [
        _current(t, profile, pname, f"parameters[{i}]") if isinstance(pname, str) else pname
        for i, pname in enumerate(t.get("parameters", list, default=known))
    ]
    parameters = []
    for i, pname in enumerate(chosen):
        if not isinstance(pname, str) or pname not in known:
            raise t.error(
                f"{pname!r} is not a parameter of {profile.name} (known: {', '.join(known)})",
                f"parameters[{i}]",
            )
        if pname in chosen[:i]:
            # Both reads would give rows with one natural key.
            raise t.error(f"{pname!r} is listed twice", f"parameters[{i}]")
        p = by_name[pname]
        if found := _text_problem(p):
            key, text, problem = found
            if key.partition(".")[0] in overrides.get(pname, {}):
                raise t.error(f"{text!r} {problem}", f"override.{pname}.{key}")
            raise t.error(f"parameter {pname!r}: {key} {text!r} {problem}", "profile")
        parameters.append(p)
    if not parameters:
        raise t.error("lists no parameters", "parameters")
    return profile, tuple(parameters)


def _pinned(t: Table, profile: Profile) -> frozenset[tuple[str, str]]:
    """(parameter, field) of each override key that pins a field the device may describe
    (the overrides were checked by _profile_parameters)."""
    return frozenset(
        (profile.renamed.get(name, name), _PINS[key])
        for name, entry in t.data.get("override", {}).items()
        for key in entry
        if key in _PINS
    )


def _inline_parameters(t: Table) -> tuple[Parameter, ...]:
    """A device's own ``[[bus.device.parameter]]`` tables (0-based addresses)."""
    parameters: list[Parameter] = []
    seen: dict[str, str] = {}
    for pt in t.tables("parameter"):
        p = read_parameter(pt)
        if found := _text_problem(p):
            key, text, problem = found
            raise pt.error(f"{text!r} {problem}", key)
        if p.name in seen:
            raise pt.error(f"{p.name!r} is already the name of {seen[p.name]}", "name")
        seen[p.name] = pt.where
        parameters.append(p)
    return tuple(parameters)


_REGISTERS_PER_READ = "is not a number of registers per read (1-125)"


def _workarounds(t: Table, inherited: dict[str, Any]) -> dict[str, Any]:
    """The read-shaping keys of a bus (its devices' defaults) or of one device."""
    return {
        "max_registers": t.get(
            "max_registers",
            int,
            inherited["max_registers"],
            lambda v: None if 1 <= v <= 125 else _REGISTERS_PER_READ,
        ),
        "one_request_per_parameter": t.get(
            "one_request_per_parameter", bool, inherited["one_request_per_parameter"]
        ),
        "step_down": t.get("step_down", bool, inherited["step_down"]),
    }


def _device(t: Table, simulated: bool, base_dir: Path, inherited: dict[str, Any]) -> Device:
    name = t.get("name", str, check=check_name)
    address = t.get("address", int, check=check_unit_id)
    profile_name = t.get("profile", str, default=None)
    describe: dict[str, Any] = {}
    if profile_name is not None and "parameter" in t.data:
        raise t.error(
            "a device takes a profile or its own [[bus.device.parameter]] tables, not both",
            "parameter",
        )
    if profile_name is None:
        for key in ("parameters", "override"):
            if key in t.data:
                raise t.error(f"{key} needs a profile to choose from", key)
        if "parameter" not in t.data:
            raise t.error(
                "missing (or describe the registers in [[bus.device.parameter]])", "profile"
            )
        if simulated:
            raise t.error(
                "a device on a simulated bus needs a profile (the simulator serves profiles)",
                "parameter",
            )
        parameters = _inline_parameters(t)
        if not parameters:
            raise t.error("lists no parameters", "parameter")
    else:
        if profile_name.endswith(".toml"):
            profile_name = str(base_dir / profile_name)
        profile, parameters = _profile_parameters(t, profile_name)
        describe = {"describe": profile.describe, "pinned": _pinned(t, profile)}
    instance = t.get(
        "instance", int, _DEVICE["instance"], lambda v: None if v >= 1 else "must be >= 1"
    )
    timing: dict[str, Any] = {
        "timeout_s": t.get("timeout_s", (int, float), _DEVICE["timeout_s"], check_positive),
        "retries": t.get("retries", int, _DEVICE["retries"], check_retries),
        "pause_s": t.get("pause_s", (int, float), _DEVICE["pause_s"], check_non_negative),
        "max_gap": t.get("max_gap", int, _DEVICE["max_gap"], check_max_gap),
        **_workarounds(t, inherited),
        "every_s": t.get("every_s", (int, float, str), None, every_problem),
    }
    too_long = [p for p in parameters if p.count > timing["max_registers"]]
    if too_long:
        raise t.error(
            f"{timing['max_registers']} is less than the {too_long[0].count} registers of "
            f"parameter {too_long[0].name!r}, which is read whole",
            "max_registers",
        )
    sim = None
    if "simulate" in t.data:
        if not simulated:
            raise t.error("only a device on a simulated bus takes simulate settings", "simulate")
        assert profile_name is not None  # inline devices were refused on simulated buses
        s = Table(t.get("simulate", dict), f"{t.where}.simulate", t.file)
        sim = Simulation(
            profile=profile_name,
            set_point=s.get(
                "set_point",
                (int, float),
                None,
                lambda v: None if math.isfinite(v) else "is not a finite number",
            ),
            delay_s=s.get("delay_s", (int, float), 0.0, check_non_negative),
            dead=s.get("dead", bool, default=False),
            exception_code=s.get(
                "exception_code", int, None, lambda v: None if 1 <= v <= 255 else "is not 1-255"
            ),
            word_order=s.get(
                "word_order",
                str,
                "low_high",
                lambda v: None if v in Simulation.WORD_ORDERS else "is not low_high or high_low",
            ),
            units=s.get(
                "units", str, "C", lambda v: None if v in Simulation.UNITS else "is not C or F"
            ),
            max_read=s.get(
                "max_read", int, None, lambda v: None if 1 <= v <= 125 else _REGISTERS_PER_READ
            ),
        )
        s.done()
    elif simulated:
        assert profile_name is not None
        sim = Simulation(profile=profile_name)
    t.done()
    return Device(
        name=name,
        address=address,
        parameters=parameters,
        instance=instance,
        simulation=sim,
        **timing,
        **describe,
    )


def parse_bus(t: Table, seen_devices: dict[str, tuple[str, str]], base_dir: Path) -> Bus:
    """One ``[[bus]]`` table; ``seen_devices`` maps the case-folded names of the devices of
    the buses before it to (name, key path), and gets this bus's devices."""
    name = t.get("name", str, check=check_name)
    url = _parse_url(t, t.get("url", str))
    simulate = t.get("simulate", bool, default=False)
    if url.scheme == "sim" and not simulate:
        raise t.error("a sim:// bus is simulated in process: set simulate = true", "url")
    if url.scheme in _NETWORK and url.port == 0 and not simulate:
        raise t.error(
            f"{str(url)!r}: port 0 is for simulated buses (any free port); give the gateway's",
            "url",
        )
    devices = []
    addresses: dict[int, str] = {}
    inherited = _workarounds(t, {k: _DEVICE[k] for k in _WORKAROUNDS})
    for dt in t.tables("device"):
        device = _device(dt, simulate, base_dir, inherited)
        if (seen := seen_devices.get(device.name.casefold())) is not None:
            other, where = seen
            if other == device.name:
                raise dt.error(f"{device.name!r} is already the name of {where}", "name")
            raise dt.error(
                f"{device.name!r} differs only in case from the name of {where} (device "
                "names name files, e.g. the plots)",
                "name",
            )
        if device.address in addresses:
            raise dt.error(
                f"{device.address} is already the unit id of {addresses[device.address]}", "address"
            )
        seen_devices[device.name.casefold()] = (device.name, dt.where)
        addresses[device.address] = device.name
        devices.append(device)
    if not devices:
        raise t.error("has no devices ([[bus.device]])", None)
    bus = Bus(
        name=name,
        url=url,
        devices=tuple(devices),
        timeout_s=t.get("timeout_s", (int, float), _BUS["timeout_s"], check_positive),
        retries=t.get("retries", int, _BUS["retries"], check_retries),
        pause_s=t.get("pause_s", (int, float), _BUS["pause_s"], check_non_negative),
        pause_after_connect_s=t.get(
            "pause_after_connect_s", (int, float), 0.0, check_at_most(3600, "seconds", zero=True)
        ),
        close_after_tick=t.get("close_after_tick", bool, default=False),
        simulate=simulate,
        host=t.get("host", str, _BUS["host"], check_host),
    )
    t.done()
    return bus
