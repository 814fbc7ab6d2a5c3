"""RelayProtocol (sans-I/O): the exact actions each frame of a connection produces."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from websockets.http11 import Request

from livewidgets.protocol import SetOp
from livewidgets.protocol.codec import FrameError
from livewidgets.protocol.codes import CloseCode, ErrorCode
from livewidgets.protocol.messages import (
    PROTOCOL_VERSION,
    Admin,
    Batch,
    Error,
    Hello,
    Join,
    Leave,
    OpMessage,
    PresenceMessage,
    Welcome,
)
from livewidgets.relay.hub import JoinRoom, LeaveRoom, ResetRoom, SetPresence, Submit
from livewidgets.relay.policy import AllowAll, Denied, Principal, Slow
from livewidgets.relay.room import Rejected
from livewidgets.relay.session import (
    INVALID_WINDOW,
    TRANSITIONS,
    Close,
    Event,
    ExpireAt,
    Kick,
    PauseReading,
    Put,
    Register,
    RelayProtocol,
    Reply,
    State,
)
from livewidgets.state.ops import Op


@dataclass(eq=False)
class Member:
    client_id: str = ""
    user: str = ""


FORBIDDEN = Denied(ErrorCode.FORBIDDEN, "not for you")


@dataclass
class Policy(AllowAll):
    """AllowAll, but each hook answers what the test sets; records on_leave/on_close."""

    connect: Denied | None = None
    hello: Principal | Denied | None = None
    join: Denied | None = None
    write: Denied | Slow | None = None
    presence: Denied | Slow | None = None
    admin: Denied | None = None
    expires: float | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def on_connect(self, address: str | None) -> Denied | None:
        return self.connect

    def on_hello(self, hello: Hello, request: Request | None) -> Principal | Denied:
        return self.hello if self.hello is not None else Principal(user=hello.user)

    def on_join(self, principal: Principal, room: str) -> Denied | None:
        return self.join

    def on_leave(self, principal: Principal, room: str) -> None:
        self.calls.append(("leave", principal.user, room))

    def on_write(
        self, principal: Principal, room: str, ops: Sequence[Op], now: float
    ) -> Denied | Slow | None:
        return self.write

    def on_presence(self, principal: Principal, room: str, now: float) -> Denied | Slow | None:
        return self.presence

    def on_admin(self, principal: Principal, room: str) -> Denied | None:
        return self.admin

    def expires_at(self, principal: Principal) -> float | None:
        return self.expires

    def on_close(self, principal: Principal | None, address: str | None) -> None:
        self.calls.append(("close", principal.user if principal else None, address))


def welcome(client_id: str, connection_id: str, nonce: str | None = None) -> Welcome:
    return Welcome(PROTOCOL_VERSION, client_id, connection_id, "test", {}, nonce)


def welcomed(
    client_id: str, nonce: str | None = None, *, user: str = "", role: str = "admin"
) -> Welcome:
    """The welcome the client gets: the relay's, plus who it takes the client for (a
    principal without a role in its claims counts as an admin, as room rules see it)."""
    return msgspec.structs.replace(welcome(client_id, "conn", nonce), user=user, role=role)


def session(policy: Policy | None = None, max_invalid_frames: int = 3) -> RelayProtocol[Member]:
    protocol = RelayProtocol(
        Member(),
        policy or Policy(),
        connection_id="conn",
        welcome=welcome,
        max_invalid_frames=max_invalid_frames,
        make_id=lambda: "fresh",
    )
    assert protocol.connect("10.0.0.1") == []
    return protocol


def opened(policy: Policy | None = None, *rooms: str, **kwargs: Any) -> RelayProtocol[Member]:
    protocol = session(policy, **kwargs)
    protocol.receive(Hello(PROTOCOL_VERSION, client_id="c1", user="ann"), 0.0)
    for room in rooms:
        protocol.receive(Join(room), 0.0)
    return protocol


def error(code: ErrorCode, message: str, ref: str | None = None, room: str | None = None) -> Reply:
    return Reply(Error(code.value, message, ref, room))


OP = SetOp("k", value=1)


# --- hello -----------------------------------------------------------------------------


def test_hello_registers_welcomes_and_opens() -> None:
    """A valid hello: register the client id, answer welcome, state OPEN."""
    p = session()
    actions = p.receive(Hello(PROTOCOL_VERSION, client_id="c1", user="ann", nonce="n" * 16), 0.0)
    assert actions == [Register("c1", "ann"), Reply(welcomed("c1", "n" * 16, user="ann"))]
    assert p.state is State.OPEN and (p.client_id, p.user) == ("c1", "ann")


def test_hello_without_client_id_gets_a_fresh_one() -> None:
    """A hello with no client_id is given one."""
    actions = session().receive(Hello(PROTOCOL_VERSION), 0.0)
    assert actions == [Register("fresh", ""), Reply(welcomed("fresh"))]


def test_hello_with_bad_version_is_refused_with_4001() -> None:
    """An unsupported protocol version: protocol_version error, close 4001."""
    p = session()
    actions = p.receive(Hello(PROTOCOL_VERSION + 1), 0.0)
    detail = (
        f"protocol {PROTOCOL_VERSION + 1} is not supported; this relay speaks {PROTOCOL_VERSION}"
    )
    assert actions == [
        error(ErrorCode.PROTOCOL_VERSION, detail, "hello"),
        Close(CloseCode.PROTOCOL_VERSION, f"protocol_version: {detail}"),
    ]
    assert p.state is State.CLOSING


def test_hello_with_bad_token_is_refused_with_the_policy_close() -> None:
    """The policy refuses the token: its error, closed with 4003 when it names no code."""
    p = session(Policy(hello=Denied(ErrorCode.AUTH_INVALID, "bad signature")))
    assert p.receive(Hello(PROTOCOL_VERSION, token="t"), 0.0) == [
        error(ErrorCode.AUTH_INVALID, "bad signature", "hello"),
        Close(CloseCode.AUTH_INVALID, "auth_invalid: bad signature"),
    ]


def test_hello_with_expired_token_closes_with_4004() -> None:
    """An already expired token: auth_expired error and the policy's 4004."""
    expired = Denied(ErrorCode.AUTH_EXPIRED, "token expired", CloseCode.AUTH_EXPIRED)
    p = session(Policy(hello=expired))
    assert p.receive(Hello(PROTOCOL_VERSION, token="t"), 0.0) == [
        error(ErrorCode.AUTH_EXPIRED, "token expired", "hello"),
        Close(CloseCode.AUTH_EXPIRED, "auth_expired: token expired"),
    ]


def test_first_frame_not_hello_is_refused_with_4000() -> None:
    """A join before hello: hello_required, close 4000."""
    assert session().receive(Join("r"), 0.0) == [
        error(ErrorCode.HELLO_REQUIRED, "the first frame must be hello, not join", "join"),
        Close(CloseCode.HELLO_REQUIRED, "hello_required: the first frame must be hello, not join"),
    ]


def test_invalid_first_frame_and_hello_timeout_close_with_4000() -> None:
    """A first frame that fails to decode, or none in time: hello_required, 4000."""
    bad = FrameError(ErrorCode.BAD_FRAME, "malformed frame: x")
    detail = "the first frame must be a valid hello: malformed frame: x"
    assert session().invalid(bad, 0.0) == [
        error(ErrorCode.HELLO_REQUIRED, detail),
        Close(CloseCode.HELLO_REQUIRED, f"hello_required: {detail}"),
    ]
    assert session().hello_timeout() == [
        error(ErrorCode.HELLO_REQUIRED, "no hello received in time"),
        Close(CloseCode.HELLO_REQUIRED, "hello_required: no hello received in time"),
    ]


def test_connect_refused_by_policy_closes_with_1008() -> None:
    """on_connect denies: its error and close 1008; on_close is not owed."""
    policy = Policy(connect=Denied(ErrorCode.LIMIT_EXCEEDED, "too many"))
    p = RelayProtocol(Member(), policy, connection_id="c", welcome=welcome, max_invalid_frames=3)
    assert p.connect("10.0.0.1") == [
        error(ErrorCode.LIMIT_EXCEEDED, "too many"),
        Close(CloseCode.POLICY_VIOLATION, "limit_exceeded: too many"),
    ]
    assert p.connection_lost() == [] and policy.calls == []


def test_admission_refused_after_hello_closes_with_1008_and_releases_the_address() -> None:
    """on_admit denies (a per-user limit, known only once the principal is): the
    reason and its limit in the error and the close reason, and on_close releases the
    address the connection held, with no principal."""
    full = Denied(ErrorCode.LIMIT_EXCEEDED, "too many connections for user 'ada' (limit 2)")

    class Full(Policy):
        def on_admit(self, principal: Principal, address: str | None) -> Denied | None:
            return full

    policy = Full()
    p = RelayProtocol(Member(), policy, connection_id="c", welcome=welcome, max_invalid_frames=3)
    assert p.connect("10.0.0.1") == []
    assert p.receive(Hello(PROTOCOL_VERSION, user="ada"), 0.0) == [
        error(ErrorCode.LIMIT_EXCEEDED, full.message, "hello"),
        Close(CloseCode.POLICY_VIOLATION, f"limit_exceeded: {full.message}"),
    ]
    p.connection_lost()
    assert policy.calls == [("close", None, "10.0.0.1")]


def test_second_hello_is_an_error_only() -> None:
    """A hello on an open connection: hello_required error, stays open."""
    p = opened()
    assert p.receive(Hello(PROTOCOL_VERSION), 0.0) == [
        error(ErrorCode.HELLO_REQUIRED, "hello was already received", "hello")
    ]
    assert p.state is State.OPEN


# --- client_id scoping and expiry ------------------------------------------------------


def test_client_id_is_scoped_by_the_principal() -> None:
    """A principal with a client_scope claim gets its client ids prefixed."""
    policy = Policy(hello=Principal("ann", {"client_scope": "u-ann"}))
    actions = session(policy).receive(Hello(PROTOCOL_VERSION, client_id="c1"), 0.0)
    assert actions == [Register("u-ann.c1", "ann"), Reply(welcomed("u-ann.c1", user="ann"))]


def test_expiring_token_sets_a_deadline_then_closes_with_4004() -> None:
    """expires_at gives an ExpireAt; expire() then answers auth_expired and closes 4004."""
    p = session(Policy(expires=1234.5))
    actions = p.receive(Hello(PROTOCOL_VERSION, client_id="c1"), 0.0)
    assert actions[-1] == ExpireAt(1234.5)
    assert p.expire() == [
        error(ErrorCode.AUTH_EXPIRED, "the token expired; reconnect with a fresh one"),
        Close(CloseCode.AUTH_EXPIRED, "token expired"),
    ]
    assert p.state is State.CLOSING and p.expire() == []


# --- rooms -----------------------------------------------------------------------------


def test_join_pipelined_behind_hello_is_put_to_the_room() -> None:
    """A join read right after hello (no wait for welcome) becomes a JoinRoom."""
    p = session()
    p.receive(Hello(PROTOCOL_VERSION, client_id="c1"), 0.0)
    assert p.receive(Join("r", since=3, presence={"x": 1}, epoch="e"), 0.0) == [
        Put("r", JoinRoom(p.member, 3, {"x": 1}, "e"))
    ]
    assert list(p.rooms) == ["r"]


def test_join_refused_by_policy_is_an_error_and_not_joined() -> None:
    """on_join denies: its error with ref join; the room is not joined."""
    p = opened(Policy(join=FORBIDDEN))
    assert p.receive(Join("r"), 0.0) == [error(ErrorCode.FORBIDDEN, "not for you", "join", "r")]
    assert p.rooms == {}


def test_join_twice_is_an_invalid_message() -> None:
    """Joining a room already joined on the connection: invalid_message."""
    p = opened(None, "r")
    detail = "room 'r' is already joined on this connection"
    assert p.receive(Join("r"), 0.0) == [error(ErrorCode.INVALID_MESSAGE, detail, "join", "r")]


def test_leave_tells_the_policy_and_the_room() -> None:
    """A leave: on_leave, a LeaveRoom, and the room is no longer joined."""
    policy = Policy()
    p = opened(policy, "r")
    assert p.receive(Leave("r"), 0.0) == [Put("r", LeaveRoom(p.member))]
    assert policy.calls == [("leave", "ann", "r")] and p.rooms == {}


@pytest.mark.parametrize(
    ("message", "ref"),
    [
        (OpMessage("r", 1, 0, OP), "op"),
        (Batch("r", 1, 0, [OP]), "batch"),
        (PresenceMessage("r", {}), "presence"),
        (Leave("r"), "leave"),
        (Admin("r", "reset"), "admin"),
    ],
)
def test_messages_before_join_are_not_joined(message: Any, ref: str) -> None:
    """Any room message for a room not joined: not_joined, and a strike."""
    p = opened(max_invalid_frames=99)
    assert p.receive(message, 0.0) == [error(ErrorCode.NOT_JOINED, "join room 'r' first", ref, "r")]


# --- ops -------------------------------------------------------------------------------


def test_op_in_a_joined_room_is_a_bare_submit() -> None:
    """The hot path: an allowed op is the Submit itself, no action list."""
    p = opened(None, "r")
    assert p.submit(OpMessage("r", 1, 0, OP), 0.0) == Submit(p.member, 1, 0, (OP,))
    assert p.receive(Batch("r", 2, 1, [OP, OP]), 0.0) == [
        Put("r", Submit(p.member, 2, 1, (OP, OP)))
    ]


def test_op_refused_by_policy_goes_through_the_room_as_refused() -> None:
    """on_write denies: a Submit carrying the refusal (a reject in client_seq order)."""
    p = opened(Policy(write=FORBIDDEN), "r")
    refused = Rejected(ErrorCode.FORBIDDEN, "not for you")
    assert p.submit(OpMessage("r", 1, 0, OP), 0.0) == [
        Put("r", Submit(p.member, 1, 0, (OP,), refused))
    ]
    assert p.state is State.OPEN


def test_an_op_over_the_rate_is_accepted_and_reading_pauses() -> None:
    """Slow: the op still goes to the room (never refused); the shell reads nothing more
    before the deadline."""
    p = opened(Policy(write=Slow(until=2.5)), "r")
    assert p.submit(OpMessage("r", 1, 0, OP), 2.0) == [
        Put("r", Submit(p.member, 1, 0, (OP,))),
        PauseReading(2.5),
    ]
    assert p.state is State.OPEN


def test_presence_over_the_rate_is_relayed_and_reading_pauses() -> None:
    """Slow presence: the SetPresence, then a pause (no error)."""
    p = opened(Policy(presence=Slow(until=1.0)), "r")
    assert p.receive(PresenceMessage("r", {"x": 1}), 0.5) == [
        Put("r", SetPresence(p.member, {"x": 1})),
        PauseReading(1.0),
    ]


def test_sustained_flooding_rejects_then_closes_at_once() -> None:
    """A rate_limited denial with close 4008 (over the rate long after being slowed):
    the refused Submit, then close unflushed."""
    flood = Denied(ErrorCode.RATE_LIMITED, "slow down", CloseCode.RATE_LIMITED)
    p = opened(Policy(write=flood), "r")
    refused = Rejected(ErrorCode.RATE_LIMITED, "slow down")
    assert p.submit(OpMessage("r", 1, 0, OP), 0.0) == [
        Put("r", Submit(p.member, 1, 0, (OP,), refused)),
        Close(CloseCode.RATE_LIMITED, "rate_limited", flush=False),
    ]
    assert p.receive(OpMessage("r", 2, 0, OP), 0.0) == []


def test_presence_allowed_and_throttled() -> None:
    """Presence: a SetPresence, or the policy's error."""
    p = opened(None, "r")
    assert p.receive(PresenceMessage("r", {"x": 1}), 0.0) == [
        Put("r", SetPresence(p.member, {"x": 1}))
    ]
    slow = Denied(ErrorCode.RATE_LIMITED, "slow down")
    p = opened(Policy(presence=slow), "r")
    assert p.receive(PresenceMessage("r", {}), 0.0) == [
        error(ErrorCode.RATE_LIMITED, "slow down", "presence", "r")
    ]


# --- strikes ---------------------------------------------------------------------------


def test_strikes_within_the_window_close_with_4012() -> None:
    """max_invalid_frames invalid frames within INVALID_WINDOW: close 4012."""
    p = opened(max_invalid_frames=3)
    bad = FrameError(ErrorCode.BAD_FRAME, "malformed", "op")
    reply = Reply(Error(ErrorCode.BAD_FRAME.value, "malformed", "op"))
    assert p.invalid(bad, 0.0) == [reply]
    assert p.receive(OpMessage("r", 1, 0, OP), 1.0) == [
        error(ErrorCode.NOT_JOINED, "join room 'r' first", "op", "r")
    ]
    assert p.invalid(bad, 2.0) == [
        reply,
        Close(CloseCode.TOO_MANY_ERRORS, "too many invalid frames"),
    ]
    assert p.state is State.CLOSING and p.invalid(bad, 3.0) == []


def test_strikes_older_than_the_window_are_forgotten() -> None:
    """Strikes spread wider than INVALID_WINDOW never close."""
    p = opened(max_invalid_frames=2)
    bad = FrameError(ErrorCode.BAD_FRAME, "malformed")
    for i in range(5):
        assert p.invalid(bad, i * (INVALID_WINDOW + 1)) == [
            Reply(Error(ErrorCode.BAD_FRAME.value, "malformed"))
        ]


# --- admin -----------------------------------------------------------------------------


def test_admin_reset_and_kick_when_allowed() -> None:
    """An allowed admin: reset is a ResetRoom, kick a Kick with its not-found reply."""
    p = opened(None, "r")
    assert p.receive(Admin("r", "reset"), 0.0) == [Put("r", ResetRoom(p.member))]
    absent = Error(ErrorCode.INVALID_MESSAGE.value, "no client 'b' in room 'r'", "admin", "r")
    assert p.receive(Admin("r", "kick", "b"), 0.0) == [Kick("b", "r", absent)]
    assert p.receive(Admin("r", "kick"), 0.0) == [
        error(ErrorCode.INVALID_MESSAGE, "kick needs a client_id", "admin", "r")
    ]


def test_admin_denied_is_an_error() -> None:
    """on_admin denies: its error, nothing reaches the room."""
    p = opened(Policy(admin=FORBIDDEN), "r")
    assert p.receive(Admin("r", "reset"), 0.0) == [
        error(ErrorCode.FORBIDDEN, "not for you", "admin", "r")
    ]


# --- the end ---------------------------------------------------------------------------


def test_connection_lost_leaves_every_room_and_tells_the_policy() -> None:
    """The socket is gone: LeaveRoom now for each room, on_close once, state CLOSED."""
    policy = Policy()
    p = opened(policy, "a", "b")
    assert p.connection_lost() == [
        Put("a", LeaveRoom(p.member), wait=False),
        Put("b", LeaveRoom(p.member), wait=False),
    ]
    assert policy.calls == [("close", "ann", "10.0.0.1")]
    assert p.state is State.CLOSED and p.connection_lost() == []
    assert policy.calls == [("close", "ann", "10.0.0.1")]


def test_frames_after_the_shell_closes_are_ignored() -> None:
    """close() by the shell (overflow, kick): later frames produce nothing."""
    p = opened(None, "r")
    p.close()
    assert p.receive(OpMessage("r", 1, 0, OP), 0.0) == []
    assert p.submit(OpMessage("r", 1, 0, OP), 0.0) == []


def test_failure_before_hello_closes_with_1011_and_after_it_replies() -> None:
    """A handler that raised: 1011 before hello, an internal error after."""
    assert session().failed(Hello(PROTOCOL_VERSION)) == [
        Close(CloseCode.INTERNAL_ERROR, "internal error")
    ]
    assert opened().failed(Join("r")) == [
        error(ErrorCode.INTERNAL, "internal error; see the relay log", "join")
    ]


def test_transition_table_rejects_local_misuse() -> None:
    """CLOSE and LOST lead out of every state; welcoming an open connection raises."""
    assert all(t[Event.LOST] is State.CLOSED and Event.CLOSE in t for t in TRANSITIONS.values())
    with pytest.raises(RuntimeError):
        opened()._fire(Event.WELCOMED)
