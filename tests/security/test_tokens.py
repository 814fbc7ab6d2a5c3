"""Authentication: who gets past hello, and how a refusal looks on the wire
(docs/security.md "Tokens", docs/protocol.md "Errors" and "Close codes")."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

import livewidgets.asyncio
from livewidgets.auth import issue_token, relay_proof, verify_relay_proof
from livewidgets.protocol import (
    PROTOCOL_VERSION,
    Error,
    Hello,
    Join,
    PresenceUpdate,
    SetOp,
    Welcome,
)
from livewidgets.relay import Relay
from livewidgets.relay.security import SecurityPolicy

from ..conftest import RelayFactory
from ..relay.helpers import TIMEOUT, RawClient
from .helpers import SECRET, admitted, assert_serves, hello, token


async def refused(relay: Relay, tok: str | None, **options: object) -> tuple[str, int | None]:
    """Hello with ``tok``: the error code of the answer and the close code that follows."""
    client, answer = await hello(relay.url, tok, **options)  # type: ignore[arg-type]
    assert isinstance(answer, Error), f"expected an error, got {answer!r}"
    assert answer.ref == "hello"
    return answer.code, await client.closed()


async def test_no_token_is_refused(secure_relay: Relay) -> None:
    """A relay with a secret answers a tokenless hello with auth_required and closes 4003."""
    assert await refused(secure_relay, None) == ("auth_required", 4003)
    await assert_serves(secure_relay.url, token())


async def test_bad_signature_is_refused(secure_relay: Relay) -> None:
    """A token signed with another secret is auth_invalid, 4003."""
    forged = issue_token(b"not-the-relay-secret-but-long-enough!", user="ada", room="*")
    assert await refused(secure_relay, forged) == ("auth_invalid", 4003)
    await assert_serves(secure_relay.url, token())


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"alg": "none"}, id="alg-none"),
        pytest.param({"role": "superuser"}, id="unknown-role"),
        pytest.param({"drop": "exp"}, id="no-expiry"),
        pytest.param({"drop": "room"}, id="no-room"),
        pytest.param({"sub": ""}, id="empty-user"),
    ],
)
async def test_malformed_tokens_are_refused(secure_relay: Relay, claims: dict[str, str]) -> None:
    """Unsigned (alg none), unknown role, missing exp/room, empty user: auth_invalid, 4003."""
    payload: dict[str, object] = {
        "sub": "ada",
        "room": "*",
        "role": "admin",
        "iat": int(time.time()),
        "exp": int(time.time()) + 3600,
        "jti": "x",
    }
    if "drop" in claims:
        del payload[claims["drop"]]
    payload.update({k: v for k, v in claims.items() if k not in ("alg", "drop")})
    if claims.get("alg") == "none":
        forged = jwt.encode(payload, "", algorithm="none")
    else:
        forged = jwt.encode(payload, SECRET, algorithm="HS256")
    assert await refused(secure_relay, forged) == ("auth_invalid", 4003)
    for garbage in ("", "x", "a.b.c", "Bearer " + token()):
        code, close = await refused(secure_relay, garbage or None)
        assert (code, close) in {("auth_invalid", 4003), ("auth_required", 4003)}
    await assert_serves(secure_relay.url, token())


async def test_expired_token_is_refused(secure_relay: Relay) -> None:
    """A token past its exp is auth_expired and closes 4004 (refresh, then reconnect)."""
    stale = issue_token(SECRET, user="ada", room="*", ttl=60, now=time.time() - 3600)
    assert await refused(secure_relay, stale) == ("auth_expired", 4004)
    await assert_serves(secure_relay.url, token())


async def test_token_for_another_room_is_forbidden(secure_relay: Relay) -> None:
    """A room glob admits only matching rooms: others are a forbidden error, nothing joined."""
    client = await admitted(secure_relay.url, token("class-101/*"))
    _, joined = await client.join("class-101/poll")
    assert joined.room == "class-101/poll"
    for outside in ("class-102/poll", "class-101", "other"):
        await client.send(Join(outside))
        error = await client.expect(Error)
        assert (error.code, error.ref, error.room) == ("forbidden", "join", outside)
    # Still usable, and the refused rooms were never loaded.
    await client.op("class-101/poll", 1, SetOp("q", value=1))
    assert (await client.ack()).version == 1
    assert "class-102/poll" not in secure_relay.rooms and "other" not in secure_relay.rooms
    await assert_serves(secure_relay.url, token("class-101/*"), room="class-101/probe")


async def test_bearer_header_is_accepted(secure_relay: Relay) -> None:
    """A token in ``Authorization: Bearer`` admits a hello that carries none."""
    client = await admitted(
        secure_relay.url,
        None,
        additional_headers={"Authorization": f"Bearer {token(user='grace')}"},
    )
    _, joined = await client.join("room")
    assert joined.version == 0
    # A bad bearer token is refused like a bad hello.token.
    forged = issue_token(b"another-secret-another-secret-123", user="x", room="*")
    code, close = await refused(
        secure_relay, None, additional_headers={"Authorization": f"Bearer {forged}"}
    )
    assert (code, close) == ("auth_invalid", 4003)


async def test_token_in_url_query_is_not_accepted(secure_relay: Relay) -> None:
    """``?token=...`` (or ``?access_token=``) in the URL is ignored: auth_required, 4003."""
    good = token()
    for query in (f"/?token={good}", f"/?access_token={good}", f"/{good}"):
        client = await RawClient.connect(secure_relay.url + query, hello=False)
        await client.send(Hello(PROTOCOL_VERSION))
        error = await client.expect(Error)
        assert error.code == "auth_required"
        assert await client.closed() == 4003
    await assert_serves(secure_relay.url, good)


async def test_user_comes_from_the_token(secure_relay: Relay) -> None:
    """hello.user cannot impersonate: presence is stamped with the token's subject."""
    observer = await admitted(secure_relay.url, token(user="observer"))
    await observer.join("room")
    mallory = await admitted(secure_relay.url, token(user="mallory"), user="teacher")
    await mallory.join("room", presence={"name": "teacher", "user": "teacher"})
    state = (await observer.expect(PresenceUpdate)).states[mallory.client_id]
    assert state is not None and state["user"] == "mallory"
    assert state["name"] == "teacher"  # display names are the client's to choose


async def test_relay_without_secret_admits_everyone(relay_factory: RelayFactory) -> None:
    """Without a secret (loopback default) no token is needed and hello.user is believed."""
    relay = await relay_factory(policy=SecurityPolicy(None))
    client, answer = await hello(relay.url, None, user="anyone")
    assert isinstance(answer, Welcome)
    await client.close()


# --- the relay proves itself (hello.nonce -> welcome.proof) ---------------------------


async def test_welcome_proves_the_secret_only_when_asked(
    secure_relay: Relay, relay_factory: RelayFactory
) -> None:
    """With a nonce, welcome.proof is the HMAC of it under the relay's secret; without
    a nonce, or from a relay without a secret, there is no proof."""
    nonce = "a-nonce-of-sixteen-or-more"
    client = await RawClient.connect(secure_relay.url, hello=False)
    await client.send(Hello(PROTOCOL_VERSION, token=token(), nonce=nonce))
    welcome = await client.expect(Welcome)
    assert welcome.proof == relay_proof(SECRET, nonce)
    assert verify_relay_proof(SECRET, nonce, welcome.proof)
    assert not verify_relay_proof(SECRET, nonce + "x", welcome.proof)
    assert not verify_relay_proof(b"another secret of 32 bytes......", nonce, welcome.proof)
    await client.close()
    plain = await admitted(secure_relay.url, token())
    assert plain.welcome is not None and plain.welcome.proof is None
    await plain.close()
    open_relay = await relay_factory()
    anyone = await RawClient.connect(open_relay.url, hello=False)
    await anyone.send(Hello(PROTOCOL_VERSION, nonce=nonce))
    assert (await anyone.expect(Welcome)).proof is None
    await anyone.close()


async def test_a_short_nonce_is_an_invalid_hello(secure_relay: Relay) -> None:
    """A nonce shorter than 16 characters cannot be a real challenge: refused."""
    client = await RawClient.connect(secure_relay.url, hello=False)
    await client.send(Hello(PROTOCOL_VERSION, token=token(), nonce="short"))
    answer = await client.recv()
    assert isinstance(answer, Error) and answer.code == "hello_required"
    await client.close()


async def test_a_client_refuses_a_relay_that_cannot_prove_itself(
    secure_relay: Relay,
) -> None:
    """The engine's verify_relay decides: the right secret joins; a relay holding
    another secret is refused before anything but hello was sent (relay_unverified)."""
    url, room = secure_relay.url, "proof"
    ok = await livewidgets.asyncio.connect(
        url,
        room,
        "ada",
        token(),
        timeout=5,
        verify_relay=lambda n, p: verify_relay_proof(SECRET, n, p),
    )
    await ok.close()
    unverified = asyncio.Event()
    wrong = await livewidgets.asyncio.connect(
        url,
        room,
        "ada",
        token(),
        wait=False,
        verify_relay=lambda n, p: verify_relay_proof(b"x" * 32, n, p),
    )
    # Registered before the first handshake can finish (no await since connect).
    wrong.on("error", lambda e: unverified.set() if e.get("code") == "relay_unverified" else None)
    await asyncio.wait_for(unverified.wait(), TIMEOUT)
    assert secure_relay.metrics.value("livewidgets_joins_total", mode="snapshot") == 1
    await wrong.close()


def test_link_and_token_ids_never_look_like_options() -> None:
    """`livewidgets revoke --link ID` and `%livewidgets revoke --link ID` parse the id
    as a value only if it does not start with "-" (one random id in 64 did)."""
    from livewidgets.auth import issue_token, new_link_id, verify_token

    assert not any(new_link_id().startswith("-") for _ in range(2000))
    ids = [
        verify_token(SECRET, issue_token(SECRET, user="u", room="r")).token_id for _ in range(500)
    ]
    assert not any(i.startswith("-") for i in ids)
