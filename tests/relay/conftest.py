"""Relay test fixtures (the shared ``relay`` fixtures live in tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from .helpers import REDIS_URL, RawClient


@pytest.fixture(autouse=True)
async def _abort_leftover_clients() -> AsyncIterator[None]:
    """Drop connections a test left open (e.g. when it failed half-way)."""
    yield
    clients, RawClient.opened[:] = list(RawClient.opened), []
    for client in clients:
        client.ws.transport.abort()
        await client.ws.wait_closed()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"lwtest-{uuid.uuid4().hex}"
    yield prefix
    redis = Redis.from_url(REDIS_URL)
    keys = [key async for key in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
