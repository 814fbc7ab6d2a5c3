"""Token expiry during a session: the relay closes with 4004 at ``exp``; the client
says auth_expired and stops, or reconnects with a token from ``token_refresh``."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from livewidgets.client import connect_async
from livewidgets.errors import AuthExpired
from livewidgets.protocol import Error, IncrementOp
from livewidgets.relay import Relay

from ..client.helpers import FAST, TIMEOUT, Recorder, eventually
from .helpers import admitted, assert_serves, token


def short_token(**claims: Any) -> tuple[str, float]:
    """A token that expires in 1-2 s (exp is whole seconds), and when it expires."""
    now = time.time()
    tok = token(ttl=2, **claims)
    return tok, float(int(now) + 2)


async def test_relay_closes_4004_when_the_token_expires(secure_relay: Relay) -> None:
    """At exp the relay sends auth_expired and closes 4004; it refuses the stale token after."""
    tok, expires = short_token()
    client = await admitted(secure_relay.url, tok)
    await client.join("room")
    await client.op("room", 1, IncrementOp("n"))
    await client.ack()
    error = await client.expect(Error, timeout=4 * TIMEOUT / 5)
    assert error.code == "auth_expired"
    assert time.time() >= expires - 0.05  # not before exp (small clock-rounding slack)
    assert await client.closed() == 4004
    await assert_serves(secure_relay.url, token(), room="room")


async def test_client_stops_with_auth_expired(secure_relay: Relay) -> None:
    """Without token_refresh, 4004 ends the session: one auth_expired event, no reconnect."""
    tok, _ = short_token()
    session = await connect_async(secure_relay.url, "room", token=tok, **FAST, timeout=TIMEOUT)
    events = Recorder(session)
    try:
        await session.increment("n")
        await eventually(lambda: session.connection_state == "closed", what="closed")
        assert events.count("auth_expired") == 1
        assert isinstance(events.of("auth_expired")[0]["error"], AuthExpired)
        assert events.count("reconnecting") == 0
        assert session.metrics["attempts"] == 1
    finally:
        await session.close()


async def test_client_reconnects_with_a_refreshed_token(secure_relay: Relay) -> None:
    """A provider with nothing new before expiry: the relay closes 4004, the provider is
    asked again and the session reconnects with the token it gives, and keeps syncing."""
    first, expires = short_token(user="ada")
    asked_before, refreshed = threading.Event(), threading.Event()

    def refresh() -> str | None:
        if time.time() < expires:  # the renewal ahead of expiry: nothing yet
            asked_before.set()
            return None
        refreshed.set()
        return token(user="ada")

    session = await connect_async(
        secure_relay.url, "room", token=first, token_refresh=refresh, **FAST, timeout=TIMEOUT
    )
    events = Recorder(session)
    try:
        await session.increment("n")
        await eventually(refreshed.is_set, what="token_refresh called after expiry")
        await eventually(lambda: events.count("connected") >= 1, what="reconnected")
        await session.increment("n")
        assert session.get("n") == 2
        assert asked_before.is_set()  # renewal was tried first, on the open connection
        assert events.count("auth_expired") == 0 and events.count("token_renewed") == 0
        assert session.metrics["attempts"] == 2
        assert session.connection_state == "connected"
    finally:
        await session.close()


async def test_a_slow_refresh_after_4004_does_not_hold_up_other_sessions(
    secure_relay: Relay,
) -> None:
    """The provider runs on a worker thread after a 4004 too: while it takes 1.5 s,
    another session on the same event loop keeps getting its writes acknowledged."""
    first, expires = short_token(user="ada")
    slow = threading.Event()

    def refresh() -> str | None:
        if time.time() < expires:
            return None  # nothing before expiry: the relay closes 4004
        slow.set()
        time.sleep(1.5)
        return token(user="ada")

    ada = await connect_async(
        secure_relay.url, "room", token=first, token_refresh=refresh, **FAST, timeout=TIMEOUT
    )
    grace = await connect_async(
        secure_relay.url, "room", token=token(user="grace"), **FAST, timeout=TIMEOUT
    )
    loop = asyncio.get_running_loop()

    async def write() -> None:
        await grace.increment("m")

    def timed_write_during_the_refresh() -> float:
        """From a thread: a write of grace's through the loop while ada's provider runs."""
        assert slow.wait(TIMEOUT)
        started = time.monotonic()
        asyncio.run_coroutine_threadsafe(write(), loop).result(TIMEOUT)
        return time.monotonic() - started

    try:
        assert await asyncio.to_thread(timed_write_during_the_refresh) < 0.5
        await eventually(lambda: ada.metrics["attempts"] == 2, what="ada reconnected")
        await ada.increment("n")
        assert ada.get("n") == 1
    finally:
        await ada.close()
        await grace.close()


async def test_a_failing_provider_is_reported_and_asked_again_in_time(
    secure_relay: Relay,
) -> None:
    """The provider raises at the first renewal: an error event says so, the session asks
    again before expiry, and the second answer renews the token in place."""
    calls: list[float] = []

    def provider() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("token service unavailable")
        return token(user="ada", ttl=4)

    session = await connect_async(
        secure_relay.url,
        "room",
        token=token(user="ada", ttl=4),
        token_refresh=provider,
        **FAST,
        timeout=TIMEOUT,
    )
    events = Recorder(session)
    try:
        await eventually(lambda: session.metrics["token_renewals"] >= 1, what="renewed")
        [failure] = events.of("error")
        assert failure["during"] == "token_refresh"
        assert str(failure["error"]) == "token service unavailable"
        assert len(calls) == 2 and calls[1] - calls[0] < 1.0  # asked again well in time
        await session.increment("n")
        assert session.metrics["attempts"] == 1 and events.count("disconnected") == 0
    finally:
        await session.close()


@pytest.mark.slow
async def test_a_5_s_token_is_renewed_across_a_minute_of_steady_writes(
    secure_relay: Relay,
) -> None:
    """docs/security.md "Renewal": a token that lives 5 s, 10 writes a second for 60 s.
    The provider renews it on the open connection each time: one connection from first
    write to last, every write applied once, the relay's state equal to the writes."""
    seconds, rate = 60, 10
    asked: list[float] = []

    def provider() -> str:
        asked.append(time.monotonic())
        return token(user="ada", ttl=5)

    session = await connect_async(
        secure_relay.url,
        "room",
        token=token(user="ada", ttl=5),
        token_refresh=provider,
        **FAST,
        timeout=TIMEOUT,
    )
    events = Recorder(session)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        acks = []
        for i in range(seconds * rate):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            acks.append(session.increment("n"))
        versions = await asyncio.wait_for(asyncio.gather(*acks), TIMEOUT)
        assert len(set(versions)) == seconds * rate  # each write its own version
        assert session.get("n") == seconds * rate
        metrics = session.metrics
        # Zero reconnects: the one connection lived throughout, never went down.
        assert metrics["attempts"] == 1 and metrics["disconnections"] == 0
        assert events.count("reconnecting") == events.count("disconnected") == 0
        assert events.count("auth_expired") == events.count("error") == 0
        assert metrics["rejects"] == 0 and session.connection_state == "connected"
        # A 5 s token lasts 60 s only if renewed at least 12 times, each time in place.
        assert metrics["token_renewals"] >= seconds // 5
        assert events.count("token_renewed") == metrics["token_renewals"] == len(asked)
    finally:
        await session.close()
    # Zero lost ops: a fresh reader sees exactly the writes.
    reader = await connect_async(secure_relay.url, "room", token=token(user="grace"), **FAST)
    try:
        assert reader.get("n") == seconds * rate
    finally:
        await reader.close()
