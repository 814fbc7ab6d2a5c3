"""Delivers the protocol's user-facing events: acks, listeners, named events.

The engine hands every action it does not carry out itself (sockets, timers) to
:meth:`Dispatcher.deliver`, outside its lock: callbacks may write again. Acks are
settled here, on the thread that produced the event; the application's callbacks
(subscriptions, named events, change listeners) go to ``callbacks``, which runs them
on the session's callback thread for threaded sessions (client.callbacks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..errors import AuthExpired, ConnectionRefused, JoinRefused
from . import protocol as lifecycle
from .ack import rejection
from .callbacks import Callbacks
from .core import Acked, Changed, Failed, JoinedRoom, PresenceChanged, Resync
from .events import Emitter, Subscriptions
from .metrics import Metrics

__all__ = ["Dispatcher"]

log = logging.getLogger("livewidgets.client")


class Dispatcher:
    """One room's listeners and events, and the future that ``connect()`` waits on."""

    def __init__(
        self, room: str, client_id: str, metrics: Metrics, callbacks: Callbacks | None = None
    ) -> None:
        self.room = room
        self.client_id = client_id
        self.metrics = metrics
        self.callbacks = callbacks or Callbacks(metrics, threaded=False)
        self.events = Emitter(self.callbacks)
        self.subscriptions = Subscriptions(self.callbacks)
        self.change_listeners: list[Callable[..., Any]] = []
        # Set by the engine's start(): resolved by the first joined, failed by a refusal.
        self.joined: asyncio.Future[None] | None = None
        # The last error the relay sent outside any room (e.g. why it refused us).
        self.last_error: dict[str, Any] | None = None
        # Why the last refused attempt was refused (for connect()'s timeout message),
        # and the relay that attempt dialed (set by the engine as it dials).
        self.last_refusal: ConnectionRefused | None = None
        self.url = ""

    def deliver(self, action: Any) -> None:
        """Carry out one event action (KeyError for an action that is not an event)."""
        _HANDLERS[type(action)](self, action)

    def add_change_listener(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """``listener(change)`` with the core's :class:`Changed` event on each visible change."""
        self.change_listeners.append(listener)
        return lambda: (
            self.change_listeners.remove(listener) if listener in self.change_listeners else None
        )

    def fail_joined(self, error: BaseException) -> None:
        """A pending ``connect()`` fails with ``error`` (nothing if it already ended)."""
        if self.joined is not None and not self.joined.done():
            self.joined.set_exception(error)
            self.joined.exception()  # mark retrieved: nobody may be waiting

    # --- the room's events ------------------------------------------------------------

    def _on_changed(self, event: Changed) -> None:
        self.subscriptions.notify(event.before, event.after)
        for listener in list(self.change_listeners):
            self.callbacks(listener, event)

    def _resolve(self, event: Acked) -> None:
        now = time.monotonic()
        for ack, created in event.handles:
            self.metrics.rtt_samples.append(now - created)
            ack.resolve(event.version)

    def _fail(self, event: Failed) -> None:
        self.metrics.rejects += 1
        error = rejection(
            event.code,
            event.message,
            path=event.path,
            current=event.current,
            current_version=event.current_version,
        )
        payload = {
            "error": error,
            "code": event.code,
            "message": event.message,
            "path": event.path,
            "ops": event.ops,
            "current": event.current,
            "current_version": event.current_version,
        }
        for ack, _ in event.handles:
            ack.fail(error)
        self.events.emit("conflict" if event.code == "conflict" else "rejected", payload)

    def _on_presence(self, event: PresenceChanged) -> None:
        kind = "join" if event.before is None else "leave" if event.after is None else "update"
        payload = {
            "client_id": event.client_id,
            "kind": kind,
            "before": event.before,
            "after": event.after,
        }
        self.events.emit("presence", payload)

    def _on_joined(self, event: JoinedRoom) -> None:
        if self.joined is not None and not self.joined.done():
            self.joined.set_result(None)

    def _on_resync(self, event: Resync) -> None:
        log.warning("[livewidgets] resynchronising room %r: %s", self.room, event.reason)

    # --- the connection's events ------------------------------------------------------

    def _on_relay_error(self, action: lifecycle.RelayError) -> None:
        if action.during is None:
            self.last_error = {"code": action.code, "message": action.message, "ref": action.ref}
            self.events.emit("error", dict(self.last_error))
        else:
            self.last_error = {"code": action.code, "message": action.message}
            self.events.emit("error", {**self.last_error, "during": action.during})

    def _on_refused(self, action: lifecycle.Refused) -> None:
        """A refused join also fails a pending connect()."""
        self.fail_joined(JoinRefused(action.code.value, action.message))

    def _on_refused_connection(self, action: lifecycle.RefusedConnection) -> None:
        """Say why an attempt was refused; a final refusal also fails connect()."""
        error = self.last_refusal = action.refusal.error(self.url)
        details = {"reason": error.reason, "transient": not action.final}
        self.events.emit("error", {"error": error, "during": "connect", **details})
        if action.final:
            self.fail_joined(error)

    def _on_failed_connection(self, action: lifecycle.ConnectionFailed) -> None:
        self.events.emit("error", {"error": action.error, "during": action.during})

    def _on_gave_up(self, action: lifecycle.GaveUp) -> None:
        self.events.emit("reconnect_failed", {"attempts": action.attempts})

    def _on_auth_expired(self, action: lifecycle.AuthExpiredEvent) -> None:
        error = AuthExpired("the token expired; pass token_refresh= to renew it")
        self.events.emit("auth_expired", {"error": error})

    def _on_my_presence(self, action: lifecycle.MyPresence) -> None:
        self.events.emit("my_presence", {"client_id": self.client_id, "state": action.fields})


_HANDLERS: dict[type, Callable[[Dispatcher, Any], None]] = {
    Changed: Dispatcher._on_changed,
    Acked: Dispatcher._resolve,
    Failed: Dispatcher._fail,
    PresenceChanged: Dispatcher._on_presence,
    JoinedRoom: Dispatcher._on_joined,
    Resync: Dispatcher._on_resync,
    lifecycle.RelayError: Dispatcher._on_relay_error,
    lifecycle.Refused: Dispatcher._on_refused,
    lifecycle.RefusedConnection: Dispatcher._on_refused_connection,
    lifecycle.ConnectionFailed: Dispatcher._on_failed_connection,
    lifecycle.GaveUp: Dispatcher._on_gave_up,
    lifecycle.AuthExpiredEvent: Dispatcher._on_auth_expired,
    lifecycle.MyPresence: Dispatcher._on_my_presence,
}
