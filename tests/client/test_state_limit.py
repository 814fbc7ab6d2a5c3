"""A write refused for the room's state size (``too_large``) through the real client:
rolled back, reported on its Ack and the ``rejected`` event, and nothing else is lost."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import livewidgets
from livewidgets.client import ConflictError, OpRejected
from livewidgets.relay import Relay

from ..conftest import RelayFactory
from .conftest import Connect
from .helpers import FAST, TIMEOUT, Recorder, eventually, eventually_sync

LIMIT = 2000


async def test_too_large_write_rolls_back_and_fails_its_ack(
    relay_factory: RelayFactory, connect: Connect
) -> None:
    relay = await relay_factory(max_state_bytes=LIMIT)
    a = await connect(relay.url)
    b = await connect(relay.url)
    events = Recorder(a, ["rejected"])
    seen: list[Any] = []
    a.subscribe("big", lambda value, path: seen.append(value))
    await a.set("notes", "n" * 1000)
    # Three writes in flight at once: the middle one does not fit, the others do.
    first = a.set("x", 1)
    big = a.set("big", "x" * LIMIT)
    last = a.increment("x")
    assert a.get("big") == "x" * LIMIT  # optimistic until the relay answers
    with pytest.raises(OpRejected) as info:
        await asyncio.wait_for(big, TIMEOUT)
    assert not isinstance(info.value, ConflictError)
    assert (info.value.code, info.value.path) == ("too_large", "big")
    assert f"over the room's limit of {LIMIT} bytes" in info.value.message
    assert isinstance(big.exception(), OpRejected) and big.version is None
    assert await first == 2 and await last == 3
    assert a.get("big") is None and a.state == {"notes": "n" * 1000, "x": 2}
    assert seen == ["x" * LIMIT, None]
    (payload,) = events.of("rejected")
    assert payload["code"] == "too_large" and payload["path"] == "big"
    assert payload["error"] is info.value
    assert a.metrics["rejects"] == 1 and a.pending == 0
    await eventually(lambda: b.state == a.state, what="b in sync")
    # A write that does not grow the state still goes through.
    assert await a.set("notes", "m" * 1000) == 4


async def test_too_large_batch_rolls_back_whole(
    relay_factory: RelayFactory, connect: Connect
) -> None:
    relay = await relay_factory(max_state_bytes=LIMIT)
    a = await connect(relay.url)
    with a.batch() as ack:
        a.set("small", 1)
        a.set("big", "x" * LIMIT)
    with pytest.raises(OpRejected) as info:
        await asyncio.wait_for(ack, TIMEOUT)
    assert (info.value.code, info.value.path) == ("too_large", "big")
    assert a.state == {}


@pytest.fixture
def thread_relay() -> Iterator[Relay]:
    """A relay with a small state limit on its own event loop thread (blocking facade)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-relay")
    thread.start()
    relay = Relay(host="127.0.0.1", port=0, max_state_bytes=LIMIT)
    asyncio.run_coroutine_threadsafe(relay.start(), loop).result(TIMEOUT)
    try:
        yield relay
    finally:
        asyncio.run_coroutine_threadsafe(relay.stop(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


def test_sync_facade_too_large(thread_relay: Relay) -> None:
    """livewidgets.connect(): Ack.result() raises OpRejected(too_large); state rolled back."""
    session = livewidgets.connect(thread_relay.url, "room", **FAST, timeout=TIMEOUT)
    try:
        assert session.set("a", "y" * 100).result(TIMEOUT) == 1
        ack = session.set("big", "x" * LIMIT)
        with pytest.raises(OpRejected) as info:
            ack.result(TIMEOUT)
        assert info.value.code == "too_large" and ack.exception() is info.value
        eventually_sync(lambda: session.pending == 0)
        assert session.state == {"a": "y" * 100}
        session.delete("a").result(TIMEOUT)
        assert session.state == {}
    finally:
        session.close()
