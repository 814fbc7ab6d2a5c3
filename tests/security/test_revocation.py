"""Revoking links and tokens on real relays (docs/security.md "Revocation").

Live connections of a revoked link or token are told (``auth_revoked``) and closed
with 4006; new ones are refused the same way; everyone else is untouched. The
denylist lives in the store: it survives an SQLite relay's restart, and with Redis a
revocation made on one relay closes connections on the other.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from livewidgets import cli
from livewidgets.auth import Role, issue_link_token, verify_token
from livewidgets.jupyter import extension
from livewidgets.protocol import CloseCode, Error, IncrementOp, Welcome
from livewidgets.relay import Relay
from livewidgets.relay.security import SecurityPolicy
from livewidgets.relay.store.redis import RedisStore
from livewidgets.revoke import RevokeError, revoke_async

from ..conftest import RelayFactory
from ..relay.helpers import REDIS_URL, TIMEOUT, RawClient, redis_available
from .helpers import SECRET, ack_for, admitted, hello, token

ADMIN = token("class", Role.ADMIN, user="teacher")


async def _joined(url: str, tok: str, client_id: str, user: str = "") -> RawClient:
    client = await admitted(url, tok, client_id=client_id, user=user)
    await client.join("class", presence={})
    return client


async def _closed_as_revoked(client: RawClient) -> None:
    """The relay says why, then closes with 4006."""
    _, error = await client.recv_until(Error)
    assert error.code == "auth_revoked" and "revoked by an admin" in error.message
    assert await client.closed() == CloseCode.REVOKED


async def _refused(url: str, tok: str) -> None:
    client, answer = await hello(url, tok, client_id="late")
    assert isinstance(answer, Error) and answer.code == "auth_revoked", answer
    assert await client.closed() == CloseCode.REVOKED


async def _still_served(client: RawClient, seq: int) -> None:
    await client.op("class", seq, IncrementOp("n"))
    await ack_for(client, "class", seq)


async def test_revoking_a_link_closes_its_people_and_refuses_newcomers(
    secure_relay: Relay,
) -> None:
    link, link_id = issue_link_token(SECRET, room="class", role="write", ttl=600)
    other_link, _ = issue_link_token(SECRET, room="class", role="write", ttl=600)
    holders = [await _joined(secure_relay.url, link, f"h{i}", f"s{i}") for i in range(3)]
    bystander = await _joined(secure_relay.url, other_link, "b1", "b")
    ada = await _joined(secure_relay.url, token("class", user="ada"), "a1")

    answer = await revoke_async(secure_relay.url, "class", ADMIN, link=link_id)
    assert (answer.link, answer.token_id, answer.closed) == (link_id, None, 3)
    for client in holders:
        await _closed_as_revoked(client)
    await _refused(secure_relay.url, link)
    # Another link and a personal token are untouched, on their open connections.
    await _still_served(bystander, 1)
    await _still_served(ada, 1)
    assert isinstance((await hello(secure_relay.url, other_link, client_id="b2"))[1], Welcome)


async def test_revoking_a_token_id_closes_only_that_token(secure_relay: Relay) -> None:
    revoked_token = token("class", user="ada")
    jti = verify_token(SECRET, revoked_token).token_id
    ada = await _joined(secure_relay.url, revoked_token, "a1")
    ada_again = await _joined(secure_relay.url, token("class", user="ada"), "a2")

    answer = await revoke_async(secure_relay.url, "class", ADMIN, token_id=jti)
    assert (answer.token_id, answer.closed) == (jti, 1)
    await _closed_as_revoked(ada)
    await _refused(secure_relay.url, revoked_token)
    await _still_served(ada_again, 1)  # ada's other token still works


async def test_only_admins_revoke_and_only_within_their_rooms(secure_relay: Relay) -> None:
    link, link_id = issue_link_token(SECRET, room="class", role="write", ttl=600)
    holder = await _joined(secure_relay.url, link, "h1")
    writer = token("class", Role.WRITE, user="ada")
    with pytest.raises(RevokeError, match="forbidden: admin role required") as refused:
        await revoke_async(secure_relay.url, "class", writer, link=link_id)
    assert refused.value.code == "forbidden"
    # The admin of another room may record it, but it does not reach this room's link.
    elsewhere = token("other", Role.ADMIN, user="someone")
    answer = await revoke_async(secure_relay.url, "other", elsewhere, link=link_id)
    assert answer.closed == 0
    await _still_served(holder, 1)
    assert isinstance((await hello(secure_relay.url, link, client_id="h2"))[1], Welcome)


async def test_the_cli_and_the_magic_revoke(
    relay_factory: RelayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``livewidgets revoke URL --link`` signs a relay-wide admin token with the secret
    ($LIVEWIDGETS_SECRET); ``%livewidgets revoke`` one for the kernel's room."""
    secret = "s" * 40
    monkeypatch.setenv("LIVEWIDGETS_SECRET", secret)
    relay = await relay_factory(policy=SecurityPolicy(secret.encode()))
    link, link_id = issue_link_token(secret.encode(), room="class", role="read", ttl=600)
    holder = await _joined(relay.url, link, "h1")
    status = await asyncio.to_thread(cli.main, ["revoke", relay.url, "--link", link_id])
    assert status == 0
    await _closed_as_revoked(holder)

    monkeypatch.setenv("LIVEWIDGETS_URL", relay.url)
    monkeypatch.setenv("LIVEWIDGETS_ROOM", "class")
    second, second_id = issue_link_token(secret.encode(), room="class", role="read", ttl=600)
    holder = await _joined(relay.url, second, "h2")
    text = await asyncio.to_thread(extension.revoke, link=second_id)
    assert text == f"livewidgets: revoked link {second_id}; closed 1 connection(s) on this relay"
    await _closed_as_revoked(holder)


async def test_revocations_survive_an_sqlite_relay_restart(
    relay_factory: RelayFactory, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'rooms.db'}"
    link, link_id = issue_link_token(SECRET, room="class", role="write", ttl=600)
    first = await relay_factory(store=store, policy=SecurityPolicy(SECRET))
    await revoke_async(first.url, "class", ADMIN, link=link_id)
    await first.stop()
    second = await relay_factory(store=store, policy=SecurityPolicy(SECRET))
    await _refused(second.url, link)


@pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")
@pytest.mark.parametrize("live", [True, False], ids=["pubsub", "poll"])
async def test_a_revocation_on_one_relay_closes_connections_on_the_other(
    relay_factory: RelayFactory, live: bool
) -> None:
    """Two relays on one Redis: revoke on one, the other closes its holders (4006) and
    refuses new ones. Without the live notice (``poll``: the other relay's pub/sub
    loses it), within the store's poll interval."""
    prefix = f"lwtest-{uuid.uuid4().hex}"
    stores = [RedisStore(REDIS_URL, prefix=prefix, poll_interval=0.2) for _ in range(2)]
    if not live:
        stores[1]._published = lambda message: None  # type: ignore[method-assign]
    one = await relay_factory(store=stores[0], policy=SecurityPolicy(SECRET))
    two = await relay_factory(store=stores[1], policy=SecurityPolicy(SECRET))
    try:
        link, link_id = issue_link_token(SECRET, room="class", role="write", ttl=600)
        holders = [await _joined(two.url, link, f"h{i}") for i in range(2)]
        ada = await _joined(two.url, token("class", user="ada"), "a1")
        answer = await revoke_async(one.url, "class", ADMIN, link=link_id)
        assert answer.closed == 0  # nobody on relay one
        loop = asyncio.get_running_loop()
        started = loop.time()
        for client in holders:
            await _closed_as_revoked(client)
        # Live: at once; polled: within the poll interval (0.2 s), with slack for CI.
        assert loop.time() - started < (0.5 if live else 1.0) + TIMEOUT / 10
        await _refused(two.url, link)
        await _still_served(ada, 1)
    finally:
        for relay in (one, two):
            await relay.stop()
        for store in stores:
            await store.close()
        redis = Redis.from_url(REDIS_URL)
        keys = [key async for key in redis.scan_iter(f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
