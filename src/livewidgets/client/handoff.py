"""The engine's thread boundary: frames from any thread to the loop, and waiting for room.

Writes come from user threads (a notebook cell) while the socket belongs to one
asyncio loop. :class:`Handoff` carries frames across in the order they were made,
at one loop wake-up per burst (not one ``call_soon_threadsafe`` per write).
:class:`Waiters` lets a user thread block until the protocol has room for its write,
or until nothing is pending (``flush``), on the engine's own lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import QueueFull, SessionClosed

__all__ = ["Handoff", "Waiters"]

T = TypeVar("T")


class Handoff:
    """Frames staged from any thread, handed to ``take(frames)`` on the loop thread."""

    def __init__(self, take: Callable[[list[Any]], None]) -> None:
        self._take = take
        # Set by the engine's start(); nothing crosses before that.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._frames: deque[Any] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, frames: list[Any]) -> None:
        """Stage frames (call under the engine lock, so threads cannot swap theirs)."""
        with self._lock:
            self._frames.extend(frames)

    def clear(self) -> None:
        """Drop staged frames (they were for a connection that ended)."""
        with self._lock:
            self._frames.clear()

    def kick(self) -> None:
        """Have the loop take the staged frames (once per burst)."""
        with self._lock:
            if self._scheduled or not self._frames:
                return
            self._scheduled = True
        self.call_in_loop(self._drain)

    def _drain(self) -> None:
        with self._lock:
            frames = list(self._frames)
            self._frames.clear()
            self._scheduled = False
        self._take(frames)

    def on_loop_thread(self) -> bool:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return running is self.loop

    def call_in_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop: now if this is its thread, else soon (dropped once
        the loop is closed)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        if self.on_loop_thread():
            fn()
        else:
            loop.call_soon_threadsafe(fn)


class Waiters:
    """User threads waiting on the engine lock for the protocol to make progress."""

    def __init__(self, lock: threading.RLock) -> None:
        self._changed = threading.Condition(lock)

    def notify(self) -> None:
        """Something happened (an ack, a close): waiting threads look again."""
        with self._changed:
            self._changed.notify_all()

    def retry_while_full(self, attempt: Callable[[float], T], timeout: float) -> T:
        """``attempt(now)`` under the lock until it does not raise QueueFull, waiting for
        acks to free room for at most ``timeout`` seconds (then QueueFull is raised)."""
        deadline: float | None = None
        with self._changed:
            while True:
                now = time.monotonic()
                try:
                    return attempt(now)
                except QueueFull:
                    if deadline is None:
                        deadline = now + timeout
                    if now >= deadline:
                        raise
                    # Wakes on every batch of actions; the lock is released meanwhile.
                    self._changed.wait(min(deadline - now, 1.0))

    def wait_idle(
        self, pending: Callable[[], int], closed: Callable[[], bool], timeout: float | None
    ) -> None:
        """Block until ``pending()`` is 0 (SessionClosed if ``closed()`` first,
        TimeoutError after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while count := pending():
                if closed():
                    raise SessionClosed("the session closed with writes still pending")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{count} writes still pending after {timeout} s")
                self._changed.wait(remaining if remaining is not None else 1.0)
