"""RedisStore as a presence bus (real Redis): ordered delivery, sync counts, bounds.

And the stores that are not shared keep presence in the relay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from livewidgets.relay.store import PresenceBus, PresenceKind, PresenceMessage
from livewidgets.relay.store.memory import MemoryStore
from livewidgets.relay.store.redis import PRESENCE_OUTBOX, RedisStore
from livewidgets.relay.store.sqlite import SQLiteStore

from .helpers import REDIS_URL, TIMEOUT, redis_available

needs_redis = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")


async def wait_for(condition: object, what: str, timeout: float = TIMEOUT) -> None:
    for _ in range(int(timeout / 0.005) + 1):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def test_memory_and_sqlite_stores_carry_no_presence(tmp_path: Path) -> None:
    sqlite = SQLiteStore(str(tmp_path / "rooms.db"))
    try:
        assert not isinstance(MemoryStore(), PresenceBus)
        assert not isinstance(sqlite, PresenceBus)
    finally:
        await sqlite.close()


@needs_redis
async def test_presence_goes_to_the_other_store_in_order(prefix: str) -> None:
    """Every message a relay publishes for a room reaches the others' watchers, in
    publish order, with the sender's id and TTL; a SYNC's receivers are counted."""
    a = RedisStore(REDIS_URL, prefix=prefix, presence_heartbeat=0.5)
    b = RedisStore(REDIS_URL, prefix=prefix)
    assert isinstance(a, PresenceBus) and a.relay_id != b.relay_id
    heard_a: list[PresenceMessage] = []
    heard_b: list[PresenceMessage] = []
    try:
        unwatch_a = await a.watch_presence("r", heard_a.append)
        unwatch_b = await b.watch_presence("r", heard_b.append)
        for n in range(200):
            a.publish_presence("r", PresenceKind.CHANGES, {"c": {"n": n}})
        a.publish_presence("r", PresenceKind.FULL, {})
        await wait_for(lambda: len(heard_b) == 201, "a's messages on b")
        assert [m.states["c"] for m in heard_b[:200]] == [{"n": n} for n in range(200)]
        assert heard_b[-1] == PresenceMessage(a.relay_id, PresenceKind.FULL, 1.5, {})
        # Both subscriptions are active by now: a SYNC reaches 2 (b and a itself).
        assert await b.request_presence("r") == 2
        await wait_for(lambda: any(m.kind is PresenceKind.SYNC for m in heard_a), "b's sync")
        # Another room's messages are not heard.
        a.publish_presence("other", PresenceKind.CHANGES, {"x": None})
        await unwatch_b()
        a.publish_presence("r", PresenceKind.CHANGES, {"late": None})
        await wait_for(lambda: heard_a[-1].states == {"late": None}, "a's own message")
        assert [m.kind for m in heard_b[201:]] == [PresenceKind.SYNC]  # its own, no more
        await unwatch_a()
    finally:
        await a.close()
        await b.close()


@needs_redis
async def test_the_outbox_is_bounded(prefix: str) -> None:
    """Publishing never blocks nor grows without bound: past PRESENCE_OUTBOX queued
    messages new ones are dropped (the next full table repairs the others)."""
    store = RedisStore(REDIS_URL, prefix=prefix)
    try:
        for n in range(PRESENCE_OUTBOX + 10):  # no await: the sender task cannot run
            store.publish_presence("r", PresenceKind.CHANGES, {"c": {"n": n}})
        assert store.presence_dropped == 10
        await wait_for(lambda: not store._outbox, "the outbox drained")
    finally:
        await store.close()
