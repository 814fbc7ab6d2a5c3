"""Share links and revocation without sockets: link tokens, the identities of their
holders, the denylist and its scopes, and the policy and session decisions on them."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from livewidgets.auth import (
    Role,
    TokenError,
    is_link_user,
    issue_link_token,
    issue_token,
    verify_token,
)
from livewidgets.protocol import (
    PROTOCOL_VERSION,
    Admin,
    CloseCode,
    ErrorCode,
    Hello,
    IncrementOp,
    Welcome,
)
from livewidgets.relay.links import link_identity
from livewidgets.relay.policy import Denied, Principal
from livewidgets.relay.revocation import Denylist, Revocation, RevokeKind, covers
from livewidgets.relay.security import SecurityPolicy
from livewidgets.relay.session import Close, RelayProtocol, Reply, Revoke
from livewidgets.relay.store.memory import MemoryStore
from livewidgets.relay.store.sqlite import SQLiteStore

from .helpers import SECRET, token

# --- link tokens --------------------------------------------------------------------


def test_a_link_token_names_a_link_not_a_user() -> None:
    """issue_link_token signs lid (no sub), room, role and expiry; verify reads them back."""
    link, link_id = issue_link_token(SECRET, room="class-1", role="write", ttl=600)
    claims = verify_token(SECRET, link)
    assert (claims.link_id, claims.user) == (link_id, None)
    assert (claims.room, claims.role) == ("class-1", Role.WRITE)
    assert claims.token_id and claims.expires_at > 0
    # A personal token is unchanged: a user, no link.
    personal = verify_token(SECRET, token("class-1", user="ada"))
    assert (personal.user, personal.link_id) == ("ada", None)


def test_link_ids_are_fresh_unless_given() -> None:
    _, first = issue_link_token(SECRET, room="r")
    _, second = issue_link_token(SECRET, room="r")
    _, chosen = issue_link_token(SECRET, room="r", link_id="lesson-3")
    assert first != second and chosen == "lesson-3"
    with pytest.raises(ValueError, match="invalid link id"):
        issue_link_token(SECRET, room="r", link_id="no spaces")


def test_a_token_with_both_or_neither_of_sub_and_lid_is_refused() -> None:
    base = {"room": "r", "role": "read", "exp": 2**40, "jti": "j1"}
    for extra in ({}, {"sub": "ada", "lid": "L1"}):
        forged = jwt.encode({**base, **extra}, SECRET, algorithm="HS256")
        with pytest.raises(TokenError, match="exactly one of sub"):
            verify_token(SECRET, forged)


def test_personal_tokens_cannot_take_the_names_reserved_for_link_holders() -> None:
    """So that a link holder's name is never mistaken for a user with their own token."""
    assert is_link_user("ada (guest)") and is_link_user("guest-004211")
    assert not is_link_user("guest") and not is_link_user("ada") and not is_link_user("guest-x")
    with pytest.raises(ValueError, match="reserved for link holders"):
        issue_token(SECRET, user="ada (guest)", room="r")
    with pytest.raises(ValueError, match="reserved for link holders"):
        issue_token(SECRET, user="guest-12", room="r")


# --- identities of link holders ---------------------------------------------------------


def test_each_holder_gets_an_identity_of_their_own() -> None:
    ada = link_identity(SECRET, "L1", "ada", "c-ada")
    grace = link_identity(SECRET, "L1", "grace", "c-grace")
    assert (ada.user, grace.user) == ("ada (guest)", "grace (guest)")
    assert ada.client_id != grace.client_id
    # Two people giving the same name are still two clients.
    other_ada = link_identity(SECRET, "L1", "ada", "c-other")
    assert other_ada.user == ada.user and other_ada.client_id != ada.client_id


def test_a_holder_keeps_their_identity_across_reconnects_and_relays() -> None:
    """Derived from the secret, the link and the asked-for client id: nothing to remember,
    the same on every relay sharing the secret."""
    first = link_identity(SECRET, "L1", "", "c-1")
    again = link_identity(SECRET, "L1", "", "c-1")
    assert first == again
    assert first.user.startswith("guest-") and len(first.user) == len("guest-") + 6
    assert is_link_user(first.user)
    # Another link, or another secret, gives another identity.
    assert link_identity(SECRET, "L2", "", "c-1").client_id != first.client_id
    assert link_identity(b"x" * 32, "L1", "", "c-1").client_id != first.client_id


def test_nameless_guests_are_numbered_apart() -> None:
    names = {link_identity(SECRET, "L1", "", f"c-{i}").user for i in range(30)}
    assert len(names) == 30


def test_a_client_without_an_id_gets_a_fresh_identity_each_time() -> None:
    assert link_identity(SECRET, "L1", "", None) != link_identity(SECRET, "L1", "", None)


def test_link_client_ids_hide_the_asked_id_and_never_meet_personal_ones() -> None:
    """Personal tokens' client ids are '<12 lowercase hex>.<asked>'; a link holder's is
    'L' + an HMAC: no holder can ask for an id that lands in someone else's."""
    identity = link_identity(SECRET, "L1", "ada", "victim-id")
    assert identity.client_id.startswith("L") and "victim-id" not in identity.client_id
    assert len(identity.client_id) <= 64


def test_names_are_cleaned_and_bounded() -> None:
    assert link_identity(SECRET, "L1", "  ada \n lovelace\x00 ", "c").user == (
        "ada lovelace (guest)"
    )
    assert link_identity(SECRET, "L1", "x" * 300, "c").user == "x" * 64 + " (guest)"
    # Only whitespace or control characters: a guest.
    assert link_identity(SECRET, "L1", " \x07 ", "c").user.startswith("guest-")


# --- the policy: hello with a link ------------------------------------------------------


def _hello(tok: str, user: str = "", client_id: str | None = "c-1") -> Hello:
    return Hello(PROTOCOL_VERSION, client_id=client_id, user=user, token=tok)


def _principal(policy: SecurityPolicy, hello: Hello) -> Principal:
    granted = policy.on_hello(hello, None)
    assert isinstance(granted, Principal), granted
    return granted


def test_hello_with_a_link_gives_the_holders_identity() -> None:
    policy = SecurityPolicy(SECRET)
    link, link_id = issue_link_token(SECRET, room="class-1", role="write")
    ada = _principal(policy, _hello(link, "ada", "c-ada"))
    guest = _principal(policy, _hello(link, "", "c-guest"))
    assert ada.user == "ada (guest)" and guest.user.startswith("guest-")
    assert ada.client_id == link_identity(SECRET, link_id, "ada", "c-ada").client_id
    assert ada.claims["link_id"] == link_id and ada.claims["room"] == "class-1"
    # Own rate buckets: one per holder, none shared with a personal user.
    assert len({ada.claims["owner"], guest.claims["owner"]}) == 2
    personal = _principal(policy, _hello(token("class-1", user="ada (guest)x")))
    assert personal.client_id is None and personal.claims["owner"] == "user:ada (guest)x"


def test_link_holders_have_separate_rate_buckets() -> None:
    """One holder over the rate is slowed; another holder of the same link is not."""
    policy = SecurityPolicy(SECRET)
    link, _ = issue_link_token(SECRET, room="r", role="write")
    ada = _principal(policy, _hello(link, "ada", "c-ada"))
    grace = _principal(policy, _hello(link, "grace", "c-grace"))
    ops = [IncrementOp("n")] * int(policy.limits.ops_burst)
    assert policy.on_write(ada, "r", ops, 0.0) is None
    assert policy.on_write(ada, "r", [IncrementOp("n")], 0.0) is not None  # slowed
    assert policy.on_write(grace, "r", ops, 0.0) is None
    assert policy.remembered_users() == 2


# --- the denylist -------------------------------------------------------------------------


def test_scopes_cover_plain_rooms_within_them_and_identical_globs() -> None:
    assert covers("*", "anything") and covers("*", "class-*")
    assert covers("class-1", "class-1") and covers("class-*", "class-1")
    assert covers("class-*", "class-*")
    assert not covers("class-1", "class-2") and not covers("class-1", "class-*")
    assert not covers("a?", "a*")  # a glob claim is covered only by itself or *


def test_the_denylist_matches_by_kind_id_and_scope() -> None:
    denylist = Denylist()
    link = Revocation(RevokeKind.LINK, "L1", "class-1", 1.0)
    jti = Revocation(RevokeKind.TOKEN, "T1", "*", 2.0)
    assert denylist.add([link, jti]) == [link, jti]
    assert denylist.add([Revocation(RevokeKind.LINK, "L1", "class-1", 9.0)]) == []
    assert len(denylist) == 2
    assert denylist.match("other", "L1", "class-1") == link
    assert denylist.match("other", "L1", "class-2") is None  # outside the revoker's scope
    assert denylist.match("T1", None, "anything") == jti
    assert denylist.match("T2", None, "class-1") is None
    # A token id is not a link id.
    assert denylist.match("L1", None, "class-1") is None


def test_a_revoked_link_or_token_is_refused_at_hello() -> None:
    policy = SecurityPolicy(SECRET)
    link, link_id = issue_link_token(SECRET, room="r", role="write")
    personal = token("r", user="ada")
    jti = verify_token(SECRET, personal).token_id
    assert policy.add_revoked([Revocation(RevokeKind.LINK, link_id, "r", 0.0)])
    denied = policy.on_hello(_hello(link, "ada"), None)
    assert denied == Denied(
        ErrorCode.AUTH_REVOKED, "this link was revoked by an admin", CloseCode.REVOKED
    )
    assert isinstance(policy.on_hello(_hello(personal), None), Principal)
    policy.add_revoked([Revocation(RevokeKind.TOKEN, jti, "*", 0.0)])
    denied = policy.on_hello(_hello(personal), None)
    assert isinstance(denied, Denied) and denied.close == CloseCode.REVOKED
    # Another token of the same user is not revoked.
    assert isinstance(policy.on_hello(_hello(token("r", user="ada")), None), Principal)


def test_on_revoke_needs_an_admin_of_the_room_and_takes_their_scope() -> None:
    policy = SecurityPolicy(SECRET)
    admin = _principal(policy, _hello(token("class-*", Role.ADMIN, user="teacher")))
    writer = _principal(policy, _hello(token("class-*", Role.WRITE, user="ada")))
    made = policy.on_revoke(admin, "class-1", RevokeKind.LINK, "L1")
    assert isinstance(made, Revocation)
    assert (made.kind, made.id, made.scope) == (RevokeKind.LINK, "L1", "class-*")
    refused = policy.on_revoke(writer, "class-1", RevokeKind.LINK, "L1")
    assert refused == Denied(ErrorCode.FORBIDDEN, "admin role required")
    outside = policy.on_revoke(admin, "other", RevokeKind.LINK, "L1")
    assert isinstance(outside, Denied) and "does not admit room 'other'" in outside.message
    # Without a secret there are no tokens, so nothing to revoke.
    open_policy = SecurityPolicy(None)
    anyone = _principal(open_policy, _hello("ignored"))
    assert isinstance(open_policy.on_revoke(anyone, "r", RevokeKind.LINK, "L1"), Denied)


# --- the session: the admin message ---------------------------------------------------------


def _session(policy: SecurityPolicy, tok: str) -> RelayProtocol[object]:
    def welcome(client_id: str, connection_id: str, nonce: str | None) -> Welcome:
        return Welcome(PROTOCOL_VERSION, client_id, connection_id, "test")

    session: RelayProtocol[object] = RelayProtocol(
        object(), policy, connection_id="x", welcome=welcome, max_invalid_frames=16
    )
    session.connect(None)
    session.receive(_hello(tok, "ada", "c-1"), 0.0)
    return session


def test_the_session_uses_the_link_holders_client_id() -> None:
    policy = SecurityPolicy(SECRET)
    link, link_id = issue_link_token(SECRET, room="r")
    session = _session(policy, link)
    assert session.client_id == link_identity(SECRET, link_id, "ada", "c-1").client_id
    assert session.user == "ada (guest)"


def test_revoke_needs_exactly_one_target_and_no_join() -> None:
    policy = SecurityPolicy(SECRET)
    session = _session(policy, token("r", Role.ADMIN, user="teacher"))
    (action,) = session.receive(Admin("r", "revoke", link="L1"), 1.0)
    assert isinstance(action, Revoke) and action.room == "r"
    assert (action.revocation.kind, action.revocation.id) == (RevokeKind.LINK, "L1")
    (reply,) = session.receive(Admin("r", "revoke", link="L1", token_id="T1"), 1.0)
    assert isinstance(reply, Reply) and reply.message.code == "invalid_message"
    (reply,) = session.receive(Admin("r", "revoke"), 1.0)
    assert isinstance(reply, Reply) and "exactly one of link and token_id" in reply.message.message


def test_a_revoked_session_is_told_and_closed_with_4006() -> None:
    policy = SecurityPolicy(SECRET)
    link, link_id = issue_link_token(SECRET, room="r")
    session = _session(policy, link)
    policy.add_revoked([Revocation(RevokeKind.LINK, link_id, "r", 0.0)])
    assert session.principal is not None
    denied = policy.revoked(session.principal)
    assert denied is not None
    reply, close = session.revoked(denied)
    assert isinstance(reply, Reply) and reply.message.code == "auth_revoked"
    assert close == Close(CloseCode.REVOKED, f"auth_revoked: {denied.message}")
    assert session.revoked(denied) == []  # already closing


# --- stores --------------------------------------------------------------------------------


async def test_stores_keep_revocations_once(tmp_path: Path) -> None:
    """Memory and SQLite: recorded once however often, and SQLite's survive a reopen."""
    path = str(tmp_path / "rooms.db")
    first = Revocation(RevokeKind.LINK, "L1", "class-*", 1.5)
    second = Revocation(RevokeKind.TOKEN, "T1", "*", 2.5)
    for store in (MemoryStore(), SQLiteStore(path)):
        await store.revoke(first)
        await store.revoke(first)
        await store.revoke(second)
        assert sorted(await store.revocations(), key=lambda r: r.id) == [first, second]
        await store.close()
    reopened = SQLiteStore(path)
    assert sorted(await reopened.revocations(), key=lambda r: r.id) == [first, second]
    await reopened.close()
