"""A relay on a Redis store: the room survives the relay, and relays can take turns."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

import livewidgets.asyncio as lwa
from livewidgets.client import Backoff
from livewidgets.relay import Relay
from livewidgets.relay.store.redis import RedisStore

from .helpers import REDIS_URL, redis_available

FAST = Backoff(initial=0.02, cap=0.2)


pytestmark = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    prefix = f"lwtest-{uuid.uuid4().hex}"
    yield prefix
    redis = Redis.from_url(REDIS_URL)
    keys = [key async for key in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_room_outlives_the_relay_on_redis(prefix: str) -> None:
    """Acked writes are in Redis: a new relay on the same store serves them, versions go on."""
    store = RedisStore(REDIS_URL, prefix=prefix)
    async with Relay(store=store, snapshot_every=5) as relay:
        session = await lwa.connect(relay.url, "r", "ada")
        for _ in range(12):
            session.increment("n")
        await session.set("t", "hello")
        await session.close()
    await store.close()

    store = RedisStore(REDIS_URL, prefix=prefix)
    async with Relay(store=store) as relay:
        session = await lwa.connect(relay.url, "r", "grace")
        assert session.state == {"n": 12, "t": "hello"}
        assert session.version == 13
        assert await session.increment("n") == 14
        await session.close()
    await store.close()


async def test_two_relays_on_one_redis_room_never_fork_the_log(prefix: str) -> None:
    """A relay whose append loses the race gets StoreConflict, reloads, and the write
    lands after the winner's: one log, nothing lost, nothing applied twice."""
    first, second = RedisStore(REDIS_URL, prefix=prefix), RedisStore(REDIS_URL, prefix=prefix)
    async with Relay(store=first) as one, Relay(store=second) as two:
        a = await lwa.connect(one.url, "r", "ada", backoff=FAST)
        b = await lwa.connect(two.url, "r", "grace", backoff=FAST)
        assert await a.set("k", "from one") == 1
        # Relay two loaded the room at version 0: its own version 1 is refused by the
        # store; it drops the room, the client resumes and its write becomes version 2.
        assert await asyncio.wait_for(b.set("k", "from two"), 10) == 2
        await b.flush(10)
        assert b.state == {"k": "from two"}
        await a.close()
        await b.close()
    record = await first.load("r")
    assert [(e.version, e.client_id) for e in record.log] == [(1, a.client_id), (2, b.client_id)]
    await first.close()
    await second.close()
