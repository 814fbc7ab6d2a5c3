"""The policy seam: the relay asks its policy at each decision point and obeys."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request
from websockets.typing import Origin

from livewidgets.protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    Error,
    ErrorCode,
    Hello,
    IncrementOp,
    Join,
    Leave,
    Op,
    PresenceMessage,
    Reject,
    SetOp,
)
from livewidgets.relay import AllowAll, Denied, Principal

from ..conftest import RelayFactory
from .helpers import TIMEOUT, RawClient


class StrictPolicy(AllowAll):
    """Reads allowed, writes to ``ro/*`` forbidden, ``slow/*`` rate limited; logs hooks."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.closed = asyncio.Event()

    def check_request(self, request: Request) -> Denied | None:
        if request.headers.get("Origin") == "https://evil.example":
            return Denied(ErrorCode.FORBIDDEN, "origin not allowed", CloseCode.ORIGIN_FORBIDDEN)
        return None

    def on_hello(self, hello: Hello, request: Request | None) -> Principal | Denied:
        if hello.token != "letmein":
            return Denied(ErrorCode.AUTH_INVALID, "bad token")
        return Principal(user="verified", claims={"role": "write"})

    def on_join(self, principal: Principal, room: str) -> Denied | None:
        self.calls.append(f"join {room}")
        return Denied(ErrorCode.FORBIDDEN, "no") if room.startswith("secret") else None

    def on_leave(self, principal: Principal, room: str) -> None:
        self.calls.append(f"leave {room}")

    def on_write(
        self, principal: Principal, room: str, ops: Sequence[Op], now: float
    ) -> Denied | None:
        if room.startswith("ro"):
            return Denied(ErrorCode.FORBIDDEN, "read-only")
        if room.startswith("slow"):
            return Denied(ErrorCode.RATE_LIMITED, "slow down")
        return None

    def on_presence(self, principal: Principal, room: str, now: float) -> Denied | None:
        return Denied(ErrorCode.RATE_LIMITED, "too chatty", CloseCode.RATE_LIMITED)

    def on_close(self, principal: Principal | None, address: str | None) -> None:
        self.calls.append(f"close {principal.user if principal else None} {address}")
        self.closed.set()


async def test_policy_decides_hello_join_write_presence(relay_factory: RelayFactory) -> None:
    """Denials become the documented error, reject or close; allowed work goes through."""
    policy = StrictPolicy()
    relay = await relay_factory(policy=policy)
    refused = await RawClient.connect(relay.url, hello=False)
    await refused.send(Hello(PROTOCOL_VERSION, token="wrong"))
    assert (await refused.expect(Error)).code == "auth_invalid"
    assert await refused.closed() == 4003  # a denied hello closes (AUTH_INVALID by default)
    await asyncio.wait_for(policy.closed.wait(), TIMEOUT)
    assert policy.calls == ["close None 127.0.0.1"]  # released, though it never got a principal
    policy.calls.clear()
    policy.closed.clear()

    client = await RawClient.connect(relay.url, hello=False)
    await client.send(Hello(PROTOCOL_VERSION, token="letmein", user="claimed"))
    await client.recv()  # welcome
    await client.join("ro")
    await client.join("slow")
    _, joined = await client.join("open", presence={"a": 1})
    await client.send(Join("secret"))
    error = await client.expect(Error)
    assert (error.code, error.ref, error.room) == ("forbidden", "join", "secret")
    await client.op("ro", 1, SetOp("k", value=1))
    reject = await client.expect(Reject)
    assert (reject.code, reject.client_seq) == ("forbidden", 1)
    await client.op("slow", 1, IncrementOp("n"))
    reject = await client.expect(Reject)  # final: the client rolls it back and is told why
    assert (reject.code, reject.client_seq) == ("rate_limited", 1)
    await client.op("open", 1, IncrementOp("n"))
    assert (await client.ack()).version == 1
    await client.send(Leave("open"))
    await client.send(PresenceMessage("ro", {"x": 1}))
    assert (await client.expect(Error)).code == "rate_limited"
    assert await client.closed() == 4008
    await asyncio.wait_for(policy.closed.wait(), TIMEOUT)
    assert policy.calls[:5] == ["join ro", "join slow", "join open", "join secret", "leave open"]
    assert policy.calls[-1] == "close verified 127.0.0.1"
    assert joined.version == 0


async def test_policy_refuses_origin_and_connection(relay_factory: RelayFactory) -> None:
    """check_request refuses the handshake (403); on_connect closes before hello (1008)."""
    policy = StrictPolicy()
    relay = await relay_factory(policy=policy)
    with pytest.raises(InvalidStatus) as refused:
        await connect(relay.url, origin=Origin("https://evil.example"))
    assert refused.value.response.status_code == 403

    def full(address: str | None) -> Denied | None:
        return Denied(ErrorCode.LIMIT_EXCEEDED, "too many connections")

    policy.on_connect = full  # type: ignore[method-assign]
    client = await RawClient.connect(relay.url, hello=False)
    assert (await client.expect(Error)).code == "limit_exceeded"
    assert await client.closed() == 1008
