"""A client given several relays of one Redis store fails over without losing a write."""

from __future__ import annotations

import asyncio

import pytest

import livewidgets.asyncio as lwa
from livewidgets.client import Backoff
from livewidgets.client.engine import Engine
from livewidgets.relay import Relay
from livewidgets.relay.store.redis import RedisStore

from ..client.helpers import eventually
from .helpers import REDIS_URL, TIMEOUT, redis_available

FAST = Backoff(initial=0.02, cap=0.2)

pytestmark = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")


async def test_client_fails_over_to_the_next_relay(prefix: str) -> None:
    """Writes keep going while the relay a client uses stops: it reconnects to the next
    URL, resumes by delta there and every write lands exactly once."""
    stores = [RedisStore(REDIS_URL, prefix=prefix) for _ in range(2)]
    first, second = (Relay(store=store) for store in stores)
    await first.start()
    await second.start()
    watcher = await lwa.connect(second.url, "r", "watcher", backoff=FAST)
    writer = await lwa.connect([first.url, second.url], "r", "writer", backoff=FAST)
    try:
        acks = [writer.push("log", n) for n in range(50)]
        await asyncio.wait_for(asyncio.gather(*acks[:10]), TIMEOUT)
        await first.stop()  # closes with 1001: the writer moves on to the second relay
        acks += [writer.push("log", n) for n in range(50, 100)]
        await asyncio.wait_for(asyncio.gather(*acks), TIMEOUT)
        assert writer.url == second.url
        await eventually(lambda: watcher.get("log") == list(range(100)), what="all at the watcher")
        assert writer.get("log") == list(range(100))
    finally:
        await writer.close()
        await watcher.close()
        await second.stop()
        await first.stop()
        for store in stores:  # a Store instance stays the caller's to close
            await store.close()


def test_urls_rotate_and_one_is_required() -> None:
    engine = Engine(["ws://a", "ws://b", "ws://c"], "r")
    seen = [engine.url]
    for _ in range(3):
        engine._next_url()
        seen.append(engine.url)
    assert seen == ["ws://a", "ws://b", "ws://c", "ws://a"]
    single = Engine("ws://only", "r")
    single._next_url()
    assert single.url == "ws://only"
    with pytest.raises(ValueError, match="at least one"):
        Engine([], "r")
