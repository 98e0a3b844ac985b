"""Which panel each of a device's series goes in (pure, no matplotlib): parameters sharing a
unit share a panel, enumerations and bits become state strips, text parameters are listed, and
all are in the order of the device's profile.

The order and the kinds come from the device's profile when it is known: given by the
config (``--config``), else the first shipped profile (connectors/profiles) that has every
parameter the device's rows name. Without one, a parameter whose rows carry enum labels (a
numeric ``value`` with a ``value_text``), or whose values are only 0 and 1 and has no unit,
is a state; the order is by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from connectors.parameter import Parameter
from connectors.registers import load_profile, shipped_profiles
from flows.plot.data import Loaded, Row

__all__ = ["Panel", "Track", "panels", "profile_of"]

Kind = Literal["numeric", "state"]
BIT_TABLES = ("coil", "discrete")


@dataclass
class Track:
    """One (parameter, instance) series of a device: its rows and, for a state, its labels."""

    parameter: str
    instance: int
    rows: list[Row]
    kind: Kind
    unit: str | None
    labels: dict[float, str] = field(default_factory=dict)

    def name(self, several: bool) -> str:
        return f"{self.parameter} (instance {self.instance})" if several else self.parameter


@dataclass
class Panel:
    """One axis of the figure: numeric tracks of one unit, or one state track."""

    kind: Kind
    unit: str | None
    tracks: list[Track]


def profile_of(parameters: set[str], given: Sequence[Parameter] | None) -> list[Parameter]:
    """The parameters in profile order: ``given`` (from a config), else the first shipped
    profile that has all of ``parameters``, else none."""
    if given is not None:
        return list(given)
    for name in shipped_profiles():
        profile = load_profile(name)
        if parameters <= {p.name for p in profile.parameters}:
            return list(profile.parameters)
    return []


def _unit(rows: list[Row]) -> str | None:
    return next((r["unit"] for r in reversed(rows) if r["unit"] is not None), None)


def _values(rows: list[Row], windows: bool) -> set[float]:
    if windows:
        return {v for r in rows for v in (r["min"], r["max"]) if v is not None}
    return {r["value"] for r in rows if r["value"] is not None}


def panels(
    loaded: Loaded,
    device: str,
    by_key: Mapping[tuple[str, int], list[Row]],
    profile: Sequence[Parameter] = (),
) -> list[Panel]:
    """The panels of the numeric series ``by_key`` (parameter, instance) -> rows of
    ``device``, in the order of ``profile`` (then by name)."""
    windows = loaded.kind == "windows"
    known = {p.name: p for p in profile}
    rank = {p.name: i for i, p in enumerate(profile)}
    seen = loaded.labels.get(device, {})
    keys = sorted(by_key, key=lambda k: (rank.get(k[0], len(rank)), k[0], k[1]))
    out: list[Panel] = []
    numeric: dict[tuple[str | None, int], Panel] = {}
    several = len({i for _, i in by_key}) > 1
    for parameter, instance in keys:
        rows = by_key[parameter, instance]
        unit, p = _unit(rows), known.get(parameter)
        labels = {float(v): t for v, t in p.labels} if p is not None else {}
        labels.update(seen.get(parameter, {}))
        if p is not None:
            is_bit = p.table in BIT_TABLES or p.codec.type == "bit"
        else:
            is_bit = (
                unit is None
                and bool(_values(rows, windows))
                and _values(rows, windows)
                <= {
                    0.0,
                    1.0,
                }
            )
        if labels or is_bit:
            track = Track(parameter, instance, rows, "state", unit, labels)
            out.append(Panel("state", unit, [track]))
            continue
        track = Track(parameter, instance, rows, "numeric", unit)
        key = (unit, instance if several else 0)
        if unit is None:  # values without a unit share no scale
            out.append(Panel("numeric", None, [track]))
        elif key in numeric:
            numeric[key].tracks.append(track)
        else:
            numeric[key] = Panel("numeric", unit, [track])
            out.append(numeric[key])
    return out
