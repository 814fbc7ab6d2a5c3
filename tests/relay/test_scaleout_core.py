"""Sans-I/O scale-out: entries from other relays, undoing a refused round, redoing it.

Several relays share one room's log through a store (Redis). Each sequences its own
clients' ops optimistically; the store refuses an append that does not continue
its head, and the refused relay takes its round back (RoomCore.rollback_round),
applies the other relay's entries (RoomCore.apply_entry) and runs the round's
submissions again (RoomHub.redo). These tests drive that with no I/O at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from livewidgets.protocol.messages import (
    AckMessage,
    Broadcast,
    Joined,
    PresenceUpdate,
    Reject,
    Snapshot,
)
from livewidgets.relay.hub import Delivery, JoinRoom, ResetRoom, RoomHub, Submit
from livewidgets.relay.room import (
    Accepted,
    Duplicate,
    LogEntry,
    Rejected,
    RoomCore,
    RoomRecord,
    encoded_size,
)
from livewidgets.state.clock import PathClock
from livewidgets.state.ops import (
    DeleteOp,
    IncrementOp,
    Op,
    PushOp,
    SetOp,
    TextOp,
    apply_ops,
)

FAST = settings(max_examples=150, deadline=None, database=None)

PATHS = ["a", "a/b", "a/b/c", "a/d", "e", "e/f", "g"]


# --- PathClock undo ------------------------------------------------------------------


@FAST
@given(
    before=st.lists(st.lists(st.sampled_from(PATHS), max_size=3), max_size=8),
    during=st.lists(st.lists(st.sampled_from(PATHS), max_size=3), max_size=8),
)
def test_clock_rollback_restores_the_clock(
    before: list[list[str]], during: list[list[str]]
) -> None:
    """Records taken with an undo log, then rolled back: the clock is as it was."""
    clock = PathClock()
    for version, paths in enumerate(before, start=1):
        clock.record(paths, version)
    saved = clock.to_data()
    undo: list[tuple[Any, ...]] = []
    for version, paths in enumerate(during, start=len(before) + 1):
        clock.record(paths, version, undo)
    PathClock.rollback(undo)
    assert clock.to_data() == saved and undo == []


# --- RoomCore: rounds and entries from elsewhere -------------------------------------


def _ops(draw: st.DrawFn, state: dict[str, Any], version: int) -> list[Op]:
    """One op or a small batch that may well fail (type mismatch, stale if_version)."""
    kind = draw(st.sampled_from(["inc", "push", "text", "set", "setif", "delete", "batch"]))
    if kind == "inc":
        return [IncrementOp(path=draw(st.sampled_from(["n", "m", "t"])), by=1)]
    if kind == "push":
        return [PushOp(path="l", value=draw(st.integers(0, 9)))]
    if kind == "text":
        text = state.get("t", "")
        if not isinstance(text, str):
            return [SetOp(path="t", value="")]
        return [TextOp(path="t", delta=[len(text), "x"] if text else ["x"])]
    if kind == "set":
        return [SetOp(path=draw(st.sampled_from(["s", "s/k"])), value=draw(st.integers(0, 3)))]
    if kind == "setif":
        if_version = draw(st.integers(0, max(version, 0)))
        return [SetOp(path="s", value=-1, if_version=if_version)]
    if kind == "delete":
        return [DeleteOp(path=draw(st.sampled_from(["s", "l", "m"])))]
    return [IncrementOp(path="n", by=2), PushOp(path="l", value=-1)]


@dataclass
class Sub:
    client: str
    seq: int
    base: int
    ops: list[Op]


@st.composite
def submissions(draw: st.DrawFn, count: int = 12) -> list[Sub]:
    """Submissions by a few clients, with stale bases and the odd resend."""
    core = RoomCore(RoomRecord("sim"))
    seqs: dict[str, int] = {}
    subs: list[Sub] = []
    for _ in range(draw(st.integers(1, count))):
        client = draw(st.sampled_from(["a", "b", "c"]))
        if seqs.get(client) and draw(st.integers(0, 6)) == 0:
            seq = draw(st.integers(1, seqs[client]))  # a resend
        else:
            seq = seqs[client] = seqs.get(client, 0) + 1
        base = draw(st.integers(max(0, core.version - 3), core.version))
        ops = _ops(draw, core.state, core.version)
        core.submit(client, seq, base, ops)
        subs.append(Sub(client, seq, base, ops))
    return subs


def _fingerprint(core: RoomCore) -> tuple[Any, ...]:
    return (
        core.version,
        core.state,
        core.state_bytes,
        core.clock.to_data(),
        core.dedupe,
        list(core.window),
        core.ops_since_snapshot,
        core._unlogged,  # refusals waiting for their client's next entry
    )


@FAST
@given(first=submissions(), second=submissions(), window=st.integers(2, 6))
def test_rollback_round_restores_the_core(first: list[Sub], second: list[Sub], window: int) -> None:
    """submit(first); begin; submit(second); rollback == submit(first) alone, and the
    core answers the second round the same way when it is run again."""
    core = RoomCore(RoomRecord("r"), window=window)
    reference = RoomCore(RoomRecord("r"), window=window)
    for sub in first:
        core.submit(sub.client, sub.seq, sub.base, sub.ops)
        reference.submit(sub.client, sub.seq, sub.base, sub.ops)
    core.begin_round()
    for sub in second:
        core.submit(sub.client, sub.seq, min(sub.base, core.version), sub.ops)
    core.rollback_round()
    assert _fingerprint(core) == _fingerprint(reference)
    for sub in second:
        base = min(sub.base, core.version)
        assert core.submit(sub.client, sub.seq, base, sub.ops) == reference.submit(
            sub.client, sub.seq, base, sub.ops
        )
    assert _fingerprint(core) == _fingerprint(reference)


@FAST
@given(subs=submissions(count=20))
def test_apply_entry_follows_the_sequencing_core(subs: list[Sub]) -> None:
    """A core fed another core's entries holds the same state, clock, window, sizes."""
    leader, follower = RoomCore(RoomRecord("r")), RoomCore(RoomRecord("r"))
    accepted: dict[str, tuple[int, int]] = {}
    for sub in subs:
        outcome = leader.submit(sub.client, sub.seq, sub.base, sub.ops)
        if isinstance(outcome, Accepted):
            follower.apply_entry(outcome.entry)
            accepted[sub.client] = (sub.seq, outcome.entry.version)
    assert (follower.version, follower.state, follower.clock.to_data()) == (
        leader.version,
        leader.state,
        leader.clock.to_data(),
    )
    assert list(follower.window) == list(leader.window)
    assert follower.state_bytes == leader.state_bytes == encoded_size(leader.state)
    # The follower knows each client's latest accepted op (refusals stay on the leader).
    assert follower.dedupe == accepted


def test_apply_entry_must_continue_the_version() -> None:
    core = RoomCore(RoomRecord("r"))
    entry = LogEntry(2, "a", 1, (IncrementOp(path="n"),))
    try:
        core.apply_entry(entry)
    except ValueError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a gap was applied")


def test_a_remote_entry_overrides_a_local_refusal_of_the_same_seq() -> None:
    """Refused here, the op was resent to another relay, which accepted it (the state
    differed there): a later resend here is a duplicate of that entry, not a refusal."""
    core = RoomCore(RoomRecord("r"))
    core.submit("b", 1, 0, [SetOp(path="t", value="x")])
    assert isinstance(core.submit("a", 1, 1, [IncrementOp(path="t")]), Rejected)
    core.apply_entry(LogEntry(2, "a", 1, (SetOp(path="u", value=1),)))
    assert core.submit("a", 1, 2, [IncrementOp(path="t")]) == Duplicate(2)
    assert core.dedupe["a"] == (1, 2)


# --- two relays on one log, with RoomHub.redo ----------------------------------------


@dataclass(eq=False)
class Peer:
    client_id: str
    user: str = ""
    # Versions this member heard of (its own acks and the others' broadcasts), in order.
    heard: list[int] = field(default_factory=list)
    # client_seq -> version of its accepted ops (first ack).
    acked: dict[int, int] = field(default_factory=dict)
    seq: int = 0


def _deliver(sends: list[Delivery[Peer]]) -> None:
    for send in sends:
        for peer in send.to:
            message = send.message
            if isinstance(message, Joined):
                peer.heard.append(message.version)
            elif isinstance(message, Broadcast):
                assert message.origin != peer.client_id or not peer.heard
                peer.heard.append(message.version)
            elif isinstance(message, AckMessage):
                if not message.duplicate:
                    peer.heard.append(message.version)
                peer.acked.setdefault(message.client_seq, message.version)
            else:
                assert isinstance(message, Reject | Snapshot | PresenceUpdate), message


class SimRelay:
    """A relay's round logic (SharedRoomRunner's, without asyncio) on a shared log."""

    def __init__(self, log: list[LogEntry], max_retries: int = 50) -> None:
        self.log = log
        self.hub: RoomHub[Peer] = RoomHub(RoomCore(RoomRecord("r")))
        self.inbox: list[Submit[Peer] | ResetRoom[Peer] | JoinRoom[Peer]] = []
        self.max_retries = max_retries
        self.conflicts = 0

    def catch_up(self) -> None:
        core = self.hub.core
        _deliver(self.hub.apply_remote(self.log[core.version :]))

    def round(self, count: int) -> None:
        batch, self.inbox = self.inbox[:count], self.inbox[count:]
        hub = self.hub
        hub.core.begin_round()
        sends = [hub.handle(command) for command in batch]
        before: list[Delivery[Peer]] = []
        for _ in range(self.max_retries):
            entries = hub.take_unsaved()
            if not entries or entries[0].version == len(self.log) + 1:
                self.log.extend(entries)  # the store's conditional append
                break
            self.conflicts += 1
            start = entries[0].version - 1
            before += hub.redo(batch, sends, self.log[start:])
        else:  # pragma: no cover
            raise AssertionError("no progress")
        hub.core.end_round()
        _deliver([*before, *(s for group in sends for s in group)])


@FAST
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from(["submit", "round", "catch_up", "reset"])),
        min_size=1,
        max_size=60,
    ),
    data=st.data(),
)
def test_two_relays_converge_on_one_log(plan: list[tuple[int, str]], data: st.DataObject) -> None:
    """Two relays sequence their own clients' ops against one shared log, in any
    interleaving of submissions, rounds and catch-ups: both end with the state of the
    log replayed, every member heard every version exactly once and in order, and
    every acked op is in the log exactly once, at the version its ack named."""
    log: list[LogEntry] = []
    relays = [SimRelay(log), SimRelay(log)]
    peers = [[Peer("a0"), Peer("a1")], [Peer("b0")]]
    for relay, members in zip(relays, peers, strict=True):
        for peer in members:
            _deliver(relay.hub.handle(JoinRoom(peer, None)))
            relay.hub.flush_presence()
    for index, action in plan:
        relay = relays[index]
        if action == "submit":
            peer = data.draw(st.sampled_from(peers[index]))
            peer.seq += 1
            base = peer.heard[-1]
            state = apply_ops({}, [op for e in log[:base] for op in e.ops])
            ops = _ops(data.draw, state, base)
            relay.inbox.append(Submit(peer, peer.seq, base, tuple(ops)))
        elif action == "reset":
            relay.inbox.append(ResetRoom(peers[index][0]))
        elif action == "round" and relay.inbox:
            relay.round(data.draw(st.integers(1, len(relay.inbox))))
        elif action == "catch_up":
            relay.catch_up()
    for relay in relays:
        while relay.inbox:
            relay.round(len(relay.inbox))
    for relay in relays:
        relay.catch_up()
    replayed = RoomCore(RoomRecord("r", log=list(log)))
    for relay in relays:
        assert relay.hub.core.version == len(log)
        assert relay.hub.core.state == replayed.state
        assert relay.hub.core.state_bytes == encoded_size(replayed.state)
        assert relay.hub.core.clock.to_data() == replayed.clock.to_data()
    assert [e.version for e in log] == list(range(1, len(log) + 1))
    for members in peers:
        for peer in members:
            assert peer.heard == list(range(0, len(log) + 1))
            for seq, version in peer.acked.items():
                entry = log[version - 1]
                assert (entry.client_id, entry.client_seq) == (peer.client_id, seq)
            logged = [e.client_seq for e in log if e.client_id == peer.client_id]
            assert sorted(logged) == sorted(peer.acked) == sorted(set(logged))


def test_a_resend_to_a_lagging_relay_is_acked_as_a_duplicate() -> None:
    """A client's op committed through relay A (which died before acking it) is resent
    to relay B, which has not heard of it yet: B's append is refused, B redoes the
    round and answers a duplicate ack with A's version. The op is logged once."""
    log: list[LogEntry] = []
    a, b = SimRelay(log), SimRelay(log)
    moving, other = Peer("m"), Peer("o")
    _deliver(b.hub.handle(JoinRoom(other, None)))
    a.inbox.append(Submit(moving, 1, 0, (PushOp(path="l", value="once"),)))
    a.round(1)  # committed at version 1; imagine A dies before delivering the ack
    b.inbox.append(Submit(other, 1, 0, (IncrementOp(path="n"),)))
    b.inbox.append(Submit(moving, 1, 0, (PushOp(path="l", value="once"),)))
    moving.acked.clear()
    b.round(2)
    assert b.conflicts == 1
    assert moving.acked == {1: 1}
    assert other.acked == {1: 2} and other.heard == [0, 1, 2]
    assert [(e.client_id, e.client_seq) for e in log] == [("m", 1), ("o", 1)]
    assert b.hub.core.state == {"l": ["once"], "n": 1}
    assert isinstance(b.hub.core.submit("m", 1, 2, [PushOp(path="l", value=0)]), Duplicate)
