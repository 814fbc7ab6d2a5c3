"""RoomHub (sans-I/O): who gets what, in which order, and what must be persisted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from livewidgets.protocol import (
    AckMessage,
    Broadcast,
    DeleteOp,
    IncrementOp,
    Joined,
    PresenceUpdate,
    Reject,
    SetOp,
    Snapshot,
)
from livewidgets.relay.hub import (
    RESET_ORIGIN,
    Delivery,
    JoinRoom,
    LeaveRoom,
    ResetRoom,
    RoomHub,
    SetPresence,
    Submit,
)
from livewidgets.relay.lineage import Lineage
from livewidgets.relay.room import RoomCore, RoomRecord


@dataclass(eq=False)
class Peer:
    client_id: str
    user: str = ""


EPOCH = "e1"


def hub() -> RoomHub[Peer]:
    return RoomHub(RoomCore(RoomRecord("r", lineage=Lineage(EPOCH))), max_delta=3)


def messages_to(sends: list[Delivery[Peer]], peer: Peer) -> list[object]:
    return [send.message for send in sends if peer in send.to]


def test_submit_acks_origin_broadcasts_others_and_queues_entry() -> None:
    """An accepted op: ack to its sender, one broadcast to the others, one unsaved entry."""
    h, a, b, c = hub(), Peer("a"), Peer("b"), Peer("c")
    for peer in (a, b, c):
        h.handle(JoinRoom(peer, None))
    h.flush_presence()
    sends = h.handle(Submit(a, 1, 0, (SetOp("k", value=1),)))
    assert sends == [
        Delivery((a,), AckMessage("r", 1, 1), after_commit=True),
        Delivery((b, c), Broadcast("r", 1, "a", 1, [SetOp("k", value=1)])),
    ]
    assert [e.version for e in h.take_unsaved()] == [1]
    assert h.take_unsaved() == []


def test_only_the_answers_to_submissions_wait_for_the_commit() -> None:
    """Acks and rejects are marked after_commit (their author hears the outcome once it
    is durable); presence, broadcasts and a reset's broadcast are not."""
    h, a, b = hub(), Peer("a"), Peer("b")
    h.handle(JoinRoom(a, None))
    h.handle(JoinRoom(b, None))
    h.handle(SetPresence(b, {"v": 1}))
    op = SetOp("k", value="x")
    assert h.handle(Submit(a, 1, 0, (op,))) == [
        Delivery((a,), AckMessage("r", 1, 1), after_commit=True),
        Delivery((a,), PresenceUpdate("r", {"b": {"v": 1, "user": ""}})),
        Delivery((b,), Broadcast("r", 1, "a", 1, [op])),
    ]
    [reject] = h.handle(Submit(b, 1, 1, (IncrementOp("k"),)))
    assert reject.to == (b,) and isinstance(reject.message, Reject) and reject.after_commit
    assert h.handle(ResetRoom(b)) == [
        Delivery((a, b), Broadcast("r", 2, RESET_ORIGIN, 2, [DeleteOp("k")]))
    ]


def test_duplicate_and_reject_answer_only_the_origin() -> None:
    """A resend gets a duplicate ack, a failing op a reject; nothing to persist or broadcast."""
    h, a, b = hub(), Peer("a"), Peer("b")
    h.handle(JoinRoom(a, None))
    h.handle(JoinRoom(b, None))
    h.handle(Submit(a, 1, 0, (SetOp("s", value="x"),)))
    h.take_unsaved()
    assert h.handle(Submit(a, 1, 0, (SetOp("s", value="x"),))) == [
        Delivery((a,), AckMessage("r", 1, 1, duplicate=True), after_commit=True)
    ]
    sends = h.handle(Submit(a, 2, 1, (IncrementOp("s"),)))
    assert len(sends) == 1 and isinstance(sends[0].message, Reject)
    assert sends[0].to == (a,) and sends[0].after_commit
    assert sends[0].message.code == "type_mismatch" and h.take_unsaved() == []


def test_join_sends_catch_up_then_joined_then_announces() -> None:
    """Delta join: broadcasts after since, joined with the others' presence; others hear of it."""
    h, a, b = hub(), Peer("a", "ann"), Peer("b", "bob")
    h.handle(JoinRoom(a, None, {"color": "red"}))
    for seq in (1, 2, 3):
        h.handle(Submit(a, seq, seq - 1, (IncrementOp("n"),)))
    sends = h.handle(JoinRoom(b, 1, {"color": "blue"}, EPOCH))
    to_b = messages_to(sends, b)
    assert [type(m) for m in to_b] == [Broadcast, Broadcast, Joined]
    assert to_b[-1] == Joined("r", 3, "delta", {"a": {"color": "red", "user": "ann"}}, EPOCH)
    assert messages_to(sends, a) == []  # presence waits for the flush
    assert h.flush_presence() == [
        Delivery((a,), PresenceUpdate("r", {"b": {"color": "blue", "user": "bob"}}))
    ]


def test_far_behind_join_gets_snapshot_with_last_seq() -> None:
    """Beyond max_delta the joiner gets a snapshot carrying its own last processed seq."""
    h, a = hub(), Peer("a")
    h.handle(JoinRoom(a, None))
    for seq in range(1, 6):
        h.handle(Submit(a, seq, seq - 1, (IncrementOp("n"),)))
    h.handle(LeaveRoom(a))
    sends = h.handle(JoinRoom(a, 0, None, EPOCH))
    assert sends[0].message == Snapshot("r", 5, {"n": 5}, last_seq=5)
    assert sends[1].message == Joined("r", 5, "snapshot", {}, EPOCH)


def test_presence_of_a_replaced_connection_survives_the_old_leave() -> None:
    """When a client reconnects, the old connection's late leave keeps the new presence."""
    h, old, new, other = hub(), Peer("a"), Peer("a"), Peer("o")
    h.handle(JoinRoom(other, None, {}))
    h.handle(JoinRoom(old, None, {"v": 1}))
    h.handle(JoinRoom(new, None, {"v": 2}))
    assert h.handle(LeaveRoom(old)) == []
    assert h.presence_table() == {"o": {"user": ""}, "a": {"v": 2, "user": ""}}
    h.flush_presence()
    assert h.handle(LeaveRoom(new)) == []
    assert h.flush_presence() == [Delivery((other,), PresenceUpdate("r", {"a": None}))]


def test_presence_from_non_member_is_ignored() -> None:
    """Presence or leave from a connection that is not a member changes nothing."""
    h, a, stranger = hub(), Peer("a"), Peer("s")
    h.handle(JoinRoom(a, None, {}))
    assert h.handle(SetPresence(stranger, {"x": 1})) == []
    assert h.handle(LeaveRoom(stranger)) == []
    assert h.presence_table() == {"a": {"user": ""}}


def test_presence_is_coalesced_without_echo_or_repeats() -> None:
    """A flush carries the latest state of every change; old members share one message,
    a changer does not hear itself, a joiner not what its joined table listed."""
    h, a, b, c = hub(), Peer("a"), Peer("b"), Peer("c")
    h.handle(JoinRoom(a, None, {}))
    h.flush_presence()
    h.handle(JoinRoom(b, None, {"v": 1}))
    h.handle(SetPresence(b, {"v": 2}))
    sends = h.handle(JoinRoom(c, None, {"v": 3}))
    assert messages_to(sends, c)[-1] == Joined(
        "r", 0, "snapshot", {"a": {"user": ""}, "b": {"v": 2, "user": ""}}, EPOCH
    )
    h.handle(SetPresence(b, {"v": 4}))
    assert h.flush_presence() == [
        Delivery((a,), PresenceUpdate("r", {"b": {"v": 4, "user": ""}, "c": {"v": 3, "user": ""}})),
        Delivery((b,), PresenceUpdate("r", {"c": {"v": 3, "user": ""}})),
        Delivery((c,), PresenceUpdate("r", {"b": {"v": 4, "user": ""}})),
    ]
    assert h.flush_presence() == [] and not h.presence_waiting


def test_a_broadcast_flushes_presence_first() -> None:
    """Presence set before an op reaches the others before that op (cursor positions
    are relative to the text they were set in)."""
    h, a, b, c = hub(), Peer("a"), Peer("b"), Peer("c")
    for peer in (a, b, c):
        h.handle(JoinRoom(peer, None))
    h.flush_presence()
    h.handle(SetPresence(a, {"cursor": 3}))
    sends = h.handle(Submit(c, 1, 0, (SetOp("k", value=1),)))
    assert [type(m) for m in messages_to(sends, b)] == [PresenceUpdate, Broadcast]
    assert [type(m) for m in messages_to(sends, a)] == [Broadcast]
    assert not h.presence_waiting


def test_a_member_that_leaves_before_the_flush_gets_nothing() -> None:
    """Its own leave is told to the others; it is not a receiver any more."""
    h, a, b = hub(), Peer("a"), Peer("b")
    h.handle(JoinRoom(a, None))
    h.handle(JoinRoom(b, None, {}))
    h.handle(LeaveRoom(b))
    assert h.flush_presence() == [Delivery((a,), PresenceUpdate("r", {"b": None}))]


# --- presence is opt-in: a join without a state listens, unlisted -----------------


def test_a_listener_is_not_announced_listed_or_told_of_when_it_leaves() -> None:
    """A join without presence announces nothing and is not in later joiners' tables;
    its leave tells nobody anything (it had no entry)."""
    h, ann, lis, bob = hub(), Peer("a", "ann"), Peer("l", "lee"), Peer("b", "bob")
    h.handle(JoinRoom(ann, None, {"color": "red"}))
    h.flush_presence()
    sends = h.handle(JoinRoom(lis, None))
    red: dict[str, Any] = {"a": {"color": "red", "user": "ann"}}
    assert messages_to(sends, lis) == [Snapshot("r", 0, {}), Joined("r", 0, "snapshot", red, EPOCH)]
    assert messages_to(sends, ann) == []
    assert h.flush_presence() == [] and not h.presence_waiting
    assert h.presence_table() == red
    sends = h.handle(JoinRoom(bob, None, {"color": "blue"}))
    assert messages_to(sends, bob)[-1] == Joined("r", 0, "snapshot", red, EPOCH)
    h.flush_presence()
    assert h.handle(LeaveRoom(lis)) == []
    assert h.flush_presence() == [] and not h.presence_waiting
    assert h.presence_table() == {**red, "b": {"color": "blue", "user": "bob"}}


def test_a_listener_hears_everything_and_is_announced_once_it_sets_presence() -> None:
    """A listener gets the others' presence changes and broadcasts like any member.
    Its first SetPresence announces it (no echo to itself) and lists it for later
    joiners; when it then leaves, the others get None for it."""
    h, ann, lis, bob = hub(), Peer("a", "ann"), Peer("l", "lee"), Peer("b", "bob")
    h.handle(JoinRoom(ann, None, {}))
    h.handle(JoinRoom(lis, None))
    h.flush_presence()
    h.handle(JoinRoom(bob, None, {"color": "blue"}))
    h.handle(SetPresence(ann, {"cursor": 1}))
    sends = h.flush_presence()
    both: dict[str, Any] = {
        "b": {"color": "blue", "user": "bob"},
        "a": {"cursor": 1, "user": "ann"},
    }
    assert messages_to(sends, lis) == [PresenceUpdate("r", both)]
    sends = h.handle(Submit(bob, 1, 0, (SetOp("k", value=1),)))
    assert messages_to(sends, lis) == [Broadcast("r", 1, "b", 1, [SetOp("k", value=1)])]
    h.handle(SetPresence(lis, {"topic": "votes"}))
    sends = h.flush_presence()
    votes: dict[str, Any] = {"l": {"topic": "votes", "user": "lee"}}
    assert messages_to(sends, ann) == messages_to(sends, bob) == [PresenceUpdate("r", votes)]
    assert messages_to(sends, lis) == []
    cat = Peer("c", "cat")
    assert messages_to(h.handle(JoinRoom(cat, None)), cat)[-1] == Joined(
        "r", 1, "snapshot", {**both, **votes}, EPOCH
    )
    assert h.handle(LeaveRoom(lis)) == []
    sends = h.flush_presence()
    for peer in (ann, bob, cat):
        assert messages_to(sends, peer) == [PresenceUpdate("r", {"l": None})]
    assert messages_to(sends, lis) == []
