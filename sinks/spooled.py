"""Spool and forward: a sink whose backend fails never stops the rows that reach it.

:class:`IntoSpooled` wraps any sink. Its partition hands every backend call (open, write,
close) to one thread of its own, so a backend that needs a thread of its own (SQLite) or
hangs (a black-holed connection) never blocks the worker for longer than the write it waits
for. While the backend is healthy, ``write_batch`` waits for the backend to take the batch,
as the bare sink would. When the backend fails with :class:`SinkUnavailableError` (down,
unreachable, a full disk, a file that cannot be written; at start too), or a write to a sink
that stores each row once (:attr:`IntoSink.idempotent`) takes longer than
``write_timeout_s``, the batch goes to the spool (:mod:`sinks.spool`, fsynced before
``write_batch`` returns) and the partition is *spooling*: later batches go to the spool,
behind it, while the thread retries the backend after ``backoff_s``, doubled at each failure
up to ``backoff_max_s``, and forwards the spool in order; when it is empty the partition is
*writing* again. A spool left by an earlier run (a crash, kill -9, a run that ended while
spooling) is forwarded first, with or without Bytewax recovery; worker ``i`` also takes the
spools of workers that no longer exist (``j >= worker_count``, ``j % worker_count == i``).

A backend error no retry can fix (any other SinkError, or an unexpected exception) and a
spool above ``max_mb`` make the partition *failed*: it calls ``on_fatal`` with one line
naming the sink (the acquisition flow then ends the run, exit code 3) and keeps spooling
what still comes, so nothing is dropped; the batch the backend refused is kept apart in
``<name>-w<worker>-rejected.spool``. Without ``on_fatal`` that error is raised instead.
``close`` never raises: it gives the backend one last chance to take the spool (up to
``write_timeout_s`` when the sink is idempotent), closes it, and logs what stays spooled.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sinks.base import IntoSink, Schema, SinkTarget
from sinks.spooled_partition import SpooledPartition, SpoolState, states

__all__ = ["IntoSpooled", "SpoolState", "states"]


@dataclass(frozen=True)
class IntoSpooled(IntoSink):
    """``sink`` with a spool in ``directory`` (see the module docstring).

    ``name``: the spool files' stem, stable across runs (``<name>-w<worker>.spool``).
    ``where``: how messages name the sink (default: the sink's repr). ``max_mb``: the most
    the spool may hold. ``on_fatal``: called with one line when the sink fails for good.
    """

    sink: IntoSink
    directory: Path
    name: str
    where: str = ""
    max_mb: float = 512.0
    write_timeout_s: float = 2.0
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    on_fatal: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,99}", self.name):
            raise ValueError(f"IntoSpooled.name: {self.name!r} is not a file name stem")
        for key in ("max_mb", "write_timeout_s", "backoff_s", "backoff_max_s"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"IntoSpooled.{key}: {value!r} is not a number above 0")

    @property  # type: ignore[override]
    def schema(self) -> Schema | None:  # type: ignore[override]
        """The wrapped sink's schema."""
        return self.sink.schema

    @property
    def target(self) -> SinkTarget:
        """The wrapped sink's target."""
        return self.sink.target

    @property
    def idempotent(self) -> bool:
        """Whether the wrapped sink stores a batch written twice once."""
        return self.sink.idempotent

    def with_schema(self, schema: Schema | None) -> IntoSpooled:
        """This spool in front of the wrapped sink writing ``schema``."""
        return dataclasses.replace(self, sink=self.sink.with_schema(schema))

    def build_partition(self, worker_index: int, worker_count: int) -> SpooledPartition:
        """Open this worker's spool (taking what earlier runs left) and its backend."""
        return SpooledPartition(self, worker_index, worker_count)
