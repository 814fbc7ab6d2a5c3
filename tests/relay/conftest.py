"""Relay test fixtures (the shared ``relay`` fixtures live in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .helpers import RawClient


@pytest.fixture(autouse=True)
async def _abort_leftover_clients() -> AsyncIterator[None]:
    """Drop connections a test left open (e.g. when it failed half-way)."""
    yield
    clients, RawClient.opened[:] = list(RawClient.opened), []
    for client in clients:
        client.ws.transport.abort()
        await client.ws.wait_closed()
