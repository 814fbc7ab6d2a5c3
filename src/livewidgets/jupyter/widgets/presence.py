"""``Presence`` (who is here) and ``ConnectionStatus`` (how this kernel's link is doing).

Both only display the session; the browser never writes through them.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import traitlets

from .. import _comms
from ._base import STATIC, LiveWidget, Ticker, initials, presence_color, presence_name

__all__ = ["ConnectionStatus", "Presence"]


def _label(state: dict[str, Any]) -> str:
    """Where a peer is: their cell, else the path their cursor is on."""
    cell = state.get("cell")
    if (isinstance(cell, int) and not isinstance(cell, bool)) or (
        isinstance(cell, str) and cell.isdigit()
    ):
        return f"cell {cell}"  # an execution count (the %livewidgets magic sets it)
    if cell not in (None, ""):
        return str(cell)
    cursors = state.get("cursors")
    if isinstance(cursors, dict) and cursors:
        return str(next(iter(cursors)))
    return ""


def activity(state: dict[str, Any], now: float | None = None) -> str:
    """What a peer's kernel does: "running a cell in analysis.ipynb, busy 40 s", "idle"."""
    kernel = state.get("kernel")
    if kernel != "busy":
        return "idle" if kernel == "idle" else ""
    notebook = state.get("notebook")
    where = f" in {str(notebook).rsplit('/', 1)[-1]}" if notebook else ""
    since = state.get("busy_since")
    if not isinstance(since, int | float) or isinstance(since, bool):
        return f"running a cell{where}"
    # Their clock, not ours: a peer on another machine may be off by a little.
    seconds = max(0, int((time.time() if now is None else now) - since))
    busy = f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"
    return f"running a cell{where}, busy {busy}"


def peer_entry(client_id: str, state: dict[str, Any], *, is_self: bool = False) -> dict[str, Any]:
    """One avatar of the presence bar (plain data for the front end)."""
    name = presence_name(state)
    status = state.get("status")
    return {
        "client_id": client_id,
        "user": str(state.get("user") or ""),
        "name": name,
        "initials": initials(name),
        "color": presence_color(state),
        "status": status if status in ("active", "idle", "offline") else "active",
        "label": _label(state),
        "kernel": str(state.get("kernel") or ""),
        "activity": activity(state),
        "notebook": str(state.get("notebook") or ""),
        "cell_id": str(state.get("cell_id") or ""),
        "joined_at": state.get("joined_at")
        if isinstance(state.get("joined_at"), int | float)
        else 0,
        "is_self": is_self,
    }


class Presence(LiveWidget):
    """A bar of avatars: everyone in the room (you first), dimmed when idle."""

    _esm = STATIC / "presence.js"

    # Avatars, in order: {client_id, user, name, initials, color, status, label,
    # kernel, activity, notebook, cell_id, joined_at, is_self}.
    peers = traitlets.List(traitlets.Dict()).tag(sync=True)
    include_self = traitlets.Bool(True).tag(sync=True)

    def __init__(
        self, session: Any = None, include_self: bool = True, refresh: float = 2.0, **kwargs: Any
    ) -> None:
        super().__init__(session=session, include_self=include_self, **kwargs)
        events = ("presence", "my_presence", "connected", "disconnected", "reconnecting", "closed")
        for event in events:
            self._own(self._session.on(event, self._on_event))
        self.observe(lambda _change: self._refresh(), "include_self")
        # Our own status (idle, offline) changes without any event.
        if refresh > 0:
            self._own(Ticker(refresh, self._refresh, "livewidgets-presence").start().stop)
        self._refresh()

    def _on_event(self, payload: dict[str, Any]) -> None:
        self._refresh()

    def _refresh(self) -> None:
        session = self._session
        peers = []
        if self.include_self:
            mine = getattr(session, "my_presence", None)
            state = dict(mine) if isinstance(mine, dict) else {}
            state.setdefault("user", session.user)
            if session.connection_state != "connected":
                state["status"] = "offline"
            peers.append(peer_entry(session.client_id, state, is_self=True))
        others = [
            peer_entry(cid, state)
            for cid, state in session.presence.items()
            if isinstance(state, dict)
        ]
        others.sort(key=lambda p: (p["joined_at"], p["name"], p["client_id"]))
        self._set_from_session(peers=peers + others)


class ConnectionStatus(LiveWidget):
    """A badge: connection state, reconnect attempt and countdown, RTT, queue depth,
    and how many of your widget changes wait for a running cell."""

    _esm = STATIC / "connection_status.js"

    # disconnected | connecting | connected | reconnecting | closed
    state = traitlets.Unicode("disconnected").tag(sync=True)
    attempt = traitlets.Int(0).tag(sync=True)
    # The next attempt starts ``retry_delay`` s after ``retry_id`` last changed (the
    # view counts down from when it saw the change: kernel and browser clocks differ).
    retry_delay = traitlets.Float(0.0).tag(sync=True)
    retry_id = traitlets.Int(0).tag(sync=True)
    rtt_ms = traitlets.Float(None, allow_none=True).tag(sync=True)
    queue_depth = traitlets.Int(0).tag(sync=True)
    in_flight = traitlets.Int(0).tag(sync=True)
    version = traitlets.Int(0).tag(sync=True)
    last_error = traitlets.Unicode("").tag(sync=True)
    # True after reconnect_failed: the session stopped trying.
    gave_up = traitlets.Bool(False).tag(sync=True)
    # Changes made in this kernel's widget views that wait behind a running cell (a
    # front end without kernel subshells; counted where ipykernel >= 7.4 tells).
    held = traitlets.Int(0).tag(sync=True)

    def __init__(self, session: Any = None, refresh: float = 1.0, **kwargs: Any) -> None:
        super().__init__(session=session, **kwargs)
        self._retry_ids = itertools.count(1)
        self._retry_at: float | None = None
        for event in (
            "connecting",
            "connected",
            "disconnected",
            "reconnecting",
            "reconnect_failed",
            "closed",
            "error",
        ):
            self._own(self._session.on(event, self._make_handler(event)))
        if refresh > 0:
            self._own(Ticker(refresh, self.refresh, "livewidgets-connection").start().stop)
        self.refresh()

    def _make_handler(self, event: str) -> Any:
        return lambda payload: self._on_event(event, payload)

    def _on_event(self, event: str, payload: dict[str, Any]) -> None:
        traits: dict[str, Any] = {}
        if event == "reconnect_failed":
            traits.update(
                gave_up=True,
                retry_delay=0.0,
                last_error=f"gave up after {payload.get('attempts', '?')} attempts",
            )
        elif event == "error":
            error = payload.get("error") or payload.get("message") or payload.get("code")
            traits["last_error"] = str(error)[:200]
        else:
            traits["state"] = event
            if "attempt" in payload:
                traits["attempt"] = int(payload["attempt"])
            delay = payload.get("delay")
            if event == "reconnecting" and isinstance(delay, int | float):
                traits.update(retry_delay=float(delay), retry_id=next(self._retry_ids))
                self._retry_at = time.monotonic() + float(delay)
                if payload.get("message"):  # refused: say what the wait is for
                    traits["last_error"] = (
                        f"refused ({payload.get('reason')}): {payload['message']}"[:200]
                    )
            else:
                traits["retry_delay"] = 0.0
                self._retry_at = None
            if event == "connected":
                traits.update(attempt=0, last_error="", gave_up=False)
        self._set_from_session(**traits)
        self.refresh()

    @property
    def retry_in(self) -> float | None:
        """Seconds until the next reconnect attempt (None when none is scheduled)."""
        at = self._retry_at
        return None if at is None else max(0.0, at - time.monotonic())

    def refresh(self) -> None:
        """Read the session's metrics now (also done every ``refresh`` seconds)."""
        session = self._session
        metrics = session.metrics
        rtt = metrics.get("rtt_p50_ms")
        self._set_from_session(
            state=str(session.connection_state),
            rtt_ms=round(float(rtt), 1) if isinstance(rtt, int | float) else None,
            queue_depth=int(metrics.get("queue_depth", 0)),
            in_flight=int(metrics.get("in_flight", 0)),
            version=int(metrics.get("version", session.version)),
            held=_comms.held(),
        )
