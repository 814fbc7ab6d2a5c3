"""The notebook's current session (set by ``%livewidgets connect``; read by widgets)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..client.session import Session

__all__ = ["current_session", "set_current_session"]

_lock = threading.Lock()
_current: Session | None = None


def current_session() -> Session:
    """The session of this kernel; raises RuntimeError with what to do if there is none."""
    with _lock:
        if _current is None or _current.connection_state == "closed":
            raise RuntimeError(
                "no livewidgets session in this kernel: run `%load_ext livewidgets` and "
                "`%livewidgets connect` (or pass session=lw.connect(...))"
            )
        return _current


def set_current_session(session: Session | None) -> None:
    global _current
    with _lock:
        _current = session
