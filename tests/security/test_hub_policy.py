"""The JupyterHub policy's own logic (relay.hub_auth) and the kernel's Hub discovery
(livewidgets.hub). The Hub itself is real in tests/jupyter/test_hub.py; here a table
of tokens stands in for its answers so each rule is checked on its own."""

from __future__ import annotations

import pytest

from livewidgets.auth import Role, issue_token
from livewidgets.cli import main
from livewidgets.hub import hub_service
from livewidgets.protocol import Hello
from livewidgets.protocol.codes import CloseCode, ErrorCode
from livewidgets.relay.hub_auth import HubPolicy, HubRoles, HubUser
from livewidgets.relay.policy import Denied, Principal, RemoteAuthority

from .helpers import SECRET


class TokenTable:
    """The Hub's answers, as HubIdentities gives them: token -> user (or None)."""

    api_url = "http://127.0.0.1:1/hub/api"

    def __init__(self, users: dict[str, HubUser]) -> None:
        self.users = users
        self.asked: list[tuple[str, bool]] = []

    async def identify(self, token: str, *, use_cache: bool = True) -> HubUser | None:
        self.asked.append((token, use_cache))
        return self.users.get(token)


ALICE = HubUser("alice", frozenset({"teachers", "staff"}))
BOB = HubUser("bob", frozenset({"class-1"}))


def policy(**options: object) -> tuple[HubPolicy, TokenTable]:
    table = TokenTable({"t-alice": ALICE, "t-bob": BOB, "t-bob-2": BOB})
    roles = HubRoles.parse(["teachers=admin", "guests=read"])
    return HubPolicy(table, roles, **options), table  # type: ignore[arg-type]


async def hello(p: HubPolicy, token: str | None, user: str = "") -> Principal | Denied:
    if token is not None:
        await p.verify(token)
    return p.on_hello(Hello(protocol=1, token=token, user=user), None)


def test_roles_from_hub_groups() -> None:
    roles = HubRoles.parse(["teachers=admin", "assistants=write"], default="read")
    assert roles.role_of(ALICE) is Role.ADMIN
    assert roles.role_of(BOB) is Role.READ
    assert roles.role_of(HubUser("root", admin=True)) is Role.ADMIN
    assert HubRoles({}, hub_admins=False).role_of(HubUser("root", admin=True)) is Role.WRITE
    for bad in ("teachers", "=admin", "teachers=owner"):
        with pytest.raises(ValueError):
            HubRoles.parse([bad])


async def test_the_hub_says_who_connects_and_the_groups_say_the_role() -> None:
    p, _ = policy()
    assert isinstance(p, RemoteAuthority)
    alice = await hello(p, "t-alice", user="mallory")  # the hello's user is ignored
    assert isinstance(alice, Principal)
    assert (alice.user, alice.claims["role"]) == ("alice", "admin")
    assert alice.claims["groups"] == ("staff", "teachers")
    bob = await hello(p, "t-bob")
    assert isinstance(bob, Principal) and bob.claims["role"] == "write"
    assert bob.claims["client_scope"] != alice.claims["client_scope"]


async def test_unknown_missing_and_unverified_tokens_are_refused() -> None:
    p, _ = policy()
    unknown = await hello(p, "t-nobody")
    assert isinstance(unknown, Denied) and unknown.code is ErrorCode.AUTH_INVALID
    assert unknown.close is CloseCode.AUTH_INVALID
    missing = await hello(p, None)
    assert isinstance(missing, Denied) and missing.code is ErrorCode.AUTH_REQUIRED
    # A token the relay never asked the Hub about (verify not awaited) is refused too.
    skipped = p.on_hello(Hello(protocol=1, token="t-alice"), None)
    assert isinstance(skipped, Denied)


async def test_a_token_the_hub_drops_is_closed_at_the_next_recheck() -> None:
    p, table = policy()
    bob = await hello(p, "t-bob")
    assert isinstance(bob, Principal) and p.revoked(bob) is None
    assert await p.recheck() is False
    assert ("t-bob", False) in table.asked  # rechecks skip the cache
    del table.users["t-bob"]
    assert await p.recheck() is True
    denied = p.revoked(bob)
    assert isinstance(denied, Denied) and denied.close is CloseCode.REVOKED
    assert await p.recheck() is False  # said once


async def test_tokens_are_forgotten_when_no_connection_holds_them() -> None:
    p, table = policy()
    first, second = await hello(p, "t-bob"), await hello(p, "t-bob")
    assert isinstance(first, Principal) and isinstance(second, Principal)
    p.on_close(first, "127.0.0.1")
    table.asked.clear()
    await p.recheck()
    assert table.asked == [("t-bob", False)]  # still held by the second
    p.on_close(second, "127.0.0.1")
    table.asked.clear()
    await p.recheck()
    assert table.asked == []


async def test_renewal_keeps_the_user() -> None:
    p, _ = policy()
    bob = await hello(p, "t-bob")
    assert isinstance(bob, Principal)
    await p.verify("t-bob-2")
    renewed = p.on_renew(bob, "t-bob-2", ["r"])
    assert isinstance(renewed, Principal) and renewed.user == "bob"
    await p.verify("t-alice")
    other = p.on_renew(renewed, "t-alice", ["r"])
    assert isinstance(other, Denied) and other.code is ErrorCode.FORBIDDEN


async def test_livewidgets_tokens_and_links_still_work_with_a_secret() -> None:
    p, table = policy(secret=SECRET)
    token = issue_token(SECRET, user="carol", room="r", role="read")
    carol = await hello(p, token)
    assert isinstance(carol, Principal) and carol.user == "carol"
    assert all(asked != token for asked, _ in table.asked)  # never sent to the Hub
    no_secret, _ = policy()
    refused = await hello(no_secret, token)
    assert isinstance(refused, Denied)  # without a secret only the Hub vouches


def test_the_kernel_finds_the_service_behind_the_hub_proxy() -> None:
    env = {"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_PUBLIC_HUB_URL": "https://hub.example.org/hub/"}
    found = hub_service(env)
    assert found is not None
    assert (found.url, found.token) == ("wss://hub.example.org/services/livewidgets/", "t")
    env |= {"JUPYTERHUB_BASE_URL": "/jh/", "LIVEWIDGETS_HUB_SERVICE": "lw"}
    found = hub_service(env)
    assert found is not None and found.url == "wss://hub.example.org/jh/services/lw/"
    plain = {"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_PUBLIC_URL": "http://127.0.0.1:8000/user/a/"}
    found = hub_service(plain)
    assert found is not None and found.url == "ws://127.0.0.1:8000/services/livewidgets/"
    assert hub_service({"JUPYTERHUB_API_TOKEN": "t"}) is None  # no public URL: not found
    assert hub_service({"JUPYTERHUB_PUBLIC_URL": "http://h/"}) is None  # not on a Hub


def test_relay_hub_needs_the_service_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    assert main(["relay", "--hub", "--port", "0", "--store", "memory://"]) == 1
    assert "JUPYTERHUB_API_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "x")
    assert main(["relay", "--hub", "--hub-role", "teachers", "--store", "memory://"]) == 1
    assert "GROUP=ROLE" in capsys.readouterr().err
