"""The limit on a room's state size (RoomCore.max_state_bytes, Relay(max_state_bytes=)).

The core keeps the exact length of the state's JSON encoding up to date from each op's
change (room.size_delta) and refuses, with ``too_large``, an op or batch that would
grow it past the limit; ops that do not grow it always pass (docs/protocol.md
"Limits").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livewidgets.cli import build_parser
from livewidgets.protocol import AckMessage, Reject, Welcome
from livewidgets.protocol.codes import ErrorCode
from livewidgets.relay import Relay
from livewidgets.relay.hub import ResetRoom, RoomHub
from livewidgets.relay.room import (
    DEFAULT_MAX_STATE_BYTES,
    Accepted,
    LogEntry,
    Outcome,
    Rejected,
    RoomCore,
    RoomRecord,
    size_delta,
)
from livewidgets.relay.store import open_store
from livewidgets.state.ops import (
    DeleteOp,
    IncrementOp,
    MergeOp,
    Op,
    PushOp,
    RemoveOp,
    SetOp,
    TextOp,
    apply_op,
)

from ..conftest import RelayFactory
from ..state.test_ops import OPS, ROOTS
from .helpers import RawClient

# No example database: keeps the shared work tree free of .hypothesis/ churn.
FAST = settings(max_examples=300, deadline=None, database=None)


def encoded(state: Any) -> int:
    return len(msgspec.json.encode(state))


def room_with(state: dict[str, Any], limit: int) -> RoomCore:
    return RoomCore(RoomRecord("r", snapshot_state=state), max_state_bytes=limit)


def accepted(outcome: Outcome) -> LogEntry:
    assert isinstance(outcome, Accepted), outcome
    return outcome.entry


def too_large(outcome: Outcome) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code is ErrorCode.TOO_LARGE, outcome
    return outcome


class Member:
    """The hub's view of a connection."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.user = client_id


# --- accepted under the limit, refused over it --------------------------------------------------


def test_writes_under_the_limit_are_accepted_and_measured_exactly() -> None:
    room = room_with({}, 100)
    assert room.state_bytes == encoded({}) == 2
    accepted(room.submit("a", 1, 0, [SetOp("a", value="x" * 10)]))
    accepted(room.submit("a", 2, 1, [PushOp("l", value={"id": 1, "t": "é😀\n"})]))
    accepted(room.submit("a", 3, 2, [MergeOp("m", value={"k": [1, 2.5, None, True]})]))
    assert room.state_bytes == encoded(room.state) <= 100


def test_growing_past_the_limit_is_too_large_and_changes_nothing() -> None:
    """Refused: state, size, version and clock unchanged; the client_seq is consumed."""
    room = room_with({}, 100)
    accepted(room.submit("a", 1, 0, [SetOp("a", value="x" * 50)]))
    state, size = room.state, room.state_bytes
    outcome = too_large(room.submit("a", 2, 1, [SetOp("b", value="y" * 50)]))
    would_be = encoded({**state, "b": "y" * 50})
    assert outcome.path == "b"
    assert outcome.message == (
        f"the room state would be {would_be} bytes (JSON-encoded), over the room's limit "
        "of 100 bytes: delete something first"
    )
    assert room.state is state and room.state_bytes == size and room.version == 1
    assert room.clock.changed_at("b") == 0
    # The seq is used up: a resend gets the same answer, the next seq is evaluated anew.
    assert room.submit("a", 2, 1, [SetOp("b", value="y" * 50)]) == outcome
    assert accepted(room.submit("a", 3, 1, [SetOp("b", value="y")])).version == 2


def test_exactly_at_the_limit_is_accepted() -> None:
    room = room_with({}, encoded({"k": "x" * 20}))
    accepted(room.submit("a", 1, 0, [SetOp("k", value="x" * 20)]))
    assert room.state_bytes == room.max_state_bytes
    too_large(room.submit("a", 2, 1, [SetOp("k", value="x" * 21)]))
    too_large(room.submit("a", 3, 1, [IncrementOp("n")]))


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(SetOp("a/b/c", value="z" * 40), id="set-with-parents"),
        pytest.param(MergeOp("m", value={"new": "z" * 40}), id="merge"),
        pytest.param(PushOp("l", value="z" * 40), id="push"),
        pytest.param(TextOp("t", delta=[3, "z" * 40]), id="text"),
        pytest.param(IncrementOp("n", by=10**15), id="increment"),
    ],
)
def test_every_kind_of_growth_is_checked(op: Op) -> None:
    state = {"m": {"old": 1}, "l": [1], "t": "abc", "n": 1}
    room = room_with(state, encoded(state) + 10)
    too_large(room.submit("a", 1, 0, [op]))
    assert room.state is state


# --- a room over its limit can always shrink ----------------------------------------------------


def big_state() -> dict[str, Any]:
    return {
        "a": "x" * 100,
        "b": {"c": "y" * 100, "d": [1, 2, 3]},
        "l": [{"id": 1, "t": "z" * 50}, {"id": 2}],
    }


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(DeleteOp("a"), id="delete"),
        pytest.param(DeleteOp("b/c"), id="delete-nested"),
        pytest.param(SetOp("a", value="short"), id="set-smaller"),
        pytest.param(SetOp("a", value="q" * 100), id="set-same-size"),
        pytest.param(RemoveOp("l", id=1), id="remove"),
        pytest.param(MergeOp("b", value={"c": None}), id="merge-smaller"),
        pytest.param(TextOp("a", delta=[-100, "x" * 99]), id="text-shorter"),
        pytest.param(DeleteOp("nothing/here"), id="delete-absent"),
    ],
)
def test_ops_that_do_not_grow_pass_over_the_limit(op: Op) -> None:
    """Loaded with a lower limit than its size (limit lowered on restart): still cleanable."""
    room = room_with(big_state(), 50)
    assert room.state_bytes > room.max_state_bytes
    accepted(room.submit("a", 1, 0, [op]))
    assert room.state_bytes == encoded(room.state)


def test_growth_is_refused_over_the_limit_even_if_small() -> None:
    room = room_with(big_state(), 50)
    before = room.state_bytes
    outcome = too_large(room.submit("a", 1, 0, [SetOp("a", value="x" * 101)]))
    assert f"it is {before} bytes now" in outcome.message
    assert room.state_bytes == before


def test_admin_reset_works_over_the_limit() -> None:
    hub: RoomHub[Member] = RoomHub(room_with(big_state(), 10))
    hub.handle(ResetRoom(Member("admin")))
    assert hub.core.state == {} and hub.core.state_bytes == 2 and hub.core.version == 1
    assert len(hub.take_unsaved()) == 1


# --- batches ------------------------------------------------------------------------------------


def test_batch_over_the_limit_is_refused_whole_and_names_the_op_that_crossed() -> None:
    room = room_with({"keep": 1}, 60)
    ops: list[Op] = [
        SetOp("a", value="x" * 10),
        SetOp("b", value="x" * 40),  # crosses the limit here
        IncrementOp("keep"),
    ]
    outcome = too_large(room.submit("a", 1, 0, ops))
    assert outcome.path == "b"
    assert room.state == {"keep": 1} and room.version == 0


def test_batch_is_measured_as_a_whole() -> None:
    """What counts is the size after the batch: it may pass the limit on the way."""
    room = room_with({"old": "x" * 40}, 60)
    accepted(room.submit("a", 1, 0, [SetOp("new", value="y" * 40), DeleteOp("old")]))
    assert room.state == {"new": "y" * 40} and room.state_bytes == encoded(room.state)


def test_batch_that_shrinks_then_grows_is_refused_where_it_crossed_last() -> None:
    room = room_with({"a": "x" * 30}, 50)
    ops: list[Op] = [
        SetOp("b", value="y" * 30),  # over
        DeleteOp("a"),  # under again
        SetOp("c", value="z" * 30),  # over for good
    ]
    assert too_large(room.submit("a", 1, 0, ops)).path == "c"


def test_failing_batch_reports_its_own_error_not_the_size() -> None:
    room = room_with({"s": "text"}, 10)
    outcome = room.submit("a", 1, 0, [SetOp("big", value="x" * 100), IncrementOp("s")])
    assert isinstance(outcome, Rejected) and outcome.code is ErrorCode.TYPE_MISMATCH


# --- the size is exact --------------------------------------------------------------------------


@FAST
@given(root=ROOTS, op=OPS)
def test_size_delta_is_exact(root: dict[str, Any], op: Op) -> None:
    try:
        after = apply_op(root, op)
    except ValueError:
        return
    assert size_delta(root, after, op) == encoded(after) - encoded(root)


@FAST
@given(
    root=ROOTS,
    batches=st.lists(st.lists(OPS, min_size=1, max_size=4), max_size=10),
    limit=st.integers(2, 120),
)
def test_estimate_matches_the_encoding_after_any_ops(
    root: dict[str, Any], batches: list[list[Op]], limit: int
) -> None:
    """After random op sequences the tracked size equals len(msgspec.json.encode(state)),
    and every accepted entry left the state within the limit or no larger than before."""
    room = room_with(root, limit)
    assert room.state_bytes == encoded(root)
    for seq, ops in enumerate(batches, start=1):
        before = room.state_bytes
        outcome = room.submit("a", seq, room.version, ops)
        assert room.state_bytes == encoded(room.state)
        if isinstance(outcome, Accepted):
            assert room.state_bytes <= max(limit, before)
        else:
            assert room.state_bytes == before


def test_remove_with_shared_scalars_is_exact() -> None:
    """Kept items may be the very objects of removed ones' neighbours (interned ints)."""
    state: dict[str, Any] = {"l": [1, {"id": 1}, 1, "a", {"id": 1, "x": [1]}, 1, {"id": 2}]}
    after = apply_op(state, RemoveOp("l", id=1))
    assert size_delta(state, after, RemoveOp("l", id=1)) == encoded(after) - encoded(state)


# --- loading from the store ---------------------------------------------------------------------


def test_loaded_room_measures_snapshot_plus_log() -> None:
    snapshot = {"a": "x" * 30, "n": 1}
    log = [
        LogEntry(4, "a", 1, (SetOp("b", value=[1, 2, 3]),)),
        LogEntry(5, "a", 2, (DeleteOp("a"), IncrementOp("n", by=0.5))),
    ]
    room = RoomCore(RoomRecord("r", 3, snapshot, log=log))
    assert room.version == 5 and room.state == {"n": 1.5, "b": [1, 2, 3]}
    assert room.state_bytes == encoded(room.state)
    assert room.max_state_bytes == DEFAULT_MAX_STATE_BYTES


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_room_reloaded_from_a_store_keeps_its_size(store_kind: str, tmp_path: Path) -> None:
    """Snapshot + log tail from a real store: the size is right and the limit holds."""
    url = "memory://" if store_kind == "memory" else f"sqlite:///{tmp_path / 'rooms.db'}"
    store = open_store(url)
    try:
        room = RoomCore(await store.load("r"), max_state_bytes=400)
        seq = 0
        for round_ in range(6):
            ops: list[Op] = [PushOp("log", value={"id": round_, "t": "x" * 20})]
            seq += 1
            await store.append("r", [accepted(room.submit("a", seq, room.version, ops))])
            if round_ == 2:
                await store.save_snapshot("r", *room.take_snapshot())
        loaded = RoomCore(await store.load("r"), max_state_bytes=400)
        assert loaded.version == room.version and loaded.state == room.state
        assert loaded.state_bytes == room.state_bytes == encoded(room.state)
        # It refuses exactly where the original would have.
        big = [SetOp("big", value="y" * (400 - loaded.state_bytes))]
        assert too_large(loaded.submit("a", seq + 1, loaded.version, big)) == too_large(
            room.submit("a", seq + 1, room.version, big)
        )
    finally:
        await store.close()


# --- the relay ----------------------------------------------------------------------------------


async def test_relay_advertises_and_enforces_its_limit(relay_factory: RelayFactory) -> None:
    relay = await relay_factory(max_state_bytes=1000)
    client = await RawClient.connect(relay.url)
    assert client.welcome is not None and client.welcome.limits["max_state_bytes"] == 1000
    await client.join("r")
    await client.op("r", 1, SetOp("a", value="x" * 900))
    assert isinstance(await client.recv(), AckMessage)
    await client.op("r", 2, SetOp("b", value="x" * 900), base=1)
    reject = await client.expect(Reject)
    assert (reject.code, reject.client_seq, reject.path) == ("too_large", 2, "b")
    assert "limit of 1000 bytes" in reject.message


async def test_relay_default_limit_fits_the_send_queue(relay_factory: RelayFactory) -> None:
    assert (await relay_factory()).max_state_bytes == DEFAULT_MAX_STATE_BYTES
    assert (await relay_factory(send_queue_bytes=2**20)).max_state_bytes == 2**19
    with pytest.raises(ValueError, match="max_state_bytes must be positive"):
        Relay(max_state_bytes=0)


async def test_lowered_limit_after_restart_lets_the_room_shrink(
    relay_factory: RelayFactory, tmp_path: Path
) -> None:
    """A room stored under a higher limit loads over the new one: deletes pass, growth not."""
    store = f"sqlite:///{tmp_path / 'rooms.db'}"
    relay = await relay_factory(store=store, max_state_bytes=10_000)
    client = await RawClient.connect(relay.url)
    _, first = await client.join("r")
    for seq, key in enumerate("abc", start=1):
        await client.op("r", seq, SetOp(key, value="x" * 2000), base=seq - 1)
        assert isinstance(await client.recv(), AckMessage)
    await client.close()
    await relay.stop()
    relay = await relay_factory(store=store, max_state_bytes=3000)
    client = await RawClient.connect(relay.url)
    _, joined = await client.join("r", since=3, epoch=first.epoch)
    assert joined.mode == "delta"  # a clean restart: the history continues
    await client.op("r", 4, SetOp("d", value=1), base=3)
    assert (await client.expect(Reject)).code == "too_large"
    await client.op("r", 5, DeleteOp("a"), base=3)
    assert (await client.expect(AckMessage)).version == 4
    await client.op("r", 6, DeleteOp("b"), base=4)
    assert (await client.expect(AckMessage)).version == 5
    await client.op("r", 7, SetOp("d", value=1), base=5)  # 2 KiB now: room again
    assert (await client.expect(AckMessage)).version == 6


def test_cli_flag_parses() -> None:
    args = build_parser().parse_args(["relay", "--max-state-bytes", "4096"])
    assert args.max_state_bytes == 4096
    assert build_parser().parse_args(["relay"]).max_state_bytes == DEFAULT_MAX_STATE_BYTES
    with pytest.raises(SystemExit):
        build_parser().parse_args(["relay", "--max-state-bytes", "0"])


async def test_cli_flag_reaches_the_relay() -> None:
    """``livewidgets relay --max-state-bytes N`` as a real process: advertised and enforced."""
    from ..security.test_cli import relay_process

    async with relay_process("--max-state-bytes", "500") as (url, _):
        client = await RawClient.connect(url)
        assert isinstance(client.welcome, Welcome)
        assert client.welcome.limits["max_state_bytes"] == 500
        await client.join("r")
        await client.op("r", 1, SetOp("a", value="x" * 600))
        assert (await client.expect(Reject)).code == "too_large"
        await client.close()
