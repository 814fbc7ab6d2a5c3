"""Shared fixtures: real relays on loopback, on free ports (never a fixed port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from livewidgets.relay import Relay

RelayFactory = Callable[..., Awaitable[Relay]]


@pytest.fixture
async def relay_factory() -> AsyncIterator[RelayFactory]:
    """Start relays with custom options (``await relay_factory(snapshot_every=10)``).

    Each one listens on 127.0.0.1, port 0, and is stopped when the test ends.
    """
    started: list[Relay] = []

    async def start(**options: Any) -> Relay:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        relay = Relay(**options)
        await relay.start()
        started.append(relay)
        return relay

    yield start
    for relay in reversed(started):
        await relay.stop()


@pytest.fixture
async def relay(relay_factory: RelayFactory) -> Relay:
    """A relay with default options and an in-memory store; ``relay.url`` to connect."""
    return await relay_factory()
