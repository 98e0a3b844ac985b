"""The one event loop thread every bus partition of a process polls on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading
from collections.abc import Coroutine
from typing import Any, ClassVar

__all__ = ["LoopThread", "new_loop", "settle_gc"]

# Tracked objects allocated (net) before a young-generation collection; Python's default is 700.
_GC_YOUNG = 10_000


def settle_gc() -> None:
    """Keep the cyclic garbage collector off the long-lived heap once polling starts.

    Samples and rows die by reference counting, but at 700 allocations a collection came
    every few milliseconds and found thousands of them still queued: promoted, they set off
    full collections over every device's plan, decoders and simulated registers (about 100
    objects a device), which held the GIL for up to half a second and made every bus of the
    process late (bench/scale.py, 768 buses). What exists when a partition starts is frozen
    out of collections (``gc.freeze``), and young collections come less often. A threshold
    the user set higher is kept. Garbage is collected first, or frozen cycles would never be
    freed: the first partition pays one full collection, the next ones only what is new.
    """
    gc.collect()
    gc.freeze()
    young, *older = gc.get_threshold()
    if young and young < _GC_YOUNG:
        gc.set_threshold(_GC_YOUNG, *older)


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (a dependency except on Windows), else
    asyncio's. Polling over uvloop costs about a quarter less CPU per read (bench/poll.py);
    its timers count whole milliseconds, which the poller's waits allow for."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """One event loop on a daemon thread, shared by every bus partition of the process.

    A thread per bus would leave hundreds of threads fighting for the GIL at each tick
    (and starting them would take seconds); one loop runs all the buses' I/O as tasks.
    The loop starts with the first partition and stops after the last one closes.
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _shared: ClassVar[LoopThread | None] = None

    def __init__(self) -> None:
        self.loop = new_loop()
        self.users = 0
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="controller-source-loop", daemon=True
        )
        self.thread.start()

    @classmethod
    def submit(cls, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        """Run ``coro`` on the shared loop; call :meth:`release` once it is done with."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            cls._shared.users += 1
            return asyncio.run_coroutine_threadsafe(coro, cls._shared.loop)

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            shared = cls._shared
            assert shared is not None
            shared.users -= 1
            if shared.users:
                return
            cls._shared = None
        shared.loop.call_soon_threadsafe(shared.loop.stop)
        shared.thread.join()
        shared.loop.close()
