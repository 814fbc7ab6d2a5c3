"""Tests for livewidgets.relay.room: the pure room sequencer (RoomCore)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livewidgets.protocol.codes import ErrorCode
from livewidgets.relay.room import (
    MAX_UNLOGGED_REFUSALS,
    Accepted,
    Duplicate,
    LogEntry,
    Outcome,
    Rejected,
    RoomCore,
    RoomRecord,
)
from livewidgets.state.ops import (
    DeleteOp,
    IncrementOp,
    MergeOp,
    Op,
    PushOp,
    SetOp,
    TextOp,
)

# No example database: keeps the shared work tree free of .hypothesis/ churn.
FAST = settings(max_examples=100, deadline=None, database=None)


def _room(**kwargs: Any) -> RoomCore:
    return RoomCore(RoomRecord("r"), **kwargs)


def _accepted(outcome: Outcome) -> LogEntry:
    assert isinstance(outcome, Accepted), outcome
    return outcome.entry


def _rejected(outcome: Outcome, code: ErrorCode) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code is code, outcome
    return outcome


# --- ordering ------------------------------------------------------------------------------------


def test_versions_are_consecutive_across_clients() -> None:
    """Accepted ops get versions 1, 2, 3, … in arrival order, whoever sent them."""
    room = _room()
    versions = [
        _accepted(room.submit(client, seq, room.version, [IncrementOp(path="n")])).version
        for client, seq in [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2)]
    ]
    assert versions == [1, 2, 3, 4, 5]
    assert room.version == 5
    assert room.state == {"n": 5}
    assert [e.version for e in room.window] == versions


def test_log_entry_records_sender_and_ops() -> None:
    """An accepted entry names its client, client_seq and ops."""
    room = _room()
    op = SetOp(path="a", value=1)
    assert _accepted(room.submit("a", 7, 0, [op])) == LogEntry(1, "a", 7, (op,))


def test_batch_gets_one_version() -> None:
    """A batch is one log entry and one version, whatever its length."""
    room = _room()
    ops: list[Op] = [SetOp(path="a", value=1), SetOp(path="b", value=2), IncrementOp(path="a")]
    entry = _accepted(room.submit("a", 1, 0, ops))
    assert (entry.version, room.version, len(entry.ops)) == (1, 1, 3)
    assert room.state == {"a": 2, "b": 2}


def test_failing_batch_changes_nothing() -> None:
    """A batch with one failing op is rejected whole: same state object, same version."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [SetOp(path="s", value="text")]))
    state = room.state
    ops: list[Op] = [SetOp(path="x", value=1), IncrementOp(path="s"), SetOp(path="y", value=2)]
    rejected = _rejected(room.submit("a", 2, 1, ops), ErrorCode.TYPE_MISMATCH)
    assert rejected.path == "s"
    assert room.state is state
    assert room.version == 1
    assert len(room.window) == 1


# --- exactly-once --------------------------------------------------------------------------------


def test_resend_of_latest_is_acked_with_original_version() -> None:
    """A resend of the last accepted op is a Duplicate with its version, not applied again."""
    room = _room()
    _accepted(room.submit("b", 1, 0, [IncrementOp(path="n")]))
    _accepted(room.submit("a", 1, 1, [IncrementOp(path="n")]))
    _accepted(room.submit("b", 2, 2, [IncrementOp(path="n")]))
    assert room.submit("a", 1, 1, [IncrementOp(path="n")]) == Duplicate(2)
    assert room.state == {"n": 3}
    assert room.version == 3


def test_resend_of_older_op_is_acked_with_its_version() -> None:
    """A resend of an older op still in the window is a Duplicate with that op's version."""
    room = _room()
    for seq in (1, 2, 3):
        _accepted(room.submit("a", seq, room.version, [IncrementOp(path="n")]))
    assert room.submit("a", 2, 3, [IncrementOp(path="n")]) == Duplicate(2)
    assert room.submit("a", 1, 0, [IncrementOp(path="n")]) == Duplicate(1)
    assert room.state == {"n": 3}


def test_rejected_resend_is_answered_alike() -> None:
    """A resend of a rejected op gets the same rejection, also after later ops."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [SetOp(path="s", value="text")]))
    first = _rejected(room.submit("a", 2, 1, [IncrementOp(path="s")]), ErrorCode.TYPE_MISMATCH)
    assert room.submit("a", 2, 1, [IncrementOp(path="s")]) == first
    _accepted(room.submit("a", 3, 1, [SetOp(path="t", value=1)]))
    assert room.submit("a", 2, 1, [IncrementOp(path="s")]) == first
    assert room.version == 2


def test_resend_out_of_window_is_acked_as_applied() -> None:
    """A resend whose entry left the window (and was not refused) is acked below the window."""
    room = _room(window=2)
    for seq in (1, 2, 3, 4):
        _accepted(room.submit("a", seq, room.version, [IncrementOp(path="n")]))
    assert room.submit("a", 3, 2, [IncrementOp(path="n")]) == Duplicate(3)
    assert room.submit("a", 1, 0, [IncrementOp(path="n")]) == Duplicate(2)
    assert room.state == {"n": 4}


def test_client_seq_may_skip_but_not_go_back() -> None:
    """Gaps in client_seq are fine; a lower seq than the latest is a resend, never applied."""
    room = _room(window=1)
    _accepted(room.submit("a", 5, 0, [IncrementOp(path="n")]))
    _accepted(room.submit("b", 1, 1, [IncrementOp(path="n")]))
    assert room.submit("a", 3, 2, [IncrementOp(path="n")]) == Duplicate(1)
    assert _accepted(room.submit("a", 9, 2, [IncrementOp(path="n")])).version == 3


def test_dedupe_is_per_client() -> None:
    """The same client_seq from two clients is two distinct ops."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [IncrementOp(path="n")]))
    _accepted(room.submit("b", 1, 1, [IncrementOp(path="n")]))
    assert room.dedupe == {"a": (1, 1), "b": (1, 2)}


# --- checks --------------------------------------------------------------------------------------


def test_if_version_conflict_carries_current_value_and_version() -> None:
    """A path changed after if_version is a conflict with the value now and its version."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [SetOp(path="poll/title", value="Lunch?")]))
    _accepted(room.submit("a", 2, 1, [SetOp(path="other", value=1)]))
    op = SetOp(path="poll/title", value="Dinner?", if_version=0)
    rejected = _rejected(room.submit("b", 1, 2, [op]), ErrorCode.CONFLICT)
    assert rejected.path == "poll/title"
    assert rejected.current == "Lunch?"
    assert rejected.current_version == 1
    assert room.version == 2


def test_if_version_passes_when_unchanged_since() -> None:
    """if_version at or after the last change of the path is accepted."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [SetOp(path="poll/title", value="Lunch?")]))
    _accepted(room.submit("a", 2, 1, [SetOp(path="other", value=1)]))
    op = SetOp(path="poll/title", value="Dinner?", if_version=1)
    _accepted(room.submit("b", 1, 2, [op]))
    assert room.state["poll"]["title"] == "Dinner?"


@pytest.mark.parametrize(
    ("write", "guarded", "conflict"),
    [
        ("poll", "poll/title", True),  # a parent was replaced
        ("poll/title/x", "poll/title", True),  # something below changed
        ("poll/other", "poll/title", False),  # a sibling
        ("pollster", "poll", False),  # a name prefix is not a path prefix
    ],
)
def test_if_version_sees_related_paths(write: str, guarded: str, conflict: bool) -> None:
    """A change at an ancestor or descendant trips if_version; siblings do not."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [SetOp(path=write, value={})]))
    outcome = room.submit("b", 1, 1, [SetOp(path=guarded, value={}, if_version=0)])
    assert isinstance(outcome, Rejected) == conflict, outcome


def test_merge_if_version_counts_each_key() -> None:
    """A merge changes path/key for each key: guarding another key of the mapping passes."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [MergeOp(path="m", value={"x": 1})]))
    _accepted(room.submit("b", 1, 1, [SetOp(path="m/y", value=2, if_version=0)]))
    op = SetOp(path="m/x", value=3, if_version=0)
    _rejected(room.submit("b", 2, 1, [op]), ErrorCode.CONFLICT)


def test_base_version_ahead_is_rejected() -> None:
    """An op claiming a base_version the room has not reached is invalid_message."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [IncrementOp(path="n")]))
    _rejected(room.submit("b", 1, 5, [IncrementOp(path="n")]), ErrorCode.INVALID_MESSAGE)
    assert (room.version, room.state) == (1, {"n": 1})


def test_type_mismatch_rejects_with_path() -> None:
    """An op that does not fit is rejected with type_mismatch and its path."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [PushOp(path="l", value=1)]))
    rejected = _rejected(room.submit("a", 2, 1, [IncrementOp(path="l")]), ErrorCode.TYPE_MISMATCH)
    assert rejected.path == "l"


def test_too_deep_path_is_invalid_path() -> None:
    """A path deeper than 32 segments (valid on the wire) is rejected with invalid_path."""
    room = _room()
    _rejected(room.submit("a", 1, 0, [DeleteOp(path="/".join("k" * 33))]), ErrorCode.INVALID_PATH)


# --- catch-up ------------------------------------------------------------------------------------


def _room_at(version: int, **kwargs: Any) -> RoomCore:
    room = _room(**kwargs)
    for seq in range(1, version + 1):
        _accepted(room.submit("a", seq, room.version, [IncrementOp(path="n")]))
    return room


def test_catch_up_up_to_date_is_empty_delta() -> None:
    """A client at the current version gets an empty delta."""
    room = _room_at(3)
    catch_up = room.catch_up(3, epoch=room.lineage.epoch)
    assert (catch_up.mode, catch_up.version, list(catch_up.entries)) == ("delta", 3, [])


def test_catch_up_from_new_room_is_empty_delta() -> None:
    """since=0 on a new room is an empty delta at version 0."""
    room = _room()
    catch_up = room.catch_up(0, epoch=room.lineage.epoch)
    assert (catch_up.mode, catch_up.version, list(catch_up.entries)) == ("delta", 0, [])


def test_catch_up_behind_gets_the_missing_entries() -> None:
    """A client a few versions behind gets exactly the entries after `since`, in order."""
    room = _room_at(5)
    catch_up = room.catch_up(2, epoch=room.lineage.epoch)
    assert catch_up.mode == "delta"
    assert [e.version for e in catch_up.entries] == [3, 4, 5]
    assert catch_up.state is None


@pytest.mark.parametrize(
    ("since", "kwargs"),
    [
        (None, {}),  # the client has nothing
        (9, {}),  # the client is ahead (the relay lost state)
        (1, {"max_delta": 2}),  # too far behind
    ],
)
def test_catch_up_snapshot_cases(since: int | None, kwargs: dict[str, int]) -> None:
    """No since, a since ahead of the room, or too many missing versions give a snapshot."""
    room = _room_at(5)
    catch_up = room.catch_up(since, **kwargs)
    assert (catch_up.mode, catch_up.version) == ("snapshot", 5)
    assert catch_up.state is room.state


def test_catch_up_older_than_window_is_snapshot() -> None:
    """A since older than the window's first entry gets a snapshot; the window edge is a delta."""
    room = _room_at(6, window=3)
    assert room.catch_up(2, epoch=room.lineage.epoch).mode == "snapshot"
    assert [e.version for e in room.catch_up(3, epoch=room.lineage.epoch).entries] == [4, 5, 6]


def test_catch_up_after_restart_without_log_is_snapshot() -> None:
    """A room rebuilt from a snapshot only cannot serve deltas from before it."""
    room = _room_at(4)
    version, state, clock = room.take_snapshot()
    rebuilt = RoomCore(RoomRecord("r", version, state, clock, lineage=room.lineage))
    assert rebuilt.catch_up(2, epoch=room.lineage.epoch).mode == "snapshot"
    assert rebuilt.catch_up(4, epoch=room.lineage.epoch).mode == "delta"


def test_snapshot_catch_up_reports_the_clients_last_seq() -> None:
    """A snapshot tells the joining client its highest processed client_seq (rejects too)."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [SetOp(path="s", value="text")]))
    _accepted(room.submit("b", 1, 1, [IncrementOp(path="n")]))
    _rejected(room.submit("a", 2, 2, [IncrementOp(path="s")]), ErrorCode.TYPE_MISMATCH)
    assert room.catch_up(None, client_id="a").last_seq == 2
    assert room.catch_up(None, client_id="b").last_seq == 1
    assert room.catch_up(None, client_id="new").last_seq == 0
    assert room.catch_up(None).last_seq == 0


def test_take_snapshot_resets_counter() -> None:
    """take_snapshot returns version, state and clock, and resets ops_since_snapshot."""
    room = _room_at(3)
    assert room.ops_since_snapshot == 3
    version, state, _clock = room.take_snapshot()
    assert (version, state, room.ops_since_snapshot) == (3, {"n": 3}, 0)


# --- rebuilding from the store -------------------------------------------------------------------

# Ops that always apply: each kind of op owns its own top-level key.
SAFE_OPS: st.SearchStrategy[Op] = st.one_of(
    st.builds(SetOp, path=st.sampled_from(["s/a", "s/b"]), value=st.integers(0, 9)),
    st.builds(IncrementOp, path=st.sampled_from(["n/a", "n/b"]), by=st.integers(-3, 3)),
    st.builds(PushOp, path=st.just("l"), value=st.integers(0, 9)),
    st.builds(MergeOp, path=st.just("m"), value=st.dictionaries(st.sampled_from("xy"), st.none())),
)
# (client, op or None = resend one of this client's earlier seqs)
STEPS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.none() | st.lists(SAFE_OPS, min_size=1)),
    max_size=20,
)


def _run(steps: list[tuple[str, list[Op] | None]], snapshot_at: int) -> tuple[RoomCore, RoomRecord]:
    """Drive a room; return it and the record a store would hold (snapshot + later log)."""
    room = _room()
    seqs: dict[str, int] = {}
    sent: dict[tuple[str, int], list[Op]] = {}
    record = RoomRecord("r", lineage=room.lineage)
    for index, (client, ops) in enumerate(steps):
        if index == snapshot_at:
            version, state, clock = room.take_snapshot()
            record = RoomRecord(
                "r", version, state, clock, dedupe=dict(room.dedupe), lineage=room.lineage
            )
        if ops is None:
            if seqs.get(client):
                seq = seqs[client]
                assert isinstance(room.submit(client, seq, 0, sent[client, seq]), Duplicate)
            continue
        seqs[client] = seqs.get(client, 0) + 1
        sent[client, seqs[client]] = ops
        entry = _accepted(room.submit(client, seqs[client], room.version, ops))
        if entry.version > record.snapshot_version:
            record.log.append(entry)
    return room, record


@FAST
@given(STEPS, st.integers(0, 20))
def test_rebuilt_room_equals_original(
    steps: list[tuple[str, list[Op] | None]], snapshot_at: int
) -> None:
    """A RoomCore rebuilt from snapshot + log has the original's state, version and dedupe."""
    room, record = _run(steps, snapshot_at)
    rebuilt = RoomCore(copy.deepcopy(record))
    assert rebuilt.state == room.state
    assert rebuilt.version == room.version
    assert rebuilt.dedupe == room.dedupe
    for since in range(record.snapshot_version, room.version + 1):
        epoch = room.lineage.epoch
        assert list(rebuilt.catch_up(since, epoch=epoch).entries) == list(
            room.catch_up(since, epoch=epoch).entries
        )
    # And they answer the next op alike.
    nxt = [IncrementOp(path="n/a"), SetOp(path="s/a", value=1, if_version=0)]
    assert rebuilt.submit("z", 1, room.version, nxt) == room.submit("z", 1, room.version, nxt)


def test_rebuilt_room_acks_logged_resends() -> None:
    """After a restart, a resend of an op in the log is still a Duplicate with its version."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [IncrementOp(path="n")]))
    _accepted(room.submit("a", 2, 1, [IncrementOp(path="n")]))
    _accepted(room.submit("b", 1, 2, [IncrementOp(path="n")]))
    rebuilt = RoomCore(RoomRecord("r", log=list(room.window)))
    assert rebuilt.submit("a", 1, 0, [IncrementOp(path="n")]) == Duplicate(1)
    assert rebuilt.submit("a", 2, 0, [IncrementOp(path="n")]) == Duplicate(2)
    assert rebuilt.state == {"n": 3}


# --- text (light: the OT itself is tested in tests/state/test_text.py) ---------------------------


def _text_room(text: str) -> RoomCore:
    room = _room()
    _accepted(room.submit("setup", 1, 0, [SetOp(path="t", value=text)]))
    return room


def test_concurrent_text_edits_both_survive() -> None:
    """Two text ops made at the same base are both applied; the second is transformed."""
    room = _text_room("hello")
    _accepted(room.submit("a", 1, 1, [TextOp(path="t", delta=[5, "!"])]))
    entry = _accepted(room.submit("b", 1, 1, [TextOp(path="t", delta=["oh ", 5])]))
    assert room.state == {"t": "oh hello!"}
    assert entry.ops == (TextOp(path="t", delta=["oh ", 6]),)


def test_same_position_inserts_put_the_later_op_first() -> None:
    """Concurrent inserts at one offset: the op committed later lands first (spec tie rule)."""
    room = _text_room("ac")
    _accepted(room.submit("a", 1, 1, [TextOp(path="t", delta=[1, "X", 1])]))
    _accepted(room.submit("b", 1, 1, [TextOp(path="t", delta=[1, "Y", 1])]))
    assert room.state == {"t": "aYXc"}


def test_own_pipelined_text_ops_are_not_transformed_over_each_other() -> None:
    """A client's second op, made after its first, is not transformed over that first op."""
    room = _text_room("ac")
    _accepted(room.submit("a", 1, 1, [TextOp(path="t", delta=[1, "X", 1])]))
    _accepted(room.submit("a", 2, 1, [TextOp(path="t", delta=[3, "Y"])]))
    assert room.state == {"t": "aXcY"}


def test_text_whose_string_was_replaced_is_a_conflict() -> None:
    """A text op whose string was set concurrently is a conflict carrying the new value."""
    room = _text_room("hello")
    _accepted(room.submit("a", 1, 1, [SetOp(path="t", value="bye")]))
    rejected = _rejected(
        room.submit("b", 1, 1, [TextOp(path="t", delta=[5, "!"])]), ErrorCode.CONFLICT
    )
    assert (rejected.path, rejected.current, rejected.current_version) == ("t", "bye", 2)


def test_text_older_than_window_is_a_conflict() -> None:
    """A text op whose base_version left the window cannot be rebased: conflict."""
    room = _room(window=2)
    _accepted(room.submit("setup", 1, 0, [SetOp(path="t", value="hi")]))
    for seq in (1, 2, 3):
        _accepted(room.submit("x", seq, room.version, [IncrementOp(path="n")]))
    assert room.window[0].version == 3
    _rejected(room.submit("b", 1, 1, [TextOp(path="t", delta=[2, "!"])]), ErrorCode.CONFLICT)
    # Non-text ops from the same old base do not need history.
    _accepted(room.submit("b", 2, 1, [IncrementOp(path="n")]))


def test_text_delta_not_spanning_the_base_is_rejected_not_raised() -> None:
    """A stale-based text op whose delta does not span the text at its base cannot be
    transformed: the client is told (invalid_op); the room is not failed by it."""
    room = _room()
    room.submit("a", 1, 0, [SetOp(path="t", value="abc")])
    room.submit("a", 2, 1, [TextOp(path="t", delta=[3, "d"])])
    outcome = room.submit("b", 1, 1, [TextOp(path="t", delta=[5, "x"])])
    rejected = _rejected(outcome, ErrorCode.INVALID_OP)
    assert rejected.path == "t"
    assert room.state == {"t": "abcd"} and room.version == 2


# --- refusals in the log -------------------------------------------------------------------


def test_refusals_ride_on_the_clients_next_entry() -> None:
    """A client's refused seqs are logged with its next accepted entry, once."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [SetOp(path="s", value="text")]))
    _rejected(room.submit("a", 2, 1, [IncrementOp(path="s")]), ErrorCode.TYPE_MISMATCH)
    _rejected(room.submit("b", 1, 1, [IncrementOp(path="s")]), ErrorCode.TYPE_MISMATCH)
    _rejected(room.submit("a", 3, 1, [SetOp(path="s", value=1, if_version=0)]), ErrorCode.CONFLICT)
    entry = _accepted(room.submit("a", 4, 1, [IncrementOp(path="n")]))
    assert entry.refused == ((2, "type_mismatch"), (3, "conflict"))
    assert _accepted(room.submit("a", 5, 2, [IncrementOp(path="n")])).refused == ()


def test_a_reloaded_room_answers_a_resent_refused_op_as_refused() -> None:
    """After a restart the relay's memory of refusals is gone, but the log holds them:
    a resend of a refused op is refused again, never acked as applied."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [SetOp(path="s", value="text")]))
    _rejected(room.submit("a", 2, 1, [IncrementOp(path="s")]), ErrorCode.TYPE_MISMATCH)
    _accepted(room.submit("a", 3, 1, [IncrementOp(path="n")]))
    _accepted(room.submit("b", 1, 2, [IncrementOp(path="n")]))
    reloaded = RoomCore(RoomRecord("r", log=list(room.window)))
    answer = _rejected(reloaded.submit("a", 2, 1, [IncrementOp(path="s")]), ErrorCode.TYPE_MISMATCH)
    assert "refused earlier" in answer.message
    assert reloaded.submit("a", 3, 1, [IncrementOp(path="n")]) == Duplicate(2)
    assert reloaded.submit("a", 1, 0, [SetOp(path="s", value="text")]) == Duplicate(1)


def test_unlogged_refusals_are_bounded_per_client() -> None:
    """A client refused over and over keeps only its latest refusals for the log."""
    room = _room()
    _accepted(room.submit("a", 1, 0, [SetOp(path="s", value="text")]))
    for seq in range(2, MAX_UNLOGGED_REFUSALS + 12):
        _rejected(room.submit("a", seq, 1, [IncrementOp(path="s")]), ErrorCode.TYPE_MISMATCH)
    refused = _accepted(room.submit("a", MAX_UNLOGGED_REFUSALS + 12, 1, [])).refused
    assert len(refused) == MAX_UNLOGGED_REFUSALS
    assert refused[-1] == (MAX_UNLOGGED_REFUSALS + 11, "type_mismatch")
