"""The live status line, logged at INFO on the ``flows.status`` logger every interval.

One line per worker and interval, about that worker's buses only::

    status: buses 2/2 up, devices 5/6 answering; last 10.0 s: 230 rows (23.0 rows/s),
    0 late ticks, 4 errors (worst lab-tcp/dead: 4, 'timeout: no response')

(one line; with several workers it starts ``status (worker 1/2, its buses):``). A bus is up
when its last tick had a read that did not fail; a device answers when its last row is not
an error; rows, late ticks and errors count the interval since the previous line; the worst
device is the one with the most error rows in it, with its last error
(flows.observe.figures.DeviceFigures.last_error). The line is logged with the first batch after
each interval has passed.

The line ends with the worker's spooled sink partitions (sinks.spooled.states()):
``; sinks 3/3 writing`` while every one writes, else each sink that is not writing, with the
rows waiting in its spool, the age of the oldest, the failed attempts so far and the last
error (cut to 160 characters)::

    ; sinks 1/2 writing; sink[1] postgres 127.0.0.1:5432/test.public.samples: spooling
    340 rows, oldest 12.3 s, 4 retries ('cannot connect: connection refused')
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from flows.observe.figures import Figures, sink_states
from sinks.spooled import SpoolState, states

__all__ = ["LOGGER", "StatusLine", "log_to_stderr", "sinks_text"]

LOGGER = logging.getLogger("flows.status")

ERROR_CHARS = 160  # of a sink's last error in the line


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters in its middle: an error says where it happened
    first and why last (``... ConnectionRefusedError: ...``)."""
    if len(text) <= limit:
        return text
    head = (limit - 5) * 2 // 3
    return f"{text[:head]} ... {text[head - limit + 5 :]}"


def sinks_text(sinks: Sequence[SpoolState]) -> str:
    """The sinks part of the status line for ``sinks`` (closed ones left out): ``sinks 3/3
    writing``, then ``; <where>: spooling ...`` or ``failed ...`` for each that is not
    writing; "" when there is none."""
    live = [s for s in sinks if s.state != "closed"]
    if not live:
        return ""
    parts = [f"sinks {sum(s.state == 'writing' for s in live)}/{len(live)} writing"]
    for s in live:
        if s.state == "writing":
            continue
        what = [
            f"spooling {s.rows_spooled} rows"
            if s.state == "spooling"
            else f"{s.state}, {s.rows_spooled} rows spooled"
        ]
        if s.oldest_age_s is not None:
            what.append(f"oldest {s.oldest_age_s:.1f} s")
        what.append(f"{s.retries} retries")
        text = f"{s.where}: {', '.join(what)}"
        if s.last_error:
            text += f" ({_cut(s.last_error, ERROR_CHARS)!r})"
        parts.append(text)
    return "; ".join(parts)


def log_to_stderr() -> None:
    """Send the status lines to stderr, unless logging already has somewhere to send them
    (a handler on ``flows.status`` or on the root logger)."""
    if LOGGER.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)


class StatusLine:
    """Logs a status line of ``figures`` every ``interval_s`` seconds of ``clock``, with the
    states of worker ``worker_index``'s spooled sink partitions among ``spools()``."""

    def __init__(
        self,
        figures: Figures,
        interval_s: float,
        clock: Callable[[], float],
        worker_index: int,
        worker_count: int,
        spools: Callable[[], Sequence[SpoolState]] = states,
    ) -> None:
        self.figures, self.interval_s, self.clock = figures, interval_s, clock
        self.worker, self.spools = worker_index, spools
        self.label = (
            f" (worker {worker_index + 1}/{worker_count}, its buses)" if worker_count > 1 else ""
        )
        self.started = clock()
        self.due = self.started + interval_s
        self.rows = 0
        self.late = 0
        self.errors: dict[str, int] = {}

    def maybe_log(self) -> None:
        """Log the line if the interval has passed (cheap when it has not)."""
        now = self.clock()
        if now < self.due:
            return
        line = self.line(now - self.started)
        self.started = now
        self.due = max(self.due + self.interval_s, now)
        LOGGER.info(line)

    def line(self, elapsed_s: float) -> str:
        """The status since the previous line (``elapsed_s`` ago); starts the next interval."""
        f = self.figures
        devices = list(f.devices.values())
        buses = f.bus_names()
        up = sum(
            f.buses[b].up if b in f.buses else any(d.answering for d in devices if d.bus == b)
            for b in buses
        )
        rows = sum(d.rows for d in devices)
        late = sum(f.bus_late(b) for b in buses)
        new_errors = {d.device: d.errors - self.errors.get(d.device, 0) for d in devices}
        errors = sum(new_errors.values())
        text = (
            f"status{self.label}: buses {up}/{len(buses)} up, "
            f"devices {sum(d.answering for d in devices)}/{len(devices)} answering; "
            f"last {elapsed_s:.1f} s: {rows - self.rows} rows "
            f"({(rows - self.rows) / max(elapsed_s, 1e-9):.1f} rows/s), "
            f"{late - self.late} late ticks, {errors} errors"
        )
        if errors:
            name = max(new_errors, key=lambda n: new_errors[n])
            worst = f.devices[name]
            text += f" (worst {worst.bus}/{name}: {new_errors[name]}, {worst.last_error!r})"
        sinks = sinks_text(sink_states(self.spools(), self.worker))
        if sinks:
            text += "; " + sinks
        self.rows, self.late = rows, late
        self.errors = {d.device: d.errors for d in devices}
        return text
