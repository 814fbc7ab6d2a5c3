"""The asyncio engine against a real relay: lifecycle events, heartbeat, close codes,
give-up policy, frame limits and presence."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from livewidgets.client import OpRejected, SessionClosed
from livewidgets.relay import Relay

from ..conftest import RelayFactory
from .conftest import Connect
from .helpers import MS, TIMEOUT, Recorder, abandon, eventually
from .proxy import Proxy


async def go_offline(proxy: Proxy, events: Recorder) -> None:
    """Reset the connection and refuse new ones; wait until the client noticed."""
    before = events.count("disconnected")
    proxy.refuse(True)
    proxy.cut()
    await eventually(lambda: events.count("disconnected") > before, what="disconnected")


# --- lifecycle ----------------------------------------------------------------------


async def test_first_connection_events(relay: Relay, connect: Connect) -> None:
    """wait=False: connecting, then connected with the join mode (snapshot the first time)."""
    a = await connect(relay.url, wait=False)
    events = Recorder(a)
    await eventually(lambda: a.connection_state == "connected")
    assert events.names()[-1] == "connected"
    assert events.of("connected")[-1]["mode"] == "snapshot"
    assert relay.metrics.value("livewidgets_joins_total", mode="snapshot") == 1


async def test_client_close_does_not_reconnect(relay: Relay, connect: Connect) -> None:
    """A normal close by the client ends the session: closed, one attempt, no reconnecting."""
    a = await connect(relay.url)
    events = Recorder(a)
    await a.close()
    assert events.names() == ["disconnected", "closed"]
    assert events.of("disconnected")[0]["code"] == 1000
    assert a.metrics["attempts"] == 1
    await eventually(lambda: relay.metrics.value("livewidgets_connections") == 0)


async def test_relay_normal_close_is_final(connect: Connect) -> None:
    """A relay that closes with 1000 ends the session (no reconnect)."""
    attempts = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        await ws.recv()  # hello
        await ws.close(1000, "done")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with pytest.raises(SessionClosed):
            await connect(f"ws://127.0.0.1:{port}")
    assert attempts == 1


async def test_replaced_connection_does_not_reconnect(relay: Relay, connect: Connect) -> None:
    """A second session with the same client_id replaces the first (4010): it stops."""
    first = await connect(relay.url, client_id="same-client")
    events = Recorder(first)
    second = await connect(relay.url, client_id="same-client")
    await eventually(lambda: first.connection_state == "closed")
    assert events.of("disconnected")[0]["code"] == 4010
    assert "reconnecting" not in events.names()
    assert await second.set("k", 1) == 1


async def test_max_attempts_gives_up(relay: Relay, proxy: Proxy, connect: Connect) -> None:
    """After max_attempts failed attempts in a row: reconnect_failed, then closed."""
    a = await connect(proxy.url, max_attempts=3)
    events = Recorder(a)
    await go_offline(proxy, events)
    await eventually(lambda: a.connection_state == "closed")
    assert events.of("reconnect_failed") == [{"attempts": 3}]
    assert events.names()[-2:] == ["reconnect_failed", "closed"]
    metrics = a.metrics
    assert (metrics["attempts"], metrics["successes"], metrics["failures"]) == (4, 1, 3)
    with pytest.raises(SessionClosed):
        a.set("k", 1)


async def test_giving_up_fails_pending_writes(relay: Relay, proxy: Proxy, connect: Connect) -> None:
    """Writes still queued when the engine gives up fail with SessionClosed."""
    a = await connect(proxy.url, max_attempts=2)
    events = Recorder(a)
    await go_offline(proxy, events)
    ack = a.set("k", 1)
    try:
        await eventually(lambda: events.count("reconnect_failed"))
        with pytest.raises(SessionClosed):
            await asyncio.wait_for(ack, 500 * MS)
        assert a.connection_state == "closed"
    finally:
        await abandon(a)


async def test_connect_to_unreachable_relay_gives_up(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """connect() with max_attempts raises SessionClosed when no attempt succeeds."""
    proxy.refuse(True)
    with pytest.raises(SessionClosed):
        await connect(proxy.url, max_attempts=2)
    assert proxy.accepted == 2


async def test_connect_timeout(relay: Relay, proxy: Proxy, connect: Connect) -> None:
    """connect(timeout=...) raises TimeoutError while the relay keeps refusing."""
    proxy.refuse(True)
    with pytest.raises(TimeoutError):
        await connect(proxy.url, timeout=200 * MS)


# --- heartbeat ----------------------------------------------------------------------


async def test_heartbeat_detects_a_silent_relay(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """A stalled link is declared dead within interval + timeout; after resume it reconnects."""
    interval, timeout = 100 * MS, 200 * MS
    a = await connect(
        proxy.url, heartbeat_interval=interval, heartbeat_timeout=timeout, open_timeout=300 * MS
    )
    events = Recorder(a)
    await eventually(lambda: a.metrics["rtt_p50_ms"] is not None, what="a first pong")
    assert a.metrics["heartbeat_timeouts"] == 0
    loop = asyncio.get_running_loop()
    stalled_at = loop.time()
    proxy.stall()
    await eventually(lambda: events.count("disconnected"), timeout=interval + timeout + 300 * MS)
    assert loop.time() - stalled_at >= 0.9 * timeout  # the pong in flight was held
    assert a.metrics["heartbeat_timeouts"] == 1
    assert events.of("disconnected")[0]["code"] == 1006
    ack = a.set("k", 1)  # queued while the relay is silent
    proxy.resume()
    assert await asyncio.wait_for(ack, TIMEOUT) == 1
    assert a.connection_state == "connected"
    assert events.of("connected")[-1]["mode"] == "delta"


async def test_heartbeat_measures_rtt(relay: Relay, connect: Connect) -> None:
    """Pongs feed the RTT percentiles even when nothing is written."""
    a = await connect(relay.url, heartbeat_interval=20 * MS)
    await eventually(lambda: a.metrics["rtt_p99_ms"] is not None)
    assert a.metrics["rtt_p50_ms"] >= 0


async def test_ack_timeout_resends_and_relay_dedupes(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """An op whose ack is late is resent (retries counted); the relay applies it once."""
    delay, interval = 250 * MS, 50 * MS
    proxy.delay = delay  # every chunk, both ways: an ack takes > 500 ms
    a = await connect(
        proxy.url,
        ack_timeout=100 * MS,
        heartbeat_interval=interval,
        heartbeat_timeout=2000 * MS,
    )
    # Overdue acks are checked after each pong, i.e. every interval + RTT (~550 ms):
    # write half an RTT after a pong, so the next check comes after the ack timeout
    # and ~200 ms before the ack.
    await eventually(lambda: a.metrics["rtt_p50_ms"] is not None, what="a first pong")
    await asyncio.sleep(delay)
    ack = a.increment("n")
    assert await asyncio.wait_for(ack, TIMEOUT) == 1
    assert a.metrics["retries"] >= 1
    proxy.delay = 0
    await a.flush(TIMEOUT)
    assert a.get("n") == 1
    await eventually(lambda: relay.metrics.value("livewidgets_duplicate_ops_total") >= 1)
    assert relay.metrics.value("livewidgets_ops_accepted_total") == 1


# --- frame limits -------------------------------------------------------------------


async def test_oversized_write_is_rejected_not_resent_forever(
    relay_factory: RelayFactory, connect: Connect
) -> None:
    """A write over the relay's frame limit fails (too_large) instead of looping reconnects."""
    relay = await relay_factory(max_frame_size=2048)
    a = await connect(relay.url)
    ack = a.set("big", "x" * 4096)
    try:
        with pytest.raises(OpRejected) as info:
            await asyncio.wait_for(ack, 1000 * MS)
        assert info.value.code == "too_large"
        assert a.get("big") is None
        assert await asyncio.wait_for(a.set("small", 1), TIMEOUT) >= 1
        assert a.metrics["disconnections"] <= 1
    finally:
        await abandon(a)


async def test_oversized_write_in_a_burst_keeps_the_others_in_order(
    relay_factory: RelayFactory, connect: Connect
) -> None:
    """An oversized write refused while a burst is being written straight to the socket:
    its rollback does not disturb the writes around it (sent once each, in order)."""
    relay = await relay_factory(max_frame_size=2048)
    a = await connect(relay.url)
    b = await connect(relay.url)
    before = a.set("n", 0)
    big = a.set("big", "x" * 4096)
    after = [a.set("n", i) for i in range(1, 6)]
    try:
        with pytest.raises(OpRejected):
            await asyncio.wait_for(big, 1000 * MS)
        versions = [await asyncio.wait_for(ack, TIMEOUT) for ack in (before, *after)]
        assert versions == sorted(versions) and len(set(versions)) == 6
        await eventually(lambda: b.get("n") == 5, what="the last write at b")
        assert a.get("big") is None and b.get("big") is None
    finally:
        await abandon(a)
        await abandon(b)


# --- presence -----------------------------------------------------------------------


async def test_presence_is_throttled_latest_wins_and_cleared(
    relay: Relay, connect: Connect
) -> None:
    """A burst of presence updates reaches peers throttled, ending with the latest; close
    clears it."""
    a = await connect(relay.url, user="ann", presence_rate=10.0)
    b = await connect(relay.url, user="bob")
    await eventually(lambda: a.client_id in b.presence, what="a's presence at b")
    updates = Recorder(b, ["presence"])
    for i in range(30):
        a.update_presence(cursor=i)
    await eventually(lambda: b.presence[a.client_id].get("cursor") == 29)
    mine = [p for p in updates.of("presence") if p["client_id"] == a.client_id]
    assert 1 <= len(mine) <= 3
    assert b.presence[a.client_id]["user"] == "ann"
    await a.close()
    await eventually(lambda: a.client_id not in b.presence, what="a's presence cleared")


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A WebSocket server that accepts the handshake and then never answers."""

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        yield next(iter(server.sockets)).getsockname()[1]


async def test_no_welcome_within_open_timeout_is_a_failed_attempt(
    silent_server: int, connect: Connect
) -> None:
    """A server that never sends welcome: each attempt times out and counts as a failure."""
    a = None
    try:
        with pytest.raises(SessionClosed):
            a = await connect(
                f"ws://127.0.0.1:{silent_server}",
                open_timeout=50 * MS,
                max_attempts=2,
                timeout=1000 * MS,
            )
    finally:
        if a is not None:
            await a.close()
