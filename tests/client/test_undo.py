"""Undo and redo of one's own writes (client.undo; docs/undo.md).

Pure tests drive the real client core (RoomSync) against the real relay sequencer
(RoomCore) through :class:`undo_net.Net`; the last tests use sessions on a real relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livewidgets.client import ConflictError
from livewidgets.client.undo import MAX_STEPS, invert_ops
from livewidgets.relay import Relay
from livewidgets.state import text as ot
from livewidgets.state.ops import (
    DeleteOp,
    IncrementOp,
    MergeOp,
    Op,
    OpError,
    PushOp,
    RemoveOp,
    SetOp,
    TextOp,
    apply_ops,
    get_path,
    touched_paths,
)
from livewidgets.state.paths import is_related

from .conftest import Connect
from .helpers import eventually
from .undo_net import Net


def insert(sync_text: str, index: int, chars: str, path: str = "t") -> TextOp:
    return TextOp(path=path, delta=ot.edit(ot.utf16_len(sync_text), index, 0, chars))


def failed_code(net: Net, handle: Any) -> str | None:
    outcome = net.outcomes[handle]
    return outcome[1].code if outcome[0] == "failed" else None


# --- inverses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "before", "inverse"),
    [
        (SetOp(path="a", value=2), {"a": 1}, [SetOp(path="a", value=1, if_version=7)]),
        (SetOp(path="a", value=2), {}, [DeleteOp(path="a", if_version=7)]),
        # A set that created parent mappings takes them back (not an empty {} left over).
        (SetOp(path="a/b/c", value=2), {"a": None}, [SetOp(path="a", value=None, if_version=7)]),
        (DeleteOp(path="a"), {"a": [1]}, [SetOp(path="a", value=[1], if_version=7)]),
        (DeleteOp(path="a"), {}, []),
        (
            MergeOp(path="m", value={"k": 2, "new": 3}),
            {"m": {"k": 1}},
            [SetOp(path="m/k", value=1, if_version=7), DeleteOp(path="m/new", if_version=7)],
        ),
        (MergeOp(path="m", value={"k": 2}), {}, [DeleteOp(path="m", if_version=7)]),
        (IncrementOp(path="n", by=3), {"n": 1}, [IncrementOp(path="n", by=-3)]),
        (PushOp(path="l", value={"id": "x"}), {"l": []}, [RemoveOp(path="l", id="x")]),
        # An item without an id can only be taken back by restoring the list, guarded.
        (PushOp(path="l", value=5), {"l": [1]}, [SetOp(path="l", value=[1], if_version=7)]),
        (
            RemoveOp(path="l", id="x"),
            {"l": [{"id": "x", "v": 1}, {"id": "y"}]},
            [PushOp(path="l", value={"id": "x", "v": 1})],
        ),
        (TextOp(path="t", delta=[2, "X", 1]), {"t": "abc"}, [TextOp(path="t", delta=[2, -1, 1])]),
    ],
)
def test_inverse_of_each_kind(op: Op, before: dict[str, Any], inverse: list[Op]) -> None:
    assert invert_ops(before, [op], 7) == inverse
    after = apply_ops(apply_ops(before, [op]), inverse)
    if not isinstance(op, (IncrementOp, RemoveOp)):  # (a removed item comes back at the end)
        assert after == before


def test_inverse_of_a_batch_is_the_inverse_ops_in_reverse_order() -> None:
    ops: list[Op] = [SetOp(path="a", value=1), SetOp(path="a", value=2), IncrementOp(path="n")]
    inverse = invert_ops({"a": 0}, ops, 3)
    assert inverse == [
        IncrementOp(path="n", by=-1),
        SetOp(path="a", value=1, if_version=3),
        SetOp(path="a", value=0, if_version=3),
    ]


# --- the core against the relay's sequencer -------------------------------------------


def test_text_undo_keeps_a_peers_concurrent_typing_and_redo_brings_it_back() -> None:
    net = Net(["me", "bob"], {"t": "hello"})
    net.submit("me", insert("hello", 5, " world"), handle="w")
    net.submit("bob", insert("hello", 0, ">> "))  # concurrent: both at version 0
    net.deliver()
    assert net.relay.state["t"] == ">> hello world"
    assert net.undo("me", handle="u")
    net.deliver()
    assert net.relay.state["t"] == ">> hello"
    assert all(c.visible == net.relay.state for c in net.clients.values())
    assert net.undo("me", handle="r", redo=True)
    net.deliver()
    assert net.relay.state["t"] == ">> hello world"
    assert net.outcomes["u"][0] == net.outcomes["r"][0] == "acked"


def test_keystrokes_within_the_group_delay_are_one_step() -> None:
    net = Net(["me"], {"t": ""})
    text = ""
    for i, char in enumerate("abc"):
        net.submit("me", insert(text, len(text), char), now=i * 0.1)
        text += char
    net.submit("me", insert(text, len(text), "d"), now=2.0)  # a pause: a new step
    net.deliver()
    assert net.undo("me")
    net.deliver()
    assert net.relay.state["t"] == "abc"
    assert net.undo("me")
    net.deliver()
    assert net.relay.state["t"] == ""
    assert not net.undo("me")  # nothing left: None from the core


def test_keystrokes_after_a_pause_are_not_composed_into_one_pending_op() -> None:
    """Unsent keystrokes of two undo steps stay two pending ops (each has its own inverse)."""
    net = Net(["me"], {"t": ""})
    net.submit("me", insert("", 0, "a"), now=0.0)  # in flight: later edits wait
    net.submit("me", insert("a", 1, "b"), now=0.1)
    net.submit("me", insert("ab", 2, "c"), now=5.0)
    assert len(net.clients["me"].pending) == 3 - 0 - 0 - 0 - 1 + 1  # a | b | c, b+c not merged
    net.deliver()
    assert net.undo("me")
    net.deliver()
    assert net.relay.state["t"] == "ab"


def test_undo_of_a_pending_text_edit_waits_for_the_relay_then_keeps_peers_text() -> None:
    net = Net(["me", "bob"], {"t": "xy"})
    net.submit("me", insert("xy", 1, "ME"))
    assert net.undo("me", handle="u")
    assert net.clients["me"].visible["t"] == "xMEy"  # undone once confirmed
    net.submit("bob", TextOp(path="t", delta=[1, -1]))  # concurrently deletes "y"
    net.submit("bob", insert("x", 1, "B"))
    net.deliver()
    assert net.relay.state["t"] == "xB"
    assert all(c.visible == net.relay.state for c in net.clients.values())


def test_undo_of_a_pending_set_waits_for_its_version_then_applies() -> None:
    net = Net(["me"], {"a": 1})
    net.submit("me", SetOp(path="a", value=2), handle="w")
    assert net.undo("me", handle="u")
    assert net.clients["me"].visible["a"] == 2  # deferred until confirmed
    net.deliver()
    assert net.outcomes["u"] == ("acked", 2)
    assert net.relay.state["a"] == 1


def test_undo_of_a_pending_write_the_relay_refuses_has_nothing_to_do() -> None:
    net = Net(["me", "bob"], {"a": 1})
    net.submit("bob", SetOp(path="a", value=5))
    net.submit("me", SetOp(path="a", value=2, if_version=0), handle="w")
    assert net.undo("me", handle="u")  # deferred: waits for the verdict
    net.step_up("bob")  # bob's set is ordered first
    net.deliver()
    assert failed_code(net, "w") == "conflict"
    assert net.outcomes["u"][0] == "acked"  # nothing happened, so nothing to take back
    assert net.relay.state == {"a": 5} and net.relay.version == 1
    assert not net.clients["me"].can_undo()


def test_set_undo_conflicts_when_a_peer_changed_the_path_and_carries_the_value() -> None:
    net = Net(["me", "bob"], {"a": 1, "b": 1})
    net.submit("me", SetOp(path="a", value=2))
    net.submit("me", SetOp(path="b", value=2))
    net.deliver()
    net.submit("bob", SetOp(path="a", value=3))
    net.deliver()
    assert net.undo("me", "a", handle="u")  # scoped: skips the later write to b
    net.deliver()
    failed = net.outcomes["u"][1]
    assert failed.code == "conflict" and failed.current == 3 and failed.current_version == 3
    assert net.relay.state == {"a": 3, "b": 2}
    assert net.undo("me", handle="u2")  # b is untouched by others: restored
    net.deliver()
    assert net.relay.state == {"a": 3, "b": 1}


def test_a_peer_writing_a_sibling_does_not_block_the_undo() -> None:
    net = Net(["me", "bob"], {"m": {"k": 1}})
    net.submit("me", MergeOp(path="m", value={"k": 2}))
    net.deliver()
    net.submit("bob", MergeOp(path="m", value={"other": 5}))
    net.deliver()
    assert net.undo("me", handle="u")
    net.deliver()
    assert net.outcomes["u"][0] == "acked"
    assert net.relay.state == {"m": {"k": 1, "other": 5}}


def test_push_remove_increment_under_concurrency() -> None:
    net = Net(["me", "bob"], {"l": [{"id": "a"}], "n": 10})
    net.submit("me", PushOp(path="l", value={"id": "mine"}))
    net.submit("me", IncrementOp(path="n", by=5))
    net.submit("me", RemoveOp(path="l", id="a"))
    net.submit("bob", PushOp(path="l", value={"id": "bob"}))
    net.submit("bob", IncrementOp(path="n", by=100))
    net.deliver()
    for _ in range(3):
        assert net.undo("me")
        net.deliver()
    assert net.relay.state["n"] == 110
    assert [i["id"] for i in net.relay.state["l"]] == ["bob", "a"]  # removed item: at the end


def test_redo_stack_cleared_by_a_new_write_and_undo_ops_not_undoable_as_writes() -> None:
    net = Net(["me"], {})
    net.submit("me", SetOp(path="a", value=1))
    net.deliver()
    assert net.undo("me")
    net.deliver()
    sync = net.clients["me"]
    assert sync.can_undo(redo=True) and not sync.can_undo()
    net.submit("me", SetOp(path="b", value=1))
    assert not sync.can_undo(redo=True)


def test_text_replaced_after_the_edit_makes_its_undo_a_conflict() -> None:
    net = Net(["me", "bob"], {"t": "ab"})
    net.submit("me", insert("ab", 1, "X"))
    net.deliver()
    net.submit("bob", SetOp(path="t", value="new"))
    net.deliver()
    assert net.undo("me", handle="u")
    net.deliver()
    assert failed_code(net, "u") == "conflict"
    assert net.outcomes["u"][1].current == "new"
    assert net.relay.state["t"] == "new"


def test_stack_is_bounded() -> None:
    net = Net(["me"], {})
    for i in range(MAX_STEPS + 20):
        net.submit("me", SetOp(path=f"k{i}", value=i))
    assert len(net.clients["me"].history.undo_stack) == MAX_STEPS


def test_snapshot_resync_rebases_text_inverses_and_drops_changed_guarded_ones() -> None:
    from livewidgets.protocol import Snapshot

    net = Net(["me"], {"t": "ab", "a": 1, "b": 1})
    net.submit("me", insert("ab", 2, "MINE"))
    net.submit("me", SetOp(path="a", value=2))
    net.submit("me", SetOp(path="b", value=2))
    net.deliver()
    sync = net.clients["me"]
    # The relay moved on while we were away: someone typed before our text, set `a`.
    state = {"t": "zzabMINE", "a": 9, "b": 2}
    sync.receive(Snapshot(room="r", version=10, state=state))
    undo_b, undo_a, undo_t = sync.history.undo_stack[::-1]
    assert undo_a.lost is not None and undo_b.lost is None
    assert apply_ops(state, undo_t.inverse) == {**state, "t": "zzab"}


# --- properties: every op kind, random concurrent ops by others ---------------------

TARGETS = ["t", "n", "l", "m/k", "m/j", "s"]


def initial() -> dict[str, Any]:
    return {
        "t": "abcdef",
        "n": 5,
        "l": [{"id": "x0"}, {"id": "x1"}],
        "m": {"k": 1, "j": 2},
        "s": "v0",
    }


class Chars:
    """Unique characters for inserts, so text can be checked character by character."""

    def __init__(self) -> None:
        self.next = 0x4E00

    def take(self, n: int) -> str:
        chars = "".join(chr(self.next + i) for i in range(n))
        self.next += n
        return chars


def draw_op(data: Any, kind: str, state: dict[str, Any], chars: Chars, who: str) -> Op:
    text = get_path(state, "t", "")
    text = text if isinstance(text, str) else ""
    if kind == "text":
        length = len(text)
        if length and data.draw(st.booleans(), label=f"{who} deletes"):
            start = data.draw(st.integers(0, length - 1))
            count = data.draw(st.integers(1, length - start))
            return TextOp(path="t", delta=ot.edit(length, start, count, ""))
        index = data.draw(st.integers(0, length))
        return TextOp(path="t", delta=ot.edit(length, index, 0, chars.take(2)))
    if kind == "set":
        return SetOp(path=data.draw(st.sampled_from(["s", "m/k"])), value=chars.take(1))
    if kind == "merge":
        return MergeOp(path="m", value={"k": chars.take(1), "new": 1})
    if kind == "delete":
        return DeleteOp(path=data.draw(st.sampled_from(["s", "m/j"])))
    if kind == "increment":
        return IncrementOp(path="n", by=data.draw(st.integers(1, 9)))
    if kind == "push":
        return PushOp(path="l", value={"id": chars.take(1)})
    if kind == "remove":
        items = get_path(state, "l")
        ids = [i["id"] for i in items] if isinstance(items, list) else ["x0"]
        return RemoveOp(path="l", id=data.draw(st.sampled_from(ids or ["x0"])))
    raise AssertionError(kind)


OTHER_KINDS = ["text", "text", "text", "set", "merge", "delete", "increment", "push", "remove"]


def others_act(data: Any, net: Net, chars: Chars, steps: int) -> None:
    """Peers write random ops (rarely replacing the text) and messages move randomly."""
    for _ in range(steps):
        action = data.draw(st.integers(0, 9), label="action")
        name = data.draw(st.sampled_from(sorted(net.clients)), label="who")
        if action < 4 and name != "me":
            sync = net.clients[name]
            if data.draw(st.integers(0, 19)) == 0:
                # Short, so that a doomed edit could fit it by chance: the relay must
                # still refuse it (doomed ops go out with the base they were made at).
                op: Op = SetOp(path="t", value="R" * data.draw(st.integers(0, 4)))
            else:
                kind = data.draw(st.sampled_from(OTHER_KINDS))
                op = draw_op(data, kind, sync.visible, chars, name)
            with contextlib.suppress(OpError):  # e.g. a peer deleted the target: skip
                net.submit(name, op)
        elif action < 7:
            net.step_up(name)
        else:
            net.step_down(name)


def changed_by_others_after(
    net: Net, version: int, paths: list[str], until: int | None = None
) -> bool:
    return any(
        version < entry.version < (until or 1 << 62)
        and entry.client_id != "me"
        and any(is_related(p, q) for op in entry.ops for p in touched_paths(op) for q in paths)
        for entry in net.relay.window
    )


def my_version(net: Net) -> int:
    return max(e.version for e in net.relay.window if e.client_id == "me")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=st.data(),
    kind=st.sampled_from(
        ["text", "set", "merge", "delete", "increment", "push", "remove", "batch"]
    ),
)
def test_undo_property(data: Any, kind: str) -> None:
    """Undoing your own op gives the state as if it had never happened on the paths it
    touched that nobody else changed since; everything else is untouched; text converges."""
    net = Net(["me", "o1", "o2"], initial())
    chars = Chars()
    others_act(data, net, chars, data.draw(st.integers(0, 8)))
    me = net.clients["me"]
    if kind == "batch":
        ops = [
            draw_op(data, "set", me.visible, chars, "me"),
            draw_op(data, "text", me.visible, chars, "me"),
        ]
    else:
        ops = [draw_op(data, kind, me.visible, chars, "me")]
    try:
        net.submit("me", *ops, batch=kind == "batch", handle="mine")
    except OpError:
        return  # does not apply to what I see (e.g. text replaced by a peer)
    others_act(data, net, chars, data.draw(st.integers(0, 15)))
    undo_while_pending = data.draw(st.booleans(), label="undo while pending")
    if not undo_while_pending:
        net.deliver()
        if net.outcomes.get("mine", ("acked",))[0] != "acked":
            return  # refused by the relay: nothing to undo
        before_undo = net.relay.state
        assert net.undo("me", handle="undo")
    else:
        if not net.undo("me", handle="undo"):
            # Nothing to undo already: a peer replaced the text my edit was made in
            # (the edit is doomed), so the relay refuses it and it never happens.
            net.deliver()
            assert net.outcomes.get("mine", ("acked",))[0] != "acked"
            return
        others_act(data, net, chars, data.draw(st.integers(0, 6)))
        net.deliver()
        if net.outcomes.get("mine", ("acked",))[0] != "acked":
            return
        before_undo = None
    net.deliver()
    after = net.relay.state
    # Text converges everywhere (and the rest too).
    assert all(c.visible == after for c in net.clients.values())
    assert all(not c.pending for c in net.clients.values())
    outcome = net.outcomes["undo"]
    mine_version = net.outcomes["mine"][1]
    my_paths = [p for op in ops for p in touched_paths(op)]
    if outcome[0] == "failed":
        assert outcome[1].code in ("conflict", "type_mismatch"), outcome[1]
        if before_undo is not None:
            assert after == before_undo
        # Refused only if someone changed what it would restore.
        assert changed_by_others_after(net, mine_version, my_paths)
        return
    undo_entry = [e for e in net.relay.window if e.version == outcome[1] and e.client_id == "me"]
    if not undo_entry or undo_entry[0].version <= mine_version:
        return  # it had nothing to take back (deleting what was absent, ...): no write
    # The room right before and right after the undo (peers may write after it).
    before_undo = _state_before(net, outcome[1])
    after = _state_before(net, outcome[1] + 1)
    # Everything else is untouched.
    for target in TARGETS:
        if not any(is_related(target, p) for p in my_paths):
            assert get_path(after, target) == get_path(before_undo, target), target
    # My write as the relay applied it (text transformed over what it had not seen).
    pre = _state_before(net, mine_version)
    entry = next(e for e in net.relay.window if e.version == mine_version)
    for op in entry.ops:
        others_since = changed_by_others_after(net, mine_version, touched_paths(op), outcome[1])
        _check_undone(op, pre, before_undo, after, others_since)
        pre = apply_ops(pre, [op])


def _state_before(net: Net, version: int) -> dict[str, Any]:
    state = initial()
    for entry in net.relay.window:
        if entry.version >= version:
            break
        state = apply_ops(state, entry.ops)
    return state


def _check_undone(
    op: Op, pre: dict[str, Any], before: dict[str, Any], after: dict[str, Any], others: bool
) -> None:
    if isinstance(op, TextOp):
        old, now = get_path(before, "t", ""), get_path(after, "t", "")
        base = get_path(pre, "t", "")
        inserted = {c for comp in op.delta if isinstance(comp, str) for c in comp}
        deleted = set(base) - set(ot.apply(base, op.delta))
        assert not inserted & set(now), "my inserted text is gone"
        # Every other character is still there, in the same order, and what I deleted
        # is back (unless a peer deleted it too, concurrently).
        assert [c for c in now if c not in deleted] == [c for c in old if c not in inserted]
        assert set(now) <= set(old) | deleted
    elif isinstance(op, IncrementOp):
        assert get_path(after, "n") == get_path(before, "n") - op.by
    elif isinstance(op, PushOp):
        item_id = op.value["id"]
        assert get_path(after, "l") == [i for i in get_path(before, "l") if i["id"] != item_id]
    elif isinstance(op, RemoveOp):
        back = [i for i in get_path(pre, "l") or [] if i.get("id") == op.id]
        assert get_path(after, "l") == (get_path(before, "l") or []) + back
    else:
        # set, merge, delete: restored exactly, since nobody changed the path since
        # (else the relay refused the undo, checked by the caller).
        assert not others
        for path in touched_paths(op):
            assert get_path(after, path, "MISSING") == get_path(pre, path, "MISSING"), path


# --- real relay -------------------------------------------------------------------------


async def test_two_sessions_on_a_real_relay(relay: Relay, connect: Connect) -> None:
    alice = await connect(relay.url, client_id="alice")
    bob = await connect(relay.url, client_id="bob")
    text_a = alice.text("doc")
    await text_a.insert(0, "Alice. ")
    await eventually(lambda: bob.get("doc") == "Alice. ")
    await bob.text("doc").insert(7, "Bob.")
    await eventually(lambda: alice.get("doc") == "Alice. Bob.")
    assert alice.can_undo("doc") and not bob.can_undo("other")
    undo = alice.undo("doc")
    assert undo is not None
    await undo
    await eventually(lambda: bob.get("doc") == "Bob.")
    redo = alice.redo("doc")
    assert redo is not None
    await redo
    await eventually(lambda: bob.get("doc") == "Alice. Bob.")

    # set: undone while nobody touched it, refused with the current value otherwise
    await bob.set("cfg", {"x": 0})
    await eventually(lambda: alice.get("cfg") == {"x": 0})
    await alice.set("cfg/x", 1)
    await alice.set("cfg/x", 2)
    await bob.set("cfg/y", 5)  # a sibling: no conflict
    await eventually(lambda: alice.get("cfg") == {"x": 2, "y": 5})
    await alice.undo()  # type: ignore[misc]
    await eventually(lambda: bob.get("cfg/x") == 1)
    await bob.set("cfg/x", 99)
    await eventually(lambda: alice.get("cfg/x") == 99)
    conflict = alice.undo("cfg")
    assert conflict is not None
    with pytest.raises(ConflictError) as info:
        await asyncio.wait_for(asyncio.wrap_future(conflict._future), 5)
    assert info.value.current == 99
    assert bob.get("cfg/x") == 99
    assert alice.undo("nothing/here") is None
