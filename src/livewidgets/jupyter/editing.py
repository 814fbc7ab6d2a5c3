"""Who is changing what: a quiet "Alice is editing" on shared widgets.

A session that changes a shared path says so in its presence (``editing``: the path)
for :data:`HOLD` seconds after its last change; then the field goes away again. A
widget bound to that path shows the peers who are editing it: ``share()``d ipywidgets
in their tooltip (only while the application has set none of its own), SharedText in
a line of its view.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["HOLD", "editing", "hint", "touch"]

# Seconds "editing" lasts after the last change (a drag or typing keeps renewing it).
HOLD = 3.0


class _Editing:
    """One session's own ``editing`` field, and when it ends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.path: str | None = None
        self.until = 0.0
        self.armed = False


_sessions: weakref.WeakKeyDictionary[Any, _Editing] = weakref.WeakKeyDictionary()
_sessions_lock = threading.Lock()


def _later(delay: float, fn: Callable[[], None]) -> None:
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.name = "livewidgets-editing"
    timer.start()


def touch(session: Any, path: str) -> None:
    """``session``'s user just changed ``path``: say so in presence for HOLD seconds."""
    with _sessions_lock:
        state = _sessions.setdefault(session, _Editing())
    with state.lock:
        state.until = time.monotonic() + HOLD
        changed = state.path != path
        state.path = path
        arm = not state.armed
        state.armed = True
    if changed:
        session.update_presence(editing=path)
    if arm:
        _later(HOLD, lambda: _expire(session, state))


def _expire(session: Any, state: _Editing) -> None:
    with state.lock:
        left = state.until - time.monotonic()
        if left > 0:
            again = True
        else:
            again, state.path, state.armed = False, None, False
    if again:
        _later(left, lambda: _expire(session, state))
    elif session.connection_state != "closed":
        session.update_presence(editing=None)


def editing(session: Any, path: str) -> list[str]:
    """The names of the peers now editing ``path`` (sorted)."""
    return sorted(
        str(state.get("name") or state.get("user") or "someone")
        for state in session.presence.values()
        if isinstance(state, dict) and state.get("editing") == path
    )


def hint(names: list[str]) -> str:
    """ "Alice is editing", "Alice and Bob are editing", "Alice and 2 others are editing"."""
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} is editing"
    if len(names) == 2:
        return f"{names[0]} and {names[1]} are editing"
    return f"{names[0]} and {len(names) - 1} others are editing"
