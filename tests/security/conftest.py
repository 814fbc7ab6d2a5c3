"""Security test fixtures: a relay with the token policy (SecurityPolicy) on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from livewidgets.relay import Relay
from livewidgets.relay.security import Limits, SecurityPolicy

from ..conftest import RelayFactory
from ..relay.conftest import prefix  # noqa: F401 - Redis key prefixes for these tests too
from ..relay.helpers import RawClient
from .helpers import SECRET


@pytest.fixture(autouse=True)
async def _abort_leftover_clients(relay_factory: RelayFactory) -> AsyncIterator[None]:
    """Drop raw connections a test left open (e.g. when it failed half-way, or stopped
    reading on purpose), before the relays stop: a graceful stop would wait for them."""
    yield
    clients, RawClient.opened[:] = list(RawClient.opened), []
    for client in clients:
        client.ws.transport.abort()
        await client.ws.wait_closed()


@pytest.fixture
async def secure_relay_factory(relay_factory: RelayFactory) -> Any:
    """``await secure_relay_factory(limits=Limits(...), allow_origins=..., allow_hosts=...,
    **relay_options)``:
    a relay that checks tokens signed with the suite's SECRET."""

    async def start(
        *,
        limits: Limits | None = None,
        allow_origins: tuple[str, ...] = (),
        allow_hosts: tuple[str, ...] = (),
        **options: Any,
    ) -> Relay:
        policy = SecurityPolicy(
            SECRET, allow_origins=allow_origins, allow_hosts=allow_hosts, limits=limits
        )
        return await relay_factory(policy=policy, **options)

    return start


@pytest.fixture
async def secure_relay(secure_relay_factory: Any) -> Relay:
    """A relay with token auth and default limits."""
    relay: Relay = await secure_relay_factory()
    return relay
