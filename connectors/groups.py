"""Poll groups: which of a device's reads are due in a tick.

A parameter is read every tick, every ``every_s`` seconds (a whole number of ticks), or once
per connection (``every_s = "connect"``: identity and configuration registers), by its own
``every_s`` or else its device's. Each group has its own read plan, so a read never holds a
parameter that is not due. A group of every N ticks is due in the ticks where
``(tick + phase) % N == 0``; the phase comes from the device's name and N, so the slow groups
of a bus's devices are spread over the ticks, and the same across runs (tick numbers are
absolute, so a resumed run keeps them).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from connectors.bus import Device
from connectors.registers import Read

__all__ = ["PollGroup", "poll_groups", "ticks_of"]


@dataclass
class PollGroup:
    """One poll group of a device: ``every`` ticks (None: once per connection) and its plan,
    which the poller may refine (a fallback, a step-down, what the device says of itself)."""

    every: int | None
    phase: int
    plan: list[Read]
    pending: bool = field(default=True)  # a connect group not yet answered on this connection

    def due(self, tick: int) -> bool:
        """Whether this group is read in ``tick``."""
        if self.every is None:
            return self.pending
        return (tick + self.phase) % self.every == 0


def ticks_of(every_s: float, rate_hz: float) -> int | None:
    """``every_s`` as a whole number of ticks at ``rate_hz``; None when it is not one."""
    ticks = every_s * rate_hz
    whole = round(ticks)
    return whole if whole >= 1 and abs(ticks - whole) <= 1e-6 * max(1.0, ticks) else None


def poll_groups(device: Device, rate_hz: float) -> list[PollGroup]:
    """``device``'s poll groups at ``rate_hz``: the connect group first, then by period (every
    tick first). Each plan has the reads holding a register that describes the device (its
    units) first, so what it says holds for the values read after it in the same tick.
    ValueError for a period that is not a whole number of ticks (the config checks it)."""

    def describes(read: Read) -> bool:
        return any(d.within(read.table, read.address, read.count) for d in device.describe)

    groups = []
    for every_s, parameters in device.groups().items():
        plan = sorted(device.plan(parameters), key=lambda read: not describes(read))
        if every_s == "connect":
            groups.append(PollGroup(None, 0, plan))
            continue
        every = 1 if every_s is None else ticks_of(float(every_s), rate_hz)
        if every is None:
            raise ValueError(f"{device.name}: every_s = {every_s} is not a whole number of ticks")
        phase = zlib.crc32(f"{device.name}/{every}".encode()) % every
        groups.append(PollGroup(every, phase, plan))
    groups.sort(key=lambda g: -1 if g.every is None else g.every)
    return groups
