"""The room sequencer: the pure core that orders, checks and logs a room's ops.

No sockets, clocks or storage here. The server feeds submissions in and gets
outcomes back; it must persist every ``Accepted.entry`` before acking or
broadcasting it (docs/protocol.md "Durability"). Everything the sequencer needs
to resume after a restart (version, log tail, dedupe table, snapshot) is what the
store keeps (relay.store.RoomRecord).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..protocol.codes import ErrorCode
from ..state.clock import PathClock
from ..state.ops import Op, OpError, apply_ops, get_path, touched_paths
from ..state.rebase import TextReplaced, transform_ops

__all__ = [
    "Accepted",
    "CatchUp",
    "Duplicate",
    "LogEntry",
    "Outcome",
    "Rejected",
    "RoomCore",
    "RoomRecord",
]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One accepted op or batch: the unit of the durable log."""

    version: int
    client_id: str
    client_seq: int
    ops: tuple[Op, ...]


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


class RoomCore:
    """Sequencer state of one room; call :meth:`submit` for each op, in arrival order."""

    def __init__(self, record: RoomRecord, *, window: int = 10_000) -> None:
        self.name = record.name
        # Room state after ``self.version`` (immutable tree, see state.ops).
        self.state = record.snapshot_state
        self.clock = PathClock.from_data(record.snapshot_clock)
        self.version = record.snapshot_version
        # Recent entries, for delta catch-up, text transforms and duplicate acks.
        self.window: deque[LogEntry] = deque(maxlen=window)
        self.dedupe = dict(record.dedupe)
        # Recently rejected resends: (client_id, seq) -> outcome, so a resend is answered alike.
        self._rejected: OrderedDict[tuple[str, int], Rejected] = OrderedDict()
        self.ops_since_snapshot = 0
        for entry in record.log:
            self._replay(entry)

    def _replay(self, entry: LogEntry) -> None:
        """Re-apply a logged entry while loading (it was valid when accepted)."""
        self.state = apply_ops(self.state, entry.ops)
        self._advance(entry)

    def _advance(self, entry: LogEntry) -> None:
        self.version = entry.version
        self.clock.record((p for op in entry.ops for p in touched_paths(op)), entry.version)
        self.window.append(entry)
        if entry.client_seq > self.dedupe.get(entry.client_id, (0, 0))[0]:
            self.dedupe[entry.client_id] = (entry.client_seq, entry.version)
        self.ops_since_snapshot += 1

    def submit(
        self, client_id: str, client_seq: int, base_version: int, ops: Sequence[Op]
    ) -> Outcome:
        """Order one op/batch: dedupe, rebase text, check preconditions, apply."""
        last_seq, last_version = self.dedupe.get(client_id, (0, 0))
        if client_seq <= last_seq:
            return self._answer_resend(client_id, client_seq, last_seq, last_version)
        outcome = self._check_and_apply(client_id, base_version, ops)
        if isinstance(outcome, Rejected):
            self.dedupe[client_id] = (client_seq, 0)
            self._remember_reject(client_id, client_seq, outcome)
            return outcome
        entry = LogEntry(self.version + 1, client_id, client_seq, outcome)
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
        self.dedupe[client_id] = (client_seq, 0)
        self._remember_reject(client_id, client_seq, rejected)
        return rejected

    def _check_and_apply(
        self, client_id: str, base_version: int, ops: Sequence[Op]
    ) -> tuple[Op, ...] | Rejected:
        if base_version > self.version:
            return Rejected(
                ErrorCode.INVALID_MESSAGE,
                f"base_version {base_version} is ahead of the room (version {self.version})",
            )
        try:
            ops = self._rebase(client_id, base_version, ops)
        except TextReplaced as exc:
            return Rejected(ErrorCode.CONFLICT, str(exc), exc.path, *self._current(exc.path))
        for op in ops:
            if op.if_version is not None:
                changed = self.clock.changed_at(op.path)
                if changed > op.if_version:
                    return Rejected(
                        ErrorCode.CONFLICT,
                        f"`{op.path}` changed at version {changed}, after {op.if_version}",
                        op.path,
                        get_path(self.state, op.path),
                        changed,
                    )
        try:
            self.state = apply_ops(self.state, ops)
        except OpError as exc:
            return Rejected(ErrorCode(exc.code), str(exc), exc.path)
        return tuple(ops)

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

    def _current(self, path: str) -> tuple[Any, int]:
        return get_path(self.state, path), self.clock.changed_at(path)

    def _answer_resend(self, client_id: str, seq: int, last_seq: int, last_version: int) -> Outcome:
        if seq == last_seq and last_version:
            return Duplicate(last_version)
        rejected = self._rejected.get((client_id, seq))
        if rejected is not None:
            return rejected
        for entry in reversed(self.window):
            if entry.client_id == client_id and entry.client_seq == seq:
                return Duplicate(entry.version)
        oldest = self.window[0].version if self.window else self.version + 1
        # Older than the window and not a remembered refusal: it was applied, before
        # ``oldest`` (refusals are rare and remembered; see docs/protocol.md).
        return Duplicate(oldest - 1)

    def _remember_reject(
        self, client_id: str, seq: int, outcome: Rejected, limit: int = 1024
    ) -> None:
        self._rejected[(client_id, seq)] = outcome
        while len(self._rejected) > limit:
            self._rejected.popitem(last=False)

    def _entries_after(self, since: int) -> Iterable[LogEntry]:
        start = len(self.window) - (self.version - since)
        for index in range(max(start, 0), len(self.window)):
            yield self.window[index]

    def catch_up(
        self, since: int | None, *, client_id: str | None = None, max_delta: int = 1000
    ) -> CatchUp:
        """Entries after ``since`` if few and still in the window, else a snapshot."""
        if since is not None and since > self.version:
            since = None  # the client is ahead of us (relay lost state?): start over
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
