"""Holding what a run stored against what the simulators answered.

* lost: per device and parameter, reads the simulator answered with values (its log) that
  cover the parameter, minus the value rows stored for it, summed where positive;
  ``unexplained`` is the other way round (value rows no answered read accounts for).
* duplicated: rows sharing a natural key (device, parameter, instance, requested_at), and
  rows beyond the first of one device, parameter and tick.
* missing: (device, tick, parameter) of a tick that ran (its bus statistics row) with no
  row at all. A row belongs to the last tick of its bus started at or before its
  ``requested_at``.
* wrong: value rows that are not a value their device served for their parameter (an
  answer taken for another device's or another read's), when the simulator kept what it
  served (SimLoop does); and set point value rows that are not the device's own set point.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from connectors.codec import decode
from connectors.registers import load_profile
from tests.faults.rig import PARAMETERS, PROFILE, Answered, BusSpec, Served, set_point
from tests.faults.stores import Store

__all__ = ["Audit", "audit", "error_kind", "report"]


def error_kind(error: str) -> str:
    """An error text with its figures and its reconnect wait taken out, to group rows."""
    return re.sub(r"\d+(\.\d+)?", "N", error.partition("; reconnecting")[0])


@dataclass
class Audit:
    rows: int = 0
    value_rows: int = 0
    answered: int = 0  # value rows the answered reads call for
    lost: int = 0
    unexplained: int = 0
    duplicated_keys: int = 0
    repeated_in_tick: int = 0
    stray: int = 0  # rows before the first tick of their bus
    missing: list[tuple[str, int, str]] = field(default_factory=list)
    wrong: int = 0
    slots: int = 0  # ticks run plus slots skipped as late
    late: int = 0
    ticks: dict[str, list[int]] = field(default_factory=dict)
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # Per device: answered value rows, stored value rows.
    per_device: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Per (device, parameter): answered reads not stored, and timeout rows.
    lost_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    timeouts_by: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def duplicated(self) -> int:
        return self.duplicated_keys + self.repeated_in_tick

    def line(self) -> str:
        """One line for the test log: the figures a run is judged by."""
        return (
            f"{self.rows} rows ({self.value_rows} values, {self.answered} answered): lost "
            f"{self.lost}, unexplained {self.unexplained}, duplicated {self.duplicated}, "
            f"missing {len(self.missing)}, stray {self.stray}, wrong {self.wrong}; "
            f"{self.slots} slots, {self.late} late; errors {dict(self.errors)}"
        )

    def assert_clean(self, late_answers: Counter[tuple[str, str]] | None = None) -> None:
        """Zero lost, zero duplicated, one row per device, parameter and tick run.

        ``late_answers``: (device, parameter) -> reads the simulator answered after the
        poller's timeout had passed (a slow device); they must be exactly what is not stored.
        """
        assert self.lost_by == (late_answers or Counter()), self.line()
        assert (self.unexplained, self.duplicated) == (0, 0), self.line()
        assert (self.missing, self.stray, self.wrong, self.late) == ([], 0, 0, 0), self.line()

    def assert_errors(self, allowed: dict[str, tuple[str, ...]], named: dict[str, str]) -> None:
        """Error rows only on the devices of ``allowed``, each starting with one of its texts;
        and each device of ``named`` has rows starting with its text (the fault's name)."""
        for device, kinds in self.errors.items():
            assert all(k.startswith(allowed.get(device, ())) for k in kinds), (device, kinds)
        for device, text in named.items():
            assert any(k.startswith(text) for k in self.errors[device]), (device, text)


def report(fault: str, store_name: str, result: Audit, late: int = 0) -> None:
    """Print the line the suite's log is read for: ``FAULT name [store]: lost N, ...``;
    ``late``: answers that came after the poller's timeout (timeout rows, not losses)."""
    after = f" (and {late} answers after the timeout)" if late else ""
    print(f"FAULT {fault} [{store_name}]: lost {result.lost - late}{after}, "
          f"duplicated {result.duplicated}; {result.line()}")  # fmt: skip


def _covering(answered: Answered, unit: int, name: str) -> int:
    """Answered reads of ``unit`` whose registers hold all of parameter ``name``."""
    p = load_profile(PROFILE).parameter(name)
    return sum(
        n
        for (u, table, address, count), n in answered.items()
        if u == unit and table == p.table and address <= p.address
        and p.address + p.count <= address + count
    )  # fmt: skip


def _served_values(served: Served) -> dict[tuple[int, str], set[object]]:
    """(unit, parameter) -> every value the device served for it, decoded from the words of
    each read that held all of the parameter's registers."""
    profile = load_profile(PROFILE)
    values: dict[tuple[int, str], set[object]] = defaultdict(set)
    for unit, reads in served.items():
        for (table, address, count), answers in reads.items():
            for name in PARAMETERS:
                p = profile.parameter(name)
                at = p.address - address
                if p.table == table and at >= 0 and at + p.count <= count:
                    values[(unit, name)].update(
                        decode(p.codec, words[at : at + p.count]) for words in answers
                    )
    return values


def audit(
    store: Store,
    buses: Sequence[BusSpec],
    answered: Mapping[str, Answered],
    served: Mapping[str, Served] | None = None,
) -> Audit:
    """Audit ``store`` against ``answered`` (per bus name: its simulator's log) and, where
    given, ``served`` (per bus name: what each of its devices served)."""
    result = Audit()
    own = {name: _served_values(s) for name, s in (served or {}).items()}
    rows, ticks = store.samples(), store.ticks()
    result.rows = len(rows)
    starts: dict[str, list[tuple[object, int]]] = defaultdict(list)
    for t in sorted(ticks, key=lambda t: t.started_at):
        starts[t.bus].append((t.started_at, t.tick))
        result.slots += 1 + t.late
        result.late += t.late
    result.ticks = {bus: [tick for _, tick in s] for bus, s in starts.items()}
    where = {device: (bus.name, unit) for bus in buses for device, unit in bus.devices().items()}
    keys = Counter((r.device, r.parameter, r.instance, r.requested_at) for r in rows)
    result.duplicated_keys = sum(n - 1 for n in keys.values())
    per_tick: Counter[tuple[str, str, int]] = Counter()
    values: Counter[tuple[str, str]] = Counter()
    for r in rows:
        bus, unit = where[r.device]
        bus_starts = starts[bus]
        i = bisect.bisect_right(bus_starts, r.requested_at, key=lambda s: s[0]) - 1
        if i < 0:
            result.stray += 1
            continue
        per_tick[(r.device, r.parameter, bus_starts[i][1])] += 1
        if r.error is None:
            values[(r.device, r.parameter)] += 1
            not_own_set_point = r.parameter == "closed_loop_set_point" and r.value != set_point(
                unit
            )
            not_served = bus in own and r.value not in own[bus].get((unit, r.parameter), ())
            result.wrong += not_own_set_point or not_served
        else:
            result.errors[r.device][error_kind(r.error)] += 1
            if r.error == "timeout: no response":
                result.timeouts_by[(r.device, r.parameter)] += 1
    result.value_rows = sum(values.values())
    result.repeated_in_tick = sum(n - 1 for n in per_tick.values() if n > 1)
    for bus in buses:
        for device, unit in bus.devices().items():
            due = stored = 0
            for name in PARAMETERS:
                expected = _covering(answered[bus.name], unit, name)
                got = values[(device, name)]
                due, stored = due + expected, stored + got
                if expected > got:
                    result.lost_by[(device, name)] = expected - got
                    result.lost += expected - got
                result.unexplained += max(0, got - expected)
                result.missing += [
                    (device, tick, name)
                    for tick in result.ticks.get(bus.name, [])
                    if not per_tick[(device, name, tick)]
                ]
            result.per_device[device] = (due, stored)
            result.answered += due
    return result
