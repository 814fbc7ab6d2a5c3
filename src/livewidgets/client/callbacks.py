"""Where a session's user callbacks run: ``subscribe``, ``on`` and change listeners.

For a threaded session (``livewidgets.connect``) they run in order on a thread of the
session's own, never on the I/O loop: that loop is shared by every session of the
process, so a slow callback there would hold up heartbeats, acks and every other
session (docs/threads.md). The application's own writes queue their callbacks
behind the ones before them, in the same order, without waiting for them (a writer
may hold a lock its callbacks need): ``s.flush()`` waits until they have run. For
an asyncio session they run inline, on the caller's own loop, as asyncio code
expects.

A callback that raises is logged and counted (``metrics["callback_errors"]``, shown
by ``%livewidgets status``); it never stops the engine or the callbacks after it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .metrics import Metrics

__all__ = ["Callbacks"]

log = logging.getLogger("livewidgets.client")

# A callback thread with nothing to do for this long ends (sessions that rarely get
# callbacks hold no thread); the next callback starts a new one.
IDLE_SECONDS = 2.0


class Callbacks:
    """Runs callbacks for one session: inline, or in order on its own thread."""

    def __init__(self, metrics: Metrics, *, threaded: bool, name: str = "callbacks") -> None:
        self.metrics = metrics
        self.threaded = threaded
        self._name = f"livewidgets-{name}"
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = 0  # callbacks taken off the queue and not finished
        self._closed = False

    def __call__(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)``: now (inline), or after those scheduled before it."""
        if not self.threaded:
            self._run_one(callback, args)
            return
        with self._cond:
            if self._closed:
                return
            self._queue.append((callback, args))
            if self._thread is None or not self._thread.is_alive():  # (or forked)
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    @property
    def pending(self) -> int:
        """Callbacks scheduled and not finished."""
        with self._cond:
            return len(self._queue) + self._running

    def on_callback_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until every callback scheduled so far has run (False on timeout). From a
        callback itself it returns at once: it cannot wait for itself."""
        if not self.threaded or self.on_callback_thread():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._running:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Run what is queued, then let the thread end; later callbacks are dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(IDLE_SECONDS)
                if not self._queue:
                    # Closed and drained, or idle: end; the next callback starts a thread.
                    self._thread = None
                    return
                callback, args = self._queue.popleft()
                self._running += 1
            try:
                self._run_one(callback, args)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def _run_one(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except Exception as exc:
            self.metrics.callback_errors += 1
            self.metrics.last_callback_error = (
                f"{getattr(callback, '__qualname__', callback)}: {exc!r}"
            )
            log.exception("[livewidgets] handler %r failed", callback)
