"""Collaborative text on a shared path: ``t = session.text("docs/notes")``.

Indices in this Python API are ordinary ``str`` indices; deltas and cursor
offsets count UTF-16 code units, what the browser counts (see state.text).
Peers' cursors arrive in presence (``cursors: {path: {anchor, head}}``) and are
moved through every edit applied here, local or remote, so a remote cursor stays
on its character while others type before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..state import text as text_ot
from ..state.ops import Op, TextOp, get_path, touched_paths
from ..state.paths import is_related, parse_path
from .ack import Ack
from .core import Changed
from .events import call_isolated

if TYPE_CHECKING:
    from .session import SessionAPI

__all__ = ["TextChanged", "TextHandle"]


class TextChanged(ValueError):
    """``apply_delta(base=...)`` found the text changed: rebase the delta and retry."""


TextCallback = Callable[[str, "list[int | str] | None"], Any]
CursorCallback = Callable[[dict[str, dict[str, Any]]], Any]


# Attempts of replace() against a text peers keep editing (each loses a race only
# when a remote edit lands between reading the text and submitting the edit).
_REPLACE_ATTEMPTS = 32


class TextHandle:
    """A string at ``path`` that several clients edit at once (OT, see state.text)."""

    def __init__(self, session: SessionAPI, path: str) -> None:
        parse_path(path)
        self.path = path
        self._session = session
        self._lock = threading.Lock()
        self._callbacks: list[TextCallback] = []
        self._cursor_callbacks: list[CursorCallback] = []
        # Peers' cursors in our visible text's coordinates: client_id -> (anchor, head).
        self._cursors: dict[str, tuple[int, int]] = {}
        engine = session.engine
        self._off = [
            engine.add_change_listener(self._on_change),
            engine.events.on("presence", self._on_presence),
        ]
        for client_id, state in session.presence.items():
            self._take_cursor(client_id, state)

    # --- reading and editing ------------------------------------------------------

    @property
    def value(self) -> str:
        value = get_path(self._session.state, self.path, "")
        return value if isinstance(value, str) else ""

    def __str__(self) -> str:
        return self.value

    def __len__(self) -> int:
        return len(self.value)

    def insert(self, index: int, text: str) -> Ack:
        """Insert ``text`` before ``value[index]``."""
        return self.replace(index, index, text)

    def delete(self, index: int, length: int) -> Ack:
        """Delete ``value[index:index + length]``."""
        return self.replace(index, index + length, "")

    def replace(self, start: int, end: int, text: str) -> Ack:
        """Replace ``value[start:end]`` by ``text`` (Python indices, clamped like slicing).

        The indices are read against the text as it is at the call; a remote edit that
        lands between reading it and submitting the edit would make the delta stale,
        so the edit is submitted only if the text is unchanged, else made again.
        """
        for _ in range(_REPLACE_ATTEMPTS):  # bounded: each retry lost a race to a peer
            value = self.value
            lo, hi, _step = slice(start, end).indices(len(value))
            hi = max(lo, hi)
            first = text_ot.to_utf16(value, lo)
            last = text_ot.to_utf16(value, hi)
            delta = text_ot.edit(text_ot.utf16_len(value), first, last - first, text)
            try:
                return self.apply_delta(delta, base=value)
            except TextChanged:
                continue
        raise TextChanged(f"the text at `{self.path}` kept changing; edit not applied")

    def apply_delta(self, delta: Sequence[int | str], *, base: str | None = None) -> Ack:
        """Apply a UTF-16 delta made against the current ``value``.

        With ``base``, the delta applies only if the text still equals ``base`` at that
        instant (atomically with respect to remote edits); else :class:`TextChanged`.
        """
        op = TextOp(path=self.path, delta=text_ot.validate(list(delta)))
        if base is None:
            return self._session.apply(op)

        def unchanged(visible: dict[str, Any]) -> None:
            current = get_path(visible, self.path, "")
            if (current if isinstance(current, str) else "") != base:
                raise TextChanged(f"the text at `{self.path}` changed before the edit applied")

        return self._session.engine.submit([op], precondition=unchanged)

    # --- observing ----------------------------------------------------------------

    def subscribe(self, callback: TextCallback) -> Callable[[], None]:
        """``callback(value, delta)`` on each visible change (delta None if unknown)."""
        with self._lock:
            self._callbacks.append(callback)
        return lambda: self._discard(self._callbacks, callback)

    def on_cursors(self, callback: CursorCallback) -> Callable[[], None]:
        """``callback(cursors)`` whenever a peer's cursor moves, appears or goes."""
        with self._lock:
            self._cursor_callbacks.append(callback)
        return lambda: self._discard(self._cursor_callbacks, callback)

    def _discard(self, callbacks: list[Any], callback: Any) -> None:
        with self._lock:
            if callback in callbacks:
                callbacks.remove(callback)

    @property
    def cursors(self) -> dict[str, dict[str, Any]]:
        """Active peers' cursors: client_id -> {anchor, head, name, color, user}."""
        peers = self._session.presence
        result = {}
        with self._lock:
            tracked = dict(self._cursors)
        for client_id, (anchor, head) in tracked.items():
            state = peers.get(client_id)
            if state is None or state.get("status") == "idle":
                continue  # stale cursors disappear with their owner's activity
            result[client_id] = {
                "anchor": anchor,
                "head": head,
                "user": state.get("user", ""),
                "name": state.get("name") or state.get("user", ""),
                "color": state.get("color", ""),
            }
        return result

    def set_cursor(self, anchor: int, head: int | None = None) -> None:
        """Publish this client's cursor/selection here (UTF-16 offsets; throttled)."""
        cursors = dict(self._session.engine.presence.fields.get("cursors") or {})
        cursors[self.path] = {"anchor": anchor, "head": anchor if head is None else head}
        self._session.update_presence(cursors=cursors)

    def close(self) -> None:
        for off in self._off:
            off()
        self._session._texts.pop(self.path, None)

    # --- engine callbacks ---------------------------------------------------------

    def _on_change(self, change: Changed) -> None:
        ops = change.ops
        old, new = get_path(change.before, self.path), get_path(change.after, self.path)
        if old is new or old == new:
            return
        old_text = old if isinstance(old, str) else ""
        new_text = new if isinstance(new, str) else ""
        delta = _exact_delta(self.path, ops) if ops is not None else None
        if delta is None or text_ot.base_length(delta) != text_ot.utf16_len(old_text):
            delta = text_ot.diff(old_text, new_text)
        self._move_own_cursor(delta, change.local)
        with self._lock:
            # A peer typing at its own caret pushes that caret along (own=True), as its
            # owner sees it; everyone else's cursor stays before the inserted text.
            self._cursors = {
                cid: text_ot.transform_selection(sel, delta, own=cid == change.origin)
                for cid, sel in self._cursors.items()
            }
            callbacks = list(self._callbacks)
            cursor_callbacks = list(self._cursor_callbacks) if self._cursors else []
        for callback in callbacks:
            call_isolated(callback, new_text, delta)
        if cursor_callbacks:
            cursors = self.cursors
            for cursor_callback in cursor_callbacks:
                call_isolated(cursor_callback, cursors)

    def _move_own_cursor(self, delta: list[int | str], local: bool) -> None:
        """Keep our published cursor on its character, so a later publish is right.

        Peers move it themselves as edits arrive, so this sends nothing now.
        """

        def move(fields: dict[str, Any]) -> None:
            cursors = fields.get("cursors") or {}
            mine = cursors.get(self.path)
            if not isinstance(mine, dict):
                return
            anchor, head = text_ot.transform_selection(
                (mine.get("anchor", 0), mine.get("head", 0)), delta, own=local
            )
            fields["cursors"] = {**cursors, self.path: {"anchor": anchor, "head": head}}

        self._session.engine.rewrite_presence(move)

    def _on_presence(self, payload: dict[str, Any]) -> None:
        before, after = payload.get("before") or {}, payload.get("after") or {}
        status_changed = before.get("status") != after.get("status")
        if self._take_cursor(payload["client_id"], payload["after"]) or status_changed:
            cursors = self.cursors
            with self._lock:
                callbacks = list(self._cursor_callbacks)
            for callback in callbacks:
                call_isolated(callback, cursors)

    def _take_cursor(self, client_id: str, state: dict[str, Any] | None) -> bool:
        """Adopt a peer's published cursor; True if anything changed."""
        cursor = ((state or {}).get("cursors") or {}).get(self.path)
        with self._lock:
            before = self._cursors.get(client_id)
            if not isinstance(cursor, dict) or client_id == self._session.client_id:
                self._cursors.pop(client_id, None)
            else:
                length = text_ot.utf16_len(self.value)
                anchor, head = cursor.get("anchor"), cursor.get("head", cursor.get("anchor"))
                if not (isinstance(anchor, int) and isinstance(head, int)):
                    self._cursors.pop(client_id, None)
                else:
                    self._cursors[client_id] = (_clamp(anchor, length), _clamp(head, length))
            return self._cursors.get(client_id) != before or state is None


def _clamp(value: int, length: int) -> int:
    return max(0, min(value, length))


def _exact_delta(path: str, ops: Sequence[Op]) -> list[int | str] | None:
    """Compose the text deltas at ``path``; None if another kind of op touched it."""
    delta: list[int | str] | None = None
    for op in ops:
        if isinstance(op, TextOp) and op.path == path:
            delta = op.delta if delta is None else text_ot.compose(delta, op.delta)
        elif any(is_related(path, p) for p in touched_paths(op)):
            return None
    return delta
