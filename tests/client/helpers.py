"""Helpers for client tests: one time unit, bounded waits, event recording.

Timeouts are multiples of ``MS``, scaled by ``LIVEWIDGETS_TEST_TIMEOUT_FACTOR`` on
slow machines. Waits poll a condition until a deadline (never sleep-then-assert).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from livewidgets.client import Backoff
from livewidgets.client.events import EVENTS

MS = 0.001 * float(os.environ.get("LIVEWIDGETS_TEST_TIMEOUT_FACTOR", "1"))
TIMEOUT = 5000 * MS
POLL = 2 * MS

# Connect options that make every fault heal within a few hundred milliseconds.
FAST: dict[str, Any] = {
    "backoff": Backoff(initial=20 * MS, cap=200 * MS, minimum=5 * MS),
    "heartbeat_interval": 200 * MS,
    "heartbeat_timeout": 400 * MS,
    "ack_timeout": 1000 * MS,
    "open_timeout": 1000 * MS,
}


async def eventually(
    predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition"
) -> Any:
    """Wait (asyncio) until ``predicate()`` is truthy; return it. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.3f} s")
        await asyncio.sleep(POLL)


def eventually_sync(
    predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition"
) -> Any:
    """Thread twin of :func:`eventually`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.3f} s")
        time.sleep(POLL)


class Recorder:
    """Records every named event of a session, in order, from any thread."""

    def __init__(self, session: Any, names: Any = EVENTS) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._offs = [session.on(name, self._record(name)) for name in sorted(names)]

    def _record(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(payload: dict[str, Any]) -> None:
            with self._lock:
                self.events.append((name, payload))

        return record

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.events]

    def of(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [payload for n, payload in self.events if n == name]

    def count(self, name: str) -> int:
        return len(self.of(name))

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    def close(self) -> None:
        for off in self._offs:
            off()


async def abandon(session: Any) -> None:
    """Close a session that still has pending writes, whatever state its engine is in.

    Works around Engine._finish failing on pending handles (an AttributeError that can
    also kill the engine task): pending writes are dropped first, and a task that
    already died of it is not awaited again. Only for tests that expose that bug.
    """
    engine = session._engine
    engine.core.pending.clear()
    task = engine._task
    if task is not None and task.done() and not task.cancelled() and task.exception():
        engine._task = None
    await session.close()
