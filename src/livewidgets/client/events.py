"""Subscriptions to paths and named events, with isolated handlers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..state.ops import get_path
from ..state.paths import parse_path

__all__ = ["EVENTS", "Emitter", "Invoke", "Subscriptions", "call_isolated"]

log = logging.getLogger("livewidgets.client")

EVENTS = frozenset(
    {
        "connecting",
        "connected",
        "disconnected",
        "reconnecting",
        "reconnect_failed",
        "closed",
        "conflict",
        "rejected",
        "presence",
        "my_presence",
        "auth_expired",
        "token_renewed",
        "error",
    }
)


def call_isolated(callback: Callable[..., Any], *args: Any) -> None:
    """Run one handler; its exception is logged, never passed to the engine or other handlers."""
    try:
        callback(*args)
    except Exception:
        log.exception("[livewidgets] handler %r failed", callback)


# Runs one handler: inline (call_isolated), or on the session's callback thread
# (client.callbacks.Callbacks).
Invoke = Callable[..., None]


class Emitter:
    """Named events (``session.on("connected", cb)``)."""

    def __init__(self, invoke: Invoke = call_isolated) -> None:
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._lock = threading.Lock()
        self._invoke = invoke

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback(payload_dict)`` on ``event``; returns a function that unsubscribes."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(sorted(EVENTS))}")
        with self._lock:
            self._handlers.setdefault(event, []).append(callback)

        def off() -> None:
            with self._lock:
                handlers = self._handlers.get(event, [])
                if callback in handlers:
                    handlers.remove(callback)

        return off

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        with self._lock:
            handlers = list(self._handlers.get(event, ()))
        for handler in handlers:
            self._invoke(handler, payload)


class Subscriptions:
    """Path subscriptions: a callback fires once per visible change at or below its path."""

    def __init__(self, invoke: Invoke = call_isolated) -> None:
        self._subs: list[tuple[str, Callable[[Any, str], Any]]] = []
        self._lock = threading.Lock()
        self._invoke = invoke

    def add(self, path: str, callback: Callable[[Any, str], Any]) -> Callable[[], None]:
        parse_path(path, allow_root=True)
        entry = (path, callback)
        with self._lock:
            self._subs.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subs:
                    self._subs.remove(entry)

        return unsubscribe

    def notify(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """Call each subscriber whose value differs between the two roots."""
        with self._lock:
            subs = list(self._subs)
        for path, callback in subs:
            old, new = get_path(before, path), get_path(after, path)
            # Identity first: untouched subtrees are shared, so most checks stop here.
            if old is new or (type(old) is type(new) and old == new):
                continue
            self._invoke(callback, new, path)
