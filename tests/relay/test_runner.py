"""The room runners on their own, on real stores: which kind a store gets, the local
runner's inline round and failed commit, the shared runner's refused append."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from livewidgets.protocol import AckMessage, Broadcast, IncrementOp, Joined, SetOp, Snapshot
from livewidgets.protocol.codec import JSON_SUBPROTOCOL, client_codec, server_codec
from livewidgets.protocol.codes import CloseCode
from livewidgets.relay.fanout import Framed
from livewidgets.relay.hub import JoinRoom, Submit
from livewidgets.relay.metrics import RelayMetrics
from livewidgets.relay.room import LogEntry
from livewidgets.relay.runner import (
    LocalRoomRunner,
    RoomRunner,
    RoomSettings,
    SharedRoomRunner,
    room_runner,
)
from livewidgets.relay.store import HeadCallback, Unwatch
from livewidgets.relay.store.memory import MemoryStore
from livewidgets.relay.store.redis import RedisStore
from livewidgets.relay.store.sqlite import SQLiteStore

from .helpers import REDIS_URL, TIMEOUT

DECODE = client_codec(JSON_SUBPROTOCOL).decode
SETTINGS = RoomSettings(snapshot_every=1000, max_delta=100)
THEIRS = SetOp("k", value="theirs")
MINE = IncrementOp("n")


def _untimed(entries: list[LogEntry]) -> list[LogEntry]:
    """The entries without their time, once it is checked to be the relay's clock's."""
    now = time.time()
    assert all(e.time == 0.0 or now - 60 < e.time <= now for e in entries)
    return [dataclasses.replace(e, time=0.0) for e in entries]


@dataclass(eq=False)
class Peer:
    """A member that keeps what it was sent, decoded, its close code and its finished
    commands; :meth:`until` waits (bounded) for messages."""

    client_id: str
    user: str = "u"
    codec: Any = field(default_factory=lambda: server_codec(JSON_SUBPROTOCOL))
    received: list[Any] = field(default_factory=list)
    closed: int | None = None
    done: int = 0
    _news: asyncio.Event = field(default_factory=asyncio.Event)

    def enqueue_frames(self, frames: list[Framed]) -> None:
        self.received += [DECODE(payload.decode()) for payload, _ in frames]
        self._news.set()

    def command_done(self) -> None:
        self.done += 1

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        self.closed = code
        self._news.set()

    async def until(self, condition: Callable[[Peer], bool]) -> None:
        async def wait() -> None:
            while not condition(self):
                self._news.clear()
                await self._news.wait()

        await asyncio.wait_for(wait(), TIMEOUT)

    async def joined(self) -> None:
        await self.until(lambda p: any(isinstance(m, Joined) for m in p.received))
        self.received.clear()


class Room:
    """A runner of room "r" with its metrics and the runners that exited."""

    def __init__(self, store: Any, settings: RoomSettings = SETTINGS) -> None:
        self.metrics = RelayMetrics()
        self.exited: list[RoomRunner[Peer]] = []
        self.runner: RoomRunner[Peer] = room_runner(
            "r",
            store,
            settings,
            metrics=self.metrics,
            on_exit=self.exited.append,
            logger=logging.getLogger("test"),
        )

    async def join(self, *peers: Peer) -> None:
        for peer in peers:
            self.runner.put(JoinRoom(peer, None))
        for peer in peers:
            await peer.joined()

    def metric(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name)


class DeafRedisStore(RedisStore):
    """Redis, but the heads it reports never reach the runner: it learns of another
    relay's append only when its own append is refused (a conflict, every time)."""

    async def watch(self, room: str, callback: HeadCallback) -> Unwatch:
        return await super().watch(room, lambda head: None)


@pytest.fixture
async def redis_stores(prefix: str) -> AsyncIterator[tuple[DeafRedisStore, RedisStore]]:
    """This relay's store (deaf to heads) and another relay's, on one Redis prefix."""
    ours, theirs = DeafRedisStore(REDIS_URL, prefix=prefix), RedisStore(REDIS_URL, prefix=prefix)
    yield ours, theirs
    await ours.close()
    await theirs.close()


async def test_a_store_of_this_relay_gets_a_local_runner_a_shared_one_a_shared_runner(
    tmp_path: Path, redis_stores: tuple[DeafRedisStore, RedisStore]
) -> None:
    """Memory and SQLite stores get LocalRoomRunner; Redis gets SharedRoomRunner."""
    sqlite = SQLiteStore(str(tmp_path / "rooms.db"))
    try:
        assert type(Room(MemoryStore()).runner) is LocalRoomRunner
        assert type(Room(sqlite).runner) is LocalRoomRunner
        assert type(Room(redis_stores[1]).runner) is SharedRoomRunner
    finally:
        await sqlite.close()


async def test_local_runner_runs_a_lone_op_at_once_and_acks_it_after_its_commit(
    tmp_path: Path,
) -> None:
    """In a quiet room on SQLite, put() runs the op's round itself: the other member
    has the broadcast when put returns, the author gets its ack after the commit;
    the entry is stored and every command is done."""
    store = SQLiteStore(str(tmp_path / "rooms.db"))
    room = Room(store)
    a, b = Peer("a"), Peer("b")
    room.runner.start()
    await room.join(a, b)
    room.runner.put(Submit(a, 1, 0, (MINE,)))
    assert b.received == [Broadcast("r", 1, "a", 1, [MINE])]
    assert a.received == [] and room.runner.version == 1
    await a.until(lambda p: bool(p.received))
    assert a.received == [AckMessage("r", 1, 1)]
    await room.runner.stop()
    assert room.exited == [room.runner]
    assert (a.done, b.done) == (2, 1) and a.closed is b.closed is None
    assert _untimed(await store.read_log("r", 0, 10)) == [LogEntry(1, "a", 1, (MINE,), user="u")]
    await store.close()


async def test_local_runner_fails_the_room_when_a_commit_fails(tmp_path: Path) -> None:
    """A commit that raises (the SQLite store was closed) fails the room: the others
    heard of the op, its author gets no ack, every member is closed with 1011 and
    the held command is done."""
    store = SQLiteStore(str(tmp_path / "rooms.db"))
    room = Room(store)
    a, b = Peer("a"), Peer("b")
    room.runner.start()
    await room.join(a, b)
    await store.close()
    room.runner.put(Submit(a, 1, 0, (MINE,)))
    await a.until(lambda p: p.closed is not None)
    await b.until(lambda p: p.closed is not None)
    assert a.received == [] and b.received == [Broadcast("r", 1, "a", 1, [MINE])]
    assert a.closed == b.closed == CloseCode.INTERNAL_ERROR
    assert (a.done, b.done) == (2, 1)
    await room.runner.stop()
    assert room.exited == [room.runner]


async def test_shared_runner_redoes_a_round_the_store_refused(
    redis_stores: tuple[DeafRedisStore, RedisStore],
) -> None:
    """Another relay appends version 1 first: this relay's append of its round is
    refused, so it applies and broadcasts the other entry, sequences its op again as
    version 2 and commits that. Nothing of the refused round was delivered."""
    ours, theirs = redis_stores
    room = Room(ours)
    a, b = Peer("a"), Peer("b")
    room.runner.start()
    await room.join(a, b)
    await theirs.append("r", [LogEntry(1, "c", 1, (THEIRS,))])
    room.runner.put(Submit(a, 1, 0, (MINE,)))
    assert a.received == b.received == []  # a round is committed before it is delivered
    await a.until(lambda p: len(p.received) == 2)
    await b.until(lambda p: len(p.received) == 2)
    assert a.received == [Broadcast("r", 1, "c", 1, [THEIRS]), AckMessage("r", 1, 2)]
    assert b.received == [
        Broadcast("r", 1, "c", 1, [THEIRS]),
        Broadcast("r", 2, "a", 1, [MINE]),
    ]
    assert room.metric("livewidgets_store_conflicts_total") == 1
    assert room.metric("livewidgets_remote_entries_total") == 1
    assert _untimed(await theirs.read_log("r", 0, 10)) == [
        LogEntry(1, "c", 1, (THEIRS,)),
        LogEntry(2, "a", 1, (MINE,), user="u"),
    ]
    await room.runner.stop()
    assert room.runner.version == 2 and (a.done, b.done) == (2, 1)
    assert room.exited == [room.runner] and a.closed is b.closed is None


async def test_shared_runner_fails_the_room_after_max_conflicts(
    redis_stores: tuple[DeafRedisStore, RedisStore],
) -> None:
    """With max_conflicts=0 the first refused append fails the room: nothing of the
    round is delivered or stored, every member is closed with 1011, the command done."""
    ours, theirs = redis_stores
    room = Room(ours, RoomSettings(snapshot_every=1000, max_delta=100, max_conflicts=0))
    a, b = Peer("a"), Peer("b")
    room.runner.start()
    await room.join(a, b)
    await theirs.append("r", [LogEntry(1, "c", 1, (THEIRS,))])
    room.runner.put(Submit(a, 1, 0, (MINE,)))
    await a.until(lambda p: p.closed is not None)
    await b.until(lambda p: p.closed is not None)
    assert a.received == b.received == []
    assert a.closed == b.closed == CloseCode.INTERNAL_ERROR
    assert (a.done, b.done) == (2, 1)
    assert await theirs.read_log("r", 0, 10) == [LogEntry(1, "c", 1, (THEIRS,))]
    await room.runner.stop()
    assert room.exited == [room.runner]


async def test_a_joiner_on_a_shared_store_catches_up_on_committed_entries_only(
    redis_stores: tuple[DeafRedisStore, RedisStore],
) -> None:
    """A join queued behind an accepted op opens the next round, after that op's
    commit: its snapshot holds the op, and a redo never runs a join twice."""
    ours, _ = redis_stores
    room = Room(ours)
    a, b = Peer("a"), Peer("b")
    room.runner.start()
    await room.join(a)
    room.runner.put(Submit(a, 1, 0, (MINE,)))
    room.runner.put(JoinRoom(b, None))
    await b.until(lambda p: any(isinstance(m, Joined) for m in p.received))
    assert b.received[0] == Snapshot("r", 1, {"n": 1})
    assert a.received == [AckMessage("r", 1, 1)]
    await room.runner.stop()
    assert (a.done, b.done) == (2, 1)


async def test_a_failed_catch_up_closes_the_commands_of_its_round_too(
    redis_stores: tuple[DeafRedisStore, RedisStore],
) -> None:
    """A join from a client ahead of this relay makes the round catch up first; when
    that read fails the room fails, and the joiner (not a member yet) is closed with
    1011 and its command done, like the members."""
    ours, _ = redis_stores
    room = Room(ours)
    a, b = Peer("a"), Peer("b")
    room.runner.start()
    await room.join(a)
    await ours.close()
    room.runner.put(JoinRoom(b, 5))
    await b.until(lambda p: p.closed is not None)
    assert a.closed == b.closed == CloseCode.INTERNAL_ERROR
    assert b.received == [] and (a.done, b.done) == (1, 1)
    await room.runner.stop()
    assert room.exited == [room.runner]
