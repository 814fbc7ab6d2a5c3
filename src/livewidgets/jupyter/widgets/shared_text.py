"""``SharedText``: a textarea on a shared string, with peers' cursors and selections.

Browser <-> kernel sync is a two-party OT (the ot.js client/server scheme), the
kernel being the server of its views:

* The kernel numbers every change of the text it shows with a revision ``rev`` and
  keeps the last ``HISTORY`` deltas. The traits ``value`` and ``rev`` always agree, so
  a view that renders later starts from them.
* A view sends ``{"type": "edit", "view", "rev", "delta", "anchor", "head"}``: a
  delta (UTF-16 units) against the text at ``rev``, made by diffing the textarea
  before and after an input event. It keeps at most one edit in flight and composes
  later keystrokes into a buffer until the ack.
* The kernel transforms the edit over the changes after ``rev`` (the view's insert
  goes first on a tie, as in the view), applies it to the session with
  ``SharedText.apply_delta`` and answers ``{"type": "ack", "view", "rev", "delta"}``
  to all views: the sender takes it as its ack, the others as a remote change.
* Changes made elsewhere (peers, Python code) arrive through ``t.subscribe`` and go
  out as ``{"type": "sync", "rev", "delta"}``. A view transforms them over its
  unacknowledged edits, so no keystroke is lost, and moves its caret with
  ``transformPosition``.
* Echo-free: the kernel tracks the text its views were told about (``_doc``). A
  session callback whose value equals it is the kernel's own edit coming back and
  is dropped; anything else is sent once as a ``sync``.
* ``{"type": "cursor", "view", "rev", "anchor", "head"}`` (sent only when the view
  has nothing unacknowledged) is transformed to the current text and published
  with ``t.set_cursor``. Peers' cursors come from ``t.on_cursors`` and go to the
  views as the ``cursors`` trait, valid at revision ``cursors_rev``.
* ``{"type": "undo"}`` / ``{"type": "redo"}`` (Ctrl-Z, Ctrl-Shift-Z / Ctrl-Y; Cmd on
  macOS) undo or redo this session's own edits of this text (``session.undo(path)``,
  docs/undo.md); the result reaches the views as any other change.
* A view that cannot continue (a message gap, an edit older than the history)
  gets ``{"type": "reset", "view", "rev", "value"}``; it starts over from ``value``.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, TypedDict

import traitlets

from ...errors import LivewidgetsError
from ...state import text as ot
from .. import editing
from ._base import STATIC, LiveWidget, presence_color

__all__ = ["SharedText"]

log = logging.getLogger("livewidgets.jupyter")

Delta = list[int | str]


class EditMsg(TypedDict):
    """View -> kernel: the user changed the text."""

    type: str  # "edit"
    view: str
    rev: int
    delta: Delta
    anchor: int
    head: int


class CursorMsg(TypedDict):
    """View -> kernel: the caret or selection moved (no edit pending)."""

    type: str  # "cursor"
    view: str
    rev: int
    anchor: int
    head: int


class SyncMsg(TypedDict):
    """Kernel -> views: the text changed (``type`` "sync", or "ack" for ``view``'s edit)."""

    type: str
    rev: int
    delta: Delta


class SharedText(LiveWidget):
    """A collaborative textarea bound to the string at ``path``.

    ``value`` reads the text; assigning it replaces the text (as a minimal edit).
    ``cursors`` lists the peers' cursors (client_id, anchor, head, name, color, ...).
    """

    _esm = STATIC / "shared_text.js"

    # How many past changes the kernel keeps to transform late edits from its views.
    HISTORY = 1000

    path = traitlets.Unicode().tag(sync=True)
    value = traitlets.Unicode("").tag(sync=True)
    rev = traitlets.Int(0).tag(sync=True)
    placeholder = traitlets.Unicode("").tag(sync=True)
    rows = traitlets.Int(8).tag(sync=True)
    cursors = traitlets.List(traitlets.Dict()).tag(sync=True)
    cursors_rev = traitlets.Int(0).tag(sync=True)
    # "Alice is editing" while peers change this text (jupyter.editing), else "".
    editing_hint = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        path: str,
        session: Any = None,
        placeholder: str = "",
        rows: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(session=session, path=path, placeholder=placeholder, rows=rows, **kwargs)
        # One handle per path and session, shared with other users of the path.
        self._text = self._session.text(path)
        # The text at revision ``_rev`` as the views know it.
        self._doc: str = self._text.value
        self._rev = 0
        # (rev, delta) of the last HISTORY changes; delta turns text rev-1 into rev.
        self._history: deque[tuple[int, Delta]] = deque(maxlen=self.HISTORY)
        # Inside our own apply_delta: the handle's callbacks see a half-finished state.
        self._applying = False
        self._cursors_dirty = False
        with self._from_session():
            self.value = self._doc
        self.observe(self._on_value, "value")
        self._own(self._text.subscribe(self._on_text))
        self._own(self._text.on_cursors(self._on_cursors))
        self._own(self._withdraw_cursor)
        self._own(self._session.on("presence", self._on_presence))
        with self._lock:
            self._reconcile()  # a change between reading the text and subscribing
            self._publish_cursors()

    def _on_presence(self, _payload: Any) -> None:
        hint = editing.hint(editing.editing(self._session, self.path))
        if hint != self.editing_hint:
            self._set_from_session(editing_hint=hint)

    # --- Python API ---------------------------------------------------------------

    def _on_value(self, change: dict[str, Any]) -> None:
        """``widget.value = "..."`` from Python: a local edit (never a session echo)."""
        if self._is_from_session():
            return
        with self._lock:
            if self._closed:
                return
            self._reconcile()
            new = str(change["new"])
            if new == self._doc:
                return
            done = None
            try:
                done = self._submit(ot.diff(self._doc, new), None)
            finally:
                if done is None:  # not applied: show the text as it is
                    self._set_from_session(value=self._doc)

    # --- front-end messages -------------------------------------------------------

    def _msg_edit(self, msg: EditMsg) -> None:
        view = str(msg["view"])
        with self._lock:
            self._reconcile()
            try:
                rev = _int(msg["rev"])
                delta = ot.validate(msg["delta"])
                sel = (_int(msg.get("anchor", 0)), _int(msg.get("head", 0)))
                concurrent = self._since(rev)
                if concurrent is None:
                    self._reset(view, f"edit at unknown revision {rev}")
                    return
                for theirs in concurrent:
                    delta, theirs2 = ot.transform(delta, theirs)
                    sel = ot.transform_selection(sel, theirs2)
                done = self._submit(delta, view, sel)
            except ValueError as exc:  # a malformed edit, or one the session refused
                self._reset(view, f"edit does not fit: {exc}")
                return
            except LivewidgetsError as exc:  # the session is closed or its queue full
                self._reset(view, str(exc))
                raise  # shown in the view's error line
            if done is None:
                self._reset(view, "the text kept changing under the edit")
            else:
                editing.touch(self._session, self.path)
                self._set_cursor(done)

    def _msg_cursor(self, msg: CursorMsg) -> None:
        rev = _int(msg["rev"])
        with self._lock:
            self._reconcile()
            concurrent = self._since(rev)
            if concurrent is None:
                return  # stale; the view sends a fresh one with its next edit
            sel = (_int(msg["anchor"]), _int(msg["head"]))
            for theirs in concurrent:
                sel = ot.transform_selection(sel, theirs)
            self._set_cursor(sel)

    def _msg_undo(self, msg: dict[str, Any]) -> None:
        """Ctrl-Z in a view: undo this session's latest own edit of THIS text (never a
        peer's, never another path). The change comes back through the subscription
        and goes to every view as a ``sync``."""
        self._undo(redo=False)

    def _msg_redo(self, msg: dict[str, Any]) -> None:
        """Ctrl-Shift-Z / Ctrl-Y in a view: redo the latest undo of this text."""
        self._undo(redo=True)

    def _undo(self, redo: bool) -> None:
        with self._lock:
            self._reconcile()
        # Outside the lock: the change callback (any thread) takes it.
        ack = self._session.redo(self.path) if redo else self._session.undo(self.path)
        if ack is not None:
            ack.add_done_callback(_log_refusal)

    def _msg_resync(self, msg: dict[str, Any]) -> None:
        with self._lock:
            self._reconcile()
            self._reset(str(msg["view"]), "requested by the view")

    # --- the kernel side of the OT ------------------------------------------------

    def _since(self, rev: int) -> list[Delta] | None:
        """The changes after ``rev`` (None if ``rev`` is unknown or forgotten)."""
        if rev > self._rev or rev < self._rev - len(self._history):
            return None
        return [delta for r, delta in self._history if r > rev]

    def _submit(
        self, delta: Delta, view: str | None, sel: tuple[int, int] = (0, 0)
    ) -> tuple[int, int] | None:
        """Apply ``delta`` (against ``_doc``) to the session and tell the views.

        Returns the selection moved along, or None if the text kept changing
        between reading and writing it (then nothing was applied).
        """
        for _ in range(3):
            new = ot.apply(self._doc, delta)
            old, self._doc = self._doc, new  # the handle's callback must see this as ours
            self._applying = True
            try:
                if any(not isinstance(c, int) or c < 0 for c in delta):
                    self._text.apply_delta(delta)
            except ValueError:
                # A remote change landed between our read of the text and our write:
                # make it a revision of its own and transform the edit over it.
                self._doc = old
                current = self._text.value
                if current == old:
                    raise
                theirs = ot.diff(old, current)
                delta, theirs2 = ot.transform(delta, theirs)
                sel = ot.transform_selection(sel, theirs2)
                self._advance(theirs, current, None)
                continue
            except BaseException:
                self._doc = old
                raise
            finally:
                self._applying = False
            self._advance(delta, new, view)
            if self._cursors_dirty:
                self._publish_cursors()
            return sel
        return None

    def _advance(self, delta: Delta, value: str, view: str | None) -> None:
        """Record a new revision and tell the views (ack to ``view``, sync otherwise)."""
        self._rev += 1
        self._history.append((self._rev, delta))
        self._doc = value
        self._set_from_session(value=value, rev=self._rev)
        message: dict[str, Any] = {
            "type": "ack" if view else "sync",
            "rev": self._rev,
            "delta": delta,
        }
        if view:
            message["view"] = view
        self._tell_views(message)

    def _reconcile(self) -> None:
        """Catch up with changes of the session text not yet told to the views."""
        current = self._text.value
        if current != self._doc:
            self._advance(ot.diff(self._doc, current), current, None)

    def _reset(self, view: str, reason: str) -> None:
        log.warning("[livewidgets] SharedText %r: resetting a view (%s)", self.path, reason)
        self._tell_views({"type": "reset", "view": view, "rev": self._rev, "value": self._doc})

    # --- session callbacks (any thread) -------------------------------------------

    def _on_text(self, value: str, delta: Delta | None) -> None:
        with self._lock:
            if self._closed or self._applying:
                return
            current = self._text.value
            if current == self._doc:
                return  # our own edit coming back, or already told
            if delta is None or not _leads_to(self._doc, delta, current):
                delta = ot.diff(self._doc, current)
            self._advance(delta, current, None)

    def _on_cursors(self, cursors: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            if self._closed:
                return
            if self._applying:
                self._cursors_dirty = True
                return
            self._reconcile()
            self._publish_cursors()

    def _publish_cursors(self) -> None:
        """Put peers' cursors (valid in the text at ``_rev``) into the traits."""
        self._cursors_dirty = False
        length = ot.utf16_len(self._doc)
        peers = []
        for client_id, cursor in sorted(self._text.cursors.items()):
            anchor, head = cursor.get("anchor"), cursor.get("head", cursor.get("anchor"))
            if not isinstance(anchor, int) or not isinstance(head, int):
                continue
            peers.append(
                {
                    "client_id": client_id,
                    "anchor": max(0, min(anchor, length)),
                    "head": max(0, min(head, length)),
                    "user": str(cursor.get("user", "")),
                    "name": str(cursor.get("name") or cursor.get("user") or "anonymous"),
                    "color": presence_color(cursor),
                    "active": bool(cursor.get("active", True)),
                }
            )
        self._set_from_session(cursors=peers, cursors_rev=self._rev)

    def _set_cursor(self, sel: tuple[int, int]) -> None:
        length = ot.utf16_len(self._doc)
        anchor, head = (max(0, min(p, length)) for p in sel)
        try:
            self._text.set_cursor(anchor, head)
        except LivewidgetsError as exc:
            log.debug("[livewidgets] cursor not published: %s", exc)

    def _withdraw_cursor(self) -> None:
        """On close: stop showing our cursor to peers."""
        session = self._session
        mine = getattr(session, "my_presence", None)
        if not isinstance(mine, dict) or session.connection_state == "closed":
            return
        cursors = dict(mine.get("cursors") or {})
        if cursors.pop(self.path, None) is not None:
            try:
                session.update_presence(cursors=cursors or None)
            except LivewidgetsError as exc:
                log.debug("[livewidgets] cursor not withdrawn: %s", exc)


def _log_refusal(ack: Any) -> None:
    error = ack.exception()
    if error is not None:
        log.info("[livewidgets] SharedText: undo refused: %s", error)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _leads_to(old: str, delta: Delta, new: str) -> bool:
    """True when ``delta`` turns ``old`` into ``new`` (so it can be sent as is)."""
    try:
        return ot.apply(old, delta) == new
    except ot.TextOpError:
        return False
