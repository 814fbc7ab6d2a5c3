"""A room's members, presence and message routing, around its sequencer (sans-I/O).

The hub turns commands (join, submit, presence, leave) into :class:`Delivery` actions:
which message goes to which members, in which order. It never encodes, sends or
stores anything. The asyncio shells (relay.runner_local, relay.runner_shared) feed
it commands in arrival order, persist the entries it accepted
(:meth:`RoomHub.take_unsaved`) and deliver the sends in order, the ones marked
:attr:`Delivery.after_commit` (the answers to
submissions) only once those entries are durable (docs/protocol.md "Durability").

Presence changes are coalesced: they collect until :meth:`RoomHub.flush_presence`
(the shell calls it at most every ``presence_interval``) or until the next
broadcast, which flushes them first so that a cursor never arrives after an edit
made after it. One ``presence`` message then carries many changes: N joins cost
each member a few frames instead of N (docs/protocol.md "Presence").

With a store shared by several relays (Redis), two more steps exist, still pure:
:meth:`RoomHub.apply_remote` applies entries another relay committed and broadcasts
them to every local member, and :meth:`RoomHub.redo` takes back a round the store
refused (another relay appended first) and runs its submissions again after the
other relay's entries.

Presence can span relays too (``share_presence=True``): the hub then collects its
local members' presence changes for the shell to publish (:meth:`RoomHub.take_outgoing`)
and merges other relays' published presence as **remote entries**
(:meth:`RoomHub.apply_remote_presence`, :meth:`RoomHub.expire_remote_presence`).
A remote entry is owned by the relay that published it and only that relay's
``null`` (or its full table without it, or its TTL) removes it. When one client_id
has several owners (a client that moved between relays, its old connection not
closed yet) the entry whose state changed last here wins, the local one included:
the newest connection's join is that change, so every relay shows the new relay's
state, the old relay too. What the local members see goes through the same
coalescing as local changes.

Members are opaque handles (the relay's connections); the hub only reads their
``client_id`` and ``user``.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from ..protocol.messages import (
    AckMessage,
    Broadcast,
    Joined,
    PresenceUpdate,
    Reject,
    ServerMessage,
    Snapshot,
)
from ..rules import Actor, RuleSet, allows, project, read_guard, view_of_op
from ..state.ops import DeleteOp, Op
from .room import Accepted, Duplicate, LogEntry, Outcome, Rejected, RoomCore

__all__ = [
    "RESET_ORIGIN",
    "Command",
    "Delivery",
    "JoinRoom",
    "LeaveRoom",
    "Member",
    "ResetRoom",
    "RoomHub",
    "SetPresence",
    "Submit",
]


# The client_id under which the relay logs the entries it makes itself (admin resets).
# It cannot pass the hello schema's client_id pattern, so no client can claim it.
RESET_ORIGIN = "@relay"


@dataclass(slots=True)
class _Remote:
    """Another relay's presence entry for one client: its state, the stamp of its
    last change (orders owners) and when it expires unless refreshed."""

    state: dict[str, Any]
    stamp: int
    expires: float


class Member(Protocol):
    """What the hub needs to know about a connection.

    A member may also have an ``actor`` (:class:`~livewidgets.rules.Actor`: user,
    role, groups), which room rules are checked against; one without it counts as a
    writer named ``user`` (see :func:`actor_of`).
    """

    @property
    def client_id(self) -> str: ...

    @property
    def user(self) -> str: ...


def actor_of(member: Member) -> Actor:
    """Who ``member`` is to the room's rules."""
    actor = getattr(member, "actor", None)
    return actor if isinstance(actor, Actor) else Actor(member.user, "write")


M = TypeVar("M", bound=Member)


# Commands and sends are values, but not frozen: a frozen dataclass takes ~4x as long
# to build, and several are built per op.


@dataclass(slots=True)
class JoinRoom(Generic[M]):
    """Enter the room (or resume): catch up from ``since``, then receive live broadcasts."""

    member: M
    since: int | None
    presence: dict[str, Any] | None = None
    # The history ``since`` belongs to (relay.lineage).
    epoch: str | None = None


@dataclass(slots=True)
class LeaveRoom(Generic[M]):
    """Stop receiving broadcasts; drops the member's presence (also sent on disconnect)."""

    member: M


@dataclass(slots=True)
class Submit(Generic[M]):
    """One op or batch from ``member``, made against ``base_version``."""

    member: M
    client_seq: int
    base_version: int
    ops: tuple[Op, ...]
    # Set when the policy refused it: recorded in order, never applied.
    refused: Rejected | None = None


@dataclass(slots=True)
class SetPresence(Generic[M]):
    """Replace the member's ephemeral presence state."""

    member: M
    state: dict[str, Any]


@dataclass(slots=True)
class ResetRoom(Generic[M]):
    """An admin's reset: delete every top-level key, as one entry made by the relay."""

    member: M


Command = JoinRoom[M] | LeaveRoom[M] | Submit[M] | SetPresence[M] | ResetRoom[M]


@dataclass(slots=True)
class Delivery(Generic[M]):
    """Deliver ``message`` to each of ``to`` (encoded once per codec by the shell).

    ``after_commit``: deliver it only once the entries of its round are durable, if
    the round accepted any (docs/protocol.md "Durability"). The hub sets it on the
    answer to a submission (ack, duplicate ack, reject): an ack promises its author
    that the op survives a crash, and a duplicate ack or a reject may name an entry
    of the same round. Nothing else of a round needs to wait (a broadcast promises
    nothing), except what follows an answer for the same member: the shell keeps
    each member's order (relay.pipeline). A shared store commits a whole round
    before delivering any of it, so there every send waits and the field is not read.
    """

    to: tuple[M, ...]
    message: ServerMessage
    after_commit: bool = False


class RoomHub(Generic[M]):
    """Routing state of one room: call :meth:`handle` for each command, in arrival order."""

    def __init__(
        self,
        core: RoomCore,
        *,
        max_delta: int = 1000,
        share_presence: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.core = core
        # Wall clock: the time each accepted entry records (history).
        self._clock = clock
        self.name = core.name
        # Longest catch-up served as broadcasts; beyond it a joiner gets a snapshot.
        self.max_delta = max_delta
        # Members in join order (a dict used as an ordered set).
        self.members: dict[M, None] = {}
        # client_id -> (the member that set it, stamped state). Keyed by client_id
        # because a reconnecting client replaces its old connection.
        # The stamp orders it against other relays' entries for the same client_id.
        self._presence: dict[str, tuple[M, dict[str, Any], int]] = {}
        # What members see: per client, its state changed last (local or another
        # relay's), kept ready: every join sends it.
        self._table: dict[str, dict[str, Any]] = {}
        # Other relays' entries: client_id -> relay id -> entry (share_presence only).
        self._remote: dict[str, dict[str, _Remote]] = {}
        self._stamp = 0
        # Local changes not yet handed out for publishing (share_presence only).
        self._share = share_presence
        self._outgoing: dict[str, dict[str, Any] | None] = {}
        # Presence changes not yet told to the others: client_id -> (change number,
        # state or None: gone). Members that need a subset of them -> the number up to
        # which they know the changes already (0: all but their own).
        self._untold: dict[str, tuple[int, dict[str, Any] | None]] = {}
        self._known: dict[M, int] = {}
        self._changes = 0
        # Accepted entries not yet handed to the store.
        self._unsaved: list[LogEntry] = []
        self._handlers: dict[type, Callable[[Any], list[Delivery[M]]]] = {
            JoinRoom: self._join,
            LeaveRoom: self._leave,
            Submit: self._submit,
            SetPresence: self._set_presence,
            ResetRoom: self._reset,
        }

    def handle(self, command: Command[M]) -> list[Delivery[M]]:
        """Apply one command; return what to send, in order. Persist the entries it
        accepted (:meth:`take_unsaved`); the sends marked ``after_commit`` go out only
        once they are durable."""
        return self._handlers[type(command)](command)

    def take_unsaved(self) -> list[LogEntry]:
        """Entries accepted since the last call, in version order: persist them next."""
        entries, self._unsaved = self._unsaved, []
        return entries

    @property
    def has_unsaved(self) -> bool:
        """Entries were accepted that :meth:`take_unsaved` has not handed out yet."""
        return bool(self._unsaved)

    # --- shared stores: entries from other relays, refused rounds ---------------------

    def apply_remote(self, entries: Iterable[LogEntry]) -> list[Delivery[M]]:
        """Entries another relay sequenced and committed, in version order: apply each
        (RoomCore.apply_entry) and broadcast it to every member. Deliver at once: they
        are durable already."""
        sends: list[Delivery[M]] = []
        for entry in entries:
            rules = self.core.rules_in_force
            self.core.apply_entry(entry)
            sends.extend(self._fan_out(entry, rules, None))
        return sends

    def redo(
        self,
        commands: Sequence[Command[M]],
        sends: list[list[Delivery[M]]],
        remote: Iterable[LogEntry],
    ) -> list[Delivery[M]]:
        """The store refused the round: another relay committed ``remote`` first.

        The round was opened with ``core.begin_round()`` and its commands' sends are
        ``sends`` (one list per command, not delivered yet). Take the round back, apply
        ``remote`` and run the round's submissions (Submit, ResetRoom) again, against the
        newer state: text ops are transformed over the remote entries, ``if_version``
        checked against them, resends deduplicated. ``sends`` is updated in place with
        the new answers of those commands (deliver after committing the new entries);
        the returned sends go before them: the round's other sends (joins, presence),
        which are not run again, then the remote entries' broadcasts. A new round is
        open on return, so this can be repeated if the next commit is refused too.

        Joins must not follow an accepted submission in the round (the shell commits
        first): a join's catch-up must hold committed entries only.
        """
        self.core.rollback_round()
        self._unsaved = []
        before: list[Delivery[M]] = []
        for index, command in enumerate(commands):
            if isinstance(command, Submit | ResetRoom):
                # Their answers are made again; presence flushed with them still goes.
                before.extend(s for s in sends[index] if isinstance(s.message, PresenceUpdate))
            else:
                before.extend(sends[index])
            sends[index] = []
        before.extend(self.apply_remote(remote))
        self.core.begin_round()
        for index, command in enumerate(commands):
            if isinstance(command, Submit | ResetRoom):
                sends[index] = self.handle(command)
        return before

    @property
    def presence_waiting(self) -> bool:
        """Presence changes wait for :meth:`flush_presence` (or, shared, for
        :meth:`take_outgoing`)."""
        return bool(self._untold or self._outgoing)

    # --- presence shared with other relays (share_presence) ---------------------------

    def take_outgoing(self) -> dict[str, dict[str, Any] | None]:
        """Local presence changes since the last call (client_id -> latest state, None:
        gone): what this relay publishes to the others."""
        outgoing, self._outgoing = self._outgoing, {}
        return outgoing

    def local_presence(self) -> dict[str, dict[str, Any]]:
        """client_id -> state of the members connected here (this relay's full table)."""
        return {client_id: local[1] for client_id, local in self._presence.items()}

    def apply_remote_presence(
        self,
        relay_id: str,
        states: dict[str, dict[str, Any] | None],
        now: float,
        *,
        ttl: float,
        full: bool = False,
    ) -> None:
        """Merge presence published by relay ``relay_id``: a state sets (or refreshes)
        its entry for the client until ``now + ttl``; None removes its entry (never
        another relay's). ``full``: ``states`` is its whole table, so its entries for
        clients not in it are removed. Changes of what members see join the untold
        set (sent by :meth:`flush_presence`)."""
        if full:
            gone = [
                client_id
                for client_id, owners in self._remote.items()
                if relay_id in owners and client_id not in states
            ]
            states = {**dict.fromkeys(gone), **states}
        expires = now + ttl
        for client_id, state in states.items():
            owners = self._remote.get(client_id)
            if state is None:
                if owners is None or owners.pop(relay_id, None) is None:
                    continue
                if not owners:
                    del self._remote[client_id]
            else:
                if owners is None:
                    owners = self._remote[client_id] = {}
                entry = owners.get(relay_id)
                if entry is not None and entry.state == state:
                    entry.expires = expires  # a heartbeat: same state, still there
                    continue
                self._stamp += 1
                owners[relay_id] = _Remote(state, self._stamp, expires)
            self._show(client_id, None)

    def expire_remote_presence(self, now: float) -> None:
        """Remove remote entries not refreshed in time (their relay died or lost
        touch); what members see changes as if their owners had sent None."""
        for client_id, owners in list(self._remote.items()):
            stale = [relay for relay, entry in owners.items() if entry.expires <= now]
            if not stale:
                continue
            for relay in stale:
                del owners[relay]
            if not owners:
                del self._remote[client_id]
            self._show(client_id, None)

    def _visible(self, client_id: str) -> dict[str, Any] | None:
        """The state members see for ``client_id``: the one changed last (local or remote)."""
        local = self._presence.get(client_id)
        owners = self._remote.get(client_id)
        if not owners:
            return None if local is None else local[1]
        latest = max(owners.values(), key=lambda entry: entry.stamp)
        if local is not None and local[2] > latest.stamp:
            return local[1]
        return latest.state

    def _show(self, client_id: str, member: M | None) -> None:
        """Make the table hold what members should see for ``client_id`` and tell it,
        unless unchanged (a local ``member``'s own change is always told, never to it)."""
        state = self._visible(client_id)
        if member is None and self._table.get(client_id) == state:
            return
        if state is None:
            self._table.pop(client_id, None)
        else:
            self._table[client_id] = state
        self._changes += 1
        self._untold[client_id] = (self._changes, state)
        if member is not None:
            self._known.setdefault(member, 0)

    def flush_presence(self) -> list[Delivery[M]]:
        """``presence`` messages with every change since the last flush.

        Members that need all of them share one message (encoded once). A member that
        made changes, or joined since the last flush, gets only what it does not know:
        never its own echo, nor what its ``joined.presence`` already listed.
        """
        if not self._untold:
            return []
        untold, self._untold = self._untold, {}
        known, self._known = self._known, {}
        sends: list[Delivery[M]] = []
        listeners = tuple(m for m in self.members if m not in known)
        if listeners:
            states = {cid: state for cid, (_, state) in untold.items()}
            # Another relay's entry for a member's own client_id may have changed:
            # no member hears of its own client_id.
            own = tuple(m for m in listeners if m.client_id in states)
            if own:
                listeners = tuple(m for m in listeners if m.client_id not in states)
                for member in own:
                    mine = {c: v for c, v in states.items() if c != member.client_id}
                    if mine:
                        sends.append(Delivery((member,), PresenceUpdate(self.name, mine)))
            if listeners:
                sends.append(Delivery(listeners, PresenceUpdate(self.name, states)))
        for member, seen in known.items():
            if member not in self.members:
                continue  # it left (its own leave is among the changes)
            news = {
                cid: state
                for cid, (number, state) in untold.items()
                if number > seen and cid != member.client_id
            }
            if news:
                sends.append(Delivery((member,), PresenceUpdate(self.name, news)))
        return sends

    def presence_table(self, *, exclude: str | None = None) -> dict[str, dict[str, Any]]:
        """client_id -> presence state of every member (but ``exclude``)."""
        table = self._table.copy()  # a C-level copy: joins into big rooms stay cheap
        if exclude is not None:
            table.pop(exclude, None)
        return table

    def _others(self, member: M) -> tuple[M, ...]:
        return tuple(m for m in self.members if m is not member)

    # --- commands ------------------------------------------------------------------

    def _join(self, command: JoinRoom[M]) -> list[Delivery[M]]:
        member, to = command.member, (command.member,)
        rules = self.core.rules_in_force
        catch = self.core.catch_up(
            # Under rules, entries would need filtering per reader against the states
            # they were made in: a joiner gets the room as they may see it instead.
            command.since if rules is None else None,
            epoch=command.epoch,
            client_id=member.client_id,
            max_delta=self.max_delta,
        )
        sends: list[Delivery[M]] = []
        if catch.mode == "snapshot":
            state = catch.state or {}
            if rules is not None:
                state = project(rules, actor_of(member), state)
            sends.append(Delivery(to, Snapshot(self.name, catch.version, state, catch.last_seq)))
        sends.extend(Delivery(to, _broadcast(self.name, entry)) for entry in catch.entries)
        mode: Literal["delta", "snapshot"] = "snapshot" if catch.mode == "snapshot" else "delta"
        table = self.presence_table(exclude=member.client_id)
        epoch = self.core.lineage.epoch
        sends.append(Delivery(to, Joined(self.name, catch.version, mode, table, epoch)))
        # The table holds every change so far: the next flush only needs later ones.
        self._known[member] = self._changes
        self.members[member] = None
        # Presence is opt-in (as in Phoenix's track or Ably's enter): a member that
        # joins without a state listens, unlisted, until it sets one. Announcing every
        # listener would cost a room of N listeners N^2 entries for nothing to show.
        if command.presence is not None:
            sends.extend(self._set_presence(SetPresence(member, command.presence)))
        return sends

    def _leave(self, command: LeaveRoom[M]) -> list[Delivery[M]]:
        member = command.member
        if member not in self.members:
            return []
        del self.members[member]
        owner = self._presence.get(member.client_id)
        # A newer connection of the same client may own the entry now: keep it.
        if owner is None or owner[0] is not member:
            return []
        del self._presence[member.client_id]
        if self._share:
            self._outgoing[member.client_id] = None
        # Another relay's entry for this client (it moved there) may show through.
        self._show(member.client_id, None)
        return []

    def _set_presence(self, command: SetPresence[M]) -> list[Delivery[M]]:
        member = command.member
        if member not in self.members:
            return []
        # The relay's idea of who the user is wins over what the client claims.
        state = {**command.state, "user": member.user}
        self._stamp += 1
        self._presence[member.client_id] = (member, state, self._stamp)
        if self._share:
            self._outgoing[member.client_id] = state
        self._show(member.client_id, member)
        return []

    def _submit(self, command: Submit[M]) -> list[Delivery[M]]:
        member = command.member
        rules = self.core.rules_in_force
        if command.refused is not None:
            outcome = self.core.refuse(member.client_id, command.client_seq, command.refused)
        else:
            outcome = self.core.submit(
                member.client_id,
                command.client_seq,
                command.base_version,
                command.ops,
                actor_of(member),
                at=self._clock(),
            )
        reply = _reply(self.name, command.client_seq, outcome)
        sends = [Delivery((member,), reply, after_commit=True)]
        if isinstance(outcome, Accepted):
            self._unsaved.append(outcome.entry)
            sends.extend(self.flush_presence())
            sends.extend(self._fan_out(outcome.entry, rules, member))
        return sends

    def _fan_out(
        self, entry: LogEntry, rules: RuleSet | None, author: M | None
    ) -> list[Delivery[M]]:
        """The broadcast of ``entry`` to every member but its ``author``: as it is
        without rules (``rules``: those it was checked under), else as each reader may
        see it (an empty broadcast still advances their version). An entry that
        changed the rules sends everyone the room as they may see it now."""
        if self.core.rules_in_force is not rules:  # the entry changed them ($rules)
            return self._snapshots(tuple(self.members))
        if rules is None:
            to = tuple(m for m in self.members if m is not author)
            return [Delivery(to, _broadcast(self.name, entry))] if to else []
        roots = self.core.last_roots
        steps = list(zip(entry.ops, roots[:-1], roots[1:], strict=True))
        guards = [read_guard(rules, op, before) for op, before, _ in steps]
        # Readers grouped by what they see: one message per group.
        groups: dict[Any, tuple[list[Op], list[M]]] = {}
        for member in self.members:
            if member is author:
                continue
            actor = actor_of(member)
            key: Any
            if all(guard is not None for guard in guards):
                # The usual case: each op is all or nothing, the same for everyone; one
                # allows() per op and reader, no tree walks. Key: the ops they see.
                key = tuple(i for i, g in enumerate(guards) if g and allows(*g, actor=actor))
                seen = [entry.ops[i] for i in key]
            else:
                key = id(member)
                seen = [v for op, a, b in steps for v in view_of_op(rules, actor, op, a, b)]
            groups.setdefault(key, (seen, []))[1].append(member)
        sends: list[Delivery[M]] = []
        for seen, members in groups.values():
            whole = len(seen) == len(entry.ops) and all(map(operator.is_, seen, entry.ops))
            message = (
                _broadcast(self.name, entry)
                if whole
                else Broadcast(self.name, entry.version, entry.client_id, entry.client_seq, seen)
            )
            sends.append(Delivery(tuple(members), message))
        return sends

    def _snapshots(self, members: tuple[M, ...]) -> list[Delivery[M]]:
        """Each of ``members`` gets the room as they may see it, at its version."""
        rules, core = self.core.rules_in_force, self.core
        sends = []
        for member in members:
            state = core.state if rules is None else project(rules, actor_of(member), core.state)
            last_seq = core.dedupe.get(member.client_id, (0, 0))[0]
            snapshot = Snapshot(self.name, core.version, state, last_seq)
            sends.append(Delivery((member,), snapshot, after_commit=True))
        return sends

    def _reset(self, command: ResetRoom[M]) -> list[Delivery[M]]:
        # The room's own rules ($rules) survive a reset: they guard what comes next.
        ops = [DeleteOp(path=key) for key in self.core.state if not key.startswith("$")]
        if not ops:
            return []
        rules = self.core.rules_in_force
        # The relay is the author (its own client id and a growing seq), so every member,
        # the admin included, applies it as a remote op; the log records the admin who
        # asked as its user (history).
        seq = self.core.version + 1
        outcome = self.core.submit(
            RESET_ORIGIN, seq, self.core.version, ops, user=command.member.user, at=self._clock()
        )
        if not isinstance(outcome, Accepted):
            return []
        self._unsaved.append(outcome.entry)
        return [*self.flush_presence(), *self._fan_out(outcome.entry, rules, None)]


def _broadcast(room: str, entry: LogEntry) -> Broadcast:
    return Broadcast(room, entry.version, entry.client_id, entry.client_seq, list(entry.ops))


def _reply(room: str, client_seq: int, outcome: Outcome) -> ServerMessage:
    """The origin's answer to a submission: ack (maybe duplicate) or reject."""
    if isinstance(outcome, Accepted):
        return AckMessage(room, client_seq, outcome.entry.version)
    if isinstance(outcome, Duplicate):
        return AckMessage(room, client_seq, outcome.version, duplicate=True)
    assert isinstance(outcome, Rejected)
    return Reject(
        room,
        client_seq,
        outcome.code.value,
        outcome.message,
        outcome.path,
        outcome.current,
        outcome.current_version,
    )
