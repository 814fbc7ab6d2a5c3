"""Fixtures for client tests: a proxy in front of the relay, sessions that clean up,
and a relay + proxy on a background loop for the threaded (sync) facade."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

import livewidgets
from livewidgets.client import AsyncSession, Session, connect_async
from livewidgets.relay import Relay

from .helpers import FAST, TIMEOUT
from .proxy import Proxy

T = TypeVar("T")

Connect = Callable[..., Awaitable[AsyncSession]]


@pytest.fixture
async def proxy(relay: Relay) -> AsyncIterator[Proxy]:
    """A fault-injecting proxy in front of the ``relay`` fixture."""
    async with Proxy(relay.host, relay.port) as proxy:
        yield proxy


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """``await connect(url, room="room", **options)``: an AsyncSession with FAST options,
    closed when the test ends."""
    sessions: list[AsyncSession] = []

    async def open_session(url: str, room: str = "room", **options: Any) -> AsyncSession:
        options = {**FAST, **options}
        options.setdefault("timeout", TIMEOUT)
        session = await connect_async(url, room, **options)
        sessions.append(session)
        return session

    yield open_session
    for session in sessions:
        await session.close()


class Background:
    """A relay and a proxy on their own event loop thread (for the blocking facade)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-relay")
        self._thread.start()
        self.relay = Relay(host="127.0.0.1", port=0)
        self.run(self.relay.start())
        self.proxy = self.run(self._make_proxy())

    async def _make_proxy(self) -> Proxy:
        proxy = Proxy(self.relay.host, self.relay.port)
        await proxy.start()
        return proxy

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the background loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def call(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on the background loop (proxy controls) and return its result."""

        async def call() -> T:
            return fn()

        return self.run(call())

    def stop(self) -> None:
        self.run(self.proxy.stop())
        self.run(self.relay.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture
def background() -> Iterator[Background]:
    stack = Background()
    yield stack
    stack.stop()


@pytest.fixture
def sync_connect() -> Iterator[Callable[..., Session]]:
    """``sync_connect(url, room="room", **options)``: a blocking Session, closed at the end."""
    sessions: list[Session] = []

    def open_session(url: str, room: str = "room", **options: Any) -> Session:
        options = {**FAST, **options}
        options.setdefault("timeout", TIMEOUT)
        session = livewidgets.connect(url, room, **options)
        sessions.append(session)
        return session

    yield open_session
    for session in sessions:
        session.close()
