"""Undo and redo of this client's own writes (sans-I/O; docs/undo.md).

An :class:`UndoHistory` keeps two stacks of :class:`Step` s: one step per own write
(one op or one batch; consecutive keystrokes in the same text are grouped). A
step's *inverse* is a list of ops that takes its effect back, expressed against the
client's current confirmed state (``RoomSync.confirmed``):

* It is computed when the write is confirmed, from the exact state before it
  (:func:`invert_ops`), and kept current from then on: every later confirmed op
  (a peer's or our own) transforms the text ops of every inverse
  (``state.rebase.transform_ops``), so undoing an edit keeps what others typed.
  Lazily: confirmed ops go into a log, and a step is brought up to date when it is
  used, over the log's ops since it last was, adjacent edits of one text composed
  into one delta first (a room where ten people type costs one transform per step
  and use, not one per step and keystroke). The log is folded into every step when
  it grows past ``LOG_LIMIT``.
* Non-text inverses are not transformed: they carry ``if_version`` = the version
  the write got, and the relay refuses them with ``conflict`` if anybody changed
  that path since (the relay's ``PathClock`` counts an ancestor replaced, or
  anything at or below the path changed).
* An inverse whose text was replaced under it (``TextReplaced``) is *lost*: undoing
  it is refused with a ``conflict``, never guessed.

The history does not own the pending ops: it keys the still unconfirmed parts of a
step by the core's ``Pending`` objects (opaque here, compared by identity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ..state import text as text_ot
from ..state.ops import (
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
    get_path,
    touched_paths,
)
from ..state.paths import is_within, join_path, parse_path
from ..state.rebase import TextReplaced, transform_ops

__all__ = ["GROUP_DELAY", "MAX_STEPS", "Step", "UndoHistory", "invert_ops"]

# Keystrokes in the same text closer than this (seconds) are one step (CodeMirror's
# newGroupDelay).
GROUP_DELAY: Final = 0.5
# Steps kept on each stack; the oldest are forgotten.
MAX_STEPS: Final = 100
# Confirmed ops kept for the steps to catch up on; past this, every step catches up.
LOG_LIMIT: Final = 256

Kind = Literal["write", "undo", "redo"]
_MISSING: Final[Any] = object()


@dataclass(eq=False)
class Step:
    """One own write (or a group of keystrokes) that can be undone."""

    kind: Kind
    # Paths the write touched (scope of ``undo(path)``).
    paths: list[str]
    # Its parts not confirmed yet (the core's Pending objects), oldest first.
    pending: list[Any] = field(default_factory=list)
    # Inverse of its confirmed parts, against the current confirmed state.
    inverse: list[Op] = field(default_factory=list)
    # Only text ops (so it can be inverted before it is confirmed: no guard needed).
    text_only: bool = True
    # When its last part was written (grouping).
    at: float = 0.0
    # Why it cannot be undone any more (its text was replaced, a resync...).
    lost: str | None = None
    # Undo requested while a non-text part was unconfirmed: the handle to use once it is.
    deferred: Any = None
    # "undo" or "redo": what the deferred request was.
    deferred_as: Kind = "undo"
    # The history log position its inverse is expressed at (UndoHistory._catch_up).
    seen: int = 0

    def within(self, path: str | None) -> bool:
        return path is None or any(is_within(p, path) for p in self.paths)


class UndoHistory:
    """The undo and redo stacks of one client in one room."""

    def __init__(self, max_steps: int = MAX_STEPS, group_delay: float = GROUP_DELAY) -> None:
        self.max_steps = max_steps
        self.group_delay = group_delay
        self.undo_stack: list[Step] = []
        self.redo_stack: list[Step] = []
        # Steps whose undo waits for their write to be confirmed.
        self.deferred: list[Step] = []
        # The step the last recorded write went to (grouping: nothing else between).
        self._last: Step | None = None
        # Confirmed ops (own and peers') the steps have not been transformed over yet;
        # _log[0] is at position _log_start.
        self._log: list[Op] = []
        self._log_start = 0
        # Steps whose inverse has text ops (only those change under transforms); may
        # hold steps since dropped from the stacks until the next _catch_up_all.
        self._texty: set[Step] = set()

    @property
    def _position(self) -> int:
        return self._log_start + len(self._log)

    # --- recording ------------------------------------------------------------------

    def group_for(self, ops: Sequence[Op], batch: bool, kind: Kind, now: float) -> Step | None:
        """The step a new write joins (a keystroke right after one in the same text)."""
        last = self._last
        if kind != "write" or batch or len(ops) != 1 or not isinstance(ops[0], TextOp):
            return None
        if last is None or not self.undo_stack or self.undo_stack[-1] is not last:
            return None
        if last.kind != "write" or not last.text_only or last.paths != [ops[0].path]:
            return None
        if last.lost is not None or now - last.at > self.group_delay:
            return None
        return last

    def record(
        self, key: Any, ops: Sequence[Op], kind: Kind, now: float, group: Step | None
    ) -> None:
        """A write was queued as pending ``key`` (maybe composed into ``key`` already)."""
        if group is not None:
            if key not in group.pending:
                group.pending.append(key)
            group.at = now
            return
        paths = list(dict.fromkeys(p for op in ops for p in touched_paths(op)))
        text_only = all(isinstance(op, TextOp) for op in ops)
        step = Step(kind, paths, [key], text_only=text_only, at=now, seen=self._position)
        self._last = step
        if kind == "undo":
            self._push(self.redo_stack, step)
        else:
            if kind == "write":
                self.redo_stack.clear()
            self._push(self.undo_stack, step)

    def _push(self, stack: list[Step], step: Step) -> None:
        stack.append(step)
        if len(stack) > self.max_steps:
            del stack[: len(stack) - self.max_steps]

    # --- keeping inverses current ------------------------------------------------------

    def _steps(self) -> list[Step]:
        return [*self.undo_stack, *self.redo_stack, *self.deferred]

    def confirmed(
        self, key: Any, before: dict[str, Any], ops: Sequence[Op], version: int | None
    ) -> list[Step]:
        """Own pending ``key`` was applied to ``before`` as ``ops`` at ``version`` (None:
        unknown, it was settled by a snapshot). Returns deferred steps now ready to undo."""
        owner = next((step for step in self._steps() if key in step.pending), None)
        if owner is not None:
            self._catch_up(owner)  # its inverse so far stays expressed before ``ops``
        self._observe(ops)
        if owner is None:
            return []
        owner.seen = self._position
        owner.pending.remove(key)
        if owner.lost is None:
            try:
                inverse = invert_ops(before, ops, version)
            except _Uninvertible as exc:
                owner.lost = str(exc)
            else:
                owner.inverse = _prepend(inverse, owner.inverse)
                if _has_text(owner.inverse):
                    self._texty.add(owner)
        return self._ready()

    def remote(self, ops: Sequence[Op]) -> None:
        """A peer's op was confirmed: every inverse is to be transformed over it."""
        self._observe(ops)

    def _observe(self, ops: Sequence[Op]) -> None:
        if not self._texty:
            # Nothing to transform (only text inverses are; the others are guarded by
            # if_version): positions move on, nothing is kept.
            self._log_start += len(self._log) + len(ops)
            self._log.clear()
            return
        self._log.extend(ops)
        if len(self._log) > LOG_LIMIT:
            self._catch_up_all()

    def _catch_up(self, step: Step) -> None:
        """Transform ``step``'s inverse over the ops confirmed since it last was."""
        behind = self._log[max(0, step.seen - self._log_start) :]
        step.seen = self._position
        if behind and _has_text(step.inverse):
            self._transform(step, _compact(behind))

    def _catch_up_all(self) -> None:
        """Every step up to date; the log is empty again. Steps that were at the same
        position share the composed ops from there (usually most of them)."""
        live = set(self._steps())
        self._texty = {s for s in self._texty if s in live and _has_text(s.inverse)}
        steps = sorted(self._texty, key=lambda step: step.seen)
        if not steps:
            self._log_start = self._position
            self._log.clear()
            return
        cuts = sorted({max(0, step.seen - self._log_start) for step in steps})
        segments = {
            cut: _compact(self._log[cut:end])
            for cut, end in zip(cuts, [*cuts[1:], len(self._log)], strict=True)
        }
        for step in steps:
            start = max(0, step.seen - self._log_start)
            ops = [op for cut in cuts if cut >= start for op in segments[cut]]
            if ops:
                self._transform(step, ops)
            step.seen = self._position
        self._log_start = self._position
        self._log.clear()

    def forget(self, key: Any) -> list[Step]:
        """Pending ``key`` was refused or evicted: it never happened. Returns deferred
        steps that are ready now (with nothing left to undo, or their other parts)."""
        for stack in (self.undo_stack, self.redo_stack, self.deferred):
            for step in stack:
                if key not in step.pending:
                    continue
                step.pending.remove(key)
                empty = not step.pending and not step.inverse and step.lost is None
                if stack is self.deferred:
                    if empty:
                        stack.remove(step)
                        return [step]
                    return self._ready()
                if empty:
                    stack.remove(step)
                return []
        return []

    def resync(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """The confirmed state jumped from ``old`` to ``new`` (a snapshot: the ops in
        between are unknown). Text inverses are rebased over each string's difference
        (a three-way merge, as the core rebases pending edits); a step with a guarded
        (non-text) inverse is lost if a value it would restore changed."""
        self._catch_up_all()
        diffs: dict[str, Op] = {}
        for step in self._steps():
            for op in step.inverse:
                if not isinstance(op, TextOp) or op.path in diffs:
                    continue
                before, after = get_path(old, op.path, ""), get_path(new, op.path, "")
                if not isinstance(after, str) or not isinstance(before, str):
                    diffs[op.path] = DeleteOp(path=op.path)
                elif before != after:
                    diffs[op.path] = TextOp(path=op.path, delta=text_ot.diff_regions(before, after))
        for step in self._steps():
            guarded = [op for op in step.inverse if not isinstance(op, TextOp)]
            if any(
                get_path(old, p, _MISSING) != get_path(new, p, _MISSING)
                for op in guarded
                for p in touched_paths(op)
            ):
                step.lost = "the value changed while this client was resynchronising"
            relevant = [d for d in diffs.values() if any(_same_text(d, op) for op in step.inverse)]
            self._transform(step, relevant)

    def _transform(self, step: Step, ops: Sequence[Op]) -> None:
        if step.lost is not None or not step.inverse or not ops:
            return
        try:
            step.inverse = transform_ops(step.inverse, ops)[0]
        except TextReplaced as exc:
            step.lost = str(exc)
            step.inverse = []

    def _ready(self) -> list[Step]:
        ready = [s for s in self.deferred if not s.pending]
        self.deferred = [s for s in self.deferred if s.pending]
        for step in ready:
            self._catch_up(step)
        return ready

    # --- undoing -----------------------------------------------------------------------

    def take(self, path: str | None, redo: bool = False) -> Step | None:
        """Pop the latest step within ``path`` from the undo (or redo) stack."""
        stack = self.redo_stack if redo else self.undo_stack
        for index in range(len(stack) - 1, -1, -1):
            if stack[index].within(path):
                step = stack.pop(index)
                if step is self._last:
                    self._last = None
                self._catch_up(step)
                self._texty.discard(step)  # used now: no need to keep the log for it
                return step
        return None

    def can(self, path: str | None, redo: bool = False) -> bool:
        stack = self.redo_stack if redo else self.undo_stack
        return any(step.within(path) for step in stack)

    def defer(self, step: Step, handle: Any, as_kind: Kind) -> None:
        step.deferred, step.deferred_as = handle, as_kind
        self.deferred.append(step)
        if _has_text(step.inverse):
            self._texty.add(step)  # kept current until it runs

    def clear(self) -> None:
        self._texty.clear()
        self.undo_stack.clear()
        self.redo_stack.clear()
        self.deferred.clear()
        self._last = None


class _Uninvertible(Exception):
    pass


def _same_text(diff: Op, op: Op) -> bool:
    return isinstance(op, TextOp) and op.path == diff.path


def _has_text(inverse: Sequence[Op]) -> bool:
    """Whether ``inverse`` changes under transforms (only text ops do)."""
    return any(isinstance(op, TextOp) for op in inverse)


def _compact(ops: Sequence[Op]) -> list[Op]:
    """``ops`` with each run of adjacent edits of one text composed into one (the same
    effect, and one transform instead of many)."""
    out: list[Op] = []
    for op in ops:
        last = out[-1] if out else None
        if (
            isinstance(op, TextOp)
            and isinstance(last, TextOp)
            and last.path == op.path
            and last.if_version is None
            and op.if_version is None
        ):
            out[-1] = TextOp(path=op.path, delta=text_ot.compose(last.delta, op.delta))
        else:
            out.append(op)
    return out


def _prepend(first: list[Op], then: list[Op]) -> list[Op]:
    """``first`` followed by ``then``; adjacent text ops on one path are composed."""
    if (
        first
        and then
        and isinstance(first[-1], TextOp)
        and isinstance(then[0], TextOp)
        and first[-1].path == then[0].path
    ):
        composed = TextOp(path=then[0].path, delta=text_ot.compose(first[-1].delta, then[0].delta))
        return [*first[:-1], composed, *then[1:]]
    return [*first, *then]


def invert_ops(before: dict[str, Any], ops: Sequence[Op], version: int | None) -> list[Op]:
    """Ops that undo ``ops`` (applied in order to ``before``), newest first.

    Non-text inverses carry ``if_version=version``: they restore the old value only if
    nobody changed the path after ``version``. With ``version`` None (unknown) they
    cannot be guarded, and inverting them raises :class:`_Uninvertible`.
    """
    inverse: list[Op] = []
    state = before
    for op in ops:
        inverse = _prepend(_invert(state, op, version), inverse)
        try:
            state = apply_op(state, op)
        except OpError:
            return inverse  # does not apply here: the relay refused the rest too
    return inverse


def _invert(state: dict[str, Any], op: Op, version: int | None) -> list[Op]:
    if isinstance(op, TextOp):
        text = get_path(state, op.path, "")
        text = text if isinstance(text, str) else ""
        return [TextOp(path=op.path, delta=text_ot.invert(op.delta, text))]
    if isinstance(op, IncrementOp):
        return [IncrementOp(path=op.path, by=-op.by)]
    if isinstance(op, PushOp) and isinstance(op.value, dict) and "id" in op.value:
        item_id = op.value["id"]
        if isinstance(item_id, (str, int)) and not isinstance(item_id, bool):
            return [RemoveOp(path=op.path, id=item_id)]
    if isinstance(op, RemoveOp):
        items = get_path(state, op.path)
        if not isinstance(items, list):
            return []
        # The items come back at the end of the list (docs/undo.md).
        gone = [i for i in items if isinstance(i, dict) and i.get("id") == op.id]
        return [PushOp(path=op.path, value=item) for item in reversed(gone)]
    if version is None:
        raise _Uninvertible("the write was confirmed during a resync: its version is unknown")
    if isinstance(op, DeleteOp):
        old = get_path(state, op.path, _MISSING)
        return [] if old is _MISSING else [SetOp(path=op.path, value=old, if_version=version)]
    # set, merge, push without an id: restore what was there, guarded.
    created = _created_ancestor(state, op.path)
    if created is not None:
        return [_restore(state, created, version)]
    if isinstance(op, MergeOp):
        old = get_path(state, op.path)
        if isinstance(old, dict) and all(op.value):
            return [_restore(state, join_path(op.path, key), version) for key in op.value]
    return [_restore(state, op.path, version)]


def _restore(state: dict[str, Any], path: str, version: int) -> Op:
    old = get_path(state, path, _MISSING)
    if old is _MISSING:
        return DeleteOp(path=path, if_version=version)
    return SetOp(path=path, value=old, if_version=version)


def _created_ancestor(state: dict[str, Any], path: str) -> str | None:
    """The highest ancestor of ``path`` a write there creates (absent or None)."""
    segments = parse_path(path)
    node: Any = state
    for depth in range(len(segments) - 1):
        node = node.get(segments[depth], _MISSING) if isinstance(node, dict) else _MISSING
        if node is _MISSING or node is None:
            return join_path(*segments[: depth + 1])
    return None
