"""Bytewax's own floor: a flow whose one partition has nothing to do, for ``bench/scale.py``
and ``bench/poll.py``.

Bytewax 0.21's worker parks for at most 1 ms between steps and takes the GIL each time, so
even an idle flow costs a few percent of a core; the idle figure of the acquisition flow is
read against this one.

    python -m bytewax.run bench.floor:flow
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink

__all__ = ["flow", "idle_flow"]


class _Nothing(StatefulSourcePartition[None, None]):
    """Emits nothing and asks to be woken once a second, like an idle bus partition; with
    ``until`` (a ``time.monotonic()`` instant) it ends then."""

    def __init__(self, until: float | None) -> None:
        self._until = until

    def next_batch(self) -> list[None]:
        if self._until is not None and time.monotonic() >= self._until:
            raise StopIteration
        return []

    def next_awake(self) -> datetime:
        wait = 1.0 if self._until is None else min(1.0, self._until - time.monotonic())
        return datetime.now(timezone.utc) + timedelta(seconds=max(wait, 0.0))

    def snapshot(self) -> None:
        return None


class _NothingSource(FixedPartitionedSource[None, None]):
    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds

    def list_parts(self) -> list[str]:
        return ["nothing"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Nothing:
        until = None if self._seconds is None else time.monotonic() + self._seconds
        return _Nothing(until)


def idle_flow(seconds: float | None = None) -> Dataflow:
    """The idle flow; it ends after ``seconds`` (None: runs until stopped)."""
    idle = Dataflow("bench_floor")
    op.output("out", op.input("in", idle, _NothingSource(seconds)), TestingSink([]))
    return idle


flow = idle_flow()
