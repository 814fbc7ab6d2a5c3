"""Room history: how long the log is kept, and what a reader may see of it (pure).

Compaction (a snapshot every ``snapshot_every`` versions) no longer deletes the log:
a store keeps the entries of the last :class:`HistoryHorizon` behind the newest
snapshot, together with the older snapshots that start them, so that

* ``history`` shows who changed what and when, within the horizon;
* the room's state at any version within the horizon is the oldest kept snapshot
  (the history's *base*) plus the entries up to that version (``revert_to``).

Trimming happens at snapshots, a whole snapshot interval at a time: the store drops
the entries up to the newest kept snapshot that is out of the horizon, and the
snapshots before it (:meth:`HistoryHorizon.trim_to`). So a room keeps at least the
horizon and at most one snapshot interval more. docs/history.md says it for users.

Nothing here does I/O: the stores call :meth:`HistoryHorizon.trim_to`; the relay
reads a :class:`HistoryRecord` from its store and answers a ``history`` query with
:func:`answer` (:func:`select` or :func:`state_at`), which apply the room's read
rules (docs/rules.md) for the asker.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from ..protocol.codes import ErrorCode
from ..protocol.messages import History, HistoryEntry, HistoryReply
from ..rules import Actor, RuleSet, project, view_of_op
from ..state.ops import Op, apply_op, touched_paths
from ..state.paths import is_related
from .room import LogEntry

__all__ = [
    "DEFAULT_HISTORY_DAYS",
    "DEFAULT_HISTORY_ENTRIES",
    "HistoryHorizon",
    "HistoryRecord",
    "OutOfHistory",
    "Selection",
    "answer",
    "select",
    "state_at",
]

DEFAULT_HISTORY_ENTRIES: Final = 10_000
DEFAULT_HISTORY_DAYS: Final = 30.0
_DAY: Final = 86_400.0


class OutOfHistory(ValueError):
    """The version asked for is not within the room's kept history."""


@dataclass(frozen=True, slots=True)
class HistoryHorizon:
    """Keep the last ``entries`` log entries, none older than ``days`` days.

    ``entries=0`` keeps no history beyond compaction (the log behind the newest
    snapshot is dropped, as before history existed).
    """

    entries: int = DEFAULT_HISTORY_ENTRIES
    days: float = DEFAULT_HISTORY_DAYS

    def __post_init__(self) -> None:
        if self.entries < 0 or self.days < 0:
            raise ValueError("history entries and days must be >= 0")

    def trim_to(self, head: int, snapshots: Sequence[tuple[int, float]], now: float) -> int | None:
        """The kept snapshot to trim the history to: drop the entries up to it and the
        snapshots before it. ``snapshots``: (version, Unix time taken) of the kept
        snapshots, the newest (the room's current one) included, oldest first.

        A snapshot is out of the horizon when the room has moved ``entries`` versions
        past it, or it is older than ``days``: every entry before it is then older
        still. None: nothing to trim.
        """
        oldest_kept_time = now - self.days * _DAY
        for version, taken in reversed(snapshots):
            if head - version >= self.entries or taken < oldest_kept_time:
                return version
        return None


@dataclass(slots=True)
class HistoryRecord:
    """What a store keeps of a room's history: the state at ``base_version`` (the
    oldest kept snapshot; {} at version 0) and every entry after it, in order."""

    room: str
    base_version: int = 0
    base_state: dict[str, Any] = field(default_factory=dict)
    entries: list[LogEntry] = field(default_factory=list)

    @property
    def head(self) -> int:
        return self.entries[-1].version if self.entries else self.base_version


@dataclass(frozen=True, slots=True)
class Selection:
    """The entries a query selected, oldest first, as the asker may see them, and
    whether older ones matched too (page back with ``before``)."""

    entries: list[LogEntry]
    more: bool


def select(
    record: HistoryRecord,
    *,
    path: str | None = None,
    user: str | None = None,
    limit: int = 100,
    before: int | None = None,
    rules: RuleSet | None = None,
    actor: Actor | None = None,
) -> Selection:
    """The newest ``limit`` entries before version ``before`` that changed ``path``
    (or below or above it: a ``set`` of a parent replaces it) and were written by
    ``user``. Under ``rules`` each entry holds only what ``actor`` may read of it
    (rules.view_of_op), and entries that show them nothing are left out."""
    if rules is None or actor is None:
        candidates: Iterator[LogEntry] = reversed(record.entries)
    else:
        candidates = reversed(list(_readable(record, rules, actor)))
    chosen: list[LogEntry] = []
    more = False
    for entry in candidates:
        if before is not None and entry.version >= before:
            continue
        if user is not None and entry.user != user:
            continue
        if path is not None and not any(
            is_related(touched, path) for op in entry.ops for touched in touched_paths(op)
        ):
            continue
        if len(chosen) == limit:
            more = True
            break
        chosen.append(entry)
    chosen.reverse()
    return Selection(chosen, more)


def state_at(
    record: HistoryRecord,
    version: int,
    *,
    rules: RuleSet | None = None,
    actor: Actor | None = None,
) -> dict[str, Any]:
    """The room's state right after ``version``, as ``actor`` may read it under
    ``rules`` (the rules in force now). Raises :class:`OutOfHistory`."""
    if not record.base_version <= version <= record.head:
        raise OutOfHistory(
            f"version {version} is outside the room's history "
            f"(versions {record.base_version} to {record.head} are kept)"
        )
    state = record.base_state
    for entry in record.entries:
        if entry.version > version:
            break
        for op in entry.ops:
            state = apply_op(state, op)
    if rules is None or actor is None:
        return state
    seen = project(rules, actor, state)
    return seen if isinstance(seen, dict) else {}


def _readable(record: HistoryRecord, rules: RuleSet, actor: Actor) -> Iterator[LogEntry]:
    """Every entry, each op replaced by what ``actor`` may see of it (the room is
    replayed from the base to know the state each op changed)."""
    state = record.base_state
    for entry in record.entries:
        seen: list[Op] = []
        for op in entry.ops:
            after = apply_op(state, op)
            seen.extend(view_of_op(rules, actor, op, state, after))
            state = after
        if seen:
            yield LogEntry(
                entry.version,
                entry.client_id,
                entry.client_seq,
                tuple(seen),
                (),
                entry.user,
                entry.time,
            )


def answer(
    record: HistoryRecord, query: History, actor: Actor, rules: RuleSet | None
) -> HistoryReply:
    """The ``history`` reply to ``query`` from ``record``, as ``actor`` may read it
    under ``rules`` (the room's rules in force)."""
    reply = HistoryReply(
        query.room, query.id, since=record.base_version, head=record.head, at=query.at
    )
    if query.at is not None:
        try:
            state = state_at(record, query.at, rules=rules, actor=actor)
        except OutOfHistory as exc:
            return _refused(query, ErrorCode.OUT_OF_HISTORY, str(exc))
        return msgspec.structs.replace(reply, state=state)
    selection = select(
        record,
        path=query.path,
        user=query.user,
        limit=query.limit,
        before=query.before,
        rules=rules,
        actor=actor,
    )
    entries = [
        HistoryEntry(e.version, e.client_id, list(e.ops), e.user, e.time) for e in selection.entries
    ]
    return msgspec.structs.replace(reply, entries=entries, more=selection.more)


def _refused(query: History, code: ErrorCode, message: str) -> HistoryReply:
    return HistoryReply(query.room, query.id, error=code.value, message=message)
