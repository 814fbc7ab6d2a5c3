"""The room sequencer: the pure core that orders, checks and logs a room's ops.

No sockets, clocks or storage here. The server feeds submissions in and gets
outcomes back; it must persist every ``Accepted.entry`` before acking or
broadcasting it (docs/protocol.md "Durability"). Everything the sequencer needs
to resume after a restart (version, log tail, dedupe table, snapshot) is what the
store keeps (relay.store.RoomRecord).

With a store shared by several relays (Redis), a room's core also takes entries
sequenced elsewhere (:meth:`RoomCore.apply_entry`) and can take back a round the
store refused (:meth:`RoomCore.begin_round` / :meth:`RoomCore.rollback_round`), so
the shell can re-run that round's submissions after the other relay's entries.

The core also bounds the size of the room's state (:data:`DEFAULT_MAX_STATE_BYTES`):
it keeps the exact length of the state's JSON encoding up to date from each op's
change alone (:func:`size_delta`), never re-encoding the whole state per op.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Final

import msgspec

from ..protocol.codes import ErrorCode
from ..rules import MISSING, Actor, RuleSet, check_ops, project
from ..state.clock import PathClock
from ..state.ops import (
    MergeOp,
    Op,
    OpError,
    PushOp,
    RemoveOp,
    apply_op,
    apply_ops,
    get_path,
    touched_paths,
)
from ..state.rebase import TextReplaced, transform_ops
from ..state.text import TextOpError
from .lineage import Lineage
from .room_rules import RULES_PATH, RoomRules, check_rules_write

__all__ = [
    "DEFAULT_MAX_STATE_BYTES",
    "Accepted",
    "CatchUp",
    "Duplicate",
    "LogEntry",
    "Outcome",
    "Rejected",
    "RoomCore",
    "RoomRecord",
    "encoded_size",
    "size_delta",
]

# The default limit on a room's state: the length of its JSON encoding (what a
# snapshot carries), 8 MiB. Why this value:
# * a joining client downloads the whole state in one snapshot frame, and the reference
#   client accepts relay frames up to 64 MiB (client EngineConfig.max_frame_size). The
#   msgpack encoding of a state can be larger than its JSON one, at worst 2.25 times (a
#   float takes 9 bytes in msgpack, at least 4 with its comma in JSON: "0.0,"), so a full
#   room's snapshot is at most ~18 MiB in either encoding: far below 64 MiB.
# * it is half the relay's default send queue per connection (16 MiB, ``send_queue_bytes``):
#   a snapshot queued behind or ahead of other frames (joined, presence, live broadcasts,
#   a second room's snapshot) still fits, instead of closing the joiner with 4009.
# * it is 8 times the largest op (1 MiB frames) and far more than widgets need (polls,
#   chat, notes, labels are kilobytes to a few megabytes).
# The size is exact (see size_delta), so an accepted state never encodes above the limit.
DEFAULT_MAX_STATE_BYTES: Final = 8 * 2**20
# Refusals of one client kept for its next log entry (LogEntry.refused); older ones
# are forgotten (a resend of one is then answered as applied, see docs/protocol.md).
MAX_UNLOGGED_REFUSALS: Final = 256

_encode = msgspec.json.Encoder().encode
# "No value here" while comparing trees (a stored None is a value).
_MISSING: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One accepted op or batch: the unit of the durable log."""

    version: int
    client_id: str
    client_seq: int
    ops: tuple[Op, ...]
    # (client_seq, error code) of the client's ops refused since its previous entry:
    # logged with this one, so a resend of a refused op is answered as refused after
    # a restart or on another relay (its verdict is durable once a later op of the
    # client is). The reason's message and details are not kept.
    refused: tuple[tuple[int, str], ...] = ()
    # Who wrote it (the principal's user name; "" for entries logged before history
    # existed) and when the relay sequenced it (Unix time; 0.0: unknown). History
    # (docs/history.md) shows them; sequencing never reads them.
    user: str = ""
    time: float = 0.0


@dataclass(slots=True)
class RoomRecord:
    """A room as the store keeps it: a snapshot plus the log after it."""

    name: str
    snapshot_version: int = 0
    snapshot_state: dict[str, Any] = field(default_factory=dict)
    snapshot_clock: Any = None
    # Entries with version > snapshot_version, in order.
    log: list[LogEntry] = field(default_factory=list)
    # client_id -> (highest client_seq processed, version it got or 0 if rejected).
    dedupe: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The room's epoch and the one before it (relay.lineage); None: none recorded.
    lineage: Lineage | None = None

    @property
    def head(self) -> int:
        """Version of the last stored entry."""
        return self.log[-1].version if self.log else self.snapshot_version


@dataclass(frozen=True, slots=True)
class Accepted:
    entry: LogEntry


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A resend of an op applied before, at ``version``."""

    version: int


@dataclass(frozen=True, slots=True)
class Rejected:
    code: ErrorCode
    message: str
    path: str | None = None
    current: Any = None
    current_version: int | None = None


Outcome = Accepted | Duplicate | Rejected


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What a joining client needs: either entries after ``since`` or a whole snapshot."""

    mode: str  # "delta" or "snapshot"
    version: int
    entries: Sequence[LogEntry] = ()
    state: dict[str, Any] | None = None
    # For snapshots: the joining client's highest processed client_seq.
    last_seq: int = 0


@dataclass(slots=True)
class _Round:
    """What a round changed, to take it back (RoomCore.rollback_round)."""

    version: int
    state: dict[str, Any]
    state_bytes: int
    ops_since_snapshot: int
    # Entries appended to the window, and those the appends pushed out of it (oldest first).
    appended: int = 0
    evicted: list[LogEntry] = field(default_factory=list)
    # client_id -> its dedupe value before the round (None: absent), first change only.
    dedupe: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    # client_id -> its refusals not yet logged before the round, first change only.
    unlogged: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # Changes to the remembered rejections: (key, value before or None), in order.
    rejected: list[tuple[tuple[str, int], Rejected | None]] = field(default_factory=list)
    # PathClock.record's undo log.
    clock: list[tuple[Any, ...]] = field(default_factory=list)


class RoomCore:
    """Sequencer state of one room; call :meth:`submit` for each op, in arrival order.

    ``max_state_bytes`` bounds ``len(msgspec.json.encode(state))``: an op or batch that
    would grow the state past it is rejected with ``too_large``. Ops that do not grow
    the state are always accepted, so a room over the limit (the limit was lowered) can
    still be cleaned up. None: DEFAULT_MAX_STATE_BYTES.
    """

    def __init__(
        self,
        record: RoomRecord,
        *,
        window: int = 10_000,
        max_state_bytes: int | None = None,
        rules: RoomRules | None = None,
    ) -> None:
        self.name = record.name
        # Who may write and read what (docs/rules.md); the room's own ``$rules`` or the
        # relay's default.
        self.rules = rules or RoomRules()
        # The state before and after each op of the last accepted entry (the hub
        # filters broadcasts per reader with them when rules are in force).
        self.last_roots: list[dict[str, Any]] = []
        # Room state after ``self.version`` (immutable tree, see state.ops).
        self.state = record.snapshot_state
        self.clock = PathClock.from_data(record.snapshot_clock)
        self.version = record.snapshot_version
        # Recent entries, for delta catch-up, text transforms and duplicate acks.
        self.window: deque[LogEntry] = deque(maxlen=window)
        self.dedupe = dict(record.dedupe)
        # Which history the versions belong to: resumes from another one get a snapshot.
        self.lineage = record.lineage or Lineage.first()
        # Recently rejected resends: (client_id, seq) -> outcome, so a resend is answered alike.
        self._rejected: OrderedDict[tuple[str, int], Rejected] = OrderedDict()
        # client_id -> (seq, code) of its refusals since its last entry; the next entry
        # carries them into the log (LogEntry.refused).
        self._unlogged: dict[str, list[tuple[int, str]]] = {}
        self.ops_since_snapshot = 0
        # The open round's undo log (begin_round), None outside rounds.
        self._round: _Round | None = None
        self.max_state_bytes = (
            DEFAULT_MAX_STATE_BYTES if max_state_bytes is None else max_state_bytes
        )
        for entry in record.log:
            self._replay(entry)
        # Exact length of the state's JSON encoding, kept up to date by every accepted op
        # (size_delta). Measured once here: snapshot plus log tail, whatever the limit.
        self.state_bytes = encoded_size(self.state)

    @property
    def rules_in_force(self) -> RuleSet | None:
        """The rules the next op is checked under (None: everything is allowed)."""
        return self.rules.effective(self.state)

    def _replay(self, entry: LogEntry) -> None:
        """Re-apply a logged entry while loading (it was valid when accepted)."""
        self.state = apply_ops(self.state, entry.ops)
        self._advance(entry)

    def _advance(self, entry: LogEntry) -> None:
        self.version = entry.version
        paths = (p for op in entry.ops for p in touched_paths(op))
        round_ = self._round
        if round_ is None:
            self.clock.record(paths, entry.version)
        else:
            self.clock.record(paths, entry.version, round_.clock)
            if len(self.window) == self.window.maxlen:
                round_.evicted.append(self.window[0])
            round_.appended += 1
        self.window.append(entry)
        # ``>=``: an entry sequenced by another relay may carry a seq this core refused
        # (the client resent it there); the accepted entry wins.
        if entry.client_seq >= self.dedupe.get(entry.client_id, (0, 0))[0]:
            self._set_dedupe(entry.client_id, (entry.client_seq, entry.version))
        self.ops_since_snapshot += 1

    def _set_dedupe(self, client_id: str, value: tuple[int, int]) -> None:
        round_ = self._round
        if round_ is not None and client_id not in round_.dedupe:
            round_.dedupe[client_id] = self.dedupe.get(client_id)
        self.dedupe[client_id] = value

    # --- entries sequenced elsewhere, and rounds a shared store refused ---------------

    def apply_entry(self, entry: LogEntry) -> None:
        """Apply an entry another relay sequenced and committed, at exactly version + 1.

        It was valid against the same state there, so it is applied unchecked, like a
        logged entry on load; state size, path clock, window and dedupe follow it.
        Raises ValueError if it does not continue this core's version.
        """
        if entry.version != self.version + 1:
            raise ValueError(
                f"entry version {entry.version} does not continue the room at {self.version}"
            )
        state, size = self.state, self.state_bytes
        roots = [state]
        for op in entry.ops:
            after = apply_op(state, op)
            size += size_delta(state, after, op)
            state = after
            roots.append(state)
        self.state, self.state_bytes, self.last_roots = state, size, roots
        key = (entry.client_id, entry.client_seq)
        if key in self._rejected:
            self._note_rejected(key)
            del self._rejected[key]
        self._advance(entry)

    def begin_round(self) -> None:
        """Start logging changes so that :meth:`rollback_round` can take them back."""
        if self._round is not None:
            raise RuntimeError("a round is already open")
        self._round = _Round(self.version, self.state, self.state_bytes, self.ops_since_snapshot)

    def end_round(self) -> None:
        """Keep the round's changes (they are committed); forget the undo log."""
        self._round = None

    def rollback_round(self) -> None:
        """Take back everything since :meth:`begin_round`: version, state, state size,
        path clock, window, dedupe table and remembered rejections are as they were.

        (A remembered rejection that a change pushed out of its bounded cache stays
        out; it only answers resends.)
        """
        round_ = self._round
        if round_ is None:
            raise RuntimeError("no round is open")
        self._round = None
        self.version, self.state = round_.version, round_.state
        self.state_bytes, self.ops_since_snapshot = round_.state_bytes, round_.ops_since_snapshot
        PathClock.rollback(round_.clock)
        for _ in range(min(round_.appended, len(self.window))):
            self.window.pop()
        # A long round may have pushed out its own first entries too: restore the older.
        older = [e for e in round_.evicted if e.version <= round_.version]
        self.window.extendleft(reversed(older))
        for client_id, value in round_.dedupe.items():
            if value is None:
                del self.dedupe[client_id]
            else:
                self.dedupe[client_id] = value
        for key, rejected in reversed(round_.rejected):
            if rejected is None:
                self._rejected.pop(key, None)
            else:
                self._rejected[key] = rejected
        for client_id, unlogged in round_.unlogged.items():
            if unlogged:
                self._unlogged[client_id] = unlogged
            else:
                self._unlogged.pop(client_id, None)

    def _note_rejected(self, key: tuple[str, int]) -> None:
        if self._round is not None:
            self._round.rejected.append((key, self._rejected.get(key)))

    def submit(
        self,
        client_id: str,
        client_seq: int,
        base_version: int,
        ops: Sequence[Op],
        actor: Actor | None = None,
        *,
        user: str | None = None,
        at: float = 0.0,
    ) -> Outcome:
        """Order one op/batch: dedupe, rebase text, check preconditions and rules, apply.

        ``actor``: who wrote it, for the room's rules (None: the relay itself, trusted).
        The entry records ``user`` (default: the actor's) and Unix time ``at``.
        """
        last_seq, last_version = self.dedupe.get(client_id, (0, 0))
        if client_seq <= last_seq:
            return self._answer_resend(client_id, client_seq, last_seq, last_version)
        outcome = self._check_and_apply(client_id, base_version, ops, actor)
        if isinstance(outcome, Rejected):
            self._set_dedupe(client_id, (client_seq, 0))
            self._remember_reject(client_id, client_seq, outcome)
            return outcome
        refused = self._take_unlogged(client_id)
        if user is None:
            user = actor.user if actor is not None else ""
        entry = LogEntry(self.version + 1, client_id, client_seq, outcome, refused, user, at)
        self._advance(entry)
        return Accepted(entry)

    def refuse(self, client_id: str, client_seq: int, rejected: Rejected) -> Outcome:
        """Record a refusal decided outside the room (policy: forbidden, rate_limited).

        It consumes ``client_seq`` like any reject, so a resend is answered alike and
        never mistaken for an applied op; a resend of an op applied before is still acked.
        """
        last_seq, last_version = self.dedupe.get(client_id, (0, 0))
        if client_seq <= last_seq:
            return self._answer_resend(client_id, client_seq, last_seq, last_version)
        self._set_dedupe(client_id, (client_seq, 0))
        self._remember_reject(client_id, client_seq, rejected)
        return rejected

    def _check_and_apply(
        self, client_id: str, base_version: int, ops: Sequence[Op], actor: Actor | None = None
    ) -> tuple[Op, ...] | Rejected:
        if base_version > self.version:
            return Rejected(
                ErrorCode.INVALID_MESSAGE,
                f"base_version {base_version} is ahead of the room (version {self.version})",
            )
        try:
            ops = self._rebase(client_id, base_version, ops)
        except TextReplaced as exc:
            return Rejected(ErrorCode.CONFLICT, str(exc), exc.path, *self._current(exc.path, actor))
        except TextOpError as exc:
            # A delta that does not span the text at base_version cannot be transformed
            # over the concurrent ones: the client's mistake, not the room's.
            path = next(op.path for op in ops if op.__struct_config__.tag == "text")
            return Rejected(ErrorCode.INVALID_OP, str(exc), path)
        for op in ops:
            if op.if_version is not None:
                changed = self.clock.changed_at(op.path)
                if changed > op.if_version:
                    current, _ = self._current(op.path, actor)
                    return Rejected(
                        ErrorCode.CONFLICT,
                        f"`{op.path}` changed at version {changed}, after {op.if_version}",
                        op.path,
                        current,
                        changed,
                    )
        # Apply everything first: a batch that fails costs no size computation.
        roots = [self.state]
        try:
            for op in ops:
                roots.append(apply_op(roots[-1], op))
        except OpError as exc:
            return Rejected(ErrorCode(exc.code), str(exc), exc.path)
        size = self._check_size(roots, ops)
        if isinstance(size, Rejected):
            return size
        refused = self._check_rules(ops, actor, roots)
        if refused is not None:
            return refused
        self.state, self.state_bytes, self.last_roots = roots[-1], size, roots
        return tuple(ops)

    def _check_rules(
        self, ops: Sequence[Op], actor: Actor | None, roots: list[dict[str, Any]]
    ) -> Rejected | None:
        refused = check_rules_write(ops, actor, roots[-1])
        if refused is not None:
            return Rejected(refused[0], refused[1], RULES_PATH)
        if actor is None:
            return None
        rules = self.rules.effective(self.state)
        if rules is None:
            return None
        denial = check_ops(rules, actor, ops, self.state, roots[1:])
        if denial is None:
            return None
        return Rejected(ErrorCode.FORBIDDEN, denial.message, denial.path)

    def _check_size(self, roots: Sequence[dict[str, Any]], ops: Sequence[Op]) -> int | Rejected:
        """The state's encoded size after ``ops`` (``roots[i + 1]`` is ``roots[i]`` after
        ``ops[i]``), or ``too_large`` if that grows it past the limit.

        A batch counts as a whole (it is atomic). The reject names the op after which
        the size went past the limit for the last time.
        """
        before = size = self.state_bytes
        # Never refuse what does not grow the state: a room over the limit can shrink.
        allowed = max(self.max_state_bytes, before)
        culprit: Op | None = None
        for (old, new), op in zip(pairwise(roots), ops, strict=True):
            grown = size + size_delta(old, new, op)
            if grown > allowed >= size:
                culprit = op
            size = grown
        if size <= allowed:
            return size
        assert culprit is not None  # the size started at or below ``allowed``
        now = f"; it is {before} bytes now" if before > self.max_state_bytes else ""
        return Rejected(
            ErrorCode.TOO_LARGE,
            f"the room state would be {size} bytes (JSON-encoded), over the room's limit "
            f"of {self.max_state_bytes} bytes{now}: delete something first",
            culprit.path,
        )

    def _rebase(self, client_id: str, base_version: int, ops: Sequence[Op]) -> Sequence[Op]:
        """Transform text ops made at ``base_version`` over the others' ops since."""
        needs_history = any(op.__struct_config__.tag == "text" for op in ops)
        if base_version == self.version or not needs_history:
            # Only text ops change under transform (state.rebase): skip the O(lag) scan,
            # which a stale base_version would otherwise make O(window) for every op.
            return ops
        oldest = self.window[0].version if self.window else self.version + 1
        if base_version + 1 < oldest:
            raise TextReplaced(next(op.path for op in ops if op.__struct_config__.tag == "text"))
        concurrent = [
            op
            for entry in self._entries_after(base_version)
            if entry.client_id != client_id
            for op in entry.ops
        ]
        return transform_ops(ops, concurrent)[0]

    def _current(self, path: str, actor: Actor | None = None) -> tuple[Any, int]:
        """The value at ``path`` for a conflict's answer, as ``actor`` may read it (a
        conflict must not show what the room's rules hide from the writer)."""
        value = get_path(self.state, path)
        rules = self.rules.effective(self.state)
        if actor is not None and rules is not None and value is not None:
            seen = project(rules, actor, value, path)
            value = None if seen is MISSING else seen
        return value, self.clock.changed_at(path)

    def _answer_resend(self, client_id: str, seq: int, last_seq: int, last_version: int) -> Outcome:
        if seq == last_seq and last_version:
            return Duplicate(last_version)
        rejected = self._rejected.get((client_id, seq))
        if rejected is not None:
            return rejected
        for refused_seq, code in self._unlogged.get(client_id, ()):
            if refused_seq == seq:
                return _refused_before(seq, code)
        for entry in reversed(self.window):
            if entry.client_id != client_id:
                continue
            if entry.client_seq == seq:
                return Duplicate(entry.version)
            for refused_seq, code in entry.refused:
                if refused_seq == seq:
                    return _refused_before(seq, code)
            if entry.client_seq < seq:
                break  # older entries cannot hold it
        oldest = self.window[0].version if self.window else self.version + 1
        # Older than the window and not a remembered refusal: it was applied, before
        # ``oldest`` (refusals are rare and remembered; see docs/protocol.md).
        return Duplicate(oldest - 1)

    def _remember_reject(
        self, client_id: str, seq: int, outcome: Rejected, limit: int = 1024
    ) -> None:
        self._note_rejected((client_id, seq))
        self._rejected[(client_id, seq)] = outcome
        while len(self._rejected) > limit:
            self._rejected.popitem(last=False)
        unlogged = self._unlogged.get(client_id, [])
        self._note_unlogged(client_id, unlogged)
        # Bounded: a client refused over and over keeps its latest verdicts.
        self._unlogged[client_id] = [
            *unlogged[-(MAX_UNLOGGED_REFUSALS - 1) :],
            (seq, outcome.code.value),
        ]

    def _take_unlogged(self, client_id: str) -> tuple[tuple[int, str], ...]:
        unlogged = self._unlogged.pop(client_id, None)
        if not unlogged:
            return ()
        self._note_unlogged(client_id, unlogged)
        return tuple(unlogged)

    def _note_unlogged(self, client_id: str, before: list[tuple[int, str]]) -> None:
        round_ = self._round
        if round_ is not None and client_id not in round_.unlogged:
            round_.unlogged[client_id] = before

    def _entries_after(self, since: int) -> Iterable[LogEntry]:
        start = len(self.window) - (self.version - since)
        for index in range(max(start, 0), len(self.window)):
            yield self.window[index]

    def catch_up(
        self,
        since: int | None,
        *,
        epoch: str | None = None,
        client_id: str | None = None,
        max_delta: int = 1000,
    ) -> CatchUp:
        """Entries after ``since`` (a version of ``epoch``) if that history continues
        into this room's, and the entries are few and still in the window; else a
        snapshot."""
        if since is not None and (since > self.version or not self.lineage.continues(epoch, since)):
            since = None  # versions of another history (relay lost state?): start over
        if since is not None:
            missing = self.version - since
            oldest = self.window[0].version if self.window else self.version + 1
            if missing == 0 or (missing <= max_delta and since + 1 >= oldest):
                return CatchUp("delta", self.version, list(self._entries_after(since)))
        last_seq = self.dedupe.get(client_id, (0, 0))[0] if client_id else 0
        return CatchUp("snapshot", self.version, state=self.state, last_seq=last_seq)

    def take_snapshot(self) -> tuple[int, dict[str, Any], Any]:
        """(version, state, clock data) for the store; resets the snapshot counter."""
        self.ops_since_snapshot = 0
        return self.version, self.state, self.clock.to_data()


def _refused_before(seq: int, code: str) -> Rejected:
    """The answer to a resend of an op refused earlier whose full reason is forgotten."""
    return Rejected(ErrorCode(code), f"operation {seq} was refused earlier ({code})")


# --- the state's encoded size -----------------------------------------------------------


def encoded_size(value: Any) -> int:
    """Length of ``value``'s JSON encoding (compact, as msgspec writes it)."""
    return len(_encode(value))


def size_delta(before: dict[str, Any], after: dict[str, Any], op: Op) -> int:
    """``encoded_size(after) - encoded_size(before)``, exactly, where ``after`` is
    ``apply_op(before, op)``, at the cost of encoding only what the op changed.

    The compact JSON encoding is compositional: a mapping takes ``{}``, each entry
    ``"key":value`` and a comma between entries; a list ``[]``, its items and commas.
    ``apply_op`` copies only the mappings on the op's path and shares every other
    subtree, so the trees differ in one entry: the first one along the path where the
    old or new value is not a mapping (or the path ends). Only that entry is measured,
    with these shortcuts at the path's end: a merge measures its keys, a push its item,
    a remove the items it dropped. Everything else encodes the old and the new value
    there: the new one is the op's own value (or a string the op rewrote anyway), and
    the old one leaves the state, so over a room's life each byte is encoded at most
    once on the way in and once on the way out. An op refused as too large measured
    less on the way out than it brought in: about its own size. (A text op encodes
    its whole string, which applying it copied already.)
    """
    if after is before:
        return 0
    old: dict[str, Any] = before
    new: dict[str, Any] = after
    *parents, leaf = op.path.split("/")  # apply_op checked the path (parse_path)
    for key in parents:
        old_child = old.get(key, _MISSING)
        new_child = new.get(key, _MISSING)
        if not (isinstance(old_child, dict) and isinstance(new_child, dict)):
            return _entry_delta(old, new, key, old_child, new_child, None)
        old, new = old_child, new_child
    return _entry_delta(old, new, leaf, old.get(leaf, _MISSING), new.get(leaf, _MISSING), op)


def _entry_delta(
    old_parent: dict[str, Any],
    new_parent: dict[str, Any],
    key: str,
    old: Any,
    new: Any,
    op: Op | None,
) -> int:
    """Size change of the entry ``key`` of a mapping (``op``: the op that changed the
    value there, None if the path goes on below)."""
    if old is _MISSING:  # a new entry, and a comma unless it is the only one
        return (1 if old_parent else 0) + _entry_size(key, new)
    if new is _MISSING:  # a deleted entry, and its comma unless none are left
        return -(1 if new_parent else 0) - _entry_size(key, old)
    if old is new:
        return 0
    if isinstance(op, MergeOp) and isinstance(old, dict) and isinstance(new, dict):
        # new == {**old, **op.value}
        delta = _commas(len(new)) - _commas(len(old))
        for name in op.value:
            was = old.get(name, _MISSING)
            if was is _MISSING:
                delta += _entry_size(name, new[name])
            elif was is not new[name]:
                delta += len(_encode(new[name])) - len(_encode(was))
        return delta
    if isinstance(op, PushOp) and isinstance(old, list) and isinstance(new, list):
        # new == [*old, op.value]
        return len(_encode(new[-1])) + (1 if old else 0)
    if isinstance(op, RemoveOp) and isinstance(old, list) and isinstance(new, list):
        # new is old without some items, in order: walk both to find them.
        dropped = 0
        kept = iter(new)
        following = next(kept, _MISSING)
        for item in old:
            if item is following:
                following = next(kept, _MISSING)
            else:
                dropped += len(_encode(item))
        return _commas(len(new)) - _commas(len(old)) - dropped
    return len(_encode(new)) - len(_encode(old))


def _entry_size(key: str, value: Any) -> int:
    """Size of ``"key":value`` inside a mapping (without the comma)."""
    return len(_encode(key)) + 1 + len(_encode(value))


def _commas(items: int) -> int:
    return max(items - 1, 0)
