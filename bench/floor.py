"""Bytewax's own floor: a flow whose one partition has nothing to do, for ``bench/scale.py``.

Bytewax 0.21's worker parks for at most 1 ms between steps and takes the GIL each time, so
even an idle flow costs a few percent of a core; the idle figure of the acquisition flow is
read against this one.

    python -m bytewax.run bench.floor:flow
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink

__all__ = ["flow"]


class _Nothing(StatefulSourcePartition[None, None]):
    """Emits nothing and asks to be woken once a second, like an idle bus partition."""

    def next_batch(self) -> list[None]:
        return []

    def next_awake(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=1)

    def snapshot(self) -> None:
        return None


class _NothingSource(FixedPartitionedSource[None, None]):
    def list_parts(self) -> list[str]:
        return ["nothing"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Nothing:
        return _Nothing()


flow = Dataflow("bench_floor")
op.output("out", op.input("in", flow, _NothingSource()), TestingSink([]))
