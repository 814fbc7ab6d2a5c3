"""A relay on a Redis store: the room survives the relay, and relays can take turns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import livewidgets.asyncio as lwa
from livewidgets.client import Backoff
from livewidgets.relay import Relay
from livewidgets.relay.history import HistoryHorizon
from livewidgets.relay.store.redis import RedisStore

from .helpers import REDIS_URL, TIMEOUT, redis_available

FAST = Backoff(initial=0.02, cap=0.2)


pytestmark = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` every 5 ms, at most ``timeout`` seconds."""
    for _ in range(int(timeout / 0.005) + 1):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def deaf(store: RedisStore) -> RedisStore:
    """Make ``store`` lose every pub/sub notice (as a dropped connection would)."""

    def drop(message: dict[str, Any]) -> None:
        pass

    store._published = drop  # type: ignore[method-assign]
    return store


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
    """Two relays serve one room: each hears the other's writes, and a write that
    loses an append race lands after the winner's, without a reconnect: one log,
    nothing lost, nothing applied twice."""
    first, second = RedisStore(REDIS_URL, prefix=prefix), RedisStore(REDIS_URL, prefix=prefix)
    async with Relay(store=first) as one, Relay(store=second) as two:
        a = await lwa.connect(one.url, "r", "ada", backoff=FAST)
        b = await lwa.connect(two.url, "r", "grace", backoff=FAST)
        assert await a.set("k", "from one") == 1
        assert await asyncio.wait_for(b.set("k", "from two"), 10) == 2
        await b.flush(10)
        assert b.state == {"k": "from two"}
        await wait_for(lambda: a.state == {"k": "from two"}, "relay one to hear it")
        assert a.metrics["successes"] == b.metrics["successes"] == 1
        await a.close()
        await b.close()
    record = await first.load("r")
    assert [(e.version, e.client_id) for e in record.log] == [(1, a.client_id), (2, b.client_id)]
    await first.close()
    await second.close()


async def test_the_poll_catches_up_when_notices_are_lost(prefix: str) -> None:
    """Pub/sub is at-most-once: a relay that misses every notice still hears the other
    relay's writes within its poll interval."""
    first = RedisStore(REDIS_URL, prefix=prefix)
    second = deaf(RedisStore(REDIS_URL, prefix=prefix, poll_interval=0.2))
    async with Relay(store=first) as one, Relay(store=second) as two:
        a = await lwa.connect(one.url, "r", "ada", backoff=FAST)
        b = await lwa.connect(two.url, "r", "grace", backoff=FAST)
        loop = asyncio.get_running_loop()
        for n in range(1, 4):
            await a.increment("n")
            started = loop.time()
            await wait_for(lambda n=n: b.get("n") == n, "the poll to catch up")
            assert loop.time() - started < 0.2 + 0.5
        assert b.metrics["successes"] == 1
        await a.close()
        await b.close()
    await first.close()
    await second.close()


async def test_a_relay_behind_a_compacted_log_reloads_and_clients_resume(prefix: str) -> None:
    """A relay that lags behind a compaction (deaf, no poll in time, no kept tail)
    cannot read its gap: it drops the room (1011), its client resumes against the
    reloaded room, and its write lands once, after everything else."""
    # No history either: it would keep the compacted entries (relay.history).
    none = HistoryHorizon(entries=0)
    first = RedisStore(REDIS_URL, prefix=prefix, keep_log=0, history=none)
    second = deaf(RedisStore(REDIS_URL, prefix=prefix, keep_log=0, poll_interval=60, history=none))
    async with Relay(store=first, snapshot_every=5) as one, Relay(store=second) as two:
        a = await lwa.connect(one.url, "r", "ada", backoff=FAST)
        b = await lwa.connect(two.url, "r", "grace", backoff=FAST)
        for _ in range(12):
            a.increment("n")
        await a.flush(10)
        assert b.state == {}  # deaf and not polled yet: relay two lags at version 0
        assert await asyncio.wait_for(b.increment("m"), 10) == 13
        await wait_for(lambda: b.state == {"n": 12, "m": 1}, "grace to resume")
        assert b.metrics["successes"] == 2
        await a.close()
        await b.close()
    record = await first.load("r")
    assert record.snapshot_version + len(record.log) == 13
    await first.close()
    await second.close()
