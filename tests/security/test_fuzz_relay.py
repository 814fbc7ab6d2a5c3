"""Fuzzing the relay over real sockets: hostile frames never crash it, never reach its
error log, and never stop a well-behaved client in the same room from getting acks.

Each hypothesis example sends a few frames (spoiled protocol messages, mutated bytes,
nesting bombs, junk, frames of the wrong kind; see strategies.py) on a fuzzing
connection, reconnecting it when the relay closes it (as it may: 4000, 4008, 4012, ...),
and then checks that the observer's next op is acknowledged. ``LIVEWIDGETS_FUZZ_EXAMPLES``
scales the number of examples per test (default 300).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from livewidgets.protocol import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    PROTOCOL_VERSION,
    AckMessage,
    Hello,
    Join,
    Joined,
    OpMessage,
    SetOp,
    Welcome,
    client_codec,
)
from livewidgets.relay import Relay
from livewidgets.relay.security import Limits, SecurityPolicy

from ..relay.helpers import TIMEOUT
from .helpers import ErrorLog, LoopThread, error_log, report
from .strategies import ROOM, client_messages, frames

# No keepalive pings anywhere (ping_interval=None): websockets draws ping payloads from
# the global ``random``, which hypothesis, drawing on the main thread meanwhile, rightly
# reports as flaky.
EXAMPLES = int(os.environ.get("LIVEWIDGETS_FUZZ_EXAMPLES", "300"))
FRAMES_PER_EXAMPLE = 12


class Wire:
    """A bare protocol client (no RawClient: this one lives on the fuzzing loop thread)."""

    def __init__(self, ws: ClientConnection, subprotocol: str) -> None:
        self.ws = ws
        self.codec = client_codec(subprotocol)

    @classmethod
    async def open(cls, url: str, subprotocol: str, client_id: str | None = None) -> Wire:
        ws = await connect(
            url, subprotocols=[Subprotocol(subprotocol)], open_timeout=TIMEOUT, ping_interval=None
        )
        wire = cls(ws, subprotocol)
        # Rate limits follow the user: the observers must not share the fuzzer's.
        hello = Hello(PROTOCOL_VERSION, client_id=client_id, user=client_id or "observer")
        await ws.send(wire.codec.frame(hello))
        assert isinstance(await wire.recv(), Welcome)
        await ws.send(wire.codec.frame(Join(ROOM)))
        while not isinstance(await wire.recv(), Joined):
            pass
        return wire

    async def recv(self) -> object:
        return self.codec.decode(await asyncio.wait_for(self.ws.recv(), TIMEOUT))


@dataclass
class Fuzzer:
    """The fuzzing side: one connection per encoding, reopened whenever the relay closes it."""

    url: str
    subprotocol: str
    ws: ClientConnection | None = None
    drain: asyncio.Task[None] | None = None
    sent: int = 0
    examples: int = 0
    reconnects: int = 0
    closes: dict[int, int] = field(default_factory=dict)
    # Replies by "type:code" (how deep the frames got: acks and rejects mean past decoding).
    replies: dict[str, int] = field(default_factory=dict)

    async def connection(self, fresh: bool) -> ClientConnection:
        """A live connection; ``fresh``: one that has not sent hello yet."""
        if fresh or self.ws is None or self.ws.close_code is not None:
            await self.close()
            self.reconnects += 1
            sub = [Subprotocol(self.subprotocol)]
            self.ws = await connect(
                self.url, subprotocols=sub, open_timeout=TIMEOUT, ping_interval=None
            )
            if not fresh:
                codec = client_codec(self.subprotocol)
                await self.ws.send(codec.frame(Hello(PROTOCOL_VERSION, user="fuzzer")))
                await self.ws.send(codec.frame(Join(ROOM)))
            self.drain = asyncio.create_task(self._drain(self.ws))
        return self.ws

    async def _drain(self, ws: ClientConnection) -> None:
        """Read and drop every reply, so the relay never sees a slow consumer."""
        codec = client_codec(self.subprotocol)
        try:
            async for frame in ws:
                message = codec.decode(frame)
                key = f"{type(message).__name__}:{getattr(message, 'code', '')}".rstrip(":")
                self.replies[key] = self.replies.get(key, 0) + 1
        except ConnectionClosed:
            pass
        code = ws.close_code if ws.close_code is not None else 1006
        self.closes[code] = self.closes.get(code, 0) + 1

    async def send(self, batch: list[bytes | str], fresh: bool) -> None:
        self.examples += 1
        ws = await self.connection(fresh)
        for frame in batch:
            try:
                await ws.send(frame)
            except ConnectionClosed:
                ws = await self.connection(False)
            self.sent += 1

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.drain is not None:
            await asyncio.wait_for(self.drain, TIMEOUT)
            self.ws = self.drain = None


@dataclass
class Observer:
    """The well-behaved client in the fuzzed room: writes its own key, expects acks."""

    wire: Wire
    key: str = field(default_factory=lambda: f"observer-{uuid.uuid4().hex}")
    seq: int = 0

    async def check(self) -> AckMessage:
        self.seq += 1
        op = OpMessage(ROOM, self.seq, 0, SetOp(self.key, value=self.seq))
        await self.wire.ws.send(self.wire.codec.frame(op))
        while True:  # skip the fuzzer's broadcasts and presence
            message = await self.wire.recv()
            if isinstance(message, AckMessage) and message.client_seq == self.seq:
                return message
            assert not hasattr(message, "code"), f"observer refused: {message!r}"


@dataclass
class FuzzEnv:
    thread: LoopThread
    relay: Relay
    log: ErrorLog
    observers: dict[str, Observer]


@pytest.fixture(scope="module")
def fuzz_env() -> Iterator[FuzzEnv]:
    """A relay (token-free SecurityPolicy) on its own loop thread, with one
    observer per encoding joined to the fuzzed room. Its error log is captured throughout."""
    thread = LoopThread()
    # The observers write after every example (up to a few hundred a second): the op
    # bucket is raised so that they never are the ones rate limited.
    limits = Limits(ops_per_second=2000, ops_burst=4000)
    relay = Relay(policy=SecurityPolicy(None, limits=limits), close_timeout=1.0, ping_interval=None)
    with error_log() as log:
        thread.run(relay.start())
        observers = {
            sub: Observer(thread.run(Wire.open(relay.url, sub, f"observer-{uuid.uuid4().hex}")))
            for sub in (JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL)
        }
        yield FuzzEnv(thread, relay, log, observers)
        for observer in observers.values():
            thread.run(observer.wire.ws.close())
        thread.run(relay.stop())
    thread.close()


def run_fuzz(env: FuzzEnv, subprotocol: str, strategy: st.SearchStrategy[object]) -> Fuzzer:
    """Drive ``strategy`` (lists of frames) at the relay; check the observers after each."""
    fuzzer = Fuzzer(env.relay.url, subprotocol)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        batch=st.lists(strategy, min_size=1, max_size=FRAMES_PER_EXAMPLE),
        fresh=st.integers(0, 4).map(lambda n: n == 0),  # 1 in 5: fuzz the handshake too
    )
    def example(batch: list[bytes | str], fresh: bool) -> None:
        env.thread.run(fuzzer.send(batch, fresh))
        for observer in env.observers.values():
            env.thread.run(observer.check())
        assert env.log.messages() == []

    example()
    env.thread.run(fuzzer.close())
    assert env.log.messages() == []
    assert env.relay.health()["status"] == "ok"
    return fuzzer


def summary(what: str, fuzzer: Fuzzer) -> str:
    closes = ", ".join(f"{code}: {n}" for code, n in sorted(fuzzer.closes.items()))
    replies = ", ".join(f"{k} {n}" for k, n in sorted(fuzzer.replies.items()))
    return (
        f"[fuzz] {what}: {fuzzer.sent} frames in {fuzzer.examples} examples, "
        f"{fuzzer.reconnects} connections (closes {closes})\n       replies: {replies}"
    )


@pytest.mark.parametrize("subprotocol", [JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL])
def test_structured_frames(
    fuzz_env: FuzzEnv, subprotocol: str, request: pytest.FixtureRequest
) -> None:
    """Spoiled protocol messages: no crash, no relay error log, the observers keep acking."""
    fuzzer = run_fuzz(fuzz_env, subprotocol, frames(subprotocol, client_messages()))
    report(request.config, summary(f"relay, structured, {subprotocol}", fuzzer))


@pytest.mark.parametrize("subprotocol", [JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL])
def test_raw_frames(fuzz_env: FuzzEnv, subprotocol: str, request: pytest.FixtureRequest) -> None:
    """Raw strings and bytes, as either frame kind: same guarantees."""
    raw = st.one_of(st.text(max_size=300), st.binary(max_size=300))
    fuzzer = run_fuzz(fuzz_env, subprotocol, raw)
    report(request.config, summary(f"relay, raw, {subprotocol}", fuzzer))


def test_handshake_garbage(fuzz_env: FuzzEnv, request: pytest.FixtureRequest) -> None:
    """Odd subprotocol offers and bytes instead of an HTTP upgrade: refused, relay fine."""
    tried = 0

    async def attempt(offer: list[str], junk: bytes) -> None:
        nonlocal tried
        tried += 2
        try:
            ws = await connect(
                fuzz_env.relay.url, subprotocols=[Subprotocol(s) for s in offer], ping_interval=None
            )
            await ws.close()
        except (InvalidHandshake, ValueError):
            pass
        host, port = fuzz_env.relay.host, fuzz_env.relay.port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(junk)
        await writer.drain()
        await asyncio.wait_for(reader.read(), TIMEOUT)  # the relay answers or hangs up
        writer.close()
        await writer.wait_closed()

    token = st.text(
        st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=",;"),
        min_size=1,
        max_size=30,
    )

    @settings(max_examples=max(10, EXAMPLES // 5), deadline=None, database=None)
    @given(
        offer=st.lists(token, max_size=4),
        junk=st.binary(max_size=300).map(lambda b: b + b"\r\n\r\n"),
    )
    def example(offer: list[str], junk: bytes) -> None:
        fuzz_env.thread.run(attempt(offer, junk))
        for observer in fuzz_env.observers.values():
            fuzz_env.thread.run(observer.check())

    example()
    assert fuzz_env.log.messages() == []
    report(request.config, f"[fuzz] relay, handshakes: {tried} connection attempts")
