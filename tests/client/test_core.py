"""The sans-I/O client core (RoomSync) driven with protocol messages, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from livewidgets.client.core import (
    Acked,
    Changed,
    Failed,
    JoinedRoom,
    Priority,
    QueueFull,
    Resync,
    RoomSync,
    Send,
)
from livewidgets.client.events import Subscriptions
from livewidgets.protocol import (
    AckMessage,
    Batch,
    Broadcast,
    Error,
    Join,
    Joined,
    OpMessage,
    Reject,
    Snapshot,
)
from livewidgets.state import text as text_ot
from livewidgets.state.ops import DeleteOp, IncrementOp, Op, OpError, PushOp, SetOp, TextOp

ROOM = "r"
ME = "me"


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def sends(events: list[Any]) -> list[Any]:
    return [e.message for e in events if isinstance(e, Send)]


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def joined(state: dict[str, Any] | None = None, version: int = 0, **options: Any) -> RoomSync:
    """A core that has joined ``ROOM`` at ``version`` with ``state``."""
    sync = RoomSync(ROOM, ME, **options)
    sync.connection_opened()
    sync.receive(Snapshot(room=ROOM, version=version, state=state or {}))
    sync.receive(Joined(room=ROOM, version=version, mode="snapshot"))
    assert sync.joined
    return sync


def remote(version: int, *ops: Op, origin: str = "other", seq: int = 1) -> Broadcast:
    return Broadcast(room=ROOM, version=version, origin=origin, client_seq=seq, ops=list(ops))


def ack(seq: int, version: int, duplicate: bool = False) -> AckMessage:
    return AckMessage(room=ROOM, client_seq=seq, version=version, duplicate=duplicate)


def text(path: str, before: str, index: int, insert: str) -> TextOp:
    return TextOp(path=path, delta=text_ot.edit(text_ot.utf16_len(before), index, 0, insert))


# --- joining ------------------------------------------------------------------------


def test_first_join_asks_for_a_snapshot() -> None:
    """A new core joins with since=None; once joined it resumes with since=version."""
    sync = RoomSync(ROOM, ME)
    assert sends(sync.connection_opened()) == [Join(room=ROOM, since=None)]
    sync.receive(Snapshot(room=ROOM, version=4, state={"a": 1}))
    events = sync.receive(Joined(room=ROOM, version=4, mode="snapshot", epoch="e1"))
    assert of(events, JoinedRoom) == [JoinedRoom(4, "snapshot")]
    assert sync.visible == sync.confirmed == {"a": 1}
    sync.connection_lost()
    # The version means something only in the relay's history it came from.
    assert sends(sync.connection_opened()) == [Join(room=ROOM, since=4, epoch="e1")]


def test_writes_before_joining_wait_then_go_in_order() -> None:
    """Writes made before the join apply locally at once and are sent after Joined."""
    sync = RoomSync(ROOM, ME)
    assert sends(sync.submit([SetOp(path="a", value=1)])) == []
    assert sends(sync.submit([SetOp(path="b", value=2)])) == []
    assert sync.visible == {"a": 1, "b": 2}
    sync.connection_opened()
    sync.receive(Snapshot(room=ROOM, version=0, state={}))
    messages = sends(sync.receive(Joined(room=ROOM, version=0, mode="snapshot")))
    assert [m.client_seq for m in messages] == [1, 2]


# --- optimistic writes, acks, rebase ------------------------------------------------


def test_submit_applies_optimistically_and_sends() -> None:
    """A write changes ``visible`` at once (a local Changed) and is sent against the version."""
    sync = joined({"n": 1}, version=3)
    events = sync.submit([SetOp(path="a", value="x")], handle="h")
    changed = of(events, Changed)
    assert len(changed) == 1 and changed[0].local
    assert changed[0].before == {"n": 1} and changed[0].after == {"n": 1, "a": "x"}
    assert sends(events) == [
        OpMessage(room=ROOM, client_seq=1, base_version=3, op=SetOp(path="a", value="x"))
    ]
    assert sync.visible == {"n": 1, "a": "x"}
    assert sync.confirmed == {"n": 1}
    assert sync.in_flight == 1


def test_invalid_local_write_raises_and_changes_nothing() -> None:
    """An op that cannot apply locally raises OpError and is not queued."""
    sync = joined({"s": "text"})
    with pytest.raises(OpError):
        sync.submit([IncrementOp(path="s", by=1)])
    assert sync.pending == [] and sync.visible == {"s": "text"}


def test_ack_moves_pending_to_confirmed_without_a_visible_change() -> None:
    """Ack: the op leaves pending, confirmed catches up, no Changed event (no echo)."""
    sync = joined()
    sync.submit([IncrementOp(path="n", by=2)], handle="h")
    visible = sync.visible
    events = sync.receive(ack(1, 1))
    assert events == [Acked(["h"], 1)]
    assert sync.pending == []
    assert sync.version == 1
    assert sync.confirmed == sync.visible == {"n": 2}
    assert sync.visible is visible


def test_own_broadcast_in_catch_up_confirms_the_op() -> None:
    """Our own op replayed in a delta catch-up (ack lost) confirms it, applied once."""
    sync = joined()
    sync.submit([IncrementOp(path="n", by=1)], handle="h")
    sync.connection_lost()
    sync.connection_opened()
    events = sync.receive(remote(1, IncrementOp(path="n", by=1), origin=ME, seq=1))
    assert of(events, Acked) == [Acked(["h"], 1)]
    assert sync.visible == sync.confirmed == {"n": 1}
    assert sync.pending == []


def test_remote_op_rebases_pending() -> None:
    """A remote op lands on confirmed; visible = confirmed + pending replayed."""
    sync = joined({"n": 1})
    sync.submit([IncrementOp(path="n", by=10)])
    sync.submit([SetOp(path="mine", value=True)])
    events = sync.receive(remote(1, IncrementOp(path="n", by=5)))
    assert sync.confirmed == {"n": 6}
    assert sync.visible == {"n": 16, "mine": True}
    (changed,) = of(events, Changed)
    assert not changed.local
    assert changed.before == {"n": 11, "mine": True} and changed.after == sync.visible


def test_remote_text_edit_transforms_pending_text() -> None:
    """A concurrent remote insert shifts our pending text edit (OT), both survive."""
    sync = joined({"t": "abc"})
    sync.submit([text("t", "abc", 3, "!")])  # "abc!"
    sync.receive(remote(1, text("t", "abc", 0, ">")))
    assert sync.confirmed == {"t": ">abc"}
    assert sync.visible == {"t": ">abc!"}
    assert sync.pending[0].ops == [TextOp(path="t", delta=[4, "!"])]


def test_a_remote_delete_dooms_every_pending_edit_of_that_text() -> None:
    """A concurrent delete (an admin's reset) replaces the string under two pending
    edits: both are doomed, not only the first, so a new text at the path later is
    never transformed against an edit of the old one; the relay refuses both."""
    sync = joined({"t": "abc", "n": 1})
    sync.submit([text("t", "abc", 3, "!")], handle=1)  # sent
    sync.submit([text("t", "abc!", 0, ">"), IncrementOp(path="n", by=1)], handle=2)  # waits
    sync.submit([IncrementOp(path="n", by=5)], handle=3)
    sync.receive(remote(1, DeleteOp(path="t")))
    assert [p.doomed for p in sync.pending] == [True, True, False]
    sync.receive(remote(2, TextOp(path="t", delta=["new"])))
    assert sync.visible == {"t": "new", "n": 6}
    events = sync.receive(Reject(room=ROOM, client_seq=1, code="conflict", message="x"))
    assert [f.handles for f in of(events, Failed)] == [[1]]
    assert sync.visible == {"t": "new", "n": 6}
    # The doomed edit goes out against the version it was made at, before the delete:
    # the relay sees the delete as concurrent and refuses it, even though its delta
    # happens to fit the new text ("new" is as long as "abc").
    doomed = next(m for m in sends(events) if m.client_seq == 2)
    assert doomed.base_version == 0
    assert all(m.base_version == 2 for m in sends(events) if m.client_seq != 2)


def test_remote_set_wins_over_pending_set_only_until_ours_lands() -> None:
    """Room order decides: our later pending set still shows on top of a remote set."""
    sync = joined()
    sync.submit([SetOp(path="a", value="mine")])
    sync.receive(remote(1, SetOp(path="a", value="theirs")))
    assert sync.confirmed == {"a": "theirs"}
    assert sync.visible == {"a": "mine"}
    sync.receive(ack(1, 2))
    assert sync.confirmed == sync.visible == {"a": "mine"}


# --- rejects ------------------------------------------------------------------------


def test_reject_rolls_back_only_that_op() -> None:
    """Reject: that op is rolled back and reported Failed with the code; others stay."""
    sync = joined({"n": 0})
    sync.submit([IncrementOp(path="n", by=1)], handle="h1")
    sync.submit([SetOp(path="b", value=2)], handle="h2")
    events = sync.receive(
        Reject(
            room=ROOM,
            client_seq=1,
            code="conflict",
            message="changed",
            path="n",
            current=7,
            current_version=9,
        )
    )
    assert sync.visible == {"n": 0, "b": 2}
    (changed,) = of(events, Changed)
    assert changed.before == {"n": 1, "b": 2} and changed.after == sync.visible
    (failed,) = of(events, Failed)
    assert failed.handles == ["h1"] and failed.code == "conflict"
    assert (failed.path, failed.current, failed.current_version) == ("n", 7, 9)
    assert failed.ops == [IncrementOp(path="n", by=1)]
    assert [p.seq for p in sync.pending] == [2]


def test_reject_after_remote_change_keeps_remote_value() -> None:
    """A remote set made our increment impossible: visible shows theirs, reject cleans up."""
    sync = joined({"x": 1})
    sync.submit([IncrementOp(path="x", by=1)], handle="h")
    sync.receive(remote(1, SetOp(path="x", value="str")))
    assert sync.visible == {"x": "str"}  # the op no longer applies; it is skipped
    events = sync.receive(
        Reject(room=ROOM, client_seq=1, code="type_mismatch", message="no", path="x")
    )
    assert [f.code for f in of(events, Failed)] == ["type_mismatch"]
    assert sync.pending == [] and sync.visible == {"x": "str"}


def test_rejected_batch_rolls_back_all_of_it() -> None:
    """A batch is one unit: its reject removes every op of it from visible."""
    sync = joined()
    events = sync.submit(
        [SetOp(path="a", value=1), SetOp(path="b", value=1)], batch=True, handle="h"
    )
    (message,) = sends(events)
    assert isinstance(message, Batch) and len(message.ops) == 2
    sync.receive(Reject(room=ROOM, client_seq=1, code="conflict", message="x"))
    assert sync.visible == {}


# --- subscriptions (Changed -> Subscriptions.notify) --------------------------------


def test_changed_events_drive_subscriptions_at_or_below_the_path() -> None:
    """Subscribers fire once per change at or below their path, never for siblings."""
    sync = joined({"poll": {"q": 0}, "other": 0})
    subs = Subscriptions()
    seen: list[tuple[str, Any]] = []
    subs.add("poll", lambda value, path: seen.append((path, value)))
    subs.add("poll/q", lambda value, path: seen.append((path, value)))
    subs.add("", lambda value, path: seen.append(("<root>", None)))

    def deliver(events: list[Any]) -> None:
        for event in of(events, Changed):
            subs.notify(event.before, event.after)

    deliver(sync.submit([SetOp(path="poll/q", value=1)]))
    assert seen == [("poll", {"q": 1}), ("poll/q", 1), ("<root>", None)]
    seen.clear()
    deliver(sync.receive(ack(1, 1)))
    assert seen == []  # the ack is not a change
    deliver(sync.receive(remote(2, IncrementOp(path="other", by=1))))
    assert seen == [("<root>", None)]
    seen.clear()
    deliver(sync.receive(remote(3, SetOp(path="poll/q", value=1))))
    assert seen == []  # same value: no change at poll


def test_duplicate_broadcast_is_ignored() -> None:
    """A broadcast at or below our version (overlapping catch-up) changes nothing."""
    sync = joined()
    sync.receive(remote(1, IncrementOp(path="n", by=1)))
    assert sync.receive(remote(1, IncrementOp(path="n", by=1))) == []
    assert sync.visible == {"n": 1} and sync.version == 1


def test_gap_asks_for_resync_with_a_snapshot() -> None:
    """A missing version is a divergence: Resync, and the next join asks for a snapshot."""
    sync = joined()
    sync.receive(remote(1, IncrementOp(path="n", by=1)))
    events = sync.receive(remote(3, IncrementOp(path="n", by=1)))
    assert kinds(events) == ["Resync"]
    assert sync.visible == {"n": 1}
    sync.connection_lost()
    assert sends(sync.connection_opened()) == [Join(room=ROOM, since=None)]


def test_not_joined_error_asks_for_resync() -> None:
    """The relay saying we are not joined means our view is stale: Resync."""
    sync = joined()
    events = sync.receive(Error(code="not_joined", message="join first", room=ROOM))
    assert of(events, Resync)


def test_snapshot_settles_processed_ops_without_double_apply() -> None:
    """Snapshot with last_seq: ops up to it are in the state already (no double increment)."""
    sync = joined()
    sync.submit([IncrementOp(path="n", by=1)], handle="h1")
    sync.submit([IncrementOp(path="n", by=1)], handle="h2")
    sync.connection_lost()  # both were sent; acks lost
    sync.connection_opened()
    # The relay applied seq 1 (n=1), someone else added 10; seq 2 never arrived.
    sync.receive(Snapshot(room=ROOM, version=2, state={"n": 11}, last_seq=1))
    assert sync.visible == {"n": 12}  # seq 1 is in the snapshot, only seq 2 replays
    resent = sends(sync.receive(Joined(room=ROOM, version=2, mode="snapshot")))
    assert [m.client_seq for m in resent] == [1, 2]  # seq 1 resent only to learn its verdict
    events = sync.receive(ack(1, 1, duplicate=True))
    assert of(events, Acked) == [Acked(["h1"], 1)]
    assert sync.visible == {"n": 12}
    sync.receive(ack(2, 3))
    assert sync.confirmed == sync.visible == {"n": 12}
    assert sync.pending == []


# --- offline queue ------------------------------------------------------------------


def test_queue_full_raises_and_changes_nothing() -> None:
    """With max_pending writes waiting, another write of equal priority raises QueueFull."""
    sync = RoomSync(ROOM, ME, max_pending=2)
    sync.submit([PushOp(path="l", value=1)])
    sync.submit([PushOp(path="l", value=2)])
    with pytest.raises(QueueFull):
        sync.submit([PushOp(path="l", value=3)])
    assert sync.visible == {"l": [1, 2]}
    assert [p.seq for p in sync.pending] == [1, 2]


def test_higher_priority_evicts_newest_independent_lower_priority_op() -> None:
    """A high-priority write evicts the newest unsent low-priority op nothing builds on."""
    sync = RoomSync(ROOM, ME, max_pending=3)
    sync.submit([SetOp(path="b", value=1)], handle="low-b", priority=Priority.LOW)
    sync.submit([SetOp(path="a", value=1)], handle="low-a", priority=Priority.LOW)
    sync.submit([SetOp(path="a", value=2)], handle="high-a", priority=Priority.HIGH)
    events = sync.submit([SetOp(path="c", value=1)], handle="high-c", priority=Priority.HIGH)
    (failed,) = of(events, Failed)
    # low-a is newer, but the later high-a write on the same path builds on it.
    assert failed.handles == ["low-b"] and failed.code == "queue_full"
    assert sync.visible == {"a": 2, "c": 1}
    assert [p.handles for p in sync.pending] == [["low-a"], ["high-a"], ["high-c"]]


def test_no_eviction_of_equal_or_higher_priority() -> None:
    """A low-priority write never evicts anything: QueueFull."""
    sync = RoomSync(ROOM, ME, max_pending=1)
    sync.submit([SetOp(path="a", value=1)], priority=Priority.LOW)
    with pytest.raises(QueueFull):
        sync.submit([SetOp(path="b", value=1)], priority=Priority.LOW)


def transmitted_low_priority_op_then_offline() -> RoomSync:
    """A full queue (2) whose newest op is low priority and was sent before a disconnect."""
    sync = joined(max_pending=2)
    sync.submit([SetOp(path="x", value=1)], handle="high-x", priority=Priority.HIGH)
    sync.submit([IncrementOp(path="n", by=1)], handle="low", priority=Priority.LOW)
    assert all(p.transmitted for p in sync.pending)
    sync.connection_lost()  # acks lost: the relay may have applied both
    return sync


def test_eviction_spares_ops_the_relay_may_already_hold() -> None:
    """An op sent before a disconnect is not 'unsent': a full queue raises instead."""
    sync = transmitted_low_priority_op_then_offline()
    with pytest.raises(QueueFull):
        sync.submit([SetOp(path="y", value=1)], handle="high-y", priority=Priority.HIGH)


def test_a_write_reported_failed_never_takes_effect() -> None:
    """If eviction reports a write Failed, the relay must not apply it behind our back."""
    sync = transmitted_low_priority_op_then_offline()
    try:
        events = sync.submit([SetOp(path="y", value=1)], handle="high-y", priority=Priority.HIGH)
    except QueueFull:
        events = []
    failed = [h for f in of(events, Failed) for h in f.handles]
    # Reconnect: the delta shows the relay had applied both ops before the cut.
    sync.connection_opened()
    sync.receive(remote(1, SetOp(path="x", value=1), origin=ME, seq=1))
    sync.receive(remote(2, IncrementOp(path="n", by=1), origin=ME, seq=2))
    assert sync.confirmed.get("n") == 1  # the increment is in the room
    assert "low" not in failed, "the caller was told the increment failed"


# --- text: one in flight per path ---------------------------------------------------


def test_text_one_in_flight_per_path_and_keystrokes_compose() -> None:
    """A second edit of a text waits for the first ack; later keystrokes compose into it."""
    sync = joined({"t": ""})
    first = sync.submit([text("t", "", 0, "a")], handle=1)
    assert len(sends(first)) == 1
    second = sync.submit([text("t", "a", 1, "b")], handle=2)
    assert sends(second) == []  # waits: the first is unacknowledged
    third = sync.submit([text("t", "ab", 2, "c")], handle=3)
    assert sends(third) == [] and len(sync.pending) == 2  # composed into the second
    assert sync.visible == {"t": "abc"}
    # Ops go out in client_seq order: a later write elsewhere queues behind the text.
    assert sends(sync.submit([SetOp(path="other", value=1)], handle=4)) == []
    events = sync.receive(ack(1, 1))
    assert [(m.client_seq, m.op) for m in sends(events)] == [
        (2, TextOp(path="t", delta=[1, "bc"])),
        (3, SetOp(path="other", value=1)),
    ]
    assert sync.pending[0].handles == [2, 3]


def test_transmitted_text_op_is_never_extended() -> None:
    """A keystroke after a disconnect does not compose into an op the relay may hold."""
    sync = joined({"t": ""})
    sync.submit([text("t", "", 0, "a")])
    sync.connection_lost()
    sync.submit([text("t", "a", 1, "b")])
    assert [p.ops for p in sync.pending] == [
        [TextOp(path="t", delta=["a"])],
        [TextOp(path="t", delta=[1, "b"])],
    ]


# --- ack timeout --------------------------------------------------------------------


def test_tick_resends_overdue_ops_only() -> None:
    """tick(now) resends in-flight ops whose ack is later than ack_timeout, once per timeout."""
    sync = joined()
    sync.submit([IncrementOp(path="n", by=1)], now=0.0)
    sync.submit([IncrementOp(path="n", by=1)], now=5.0)
    assert sync.tick(5.0, ack_timeout=10.0) == []
    resent = sends(sync.tick(10.5, ack_timeout=10.0))
    assert [m.client_seq for m in resent] == [1]
    assert sync.tick(11.0, ack_timeout=10.0) == []  # the resend restarted its clock
    assert [m.client_seq for m in sends(sync.tick(16.0, ack_timeout=10.0))] == [2]


def test_duplicate_ack_after_resend_is_ignored() -> None:
    """The relay acks a resend again (duplicate): the second ack changes nothing."""
    sync = joined()
    sync.submit([IncrementOp(path="n", by=1)], handle="h", now=0.0)
    sync.tick(100.0, ack_timeout=1.0)
    assert of(sync.receive(ack(1, 1)), Acked) == [Acked(["h"], 1)]
    assert sync.receive(ack(1, 1, duplicate=True)) == []
    assert sync.visible == {"n": 1} and sync.version == 1
