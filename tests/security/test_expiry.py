"""Token expiry during a session: the relay closes with 4004 at ``exp``; the client
says auth_expired and stops, or reconnects with a token from ``token_refresh``."""

from __future__ import annotations

import threading
import time
from typing import Any

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
    """With token_refresh the session reconnects with the fresh token and keeps syncing."""
    first, _ = short_token(user="ada")
    refreshed = threading.Event()

    def refresh() -> str:
        refreshed.set()
        return token(user="ada")

    session = await connect_async(
        secure_relay.url, "room", token=first, token_refresh=refresh, **FAST, timeout=TIMEOUT
    )
    events = Recorder(session)
    try:
        await session.increment("n")
        await eventually(refreshed.is_set, what="token_refresh called")
        await eventually(lambda: events.count("connected") >= 1, what="reconnected")
        await session.increment("n")
        assert session.get("n") == 2
        assert events.count("auth_expired") == 0
        assert session.metrics["attempts"] == 2
        assert session.connection_state == "connected"
    finally:
        await session.close()
