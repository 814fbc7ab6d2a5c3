"""Token renewal on the relay, sans-I/O: RelayProtocol's auth / authed actions, and
SecurityPolicy.on_renew deciding which new tokens a connection may take."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from websockets.http11 import Request

from livewidgets.auth import Role, issue_token
from livewidgets.protocol import SetOp
from livewidgets.protocol.codes import CloseCode, ErrorCode
from livewidgets.protocol.messages import (
    PROTOCOL_VERSION,
    Auth,
    Authed,
    Error,
    Hello,
    Join,
    Welcome,
)
from livewidgets.relay.policy import AllowAll, Denied, Principal
from livewidgets.relay.security import Limits, SecurityPolicy
from livewidgets.relay.session import Close, ExpireAt, Register, RelayProtocol, Reply, State

SECRET = b"s" * 32
NOW = 1_000_000.0  # the relay's Unix clock in these tests


@dataclass(eq=False)
class Member:
    client_id: str = ""
    user: str = ""


@dataclass
class Policy(AllowAll):
    """Hello admits ``ann`` until ``expires``; on_renew answers ``renew`` (recorded)."""

    expires: float | None = NOW + 100.0
    renew: Principal | Denied | None = None
    renewed_expires: float | None = NOW + 300.0
    calls: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def on_hello(self, hello: Hello, request: Request | None) -> Principal | Denied:
        return Principal("ann", {"v": 1})

    def on_renew(
        self, principal: Principal, token: str, rooms: Sequence[str]
    ) -> Principal | Denied:
        self.calls.append((principal.user, token, list(rooms)))
        return self.renew if self.renew is not None else Principal("ann", {"v": 2})

    def expires_at(self, principal: Principal) -> float | None:
        return self.expires if principal.claims.get("v") == 1 else self.renewed_expires


def welcome(client_id: str, connection_id: str, nonce: str | None = None) -> Welcome:
    return Welcome(PROTOCOL_VERSION, client_id, connection_id, "test", {"max_delta": 5})


def opened(policy: AllowAll, max_invalid_frames: int = 3) -> RelayProtocol[Member]:
    protocol = RelayProtocol(
        Member(),
        policy,
        connection_id="conn",
        welcome=welcome,
        max_invalid_frames=max_invalid_frames,
        clock=lambda: NOW,
    )
    protocol.connect("10.0.0.1")
    protocol.receive(Hello(PROTOCOL_VERSION, client_id="c1"), 0.0)
    protocol.receive(Join("room"), 0.0)
    return protocol


# --- RelayProtocol ------------------------------------------------------------------------


def test_welcome_states_the_lifetime_relative_to_now() -> None:
    """An expiring token: the welcome's limits carry expires_in; the deadline is set."""
    p = RelayProtocol(
        Member(),
        Policy(),
        connection_id="conn",
        welcome=welcome,
        max_invalid_frames=3,
        clock=lambda: NOW,
    )
    actions = p.receive(Hello(PROTOCOL_VERSION, client_id="c1"), 0.0)
    limits = {"max_delta": 5, "expires_in": 100.0}
    assert actions == [
        Register("c1", "ann"),
        Reply(Welcome(PROTOCOL_VERSION, "c1", "conn", "test", limits, user="ann", role="admin")),
        ExpireAt(NOW + 100.0),
    ]


def test_a_welcome_without_expiry_states_none() -> None:
    """No expiry (no secret): the welcome's limits are the relay's, and no deadline."""
    p = RelayProtocol(
        Member(), AllowAll(), connection_id="conn", welcome=welcome, max_invalid_frames=3
    )
    actions = p.receive(Hello(PROTOCOL_VERSION, client_id="c1"), 0.0)
    expected = Welcome(PROTOCOL_VERSION, "c1", "conn", "test", {"max_delta": 5}, role="admin")
    assert actions == [Register("c1", ""), Reply(expected)]


def test_accepted_auth_moves_the_deadline_and_answers_authed() -> None:
    """The policy's new principal replaces the old; the deadline moves; authed says when."""
    policy = Policy()
    p = opened(policy)
    assert p.receive(Auth("t2"), 1.0) == [ExpireAt(NOW + 300.0), Reply(Authed(300.0))]
    assert policy.calls == [("ann", "t2", ["room"])]
    assert p.principal == Principal("ann", {"v": 2})
    assert p.state is State.OPEN and p.user == "ann"


def test_auth_without_expiry_clears_the_deadline() -> None:
    """A relay that checks no token answers authed without expires_in: no deadline."""
    p = opened(AllowAll())
    assert p.receive(Auth("anything"), 1.0) == [ExpireAt(None), Reply(Authed())]


def test_refused_auth_is_an_error_and_the_old_principal_holds() -> None:
    """A denial is answered with an error naming auth; no deadline moves; still open."""
    denied = Denied(ErrorCode.FORBIDDEN, "the new token is for user 'bob'")
    p = opened(Policy(renew=denied))
    before = p.principal
    assert p.receive(Auth("bob"), 1.0) == [
        Reply(Error("forbidden", "the new token is for user 'bob'", "auth"))
    ]
    assert p.principal is before and p.state is State.OPEN


def test_refused_auths_count_toward_the_invalid_frames_close() -> None:
    """A stream of refused auths closes the connection with 4012 like invalid frames."""
    p = opened(Policy(renew=Denied(ErrorCode.AUTH_INVALID, "bad")), max_invalid_frames=3)
    assert p.receive(Auth("x"), 1.0) == [Reply(Error("auth_invalid", "bad", "auth"))]
    p.receive(Auth("x"), 1.1)
    assert p.receive(Auth("x"), 1.2)[-1] == Close(
        CloseCode.TOO_MANY_ERRORS, "too many invalid frames"
    )


def test_a_denial_that_closes_closes() -> None:
    """A policy may end the connection over an auth (close set on its denial)."""
    denied = Denied(ErrorCode.AUTH_INVALID, "revoked", CloseCode.AUTH_INVALID)
    p = opened(Policy(renew=denied))
    assert p.receive(Auth("x"), 1.0) == [
        Reply(Error("auth_invalid", "revoked", "auth")),
        Close(CloseCode.AUTH_INVALID, "auth_invalid: revoked"),
    ]
    assert p.state is State.CLOSING


def test_auth_before_hello_is_refused_with_4000() -> None:
    """auth is not a first frame."""
    p = RelayProtocol(
        Member(), Policy(), connection_id="conn", welcome=welcome, max_invalid_frames=3
    )
    actions = p.receive(Auth("t"), 0.0)
    assert actions[-1] == Close(
        CloseCode.HELLO_REQUIRED, "hello_required: the first frame must be hello, not auth"
    )


def test_auth_after_expiry_is_ignored() -> None:
    """Once the deadline fired the connection is closing: a late auth changes nothing."""
    p = opened(Policy())
    p.expire()
    assert p.receive(Auth("t2"), 1.0) == []


# --- SecurityPolicy.on_renew --------------------------------------------------------------


def tok(
    user: str = "ann",
    room: str = "class/*",
    role: Role = Role.WRITE,
    ttl: float = 60,
    secret: bytes = SECRET,
    issued: float | None = None,
) -> str:
    return issue_token(secret, user=user, room=room, role=role, ttl=ttl, now=issued)


def admitted(policy: SecurityPolicy, token: str, *rooms: str) -> Principal:
    principal = policy.on_hello(Hello(PROTOCOL_VERSION, token=token), None)
    assert isinstance(principal, Principal)
    for room in rooms:
        assert policy.on_join(principal, room) is None
    return principal


def test_same_user_gets_the_new_token_with_its_role_and_expiry() -> None:
    """A reader's renewal with a write token: writes pass from then on; exp moves."""
    policy = SecurityPolicy(SECRET)
    reader = admitted(policy, tok(role=Role.READ, ttl=60), "class/a")
    assert isinstance(policy.on_write(reader, "class/a", [SetOp("k", 1)], 0.0), Denied)
    renewed = policy.on_renew(reader, tok(role=Role.WRITE, ttl=7200), ["class/a"])
    assert isinstance(renewed, Principal) and renewed.user == "ann"
    assert policy.on_write(renewed, "class/a", [SetOp("k", 1)], 0.0) is None
    before, after = policy.expires_at(reader), policy.expires_at(renewed)
    assert before is not None and after is not None and after - before >= 7000


def test_another_users_token_is_forbidden() -> None:
    policy = SecurityPolicy(SECRET)
    ann = admitted(policy, tok(), "class/a")
    denied = policy.on_renew(ann, tok(user="bob"), ["class/a"])
    assert denied == Denied(
        ErrorCode.FORBIDDEN,
        "the new token is for user 'bob', this connection is user 'ann': "
        "another user needs a connection of their own",
    )


def test_a_token_that_drops_a_joined_room_is_forbidden() -> None:
    policy = SecurityPolicy(SECRET)
    ann = admitted(policy, tok(room="class/*"), "class/a", "class/b")
    denied = policy.on_renew(ann, tok(room="class/a"), ["class/a", "class/b"])
    assert denied == Denied(
        ErrorCode.FORBIDDEN,
        "the new token does not admit room 'class/b', joined on this connection",
    )


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (tok(ttl=60, issued=time.time() - 120), ErrorCode.AUTH_EXPIRED),
        (tok(secret=b"x" * 32), ErrorCode.AUTH_INVALID),
        ("not-a-jwt", ErrorCode.AUTH_INVALID),
    ],
    ids=["expired", "other-secret", "malformed"],
)
def test_invalid_new_tokens_are_refused_with_their_code(token: str, code: ErrorCode) -> None:
    policy = SecurityPolicy(SECRET)
    ann = admitted(policy, tok(), "class/a")
    denied = policy.on_renew(ann, token, ["class/a"])
    assert isinstance(denied, Denied) and denied.code is code and denied.close is None


def test_the_connections_counts_follow_the_new_principal() -> None:
    """Room counts (and buckets) carry over: the room stays full, and closing with the
    new principal frees it."""
    policy = SecurityPolicy(SECRET, limits=Limits(max_connections_per_room=1))
    ann = admitted(policy, tok(), "class/a")
    renewed = policy.on_renew(ann, tok(ttl=120), ["class/a"])
    assert isinstance(renewed, Principal)
    other = admitted(policy, tok())
    assert isinstance(policy.on_join(other, "class/a"), Denied)  # still counted
    policy.on_close(renewed, None)
    assert policy.on_join(other, "class/a") is None  # released through the new one


def test_without_a_secret_nothing_changes() -> None:
    policy = SecurityPolicy(None)
    anyone = policy.on_hello(Hello(PROTOCOL_VERSION, user="zed"), None)
    assert isinstance(anyone, Principal)
    assert policy.on_renew(anyone, "whatever", []) is anyone
    assert policy.expires_at(anyone) is None
