"""Ordering, exactly-once, resume, encodings, group commit and fan-out over a real relay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import pytest

from livewidgets.protocol import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    AckMessage,
    Broadcast,
    IncrementOp,
    Joined,
    PushOp,
    SetOp,
    Snapshot,
)
from livewidgets.protocol.codec import Codec
from livewidgets.relay import Relay
from livewidgets.relay.room import LogEntry, RoomCore
from livewidgets.relay.store import StoreError
from livewidgets.relay.store.memory import MemoryStore

from ..conftest import RelayFactory
from .helpers import TIMEOUT, RawClient, broadcasts_in


async def state_of(relay: Relay, room: str) -> tuple[int, dict[str, Any]]:
    """(version, state) as a fresh client sees it on joining."""
    async with await RawClient.connect(relay.url) as client:
        before, joined = await client.join(room)
        assert isinstance(before[0], Snapshot)
        return joined.version, before[0].state


async def test_two_clients_see_one_order(relay: Relay) -> None:
    """Concurrent ops from two clients reach both in one order with consecutive versions."""
    a = await RawClient.connect(relay.url, user="ann")
    b = await RawClient.connect(relay.url, user="bob")
    await a.join("room")
    await b.join("room")  # its joined: bob is a member before ann's first op
    count = 40

    async def send_all(client: RawClient, name: str) -> None:
        for seq in range(1, count + 1):
            await client.op("room", seq, PushOp("log", value=f"{name}{seq}"))

    async def versions_seen(client: RawClient) -> list[tuple[int, str]]:
        seen: list[tuple[int, str]] = []
        while len(seen) < 2 * count:
            message = await client.recv()
            if isinstance(message, AckMessage):
                seen.append((message.version, f"own{message.client_seq}"))
            elif isinstance(message, Broadcast):
                seen.append((message.version, f"{message.origin[:1]}{message.client_seq}"))
        return seen

    results = await asyncio.gather(
        send_all(a, "a"), send_all(b, "b"), versions_seen(a), versions_seen(b)
    )
    seen_a, seen_b = results[2], results[3]
    assert [v for v, _ in seen_a] == list(range(1, 2 * count + 1))
    assert [v for v, _ in seen_b] == list(range(1, 2 * count + 1))
    # Each client's ops keep their send order in the room order.
    from_a = [who for _, who in seen_b if not who.startswith("own")]
    assert [int(w[1:]) for w in from_a] == list(range(1, count + 1))
    version, state = await state_of(relay, "room")
    assert version == 2 * count and len(state["log"]) == 2 * count
    await a.close()
    await b.close()


async def test_resend_is_acked_not_reapplied(relay: Relay) -> None:
    """A resent op gets its original version again (duplicate) and is applied once."""
    a = await RawClient.connect(relay.url, client_id="alice")
    b = await RawClient.connect(relay.url)
    await a.join("r")
    await b.join("r")  # listeners: no presence, b is a member once joined
    await a.op("r", 1, IncrementOp("n", by=1))
    assert await a.ack() == AckMessage("r", 1, 1)
    await a.op("r", 1, IncrementOp("n", by=1))
    assert await a.ack() == AckMessage("r", 1, 1, duplicate=True)
    await a.op("r", 2, IncrementOp("n", by=1))
    assert await a.ack() == AckMessage("r", 2, 2)
    assert [m.version for m in [await b.expect(Broadcast), await b.expect(Broadcast)]] == [1, 2]
    assert relay.metrics.value("livewidgets_duplicate_ops_total") == 1
    assert await state_of(relay, "r") == (2, {"n": 2})
    await a.close()
    await b.close()


async def test_resend_after_reconnect_is_deduplicated(relay: Relay) -> None:
    """After a reconnect with the same client_id, resent ops are acked as duplicates."""
    first = await RawClient.connect(relay.url, client_id="alice")
    _, first_joined = await first.join("r")
    for seq in (1, 2, 3):
        await first.op("r", seq, IncrementOp("n", by=10))
    acks = [await first.ack() for _ in range(3)]
    await first.close()
    again = await RawClient.connect(relay.url, client_id="alice")
    before, joined = await again.join("r", since=1, epoch=first_joined.epoch)
    assert [m.version for m in before if isinstance(m, Broadcast)] == [2, 3]
    assert {m.origin for m in before if isinstance(m, Broadcast)} == {"alice"}
    for seq in (2, 3):  # the "pending" ops, resent in order
        await again.op("r", seq, IncrementOp("n", by=10))
    resent = [await again.ack(), await again.ack()]
    assert [(a.version, a.duplicate) for a in resent] == [(2, True), (3, True)]
    assert [a.version for a in acks] == [1, 2, 3] and joined.version == 3
    assert await state_of(relay, "r") == (3, {"n": 30})
    await again.close()


async def test_join_since_returns_exactly_the_missing_ops(relay: Relay) -> None:
    """join(since=v) sends broadcasts v+1..head then joined(delta); since=head sends none."""
    a = await RawClient.connect(relay.url)
    _, first = await a.join("r", presence={})
    for seq in range(1, 11):
        await a.op("r", seq, SetOp(f"k{seq}", value=seq))
        await a.ack()
    b = await RawClient.connect(relay.url)
    before, joined = await b.join("r", since=4, epoch=first.epoch)
    assert [m.version for m in broadcasts_in(before)] == list(range(5, 11))
    assert [m.ops[0] for m in broadcasts_in(before)] == [
        SetOp(f"k{v}", value=v) for v in range(5, 11)
    ]
    assert (joined.version, joined.mode) == (10, "delta")
    c = await RawClient.connect(relay.url)
    others = {a.client_id: {"user": ""}}  # b joined without presence: a listener
    assert await c.join("r", since=10, epoch=first.epoch) == (
        [],
        Joined("r", 10, "delta", others, first.epoch),
    )
    assert relay.metrics.value("livewidgets_joins_total", mode="delta") == 2
    for client in (a, b, c):
        await client.close()


async def test_msgpack_and_json_clients_interoperate(relay: Relay) -> None:
    """A msgpack client and a JSON client in one room exchange ops and presence."""
    j = await RawClient.connect(relay.url, subprotocol=JSON_SUBPROTOCOL, user="json")
    m = await RawClient.connect(relay.url, subprotocol=MSGPACK_SUBPROTOCOL, user="pack")
    assert j.ws.subprotocol == JSON_SUBPROTOCOL and m.ws.subprotocol == MSGPACK_SUBPROTOCOL
    await j.join("r")
    await m.join("r", presence={"cursor": 3})
    await j.recv()  # m's presence
    value = {"text": "héllo ✓", "n": 1.5, "list": [1, None, True]}
    await m.op("r", 1, SetOp("doc", value=value))
    assert await m.ack() == AckMessage("r", 1, 1)
    got = await j.expect(Broadcast)
    assert got.ops == [SetOp("doc", value=value)] and got.origin == m.client_id
    await j.op("r", 1, IncrementOp("doc/n", by=2))
    await j.ack()
    assert (await m.expect(Broadcast)).ops == [IncrementOp("doc/n", by=2)]
    # Frames really are binary on msgpack and text on JSON.
    await j.send(SetOp("x"))  # not a client message: any error frame will do
    assert isinstance(await j.ws.recv(), str)
    await m.ws.send(b"\xc1")
    assert isinstance(await m.ws.recv(), bytes)
    assert (await state_of(relay, "r"))[1] == {"doc": {**value, "n": 3.5}}
    await j.close()
    await m.close()


async def test_second_connection_replaces_first(relay: Relay) -> None:
    """A new connection with the same client_id closes the older one with 4010."""
    old = await RawClient.connect(relay.url, client_id="same")
    await old.join("r", presence={"v": 1})
    peer = await RawClient.connect(relay.url)
    await peer.join("r", presence={})
    new = await RawClient.connect(relay.url, client_id="same")
    assert await old.closed() == 4010
    _, joined = await new.join("r", presence={"v": 2})
    assert joined.presence == {peer.client_id: {"user": ""}}
    await peer.close()
    await new.close()


async def test_fanout_encodes_once_per_codec(relay: Relay, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broadcast to 3 JSON and 2 msgpack members is encoded twice, not five times."""
    clients = [
        await RawClient.connect(relay.url, subprotocol=sp)
        for sp in [JSON_SUBPROTOCOL] * 3 + [MSGPACK_SUBPROTOCOL] * 2
    ]
    sender = await RawClient.connect(relay.url)
    for client in [*clients, sender]:
        await client.join("r")
    encoded: list[str] = []
    original = Codec.encode

    def counting(self: Codec[Any], message: Any) -> bytes:
        if isinstance(message, Broadcast):
            encoded.append(self.subprotocol)
        return original(self, message)

    monkeypatch.setattr(Codec, "encode", counting)
    await sender.op("r", 1, SetOp("k", value=1))
    await sender.ack()
    for client in clients:
        _, broadcast = await client.recv_until(Broadcast)
        assert broadcast.version == 1
    assert sorted(encoded) == [JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL]
    for client in [*clients, sender]:
        await client.close()


class GatedStore(MemoryStore):
    """A memory store whose appends wait for ``gate`` and record what became durable."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.first_append = asyncio.Event()
        self.batches: list[list[int]] = []
        self.durable: set[int] = set()

    async def append(self, room: str, entries: Sequence[LogEntry]) -> None:
        self.first_append.set()
        # Bounded: a failed test must not leave the relay waiting for the gate forever.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.gate.wait(), 4 * TIMEOUT)
        await super().append(room, entries)
        self.batches.append([e.version for e in entries])
        self.durable.update(e.version for e in entries)


async def test_group_commit_others_hear_during_it_authors_after(
    relay_factory: RelayFactory,
) -> None:
    """Ops arriving during a commit go out in one append. Members with no op in a round
    hear of it while it is committed; the author's ack waits for the commit."""
    store = GatedStore()
    relay = await relay_factory(store=store)
    a = await RawClient.connect(relay.url)
    b = await RawClient.connect(relay.url)
    await a.join("r")
    await b.join("r")  # listeners: no presence, b is a member once joined
    await a.op("r", 1, IncrementOp("n"))
    await asyncio.wait_for(store.first_append.wait(), TIMEOUT)
    early = await b.expect(Broadcast)
    assert early.version == 1 and not store.durable
    for seq in range(2, 21):
        await a.op("r", seq, IncrementOp("n"))
    # Sequenced while op 1 is committed: b hears of each at once; they gather for the
    # next commit.
    for version in range(2, 21):
        assert (await b.expect(Broadcast)).version == version
    assert not store.durable
    # A connection's replies are written in order: an ack of op 1 written before the
    # commit would have come before this joined.
    before, _ = await a.join("other")
    assert {m.room for m in before} == {"other"}  # its snapshot, nothing of room r
    store.gate.set()
    for version in range(1, 21):
        ack = await a.ack()
        assert ack.version == version and version in store.durable
    assert store.batches == [[1], list(range(2, 21))]
    assert relay.metrics.value("livewidgets_commit_entries_count") == 2
    for client in (a, b):
        await client.close()


async def test_a_stalled_commit_holds_back_only_its_authors(relay_factory: RelayFactory) -> None:
    """While op 1 is being written (the store stalls), Carol's op 2 is sequenced and Bob,
    who wrote neither, sees both at once. Alice (author of 1) hears nothing until 1 is
    durable, then her ack and op 2 in version order; Carol's ack waits for op 2's
    commit, which follows op 1's."""
    store = GatedStore()
    relay = await relay_factory(store=store)
    alice, bob, carol = [await RawClient.connect(relay.url) for _ in range(3)]
    for client in (alice, bob, carol):
        await client.join("r")  # listeners: no presence, a member once joined
    await alice.op("r", 1, IncrementOp("n"))
    await asyncio.wait_for(store.first_append.wait(), TIMEOUT)
    assert (await carol.recv_until(Broadcast))[1].version == 1
    await carol.op("r", 1, IncrementOp("n"), base=1)
    got = [(await bob.recv_until(Broadcast))[1].version for _ in range(2)]
    assert got == [1, 2] and not store.durable
    # Replies to one connection go out in order: neither her ack nor op 2 came before
    # this joined of another room, though op 2 reached Bob.
    before, _ = await alice.join("other")
    assert {m.room for m in before} == {"other"}  # its snapshot, nothing of room r
    store.gate.set()
    assert (await alice.ack()).version == 1
    assert (await alice.expect(Broadcast)).version == 2
    assert (await carol.ack()).version == 2
    assert store.batches == [[1], [2]]
    for client in (alice, bob, carol):
        await client.close()


async def test_snapshot_every_compacts_the_store(relay_factory: RelayFactory) -> None:
    """With snapshot_every=5, after 12 ops the store holds a snapshot at 10 and log 11..12."""
    store = MemoryStore()
    relay = await relay_factory(store=store, snapshot_every=5)
    a = await RawClient.connect(relay.url)
    await a.join("r")
    for seq in range(1, 13):
        await a.op("r", seq, IncrementOp("n"))
        await a.ack()
    record = await store.load("r")
    assert record.snapshot_version == 10 and record.snapshot_state == {"n": 10}
    assert [e.version for e in record.log] == [11, 12]
    await a.close()


class FailingStore(MemoryStore):
    """A memory store whose next append fails once ``fail`` is set."""

    fail = False

    async def append(self, room: str, entries: Sequence[LogEntry]) -> None:
        if self.fail:
            self.fail = False
            raise StoreError("disk on fire")
        await super().append(room, entries)


async def test_store_failure_closes_members_who_resume(
    relay_factory: RelayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed commit closes the room's members with 1011; resent ops then apply once."""
    store = FailingStore()
    relay = await relay_factory(store=store)
    a = await RawClient.connect(relay.url, client_id="alice")
    _, first = await a.join("r")
    await a.op("r", 1, IncrementOp("n"))
    await a.ack()
    store.fail = True
    await a.op("r", 2, IncrementOp("n"))
    assert await a.closed() == 1011
    assert "disk on fire" in caplog.text
    again = await RawClient.connect(relay.url, client_id="alice")
    # The reloaded room is a new epoch that shares version 1 (committed) with ours.
    _, joined = await again.join("r", since=1, epoch=first.epoch)
    assert joined.mode == "delta" and joined.epoch != first.epoch
    await again.op("r", 2, IncrementOp("n"))
    assert await again.ack() == AckMessage("r", 2, 2)
    assert await state_of(relay, "r") == (2, {"n": 2})
    await again.close()


async def test_a_bug_while_sequencing_a_lone_op_fails_only_its_room(
    relay: Relay, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An op in a quiet room is sequenced by the connection that read it. If that
    raises (a bug), the room fails as if its own task had run it: its members are
    closed with 1011; the relay and its other rooms go on."""
    a = await RawClient.connect(relay.url)
    other = await RawClient.connect(relay.url)
    await a.join("r")
    await other.join("calm")
    original = RoomCore.submit

    def submit(core: RoomCore, *args: Any, **kwargs: Any) -> Any:
        if core.name == "r":
            raise RuntimeError("sequencer bug")
        return original(core, *args, **kwargs)

    monkeypatch.setattr(RoomCore, "submit", submit)
    await a.op("r", 1, IncrementOp("n"))
    assert await a.closed() == 1011
    assert "sequencer bug" in caplog.text
    await other.op("calm", 1, IncrementOp("n"))
    assert await other.ack() == AckMessage("calm", 1, 1)
    await other.close()


async def test_a_member_that_saw_an_uncommitted_op_resumes_from_a_snapshot(
    relay_factory: RelayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Bob hears of Alice's op 2 while it is committed, and the commit fails. Carol then
    writes the real version 2. Bob's version 2 is of the old epoch and not in the store:
    he resumes with a snapshot holding Carol's write, not with an empty delta; Alice's
    resend then applies once, as version 3."""
    store = FailingStore()
    relay = await relay_factory(store=store)
    alice = await RawClient.connect(relay.url, client_id="alice")
    bob = await RawClient.connect(relay.url, client_id="bob")
    _, first = await alice.join("r")
    await bob.join("r")
    await alice.op("r", 1, SetOp("v", value="durable"))
    await alice.ack()
    assert (await bob.recv_until(Broadcast))[1].version == 1
    store.fail = True
    await alice.op("r", 2, SetOp("v", value="lost"))
    phantom = await bob.expect(Broadcast)
    assert (phantom.version, phantom.ops) == (2, [SetOp("v", value="lost")])
    assert await bob.closed() == 1011 and await alice.closed() == 1011
    assert "disk on fire" in caplog.text
    async with await RawClient.connect(relay.url, client_id="carol") as carol:
        await carol.join("r")
        await carol.op("r", 1, SetOp("v", value="carol"), base=1)
        assert (await carol.ack()).version == 2
    bob = await RawClient.connect(relay.url, client_id="bob")
    before, joined = await bob.join("r", since=2, epoch=first.epoch)
    assert before == [Snapshot("r", 2, {"v": "carol"})]
    assert (joined.version, joined.mode) == (2, "snapshot")
    alice = await RawClient.connect(relay.url, client_id="alice")
    await alice.join("r", since=1, epoch=first.epoch)  # a delta: version 1 is shared
    await alice.op("r", 2, SetOp("v", value="lost"), base=2)
    assert await alice.ack() == AckMessage("r", 2, 3)
    assert (await bob.recv_until(Broadcast))[1].version == 3
    assert await state_of(relay, "r") == (3, {"v": "lost"})
    for client in (alice, bob):
        await client.close()


async def test_empty_room_is_unloaded_and_reloaded(relay: Relay) -> None:
    """When its last member leaves the room is unloaded; the next join reloads it."""
    a = await RawClient.connect(relay.url)
    await a.join("r")
    await a.op("r", 1, SetOp("k", value="v"))
    await a.ack()
    runner = relay.rooms["r"]
    await a.close()
    await asyncio.wait_for(asyncio.shield(runner._task), TIMEOUT)  # type: ignore[arg-type]
    assert "r" not in relay.rooms
    assert await state_of(relay, "r") == (1, {"k": "v"})
