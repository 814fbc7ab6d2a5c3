"""``ConflictResolver``: when a write at (or below) ``path`` loses an ``if_version``
race, show mine vs theirs and let the user keep one.

The session emits ``conflict`` with my refused ops, their current value and the
version that last changed it. "Keep mine" writes my value again with
``if_version`` = their version (so a third writer in between is a new conflict,
not silently overwritten); "keep theirs" just closes the panel: the refused write
was already rolled back.
"""

from __future__ import annotations

from typing import Any

import msgspec
import traitlets

from ...client.ack import Ack
from ...state.ops import (
    DeleteOp,
    IncrementOp,
    MergeOp,
    Op,
    OpError,
    PushOp,
    RemoveOp,
    SetOp,
    TextOp,
    apply_op,
    apply_ops,
    get_path,
)
from ...state.paths import is_within
from ._base import STATIC, LiveWidget

__all__ = ["ConflictResolver"]

_MISSING: Any = object()
_OP_TYPES = (SetOp, MergeOp, PushOp, RemoveOp, IncrementOp, DeleteOp, TextOp)


class ConflictResolver(LiveWidget):
    """Hidden until a conflict at ``path`` arrives."""

    _esm = STATIC / "conflict_resolver.js"

    path = traitlets.Unicode().tag(sync=True)
    active = traitlets.Bool(False).tag(sync=True)
    # The path that conflicted (``path`` or below it).
    conflict_path = traitlets.Unicode("").tag(sync=True)
    mine = traitlets.Any(None).tag(sync=True)
    # False when my write deleted the value.
    mine_exists = traitlets.Bool(True).tag(sync=True)
    theirs = traitlets.Any(None).tag(sync=True)
    their_version = traitlets.Int(0).tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    # "mine" or "theirs" after the user chose ("" while undecided).
    resolved = traitlets.Unicode("").tag(sync=True)

    def __init__(self, path: str, session: Any = None, **kwargs: Any) -> None:
        super().__init__(session=session, path=path, **kwargs)
        self._own(self._session.on("conflict", self._on_conflict))

    def _on_conflict(self, payload: dict[str, Any]) -> None:
        where = payload.get("path")
        if not isinstance(where, str) or not is_within(where, self.path):
            return
        theirs = payload.get("current")
        mine = _my_value(where, payload.get("ops") or [], theirs)
        version = payload.get("current_version")
        self._set_from_session(
            active=True,
            conflict_path=where,
            mine=None if mine is _MISSING else mine,
            mine_exists=mine is not _MISSING,
            theirs=theirs,
            their_version=version if isinstance(version, int) else 0,
            message=str(payload.get("message") or "someone changed this first"),
            resolved="",
        )

    def keep_mine(self) -> Ack | None:
        """Write my value over theirs (if nobody changed it again since)."""
        with self._lock:
            if not self.active:
                return None
            path, version = self.conflict_path, self.their_version
            if self.mine_exists:
                ack: Ack = self._session.set(path, self.mine, if_version=version)
            else:
                ack = self._session.apply(DeleteOp(path=path, if_version=version))
            self._set_from_session(active=False, resolved="mine", error="")
        return ack

    def keep_theirs(self) -> None:
        """Accept their value (mine was already rolled back)."""
        self._set_from_session(active=False, resolved="theirs", error="")

    def _msg_keep_mine(self, msg: dict[str, Any]) -> None:
        self.keep_mine()

    def _msg_keep_theirs(self, msg: dict[str, Any]) -> None:
        self.keep_theirs()


def _my_value(path: str, ops: list[Any], theirs: Any) -> Any:
    """What ``path`` would hold had my ops won: replay them, minus preconditions, on theirs."""
    root: dict[str, Any] = {}
    if theirs is not None:
        root = apply_op(root, SetOp(path=path, value=theirs))
    replayed: list[Op] = [
        msgspec.structs.replace(op, if_version=None) for op in ops if isinstance(op, _OP_TYPES)
    ]
    try:
        return get_path(apply_ops(root, replayed), path, _MISSING)
    except OpError:
        last = next(
            (
                op
                for op in reversed(replayed)
                if getattr(op, "path", None) == path and hasattr(op, "value")
            ),
            None,
        )
        return last.value if last is not None else _MISSING
