"""Stepping down: a merged read a device does not answer, tried again in smaller reads.

Some devices and gateways let a read longer than they take time out, or answer it with a
garbled frame, instead of rejecting it with exception 2. :func:`send` tries such a read again
at once in two halves (:func:`connectors.registers.halve_read`), and those in halves, down to
one parameter per read; the poller keeps the smaller reads that answered in the device's plan.
"""

from __future__ import annotations

from typing import NamedTuple

from connectors.bus import Device
from connectors.registers import Read, halve_read
from connectors.request import Outcome, Wire
from connectors.sample import ErrorKind, Sample

__all__ = ["Sent", "send"]


class Sent(NamedTuple):
    """How a read went: its outcome and, when it was stepped down and a smaller read
    answered, the reads sent in its place and those still to send this tick (else None, [])."""

    outcome: Outcome
    sent: list[Read] | None
    unsent: list[Read]


async def send(
    wire: Wire,
    device: Device,
    read: Read,
    tick: int,
    out: list[Sample],
    skipped: tuple[ErrorKind, str],
) -> Sent:
    """Send ``read`` to ``device``, appending its samples to ``out``; a merged read that times
    out or comes back garbled is tried again at once in halves. A half that fails too means
    the device went silent: the parameters not sent get ``skipped`` rows (or the lost
    connection's), and nothing is stepped down. A half rejected with exception 2 gives
    FALLBACK for the whole read, as a merged read rejected so does. (The poller sends a read
    of one parameter, or one of a device that may not step down, itself.)"""
    halves = halve_read(read)
    answer = await wire.call(device, read.table, read.address, read.count)
    outcome = wire.took(
        device, read, answer, tick, out, fallback=len(read.parameters) > 1, step_down=bool(halves)
    )
    if outcome is not Outcome.STEP_DOWN:
        return Sent(outcome, None, [])
    first, second = halves
    outcome, sent, unsent = await send(wire, device, first, tick, out, skipped)
    if outcome is Outcome.FALLBACK:
        return Sent(outcome, None, [])
    if outcome is not Outcome.ANSWERED:
        failure = skipped
        if outcome is Outcome.LOST:
            failure = (ErrorKind.CONNECTION_LOST, wire.lost or "connection lost")
        wire.not_sent(device, [*unsent, second], tick, failure, out)
        return Sent(outcome, None, [])
    return Sent(outcome, sent or [first], [*unsent, second])
