"""The client's per-room sync state machine (sans-I/O).

Inputs are method calls (a local write, a decoded relay message, a connection
opened or lost, a clock tick); outputs are lists of events for the I/O shell to
act on (send this message, the visible state changed, resolve these acks, ...).
Nothing here touches sockets, threads or the real clock.

Invariants (docs/protocol.md "Versions, ordering and exactly-once"; tests/client/test_core.py):
- ``visible`` = ``confirmed`` (the room at ``version``) + pending ops replayed.
- Pending ops are kept expressed against ``confirmed``: when a remote op arrives
  the confirmed state moves and pending text ops are transformed over it.
- Ops go out in ``client_seq`` order. A text op waits while an earlier op on a
  related path is unacknowledged, so the relay and this client transform it over
  exactly the same concurrent ops (the "one op in flight" rule of Jupiter/ot.js,
  applied per text path); meanwhile consecutive keystrokes compose into one op.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import QueueFull
from ..protocol.messages import (
    AckMessage,
    Batch,
    Broadcast,
    Error,
    Join,
    Joined,
    OpMessage,
    PresenceUpdate,
    Reject,
    Snapshot,
)
from ..protocol.pacing import TokenBucket
from ..state import text as text_ot
from ..state.ops import DeleteOp, Op, OpError, TextOp, apply_ops, get_path, touched_paths
from ..state.paths import is_related
from ..state.rebase import TextReplaced, transform_ops
from .undo import Kind, Step, UndoHistory

__all__ = [
    "Acked",
    "Changed",
    "Event",
    "Failed",
    "JoinedRoom",
    "Pending",
    "PresenceChanged",
    "Priority",
    "QueueFull",
    "Resync",
    "RoomSync",
    "Send",
]


class Priority(enum.IntEnum):
    """Who yields when the offline queue is full (never the send order)."""

    LOW = 0
    NORMAL = 1
    HIGH = 2


@dataclass(eq=False)
class Pending:
    """A local op (or batch) not yet acknowledged by the relay."""

    seq: int
    ops: list[Op]
    batch: bool
    priority: Priority
    # Opaque objects from the shell (e.g. Ack futures); composed keystrokes share one Pending.
    handles: list[Any] = field(default_factory=list)
    sent: bool = False
    sent_at: float = 0.0
    # Ever sent (on any connection): the relay may hold this seq, so never extend it.
    transmitted: bool = False
    # A concurrent op replaced the string this text op edits; the relay will refuse it.
    doomed: bool = False
    # The room version a doomed op was last expressed against: it is sent with that
    # base, so the relay sees the replacement as concurrent and refuses it (with the
    # version after, a delta that happens to fit the new string would apply to it).
    doomed_base: int = 0
    # The relay processed it before the snapshot we hold: its effect is in the snapshot
    # (or nowhere, if refused). Kept only to learn the verdict when resent.
    settled: bool = False

    @property
    def replayed(self) -> bool:
        """Whether this op is part of the visible state."""
        return not (self.doomed or self.settled)

    @property
    def has_text(self) -> bool:
        return any(isinstance(op, TextOp) for op in self.ops)

    def touches(self, other: Pending) -> bool:
        mine = [p for op in self.ops for p in touched_paths(op)]
        return any(is_related(a, b) for op in other.ops for b in touched_paths(op) for a in mine)


# --- events (outputs) ---------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    message: Any


@dataclass(frozen=True)
class Changed:
    """The visible state went from ``before`` to ``after`` (roots; compare subtrees)."""

    before: dict[str, Any]
    after: dict[str, Any]
    local: bool
    # Ops that turn ``before`` into ``after`` exactly, when known (cursor transforms use
    # their text deltas); None when the change is a recomputation (diff instead).
    ops: Sequence[Op] | None = None
    # The client whose op caused the change (None for recomputations).
    origin: str | None = None


@dataclass(frozen=True)
class Acked:
    handles: list[Any]
    version: int


@dataclass(frozen=True)
class Failed:
    """The relay refused ops (or they were evicted); they were rolled back."""

    handles: list[Any]
    ops: list[Op]
    code: str
    message: str
    path: str | None = None
    current: Any = None
    current_version: int | None = None


@dataclass(frozen=True)
class PresenceChanged:
    client_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class JoinedRoom:
    version: int
    mode: str


@dataclass(frozen=True)
class Resync:
    """Local and relay state disagree; the shell should reconnect for a snapshot."""

    reason: str


Event = Send | Changed | Acked | Failed | PresenceChanged | JoinedRoom | Resync


class RoomSync:
    """Shared state of one room as seen by one client."""

    def __init__(self, room: str, client_id: str, *, max_pending: int = 10_000) -> None:
        self.room = room
        self.client_id = client_id
        self.max_pending = max_pending
        # The room state at ``version`` as the relay ordered it.
        self.confirmed: dict[str, Any] = {}
        self.version = 0
        # The relay's name for the history ``version`` belongs to (joined.epoch): a
        # resume sends it back, and gets a snapshot if the relay's history forked.
        self.epoch: str | None = None
        # What the user sees: confirmed + pending replayed.
        self.visible: dict[str, Any] = {}
        self.pending: list[Pending] = []
        self.presence: dict[str, dict[str, Any]] = {}
        self.joined = False
        self.next_seq = 1
        # True until the first catch-up, or after a divergence: ask for a snapshot.
        self._need_snapshot = True
        # The connection's send budget (docs/protocol.md "Pacing"), shared by its rooms
        # and set by the connection lifecycle from welcome.limits; None: unpaced.
        self.pacer: TokenBucket | None = None
        # The cost of the first unsent op the pacer held back (None: none held).
        self.paced_cost: float | None = None
        # Own writes that undo()/redo() can take back (client.undo).
        self.history = UndoHistory()

    # --- local writes -------------------------------------------------------------

    def submit(
        self,
        ops: Sequence[Op],
        *,
        batch: bool = False,
        handle: Any = None,
        priority: Priority = Priority.NORMAL,
        now: float = 0.0,
        kind: Kind = "write",
    ) -> list[Event]:
        """Apply ``ops`` optimistically and queue them; raises OpError or QueueFull.

        ``kind``: a normal write ("write", which clears the redo stack), or the ops of
        an undo or a redo (see :meth:`undo`)."""
        before = self.visible
        after = apply_ops(before, ops)  # the caller's mistake surfaces here, at once
        events: list[Event] = []
        group = self.history.group_for(ops, batch, kind, now)
        if self._compose_keystroke(ops, batch, handle, priority, group):
            self.visible = after
            self.history.record(self.pending[-1], ops, kind, now, group)
            return [Changed(before, after, local=True, ops=ops, origin=self.client_id)]
        if len(self.pending) >= self.max_pending:
            events += self._make_room(priority)
            before = self.visible
            after = apply_ops(before, ops)
        pending = Pending(self.next_seq, list(ops), batch, priority)
        if handle is not None:
            pending.handles.append(handle)
        self.next_seq += 1
        self.pending.append(pending)
        self.history.record(pending, ops, kind, now, group)
        self.visible = after
        events.append(Changed(before, after, local=True, ops=ops, origin=self.client_id))
        return events + self._send_ready(now)

    def _compose_keystroke(
        self, ops: Sequence[Op], batch: bool, handle: Any, priority: Priority, group: Step | None
    ) -> bool:
        """Fold a text edit into the previous unsent edit of the same text (ot.js "buffer"),
        if both are one undo step (``group``)."""
        if batch or len(ops) != 1 or not isinstance(ops[0], TextOp) or not self.pending:
            return False
        last = self.pending[-1]
        if group is None or last not in group.pending:
            return False
        op = ops[0]
        if last.transmitted or last.batch or not last.replayed or last.priority != priority:
            return False
        if len(last.ops) != 1 or not isinstance(last.ops[0], TextOp) or last.ops[0].path != op.path:
            return False
        if op.if_version is not None or last.ops[0].if_version is not None:
            return False
        delta = text_ot.compose(last.ops[0].delta, op.delta)
        last.ops = [TextOp(path=op.path, delta=delta)]
        if handle is not None:
            last.handles.append(handle)
        return True

    def _make_room(self, priority: Priority) -> list[Event]:
        """Evict the newest unsent, independent op of lower priority, or raise QueueFull."""
        for index in range(len(self.pending) - 1, -1, -1):
            victim = self.pending[index]
            if victim.transmitted or victim.priority >= priority:
                continue
            if any(later.touches(victim) for later in self.pending[index + 1 :]):
                continue  # later ops build on it: dropping it would change their meaning
            self._withdraw(victim)
            del self.pending[index]
            events = self._rollback(victim, "queue_full", "evicted by a higher-priority write")
            return events + self._undo_ready(self.history.forget(victim), 0.0)
        raise QueueFull(
            f"{len(self.pending)} operations are waiting for the relay (limit {self.max_pending})"
        )

    # --- undo and redo (client.undo, docs/undo.md) -----------------------------------

    def undo(
        self, path: str | None = None, *, handle: Any = None, now: float = 0.0, redo: bool = False
    ) -> list[Event] | None:
        """Undo (or redo) this client's latest own write within ``path`` as a new write.

        Returns None when there is nothing to undo. The new write's outcome reaches
        ``handle`` (Acked, or Failed: ``conflict`` when a value it would restore changed
        since, or its text was replaced). A write not yet confirmed is undone once it
        is (or, if the relay refuses it, there is nothing to undo).
        """
        step = self.history.take(path, redo)
        if step is None:
            return None
        return self._run_undo(step, handle, now, "redo" if redo else "undo")

    def can_undo(self, path: str | None = None, *, redo: bool = False) -> bool:
        return self.history.can(path, redo)

    def _run_undo(self, step: Step, handle: Any, now: float, kind: Kind) -> list[Event]:
        where = step.paths[0] if step.paths else None
        if step.lost is not None:
            return [self._undo_refused(handle, where, f"cannot undo: {step.lost}")]
        if any(p.replayed for p in step.pending):
            # Undone once confirmed: its version guards the undo, and its inverse is
            # computed from what the relay really applied (an inverse made now would not
            # follow the rebases of the op it undoes: it could bring back text a peer
            # deleted concurrently).
            self.history.defer(step, handle, kind)
            return []
        # The inverse against ``visible``: transformed over the pending ops.
        try:
            ops = [op for p in self.pending if p.replayed for op in p.ops]
            inverse = transform_ops(step.inverse, ops)[0] if ops else list(step.inverse)
        except TextReplaced as exc:
            return [self._undo_refused(handle, exc.path, f"cannot undo: {exc}")]
        if not inverse:
            return [Acked([handle] if handle is not None else [], self.version)]
        try:
            return self.submit(inverse, batch=len(inverse) > 1, handle=handle, now=now, kind=kind)
        except OpError as exc:
            return [self._undo_refused(handle, exc.path or where, f"cannot undo: {exc}", exc.code)]

    def _undo_refused(
        self, handle: Any, path: str | None, message: str, code: str = "conflict"
    ) -> Failed:
        current = get_path(self.confirmed, path) if path else None
        handles = [handle] if handle is not None else []
        return Failed(handles, [], code, message, path, current, self.version if path else None)

    def _undo_ready(self, steps: list[Step], now: float) -> list[Event]:
        """Run the undos that waited for their write's confirmation (or refusal)."""
        events: list[Event] = []
        for step in steps:
            events += self._run_undo(step, step.deferred, now, step.deferred_as)
        return events

    # --- connection lifecycle -----------------------------------------------------

    def connection_opened(self, presence: dict[str, Any] | None = None) -> list[Event]:
        """A connection is up and welcomed: (re)join, resuming from our version."""
        self.joined = False
        for pending in self.pending:
            pending.sent = False
        if self._need_snapshot:
            return [Send(Join(room=self.room, presence=presence))]
        return [Send(Join(self.room, self.version, presence, self.epoch))]

    def connection_lost(self) -> list[Event]:
        """Peers' presence is unknown while offline; they are re-sent on join."""
        self.joined = False
        self.paced_cost = None
        for pending in self.pending:
            pending.sent = False
        gone = [PresenceChanged(cid, state, None) for cid, state in self.presence.items()]
        self.presence = {}
        return list(gone)

    def tick(self, now: float, ack_timeout: float) -> list[Event]:
        """Resend in-flight ops whose ack is overdue (the relay deduplicates them)."""
        events: list[Event] = []
        for pending in self.pending:
            if pending.sent and now - pending.sent_at > ack_timeout:
                pending.sent_at = now
                if self.pacer is not None:  # rare: counted, never held back
                    self.pacer.charge(now, len(pending.ops))
                events.append(Send(self._message(pending)))
        return events

    # --- relay messages -----------------------------------------------------------

    def receive(self, message: Any, now: float = 0.0) -> list[Event]:
        """Handle one decoded relay message addressed to this room."""
        handler = _HANDLERS.get(type(message))
        return handler(self, message, now) if handler else []

    def _on_snapshot(self, message: Snapshot, now: float) -> list[Event]:
        before = self.visible
        # Ops the relay already processed (a prefix of pending) are in the snapshot, or
        # were refused: either way the snapshot decides. The ops after them were made on
        # top of them, so the merge base is our old state plus those ops.
        base = self.confirmed
        for pending in self.pending:
            if pending.seq <= message.last_seq and not pending.settled:
                if pending.replayed:
                    # Its version is unknown: only its text edits stay undoable.
                    self.history.confirmed(pending, base, pending.ops, None)
                    base = _try_apply(base, pending.ops)
                else:
                    self.history.forget(pending)
                pending.settled = True
        self.history.resync(base, message.state)
        old_version = self.version
        self.confirmed, self.version = message.state, message.version
        self._need_snapshot = False
        # We cannot see the ops between our state and the snapshot, so rebase pending
        # text edits over the difference of each string (a three-way merge).
        live = [p for p in self.pending if p.replayed]
        self._rebase_pending(_text_differences(base, message.state, live), old_version)
        return self._replay(before)

    def _on_broadcast(self, message: Broadcast, now: float) -> list[Event]:
        if message.version <= self.version:
            return []  # already applied (overlapping catch-up)
        if message.version != self.version + 1:
            return self._diverged(f"gap: got version {message.version} at {self.version}")
        if message.origin == self.client_id:
            pending = self._find(message.client_seq)
            if pending is not None:
                return self._confirm(pending, message.version, list(message.ops), now)
        try:
            self.confirmed = apply_ops(self.confirmed, message.ops)
        except OpError as exc:
            return self._diverged(f"relay op does not apply here: {exc}")
        self.version = message.version
        self.history.remote(message.ops)
        before = self.visible
        seen_after_pending = self._rebase_pending(message.ops, message.version - 1)
        return self._replay(before, seen_after_pending, message.origin)

    def _on_ack(self, message: AckMessage, now: float) -> list[Event]:
        pending = self._find(message.client_seq)
        if pending is None:
            return []  # ack of a resend we already resolved
        if message.version <= self.version:
            # Applied before the state we hold: the snapshot we got already includes it.
            if not pending.settled:
                return self._diverged(f"ack for version {message.version} at {self.version}")
            self.pending.remove(pending)
            return [Acked(pending.handles, message.version), *self._send_ready(now)]
        if message.version != self.version + 1:
            return self._diverged(f"ack for version {message.version} at {self.version}")
        return self._confirm(pending, message.version, pending.ops, now)

    def _on_reject(self, message: Reject, now: float) -> list[Event]:
        return self.fail(
            message.client_seq,
            message.code,
            message.message,
            now,
            path=message.path,
            current=message.current,
            current_version=message.current_version,
        )

    def fail(
        self,
        seq: int,
        code: str,
        message: str,
        now: float = 0.0,
        *,
        path: str | None = None,
        current: Any = None,
        current_version: int | None = None,
    ) -> list[Event]:
        """Roll back and fail pending op ``seq``: the relay refused it, or the shell
        will not send it (too large); the ops after it go out if they may."""
        pending = self._find(seq)
        if pending is None:
            return []
        if pending.replayed:
            self._withdraw(pending)
        self.pending.remove(pending)
        events = self._rollback(pending, code, message, path, current, current_version)
        events += self._undo_ready(self.history.forget(pending), now)
        return events + self._send_ready(now)

    def _on_joined(self, message: Joined, now: float) -> list[Event]:
        if message.version != self.version:
            return self._diverged(f"joined at {message.version}, caught up to {self.version}")
        self.joined = True
        self.epoch = message.epoch or None
        events: list[Event] = [JoinedRoom(message.version, message.mode)]
        old, self.presence = self.presence, dict(message.presence)
        for cid in old.keys() | self.presence.keys():
            if old.get(cid) != self.presence.get(cid):
                events.append(PresenceChanged(cid, old.get(cid), self.presence.get(cid)))
        return events + self._send_ready(now)

    def _on_presence(self, message: PresenceUpdate, now: float) -> list[Event]:
        events: list[Event] = []
        for client_id, state in message.states.items():
            before = self.presence.get(client_id)
            # Our own entry (coalesced with others' changes) and repeats of what
            # joined.presence already said change nothing.
            if client_id == self.client_id or state == before:
                continue
            if state is None:
                del self.presence[client_id]
            else:
                self.presence[client_id] = state
            events.append(PresenceChanged(client_id, before, state))
        return events

    def _on_error(self, message: Error, now: float) -> list[Event]:
        if message.code == "not_joined":
            return self._diverged(f"relay says: {message.message}")
        return []

    # --- internals ----------------------------------------------------------------

    def _find(self, seq: int) -> Pending | None:
        for pending in self.pending:
            if pending.seq == seq:
                return pending
        return None

    def _confirm(self, pending: Pending, version: int, ops: list[Op], now: float) -> list[Event]:
        """Our op got ``version``: it moves from pending into confirmed."""
        if pending.doomed:
            return self._diverged("the relay accepted an op this client thought impossible")
        before = self.confirmed
        try:
            self.confirmed = apply_ops(self.confirmed, ops)
        except OpError as exc:
            return self._diverged(f"own acked op does not apply: {exc}")
        self.version = version
        self.pending.remove(pending)
        ready = self.history.confirmed(pending, before, ops, version)
        # Visible is unchanged: it already showed this op on top of the same state.
        events: list[Event] = [Acked(pending.handles, version)]
        return events + self._undo_ready(ready, now) + self._send_ready(now)

    def _rollback(
        self,
        pending: Pending,
        code: str,
        message: str,
        path: str | None = None,
        current: Any = None,
        current_version: int | None = None,
    ) -> list[Event]:
        events = self._replay(self.visible)
        failed = Failed(pending.handles, pending.ops, code, message, path, current, current_version)
        return [*events, failed]

    def _withdraw(self, pending: Pending) -> None:
        """Take ``pending``'s text edits out from under the pending ops after it.

        Later text ops were made on top of it; transforming them over its inverse
        re-expresses them as if it had never happened (so it can be dropped).
        """
        state = self.confirmed
        for earlier in self.pending:
            if earlier is pending:
                break
            if earlier.replayed:
                state = _try_apply(state, earlier.ops)
        inverse: list[Op] = []
        for op in pending.ops:
            if isinstance(op, TextOp):
                text = get_path(state, op.path, "")
                if isinstance(text, str) and text_ot.base_length(op.delta) == text_ot.utf16_len(
                    text
                ):
                    inverse.insert(0, TextOp(path=op.path, delta=text_ot.invert(op.delta, text)))
            state = _try_apply(state, [op])
        later = self.pending[self.pending.index(pending) + 1 :]
        self._rebase_pending(inverse, self.version, later)

    def _rebase_pending(
        self,
        concurrent: Iterable[Op],
        base: int,
        pending_ops: Iterable[Pending] | None = None,
    ) -> list[Op] | None:
        """Transform pending ops (expressed against version ``base``) over
        ``concurrent``; returns ``concurrent`` as it applies on top of the pending ops
        (None if some op could not be rebased)."""
        others = list(concurrent)
        # Texts a concurrent op replaced under a pending edit: later edits of them were
        # made on top of that (doomed) edit, so they cannot be rebased either.
        replaced: list[str] = []
        for pending in self.pending if pending_ops is None else pending_ops:
            if not others:
                break
            if not pending.replayed:
                continue
            if replaced and _edits_text_under(pending.ops, replaced):
                pending.doomed, pending.doomed_base = True, base
                continue
            try:
                pending.ops, others = transform_ops(pending.ops, others)
            except TextReplaced as exc:
                # Doomed (the relay refuses it too): the ops after it see ``others``
                # as they were before it.
                pending.doomed, pending.doomed_base = True, base
                replaced.append(exc.path)
        return None if replaced else others

    def _replay(
        self, before: dict[str, Any], ops: Sequence[Op] | None = None, origin: str | None = None
    ) -> list[Event]:
        """Recompute visible = confirmed + pending; skip ops that cannot apply now."""
        visible = self.confirmed
        for pending in self.pending:
            if not pending.replayed:
                continue
            try:
                visible = apply_ops(visible, pending.ops)
            except OpError:
                ops = None  # skipped: ``ops`` no longer describe the change exactly
                continue  # the relay will refuse it too; its reject rolls it back
        self.visible = visible
        if visible is before:
            return []
        return [Changed(before, visible, local=False, ops=ops, origin=origin)]

    def _diverged(self, reason: str) -> list[Event]:
        self._need_snapshot = True
        self.joined = False
        return [Resync(reason)]

    def flush(self, now: float) -> list[Event]:
        """Send what may go now (the pacer held ops back until ``now``)."""
        return self._send_ready(now)

    def _send_ready(self, now: float) -> list[Event]:
        """Send unsent ops in order; stop at a text op that must wait for an ack, or
        where the pacer's budget runs out (a batch costs its ops)."""
        if not self.joined:
            self.paced_cost = None
            return []
        pacer = self.pacer
        if pacer is not None and self.paced_cost is not None:
            if now < pacer.ready_at(self.paced_cost):
                return []  # still no budget: skip the scan (writes far outpace the rate)
            self.paced_cost = None
        events: list[Event] = []
        # Settled ops are already in the state we hold: they cannot shift a text op.
        in_flight = [p for p in self.pending if p.sent and p.replayed]
        for pending in self.pending:
            if pending.sent:
                continue
            if pending.has_text and any(pending.touches(p) for p in in_flight):
                break
            if pacer is not None and not pacer.admit(now, len(pending.ops)):
                self.paced_cost = len(pending.ops)
                break
            pending.sent, pending.sent_at, pending.transmitted = True, now, True
            if pending.replayed:
                in_flight.append(pending)
            events.append(Send(self._message(pending)))
        return events

    def _message(self, pending: Pending) -> OpMessage | Batch:
        base = pending.doomed_base if pending.doomed else self.version
        if pending.batch:
            return Batch(room=self.room, client_seq=pending.seq, base_version=base, ops=pending.ops)
        return OpMessage(
            room=self.room, client_seq=pending.seq, base_version=base, op=pending.ops[0]
        )

    @property
    def in_flight(self) -> int:
        return sum(1 for p in self.pending if p.sent)


def _edits_text_under(ops: Sequence[Op], paths: list[str]) -> bool:
    """Whether a text op of ``ops`` edits a string at (or under, or above) one of ``paths``."""
    return any(
        isinstance(op, TextOp) and any(is_related(op.path, path) for path in paths) for op in ops
    )


def _try_apply(state: dict[str, Any], ops: Sequence[Op]) -> dict[str, Any]:
    try:
        return apply_ops(state, ops)
    except OpError:
        return state


def _text_differences(
    old: dict[str, Any], new: dict[str, Any], pending: Sequence[Pending]
) -> list[Op]:
    """Text ops turning each pending-edited string in ``old`` into its value in ``new``."""
    changes: list[Op] = []
    seen: set[str] = set()
    for op in (op for p in pending for op in p.ops):
        if not isinstance(op, TextOp) or op.path in seen:
            continue
        seen.add(op.path)
        before, after = get_path(old, op.path, ""), get_path(new, op.path, "")
        if not isinstance(before, str):
            before = ""
        if not isinstance(after, str):
            changes.append(DeleteOp(path=op.path))  # the string is gone: edits to it are void
        elif before != after:
            changes.append(TextOp(path=op.path, delta=text_ot.diff_regions(before, after)))
    return changes


_HANDLERS: dict[type, Any] = {
    Snapshot: RoomSync._on_snapshot,
    Broadcast: RoomSync._on_broadcast,
    AckMessage: RoomSync._on_ack,
    Reject: RoomSync._on_reject,
    Joined: RoomSync._on_joined,
    PresenceUpdate: RoomSync._on_presence,
    Error: RoomSync._on_error,
}
