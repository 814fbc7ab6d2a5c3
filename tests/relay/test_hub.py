"""RoomHub (sans-I/O): who gets what, in which order, and what must be persisted."""

from __future__ import annotations

from dataclasses import dataclass

from livewidgets.protocol import (
    Ack,
    Broadcast,
    IncrementOp,
    Joined,
    PresenceUpdate,
    Reject,
    SetOp,
    Snapshot,
)
from livewidgets.relay.hub import JoinRoom, LeaveRoom, RoomHub, Send, SetPresence, Submit
from livewidgets.relay.room import RoomCore, RoomRecord


@dataclass(eq=False)
class Peer:
    client_id: str
    user: str = ""


def hub() -> RoomHub[Peer]:
    return RoomHub(RoomCore(RoomRecord("r")), max_delta=3)


def messages_to(sends: list[Send[Peer]], peer: Peer) -> list[object]:
    return [send.message for send in sends if peer in send.to]


def test_submit_acks_origin_broadcasts_others_and_queues_entry() -> None:
    """An accepted op: ack to its sender, one broadcast to the others, one unsaved entry."""
    h, a, b, c = hub(), Peer("a"), Peer("b"), Peer("c")
    for peer in (a, b, c):
        h.handle(JoinRoom(peer, None))
    sends = h.handle(Submit(a, 1, 0, (SetOp("k", value=1),)))
    assert sends == [
        Send((a,), Ack("r", 1, 1)),
        Send((b, c), Broadcast("r", 1, "a", 1, [SetOp("k", value=1)])),
    ]
    assert [e.version for e in h.take_unsaved()] == [1]
    assert h.take_unsaved() == []


def test_duplicate_and_reject_answer_only_the_origin() -> None:
    """A resend gets a duplicate ack, a failing op a reject; nothing to persist or broadcast."""
    h, a, b = hub(), Peer("a"), Peer("b")
    h.handle(JoinRoom(a, None))
    h.handle(JoinRoom(b, None))
    h.handle(Submit(a, 1, 0, (SetOp("s", value="x"),)))
    h.take_unsaved()
    assert h.handle(Submit(a, 1, 0, (SetOp("s", value="x"),))) == [
        Send((a,), Ack("r", 1, 1, duplicate=True))
    ]
    sends = h.handle(Submit(a, 2, 1, (IncrementOp("s"),)))
    assert len(sends) == 1 and isinstance(sends[0].message, Reject)
    assert sends[0].message.code == "type_mismatch" and h.take_unsaved() == []


def test_join_sends_catch_up_then_joined_then_announces() -> None:
    """Delta join: broadcasts after since, joined with the others' presence; others hear of it."""
    h, a, b = hub(), Peer("a", "ann"), Peer("b", "bob")
    h.handle(JoinRoom(a, None, {"color": "red"}))
    for seq in (1, 2, 3):
        h.handle(Submit(a, seq, seq - 1, (IncrementOp("n"),)))
    sends = h.handle(JoinRoom(b, 1, {"color": "blue"}))
    to_b = messages_to(sends, b)
    assert [type(m) for m in to_b] == [Broadcast, Broadcast, Joined]
    assert to_b[-1] == Joined("r", 3, "delta", {"a": {"color": "red", "user": "ann"}})
    assert messages_to(sends, a) == [PresenceUpdate("r", "b", {"color": "blue", "user": "bob"})]


def test_far_behind_join_gets_snapshot_with_last_seq() -> None:
    """Beyond max_delta the joiner gets a snapshot carrying its own last processed seq."""
    h, a = hub(), Peer("a")
    h.handle(JoinRoom(a, None))
    for seq in range(1, 6):
        h.handle(Submit(a, seq, seq - 1, (IncrementOp("n"),)))
    h.handle(LeaveRoom(a))
    sends = h.handle(JoinRoom(a, 0))
    assert sends[0].message == Snapshot("r", 5, {"n": 5}, last_seq=5)
    assert sends[1].message == Joined("r", 5, "snapshot", {})


def test_presence_of_a_replaced_connection_survives_the_old_leave() -> None:
    """When a client reconnects, the old connection's late leave keeps the new presence."""
    h, old, new, other = hub(), Peer("a"), Peer("a"), Peer("o")
    h.handle(JoinRoom(other, None))
    h.handle(JoinRoom(old, None, {"v": 1}))
    h.handle(JoinRoom(new, None, {"v": 2}))
    assert h.handle(LeaveRoom(old)) == []
    assert h.presence_table() == {"o": {"user": ""}, "a": {"v": 2, "user": ""}}
    assert h.handle(LeaveRoom(new)) == [Send((other,), PresenceUpdate("r", "a", None))]


def test_presence_from_non_member_is_ignored() -> None:
    """Presence or leave from a connection that is not a member changes nothing."""
    h, a, stranger = hub(), Peer("a"), Peer("s")
    h.handle(JoinRoom(a, None))
    assert h.handle(SetPresence(stranger, {"x": 1})) == []
    assert h.handle(LeaveRoom(stranger)) == []
    assert h.presence_table() == {"a": {"user": ""}}
