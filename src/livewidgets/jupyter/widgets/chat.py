"""``Chat``: a message list at ``path`` (``push``: concurrent messages all survive,
in room order) and an input. The view renders text with ``textContent`` only.

The room's rule for the list (added the first time an admin opens the chat,
docs/rules.md): append-only, each message's ``user`` is its writer, and only they
may remove it (:meth:`Chat.delete`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import traitlets

from ...client.ack import Ack
from ._base import STATIC, LiveWidget, color_for
from ._rules import ensure_rules, pattern_path

__all__ = ["Chat"]


class Chat(LiveWidget):
    """Chat on a shared list; ``send(text)`` from Python or the view's input."""

    _esm = STATIC / "chat.js"

    # How many of the latest messages the widget shows.
    SHOWN = 200
    # Longer messages are refused (a chat line, not a document).
    MAX_LENGTH = 4000

    path = traitlets.Unicode().tag(sync=True)
    # The last SHOWN messages: {id, user, name, color, text, ts}.
    messages = traitlets.List(traitlets.Dict()).tag(sync=True)
    # This kernel's user (its messages are drawn on the right).
    me = traitlets.Unicode("").tag(sync=True)
    max_length = traitlets.Int(MAX_LENGTH).tag(sync=True)

    def __init__(self, path: str, session: Any = None, **kwargs: Any) -> None:
        super().__init__(session=session, path=path, **kwargs)
        self.me = str(self._session.user)
        self._own(self._session.subscribe(path, lambda _value, _path: self._refresh()))
        self._refresh()
        ensure_rules(self._session, self.rules(), lambda msg: self._set_from_session(error=msg))

    def rules(self) -> list[dict[str, Any]]:
        """The room rules this chat needs: append-only, authors write and remove their own."""
        base = pattern_path(self.path)
        if base is None:
            return []
        return [
            {
                "name": f"chat {self.path}: authors only",
                "path": base,
                "read": "anyone",
                "write": "writer",
                "ops": ["push", "remove"],
                "type": "mapping",
                "field_is_user": "user",
                "max_bytes": 4 * self.MAX_LENGTH + 1024,
            }
        ]

    def delete(self, message_id: str) -> Ack:
        """Remove one of this user's messages (the room's rule refuses anyone else's)."""
        ack: Ack = self._session.remove(self.path, message_id)
        self._set_from_session(error="")
        return ack

    def send(self, text: str) -> Ack | None:
        """Post ``text`` (stripped; None if empty) as this session's user."""
        text = str(text).strip()
        if not text:
            return None
        if len(text) > self.MAX_LENGTH:
            raise ValueError(f"a message has at most {self.MAX_LENGTH} characters")
        session = self._session
        mine = getattr(session, "my_presence", None)
        mine = mine if isinstance(mine, dict) else {}
        user = str(session.user)
        message = {
            "id": uuid.uuid4().hex[:16],
            "user": user,
            "name": str(mine.get("name") or user or "anonymous"),
            "color": str(mine.get("color") or color_for(user)),
            "text": text,
            "ts": time.time(),
        }
        ack: Ack = session.push(self.path, message)
        self._set_from_session(error="")
        return ack

    def _msg_send(self, msg: dict[str, Any]) -> None:
        self.send(str(msg["text"]))

    def _refresh(self) -> None:
        items = self._session.get(self.path)
        items = items if isinstance(items, list) else []
        shown = [_message(m) for m in items[-self.SHOWN :] if isinstance(m, dict)]
        self._set_from_session(messages=shown)


def _message(item: dict[str, Any]) -> dict[str, Any]:
    """A well-formed message whatever a peer pushed (the view trusts these types)."""
    user = str(item.get("user") or "")
    ts = item.get("ts")
    return {
        "id": str(item.get("id") or ""),
        "user": user,
        "name": str(item.get("name") or user or "anonymous"),
        "color": str(item.get("color") or color_for(user)),
        "text": str(item.get("text") or ""),
        "ts": float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else 0.0,
    }
