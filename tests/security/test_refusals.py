"""Every way a handshake is refused reaches the caller as a precise exception, within
1 s: permanent refusals raise ConnectionRefused at once (the reason, the limit, the
HTTP status or close code); transient ones are retried, named in the status events,
and connect(timeout=...) ends on time with a ConnectTimeout that says what it met
(docs/security.md "When a connection is refused")."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

import livewidgets
from livewidgets.client import connect_async
from livewidgets.errors import ConnectionRefused, ConnectTimeout, JoinRefused
from livewidgets.jupyter import extension
from livewidgets.relay import Relay
from livewidgets.relay.security import Limits, SecurityPolicy

from ..client.helpers import FAST, Recorder
from ..conftest import RelayFactory
from .helpers import SECRET, admitted, token

# Every refusal must be known within this long (the issue's bound).
WITHIN = 1.0
# connect(timeout=...) for transient refusals: inside WITHIN, with room to spare.
SHORT = 0.6


async def refused_at_once(url: str, **options: Any) -> tuple[ConnectionRefused, float]:
    """connect_async with a generous timeout must raise ConnectionRefused within 1 s."""
    started = time.monotonic()
    with pytest.raises(ConnectionRefused) as refused:
        await connect_async(url, "room", timeout=5.0, **{**FAST, **options})
    elapsed = time.monotonic() - started
    assert elapsed < WITHIN, f"refused after {elapsed:.2f} s"
    return refused.value, elapsed


# --- transient: caps that free up --------------------------------------------------


async def test_per_address_cap_is_retried_and_named(relay_factory: RelayFactory) -> None:
    """The anonymous per-address cap (HTTP 429): connect() times out on time with a
    ConnectTimeout naming the reason and the limit; the reconnecting status says it."""
    relay = await relay_factory(
        policy=SecurityPolicy(None, limits=Limits(max_connections_per_ip=1))
    )
    holder = await admitted(relay.url)
    started = time.monotonic()
    with pytest.raises(ConnectTimeout) as timeout:
        await connect_async(relay.url, "room", timeout=SHORT, **FAST)
    assert time.monotonic() - started < SHORT + 0.2
    refusal = timeout.value.refusal
    assert refusal is not None and refusal.transient
    assert (refusal.reason, refusal.limit, refusal.status) == ("limit_exceeded", 1, 429)
    assert "too many anonymous connections from 127.0.0.1 (limit 1)" in str(timeout.value)
    assert isinstance(timeout.value, TimeoutError)  # old `except TimeoutError` still works
    # Meanwhile, the session's status said what it was waiting for.
    session = await connect_async(relay.url, "room", wait=False, **FAST)
    events = Recorder(session)
    try:
        await _until(lambda: any("message" in e for e in events.of("reconnecting")))
        [why, *_] = [e for e in events.of("reconnecting") if "message" in e]
        assert (why["reason"], why["limit"]) == ("limit_exceeded", 1)
        errors = [e for e in events.of("error") if e.get("during") == "connect"]
        assert errors and errors[0]["transient"] is True
        assert isinstance(errors[0]["error"], ConnectionRefused)
    finally:
        await session.close()
    await holder.close()
    # The cap freed up: the next connect joins.
    joined = await connect_async(relay.url, "room", timeout=5.0, **FAST)
    await joined.close()


async def test_per_user_cap_is_retried_and_named(secure_relay_factory: Any) -> None:
    """A user over their connection cap is refused at hello (close 1008): transient."""
    relay: Relay = await secure_relay_factory(limits=Limits(max_connections_per_user=1))
    holder = await admitted(relay.url, token(user="ada"))
    started = time.monotonic()
    with pytest.raises(ConnectTimeout) as timeout:
        await connect_async(relay.url, "room", token=token(user="ada"), timeout=SHORT, **FAST)
    assert time.monotonic() - started < WITHIN
    refusal = timeout.value.refusal
    assert refusal is not None
    assert (refusal.reason, refusal.limit, refusal.close_code) == ("limit_exceeded", 1, 1008)
    assert "too many connections for user 'ada' (limit 1)" in str(refusal)
    other = await connect_async(relay.url, "room", token=token(user="grace"), **FAST)
    await other.close()
    await holder.close()


async def test_relay_at_capacity_is_a_503_retried(relay_factory: RelayFactory) -> None:
    """The relay's connection capacity (its file descriptors): 503, transient."""
    relay = await relay_factory(max_connections=1)
    holder = await admitted(relay.url)
    with pytest.raises(ConnectTimeout) as timeout:
        await connect_async(relay.url, "room", timeout=SHORT, **FAST)
    refusal = timeout.value.refusal
    assert refusal is not None
    assert (refusal.reason, refusal.status, refusal.limit) == ("limit_exceeded", 503, 1)
    assert "at capacity" in refusal.message
    await holder.close()


async def test_nothing_listening_is_retried_and_named() -> None:
    """ECONNREFUSED: the relay may be starting; retried, and the timeout says so."""
    with socket_port() as port:
        url = f"ws://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(ConnectTimeout) as timeout:
        await connect_async(url, "room", timeout=SHORT, **FAST)
    assert time.monotonic() - started < WITHIN
    assert timeout.value.refusal is not None and timeout.value.refusal.reason == "unreachable"
    assert "connection refused" in str(timeout.value)


# --- permanent: fail at once ---------------------------------------------------------


async def test_room_full_raises_join_refused_with_the_limit(relay_factory: RelayFactory) -> None:
    relay = await relay_factory(
        policy=SecurityPolicy(None, limits=Limits(max_connections_per_room=1))
    )
    first = await connect_async(relay.url, "seminar", **FAST)
    started = time.monotonic()
    with pytest.raises(JoinRefused) as refused:
        await connect_async(relay.url, "seminar", timeout=5.0, **FAST)
    assert time.monotonic() - started < WITHIN
    assert (refused.value.code, refused.value.limit) == ("limit_exceeded", 1)
    assert "room 'seminar' is full (limit 1 connections)" in str(refused.value)
    await first.close()


async def test_host_refused_is_final(secure_relay_factory: Any) -> None:
    """A Host outside the allowlist (DNS rebinding protection): 403, never retried."""
    relay: Relay = await secure_relay_factory(allow_hosts=("relay.example.org",))
    error, _ = await refused_at_once(relay.url, token=token())
    assert (error.reason, error.status, error.transient) == ("forbidden", 403, False)
    assert f"host '127.0.0.1:{relay.port}' is not allowed" in str(error)


async def test_auth_refused_is_final(secure_relay: Relay) -> None:
    """No token, a forged token: auth_required / auth_invalid, close 4003, at once."""
    error, _ = await refused_at_once(secure_relay.url)
    assert (error.reason, error.close_code) == ("auth_required", 4003)
    assert "needs a token" in str(error)
    forged = token(secret=b"x" * 32)
    error, _ = await refused_at_once(secure_relay.url, token=forged)
    assert (error.reason, error.close_code) == ("auth_invalid", 4003)


async def test_tls_failure_is_final(relay_factory: RelayFactory, tmp_path: Path) -> None:
    """A certificate from a CA we do not trust: reason tls, at once."""
    ca = trustme.CA()
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    relay = await relay_factory(ssl=server_ssl)
    error, _ = await refused_at_once(relay.url, ssl=ssl.create_default_context())
    assert error.reason == "tls" and "certificate verify failed" in str(error)


async def test_bad_subprotocol_is_final(other_server: Callable[..., Awaitable[str]]) -> None:
    """A WebSocket server that speaks none of our encodings (a real websockets server
    for another protocol): 400, reason bad_subprotocol, at once."""
    url = await other_server("ws")
    error, _ = await refused_at_once(url)
    assert (error.reason, error.status) == ("bad_subprotocol", 400)


async def test_http_errors(other_server: Callable[..., Awaitable[str]]) -> None:
    """Something else answers HTTP: a 404 is final, a 503 (a relay restarting behind
    its proxy) is retried and named."""
    url = await other_server("http", 404, b"no such page")
    error, _ = await refused_at_once(url)
    assert (error.reason, error.status) == ("not_found", 404)
    assert "no such page" in str(error)
    url = await other_server("http", 503, b"")
    with pytest.raises(ConnectTimeout) as timeout:
        await connect_async(url, "room", timeout=SHORT, **FAST)
    refusal = timeout.value.refusal
    assert refusal is not None and (refusal.reason, refusal.status) == ("unavailable", 503)


# --- the other entry points: lw.connect, %livewidgets connect ------------------------


def test_threaded_connect_and_the_magic_raise_the_same(threaded_relay: str) -> None:
    """lw.connect (threads) and %livewidgets connect: permanent refusals raise
    ConnectionRefused at once; a cap reached ends on time, naming it."""
    started = time.monotonic()
    with pytest.raises(ConnectionRefused) as refused:
        livewidgets.connect(threaded_relay, "room", timeout=5.0, **FAST)
    assert time.monotonic() - started < WITHIN
    assert refused.value.reason == "auth_required"
    with pytest.raises(ConnectionRefused) as refused:
        extension.connect(threaded_relay, room="room", user="ada", timeout=5.0, **FAST)
    assert refused.value.close_code == 4003


def test_threaded_connect_and_the_magic_end_on_time_naming_a_transient_refusal() -> None:
    """Nothing listens: lw.connect(timeout=0.6) raises ConnectTimeout by its deadline
    (it used to wait timeout + 1 s, and 10 s more to close); %livewidgets connect's
    ConnectionError carries the same reason."""
    with socket_port() as port:
        url = f"ws://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(ConnectTimeout) as timeout:
        livewidgets.connect(url, "room", timeout=SHORT, **FAST)
    assert time.monotonic() - started < SHORT + 0.2
    assert "nothing listens at" in str(timeout.value)
    started = time.monotonic()
    with pytest.raises(ConnectionError) as wrapped:
        extension.connect(url, room="room", user="ada", timeout=SHORT, **FAST)
    assert time.monotonic() - started < SHORT + 0.2
    assert "connection refused" in str(wrapped.value)
    assert isinstance(wrapped.value.__cause__, ConnectTimeout)


@pytest.fixture
def threaded_relay() -> Any:
    """A relay with a secret on its own loop thread (the threaded facade blocks)."""
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    relay = Relay(policy=SecurityPolicy(SECRET))
    asyncio.run_coroutine_threadsafe(relay.start(), loop).result(5)
    try:
        yield relay.url
    finally:
        asyncio.run_coroutine_threadsafe(relay.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
async def other_server() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await other_server("ws")``: a websockets server for another subprotocol;
    ``await other_server("http", status, body)``: a server answering that HTTP status."""
    closers: list[Any] = []

    async def start(kind: str, status: int = 200, body: bytes = b"") -> str:
        if kind == "ws":

            async def echo(ws: ServerConnection) -> None:
                await ws.wait_closed()

            server: Any = await serve(echo, "127.0.0.1", 0, subprotocols=[Subprotocol("chat")])
        else:

            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.readuntil(b"\r\n\r\n")
                head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
                writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
                await writer.drain()
                writer.close()

            server = await asyncio.start_server(answer, "127.0.0.1", 0)
        closers.append(server)
        port = next(iter(server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    yield start
    for server in closers:
        server.close()
        await server.wait_closed()


class socket_port:
    """A port nothing listens on (bound, then released on exit)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


async def _until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)
