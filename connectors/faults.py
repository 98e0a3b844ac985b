"""Fault bookkeeping for the poller: backing off silent devices, reopening lost connections.

Pure state machines (no I/O, clock injected), so the poller only asks them what to do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = [
    "BACKOFF_AFTER",
    "BACKOFF_CAP",
    "EXCEPTION_NAMES",
    "DeviceBackoff",
    "Reconnect",
    "exception_text",
]

BACKOFF_AFTER = 3  # ticks in a row without an answer before a device is backed off
BACKOFF_CAP = 32  # at most every 32nd tick
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def exception_text(code: int) -> str:
    """A Modbus exception code as a row's error text, e.g. ``illegal data address (2)``."""
    return f"{EXCEPTION_NAMES.get(code, 'exception')} ({code})"


class DeviceBackoff:
    """Whether to poll one device this tick.

    A device that gave no answer (every request timed out) in ``after`` polled ticks in a
    row is polled only every k-th tick, k = 2 and doubling after each further silent poll
    up to ``cap``. Ticks count as they are run (slots skipped for lateness do not count).
    One answer of any kind (a value, an exception response, even a bad frame: something
    is there) brings it back to every tick.
    """

    def __init__(self, after: int = BACKOFF_AFTER, cap: int = BACKOFF_CAP) -> None:
        self.after, self.cap = after, cap
        self.silent = 0  # polled ticks in a row without an answer
        self.every = 1  # polled every k-th tick
        self._skip = 0  # ticks still to skip

    @property
    def backed_off(self) -> bool:
        """Whether the device is polled less than every tick."""
        return self.every > 1

    @property
    def reason(self) -> str:
        """The error text of the rows of a skipped tick."""
        return f"backoff: not polled after {self.silent} timeouts"

    def due(self) -> bool:
        """Call once per tick: True to poll the device now, False to skip it (backoff)."""
        if self._skip > 0:
            self._skip -= 1
            return False
        return True

    def record(self, answered: bool | None) -> None:
        """What a polled tick gave: True an answer, False only timeouts, None no verdict
        (nothing was sent, e.g. the connection was down)."""
        if answered is None:
            return
        if answered:
            self.silent, self.every, self._skip = 0, 1, 0
            return
        self.silent += 1
        if self.silent >= self.after:
            self.every = 2 if self.every == 1 else min(self.every * 2, self.cap)
            self._skip = self.every - 1


class Reconnect:
    """When to try opening a bus's connection again.

    The first attempt after a loss is at once; after each failed attempt the next waits
    0.5 s, then twice as long each time up to 30 s. A success resets it.
    """

    def __init__(
        self,
        first_s: float = RECONNECT_FIRST_S,
        max_s: float = RECONNECT_MAX_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_s, self.max_s, self.clock = first_s, max_s, clock
        self.delay = 0.0  # the wait after the last failed attempt
        self.next_at = -math.inf
        self.down_since: float | None = None
        self.error: str | None = None  # the last attempt's or the loss's error text
        self.attempts = 0  # failed attempts since the connection was last up

    def due(self) -> bool:
        """Whether an attempt may be made now."""
        return self.clock() >= self.next_at

    def lost(self, error: str) -> None:
        """The connection dropped (``error`` says how); the next attempt is at once."""
        if self.down_since is None:
            self.down_since = self.clock()
        self.error, self.next_at = error, -math.inf

    def failed(self, error: str) -> None:
        """An attempt failed: wait 0.5 s, 1 s, 2 s ... 30 s before the next."""
        now = self.clock()
        if self.down_since is None:
            self.down_since = now
        self.delay = self.first_s if self.delay == 0 else min(self.delay * 2, self.max_s)
        self.next_at, self.error = now + self.delay, error
        self.attempts += 1

    def connected(self) -> float | None:
        """An attempt succeeded; returns how long the connection was down (None if it was
        not known to be down)."""
        down = None if self.down_since is None else self.clock() - self.down_since
        self.delay, self.next_at, self.down_since, self.error = 0.0, -math.inf, None, None
        self.attempts = 0
        return down

    def outage_text(self) -> str:
        """The error text of the rows while waiting for the next attempt."""
        wait = max(0.0, self.next_at - self.clock())
        return f"{self.error or 'connection lost'}; reconnecting in {wait:.1f} s"
