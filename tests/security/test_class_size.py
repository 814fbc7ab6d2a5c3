"""A class fits: 1,000 connections from one address join one room on a relay with the
default limits, 1,000 behind a trusted proxy count one address each, and a forwarding
header from anyone else is ignored (docs/security.md "Connection limits")."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Sequence
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from livewidgets.relay import Relay
from livewidgets.relay.security import Limits, SecurityPolicy

from ..conftest import RelayFactory
from ..relay.helpers import RawClient

CLASS = 1000
# Every step of a join is bounded by RawClient's TIMEOUT; the whole class by this.
CLASS_TIMEOUT = 120.0


@pytest.fixture(autouse=True)
def _enough_file_descriptors() -> None:
    """Relay and clients share this process: 2 descriptors per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * CLASS + 512
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the file descriptor limit ({hard}) is too low for {CLASS} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def join_class(url: str, headers: Sequence[dict[str, str] | None]) -> list[RawClient]:
    """Connect, hello and join "lesson" once per entry of ``headers`` (extra request
    headers for that connection), 50 at a time; every one must get its joined."""
    gate = asyncio.Semaphore(50)

    async def one(extra: dict[str, str] | None) -> RawClient:
        async with gate:
            options: dict[str, Any] = {"additional_headers": extra} if extra else {}
            client = await RawClient.connect(url, **options)
            await client.join("lesson")
            return client

    return await asyncio.wait_for(asyncio.gather(*(one(extra) for extra in headers)), CLASS_TIMEOUT)


async def close_all(clients: list[RawClient]) -> None:
    for client in clients:
        client.ws.transport.abort()


@pytest.mark.timeout(180)
async def test_a_class_from_one_address_joins_with_default_limits(
    relay_factory: RelayFactory,
) -> None:
    """No secret, so every connection is anonymous and counts for 127.0.0.1: with
    the default limits (what `livewidgets relay` runs) all 1,000 join one room."""
    relay = await relay_factory(policy=SecurityPolicy(None, limits=Limits()))
    clients = await join_class(relay.url, [None] * CLASS)
    try:
        # Every one got its joined (join_class), and all are still connected.
        assert len(clients) == CLASS
        assert relay.health()["connections"] == CLASS
    finally:
        await close_all(clients)


@pytest.mark.timeout(180)
async def test_a_class_behind_a_trusted_proxy_counts_one_address_each(
    relay_factory: RelayFactory,
) -> None:
    """Through a trusted proxy, each student's forwarded address counts on its own:
    with one connection allowed per address, 1,000 students (X-Forwarded-For, or
    Forwarded) all join, and a student's second connection is refused by address."""
    policy = SecurityPolicy(None, limits=Limits(max_connections_per_ip=1))
    relay: Relay = await relay_factory(policy=policy, trust_proxies=["127.0.0.0/8"])
    headers = [
        {"X-Forwarded-For": f"203.0.113.7, 10.1.{i // 250}.{i % 250 + 1}"}
        if i % 2
        else {"Forwarded": f'for="10.1.{i // 250}.{i % 250 + 1}:5{i:04d}";proto=https'}
        for i in range(CLASS)
    ]
    clients = await join_class(relay.url, headers)
    try:
        assert relay.health()["connections"] == CLASS
        with pytest.raises(InvalidStatus) as refused:
            await RawClient.connect(relay.url, additional_headers=headers[1], hello=False)
        assert refused.value.response.status_code == 429
        assert b"from 10.1.0.2 (limit 1)" in refused.value.response.body
    finally:
        await close_all(clients)


async def test_an_untrusted_forwarding_header_is_ignored(relay_factory: RelayFactory) -> None:
    """A client that is not a trusted proxy cannot pick its address: with one
    connection per address, a second one from 127.0.0.1 is refused however it
    claims to come from elsewhere (no proxy trusted, or a proxy elsewhere trusted)."""
    for trusted in ([], ["10.0.0.0/8"]):
        policy = SecurityPolicy(None, limits=Limits(max_connections_per_ip=1))
        relay: Relay = await relay_factory(policy=policy, trust_proxies=trusted)
        first = await RawClient.connect(
            relay.url, additional_headers={"X-Forwarded-For": "1.1.1.1"}
        )
        for forged in ({"X-Forwarded-For": "2.2.2.2"}, {"Forwarded": "for=3.3.3.3"}):
            with pytest.raises(InvalidStatus) as refused:
                await RawClient.connect(relay.url, additional_headers=forged, hello=False)
            assert refused.value.response.status_code == 429
            assert b"from 127.0.0.1 (limit 1)" in refused.value.response.body
        await first.close()
