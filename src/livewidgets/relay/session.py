"""One client connection's lifecycle as a sans-I/O state machine (:class:`RelayProtocol`).

Everything that decides what a connection's frames do lives here: the hello
handshake, the policy's verdicts (relay.policy), pacing (:class:`PauseReading`),
strikes, ``not_joined``, client_id scoping, token expiry and renewal (``auth``). It
never touches a socket, a task or the clock: decoded messages and ``now`` go in
(Unix time, to state token lifetimes, from the injected ``clock``), :data:`Action`
values come out, and the I/O shell (relay.connection) carries them out in order.
A misbehaving peer never raises out of it: every bad frame becomes an ``error``
reply and, where docs/protocol.md "Errors" and "Close codes" say so, a :class:`Close`.

States (docs/protocol.md "Connection lifecycle"), and what moves between them, are
data (:data:`TRANSITIONS`)::

    AWAITING_HELLO --welcomed--> OPEN --close--> CLOSING --lost--> CLOSED
          |                                         ^
          +-------------------close-----------------+

An event a state does not list is local misuse and raises :class:`RuntimeError`.
Frames received in CLOSING or CLOSED are ignored: the client resends what was not
acked after it reconnects.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeAlias, TypeVar

import msgspec
from websockets.http11 import Request

from ..protocol.codec import FrameError
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.messages import (
    MAX_EXPIRES_IN,
    PROTOCOL_VERSION,
    Admin,
    Auth,
    Authed,
    Batch,
    ClientMessage,
    Error,
    Hello,
    History,
    Join,
    Leave,
    OpMessage,
    PresenceMessage,
    ServerMessage,
    Welcome,
)
from ..rules import Actor
from ..state.ops import Op
from .hub import Command, JoinRoom, LeaveRoom, Member, ResetRoom, SetPresence, Submit
from .policy import Denied, Policy, Principal, Slow
from .revocation import Revocation, RevokeKind
from .room import Rejected

__all__ = [
    "INVALID_WINDOW",
    "TRANSITIONS",
    "Action",
    "Close",
    "Event",
    "ExpireAt",
    "Kick",
    "PauseReading",
    "Put",
    "ReadHistory",
    "Register",
    "RelayProtocol",
    "Reply",
    "Revoke",
    "State",
]

# Invalid frames are counted over this many seconds (docs/protocol.md "Errors", 4012).
INVALID_WINDOW = 10.0

M = TypeVar("M", bound=Member)


class State(Enum):
    """Where a connection is in its lifetime."""

    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Event(Enum):
    """What moves a connection between states."""

    # hello was accepted and answered with welcome
    WELCOMED = "welcomed"
    # the relay decided to close (this machine's Close, or the shell's own reasons)
    CLOSE = "close"
    # the socket is gone
    LOST = "lost"


# state -> event -> next state. Everything that changes RelayProtocol.state is here.
TRANSITIONS: dict[State, dict[Event, State]] = {
    State.AWAITING_HELLO: {
        Event.WELCOMED: State.OPEN,
        Event.CLOSE: State.CLOSING,
        Event.LOST: State.CLOSED,
    },
    State.OPEN: {Event.CLOSE: State.CLOSING, Event.LOST: State.CLOSED},
    State.CLOSING: {Event.CLOSE: State.CLOSING, Event.LOST: State.CLOSED},
    State.CLOSED: {Event.CLOSE: State.CLOSED, Event.LOST: State.CLOSED},
}


# --- actions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``message`` to this connection (after what is queued for it)."""

    message: ServerMessage


@dataclass(frozen=True, slots=True)
class Put(Generic[M]):
    """Queue ``command`` to the runner of ``room``: first waiting while the connection
    has too many commands unprocessed, and dropped if it is closing by then (the
    client resends). ``wait=False`` (leaving on close): put it now, closing or not."""

    room: str
    command: Command[M]
    wait: bool = True


@dataclass(frozen=True, slots=True)
class Close:
    """Close with ``code``: after the frames queued so far (``flush``) or at once."""

    code: int
    reason: str
    flush: bool = True


@dataclass(frozen=True, slots=True)
class Register:
    """The connection now is ``client_id`` (of ``user``): record it with the relay,
    which closes an older connection of the same client_id (4010)."""

    client_id: str
    user: str


@dataclass(frozen=True, slots=True)
class ExpireAt:
    """Call :meth:`RelayProtocol.expire` at Unix time ``deadline`` (token expiry),
    instead of at any deadline set before (a renewal moves it); None: never."""

    deadline: float | None


@dataclass(frozen=True, slots=True)
class Kick:
    """Close ``client_id``'s connection if it is in ``room`` (4011); if it is not,
    reply ``absent``."""

    client_id: str
    room: str
    absent: Error


@dataclass(frozen=True, slots=True)
class Revoke:
    """Record ``revocation`` in the store, put it in force on this relay (closing the
    connections it denies, 4006) and tell the other relays; then answer ``room`` with
    ``revoked`` (an ``internal`` error if the store failed: nothing was recorded)."""

    revocation: Revocation
    room: str


@dataclass(frozen=True, slots=True)
class PauseReading:
    """Read no further frame before monotonic time ``until`` (backpressure: the
    sender is over its rate; docs/protocol.md "Pacing"). What came before is
    carried out first; a close ends the pause early."""

    until: float


@dataclass(frozen=True, slots=True)
class ReadHistory:
    """Answer ``query`` from the room's stored history (docs/history.md) with a
    ``history`` reply; the connection reads nothing else meanwhile (one query at a
    time per connection)."""

    query: History


Action: TypeAlias = (
    Reply | Put[Any] | Close | Register | ExpireAt | Kick | Revoke | PauseReading | ReadHistory
)

# What the handlers of one message type look like.
_Handler: TypeAlias = "Callable[[RelayProtocol[Any], Any, float], list[Action]]"


def _random_id() -> str:
    return uuid.uuid4().hex


class RelayProtocol(Generic[M]):
    """The decisions of one connection, from its first frame to its end.

    Call :meth:`connect` once the WebSocket is open, then :meth:`receive` with each
    decoded frame (:meth:`submit` for op and batch: the hot path), :meth:`invalid`
    with each frame that failed to decode, :meth:`hello_timeout` if no frame came in
    time, :meth:`expire` at an :class:`ExpireAt` deadline, :meth:`close` when the
    shell closes for its own reasons, :meth:`release_rooms` when the peer is dead,
    and :meth:`connection_lost` at the very end. Each returns the actions to carry
    out, in order.
    """

    __slots__ = (
        "_address",
        "_admitted",
        "_clock",
        "_make_id",
        "_max_strikes",
        "_policy",
        "_request",
        "_strikes",
        "_welcome",
        "client_id",
        "connection_id",
        "member",
        "principal",
        "rooms",
        "state",
        "user",
    )

    def __init__(
        self,
        member: M,
        policy: Policy,
        *,
        connection_id: str,
        welcome: Callable[[str, str, str | None], Welcome],
        max_invalid_frames: int,
        request: Request | None = None,
        make_id: Callable[[], str] = _random_id,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # The handle room commands carry (the relay's Connection).
        self.member = member
        self._policy = policy
        self.connection_id = connection_id
        # Builds welcome(client_id, connection_id, nonce) (limits, proof).
        self._welcome = welcome
        # The opening handshake, for policy.on_hello; dropped after hello.
        self._request = request
        # A client_id for a hello that brings none.
        self._make_id = make_id
        self._max_strikes = max_invalid_frames
        # Unix time, to state token lifetimes to the client as relative seconds.
        self._clock = clock
        self.state = State.AWAITING_HELLO
        # Set by hello (empty before): the stable client id, the user, who they are.
        self.client_id = ""
        self.user = ""
        self.principal: Principal | None = None
        # Rooms joined (or being joined), in join order (a dict: leaves go in that order).
        self.rooms: dict[str, None] = {}
        # Times of recent invalid frames / not_joined messages (see _strike).
        self._strikes: deque[float] | None = None
        # The peer's IP, and whether policy.on_connect admitted it (on_close is owed).
        self._address: str | None = None
        self._admitted = False

    # --- lifetime --------------------------------------------------------------------

    def connect(self, address: str | None) -> list[Action]:
        """The WebSocket opened from ``address``: the policy may refuse it (1008)."""
        self._address = address
        denied = self._policy.on_connect(address)
        if denied is None:
            self._admitted = True
            return []
        return self._deny(denied, None, close=CloseCode.POLICY_VIOLATION)

    def hello_timeout(self) -> list[Action]:
        """No frame arrived within hello_timeout of opening."""
        detail = "no hello received in time"
        return self._refuse(ErrorCode.HELLO_REQUIRED, detail, CloseCode.HELLO_REQUIRED)

    def expire(self) -> list[Action]:
        """An :class:`ExpireAt` deadline passed: the session ends (docs/security.md, 4004)."""
        if self.state is not State.OPEN:
            return []
        self._fire(Event.CLOSE)
        detail = "the token expired; reconnect with a fresh one"
        return [
            _error(ErrorCode.AUTH_EXPIRED, detail),
            Close(CloseCode.AUTH_EXPIRED, "token expired"),
        ]

    def revoked(self, denied: Denied) -> list[Action]:
        """The policy found this connection's token or link revoked (4006)."""
        if self.state is not State.OPEN:
            return []
        return self._deny(denied, None)

    def close(self) -> None:
        """The shell is closing the connection for a reason of its own (slow consumer,
        replaced, kicked, shutdown): later frames are ignored."""
        self._fire(Event.CLOSE)

    def release_rooms(self) -> list[Action]:
        """Leave every room now, closing or not (members are told the presence is gone)."""
        leaves: list[Action] = [
            Put(room, LeaveRoom(self.member), wait=False) for room in self.rooms
        ]
        self.rooms.clear()
        return leaves

    def connection_lost(self) -> list[Action]:
        """The socket is gone: leave the rooms, and tell the policy if it admitted us."""
        leaves = self.release_rooms()
        self._fire(Event.LOST)
        if self._admitted:
            self._admitted = False
            self._policy.on_close(self.principal, self._address)
        return leaves

    def _fire(self, event: Event) -> None:
        try:
            self.state = TRANSITIONS[self.state][event]
        except KeyError:
            raise RuntimeError(f"{event.value} is not allowed in {self.state.value}") from None

    # --- receiving -------------------------------------------------------------------

    def receive(self, message: ClientMessage, now: float) -> list[Action]:
        """A decoded frame, at monotonic time ``now``."""
        table = _HANDLERS[self.state]
        handler = table.get(type(message), table[None])
        return handler(self, message, now)

    def invalid(self, error: FrameError, now: float) -> list[Action]:
        """A frame that failed to decode or validate, at monotonic time ``now``."""
        if self.state is State.AWAITING_HELLO:
            detail = f"the first frame must be a valid hello: {error.message}"
            return self._refuse(
                ErrorCode.HELLO_REQUIRED, detail, CloseCode.HELLO_REQUIRED, error.ref
            )
        if self.state is not State.OPEN:
            return []
        return [Reply(Error(error.code.value, error.message, error.ref)), *self._strike(now)]

    def submit(self, message: OpMessage | Batch, now: float) -> Submit[M] | list[Action]:
        """An op or batch (the hot path): in the usual case (open, joined, allowed) the
        :class:`~.hub.Submit` to put into ``message.room``'s runner, else the actions."""
        room = message.room
        if self.state is not State.OPEN or room not in self.rooms:
            return self.receive(message, now)
        ops = (message.op,) if isinstance(message, OpMessage) else tuple(message.ops)
        verdict = self._policy.on_write(self.principal or _NOBODY, room, ops, now)
        if verdict is None:
            return Submit(self.member, message.client_seq, message.base_version, ops)
        if isinstance(verdict, Slow):
            # Over the rate: the op is accepted all the same (shaped, never dropped);
            # the shell reads this connection's next frame later.
            submit = Submit(self.member, message.client_seq, message.base_version, ops)
            return [Put(room, submit), PauseReading(verdict.until)]
        return self._refuse_write(message, ops, verdict)

    def _refuse_write(
        self, message: OpMessage | Batch, ops: tuple[Op, ...], denied: Denied
    ) -> list[Action]:
        # A refusal is final (the client rolls the op back and is told why), and goes
        # through the room so it consumes client_seq in order: a resend of it can never
        # be mistaken for an applied op (docs/protocol.md "Errors").
        refused = Rejected(denied.code, denied.message)
        submit = Submit(self.member, message.client_seq, message.base_version, ops, refused)
        put: list[Action] = [Put(message.room, submit)]
        if denied.close is None:
            return put
        # A connection that never paced itself gets no more replies: close now,
        # dropping what is queued for it.
        self._fire(Event.CLOSE)
        return [*put, Close(denied.close, denied.code.value, flush=False)]

    # --- handlers (see _HANDLERS) ------------------------------------------------------

    def _on_hello(self, hello: Hello, now: float) -> list[Action]:
        if hello.protocol != PROTOCOL_VERSION:
            detail = (
                f"protocol {hello.protocol} is not supported; this relay speaks {PROTOCOL_VERSION}"
            )
            return self._refuse(
                ErrorCode.PROTOCOL_VERSION, detail, CloseCode.PROTOCOL_VERSION, "hello"
            )
        granted = self._policy.on_hello(hello, self._request)
        self._request = None
        if isinstance(granted, Denied):
            close = granted.close or CloseCode.AUTH_INVALID
            return self._refuse(granted.code, granted.message, close, "hello")
        # Now that the principal is known: per-user connection limits.
        refused = self._policy.on_admit(granted, self._address)
        if refused is not None:
            close = refused.close or CloseCode.POLICY_VIOLATION
            return self._refuse(refused.code, refused.message, close, "hello")
        self.principal, self.user = granted, granted.user
        # An authenticated user's client ids live in their own namespace, so nobody can
        # take over another user's id (dedupe, presence, replacing its connection); a
        # link holder's is the policy's (relay.links).
        scope = granted.claims.get("client_scope")
        chosen = hello.client_id or self._make_id()
        self.client_id = granted.client_id or (f"{scope}.{chosen}" if scope else chosen)
        self._fire(Event.WELCOMED)
        welcome = self._welcome(self.client_id, self.connection_id, hello.nonce)
        # Who the relay takes it for, as room rules will (widgets write to {user} paths).
        role = Actor.from_claims(self.user, granted.claims).role
        welcome = msgspec.structs.replace(welcome, user=self.user, role=role)
        expires_at = self._policy.expires_at(granted)
        if expires_at is None:
            return [Register(self.client_id, self.user), Reply(welcome)]
        # Stated relative (no clock skew between the machines): the client renews
        # its token ahead of it (docs/security.md "Renewal").
        limits = {**welcome.limits, "expires_in": self._expires_in(expires_at)}
        welcome = msgspec.structs.replace(welcome, limits=limits)
        return [Register(self.client_id, self.user), Reply(welcome), ExpireAt(expires_at)]

    def _on_auth(self, message: Auth, now: float) -> list[Action]:
        """A fresh token for this connection: the policy decides; on success the
        deadline moves and ``authed`` says to when, else an error and nothing changes."""
        renewed = self._policy.on_renew(self.principal or _NOBODY, message.token, list(self.rooms))
        if isinstance(renewed, Denied):
            if renewed.close is not None:
                return self._deny(renewed, "auth")
            # The client renews well ahead of expiry, so it has time to try again; a
            # stream of refusals is counted like invalid frames (4012).
            return [_error(renewed.code, renewed.message, "auth"), *self._strike(now)]
        self.principal = renewed
        expires_at = self._policy.expires_at(renewed)
        expires_in = None if expires_at is None else self._expires_in(expires_at)
        return [ExpireAt(expires_at), Reply(Authed(expires_in))]

    def _expires_in(self, expires_at: float) -> float:
        """Seconds from now to Unix time ``expires_at`` (0 if past; ms precision)."""
        seconds = min(expires_at - self._clock(), MAX_EXPIRES_IN)
        return round(seconds, 3) if seconds > 0 else 0.0

    def _expect_hello(self, message: ClientMessage, now: float) -> list[Action]:
        detail = f"the first frame must be hello, not {_tag(message)}"
        return self._refuse(
            ErrorCode.HELLO_REQUIRED, detail, CloseCode.HELLO_REQUIRED, _tag(message)
        )

    def _on_hello_again(self, message: Hello, now: float) -> list[Action]:
        return [_error(ErrorCode.HELLO_REQUIRED, "hello was already received", "hello")]

    def _on_join(self, message: Join, now: float) -> list[Action]:
        room = message.room
        denied = self._policy.on_join(self.principal or _NOBODY, room)
        if denied is not None:
            return self._deny(denied, "join", room)
        if room in self.rooms:
            # docs/protocol.md "join": to resync, a client reconnects and joins again.
            detail = f"room {room!r} is already joined on this connection"
            return [_error(ErrorCode.INVALID_MESSAGE, detail, "join", room)]
        self.rooms[room] = None
        join = JoinRoom(self.member, message.since, message.presence, message.epoch)
        return [Put(room, join)]

    def _on_leave(self, message: Leave, now: float) -> list[Action]:
        room = message.room
        if room not in self.rooms:
            return self._not_joined(room, "leave", now)
        del self.rooms[room]
        self._policy.on_leave(self.principal or _NOBODY, room)
        return [Put(room, LeaveRoom(self.member))]

    def _on_submit(self, message: OpMessage | Batch, now: float) -> list[Action]:
        if message.room not in self.rooms:
            return self._not_joined(message.room, _tag(message), now)
        result = self.submit(message, now)
        return [Put(message.room, result)] if isinstance(result, Submit) else result

    def _on_presence(self, message: PresenceMessage, now: float) -> list[Action]:
        room = message.room
        if room not in self.rooms:
            return self._not_joined(room, "presence", now)
        verdict = self._policy.on_presence(self.principal or _NOBODY, room, now)
        if isinstance(verdict, Denied):
            return self._deny(verdict, "presence", room)
        put: Action = Put(room, SetPresence(self.member, message.state))
        return [put] if verdict is None else [put, PauseReading(verdict.until)]

    def _on_history(self, message: History, now: float) -> list[Action]:
        # Reading a room's history needs what reading the room does: having joined it
        # (the policy admitted the join); the room's rules filter the answer.
        if message.room not in self.rooms:
            return self._not_joined(message.room, "history", now)
        return [ReadHistory(message)]

    def _on_admin(self, message: Admin, now: float) -> list[Action]:
        room = message.room
        if message.action == "revoke":
            return self._on_revoke(message)
        if room not in self.rooms:
            return self._not_joined(room, "admin", now)
        denied = self._policy.on_admin(self.principal or _NOBODY, room)
        if denied is not None:
            return self._deny(denied, "admin", room)
        if message.action == "reset":
            return [Put(room, ResetRoom(self.member))]
        if message.client_id is None:
            return [_error(ErrorCode.INVALID_MESSAGE, "kick needs a client_id", "admin", room)]
        detail = f"no client {message.client_id!r} in room {room!r}"
        absent = Error(ErrorCode.INVALID_MESSAGE.value, detail, "admin", room)
        return [Kick(message.client_id, room, absent)]

    def _on_revoke(self, message: Admin) -> list[Action]:
        # Relay-wide, not a room operation: no join needed; the room only says in whose
        # name the admin acts (its token must admit it; relay.security.on_revoke).
        room = message.room
        named = ((RevokeKind.LINK, message.link), (RevokeKind.TOKEN, message.token_id))
        targets = [(kind, ident) for kind, ident in named if ident is not None]
        if len(targets) != 1:
            detail = "revoke needs exactly one of link and token_id"
            return [_error(ErrorCode.INVALID_MESSAGE, detail, "admin", room)]
        ((kind, ident),) = targets
        principal = self.principal or _NOBODY
        verdict = self._policy.on_revoke(principal, room, kind, ident)
        if isinstance(verdict, Denied):
            return self._deny(verdict, "admin", room)
        return [Revoke(verdict, room)]

    def _ignore(self, message: ClientMessage, now: float) -> list[Action]:
        return []  # closing: unacked ops are resent after the client reconnects

    # --- answers ---------------------------------------------------------------------

    def _refuse(
        self, code: ErrorCode, message: str, close: int, ref: str | None = None
    ) -> list[Action]:
        """Answer ``code`` and close: the connection is not admitted."""
        self._fire(Event.CLOSE)
        return [_error(code, message, ref), Close(close, _close_reason(code, message))]

    def _deny(
        self, denied: Denied, ref: str | None, room: str | None = None, *, close: int | None = None
    ) -> list[Action]:
        """Answer a policy denial with an error; close if it says so (or ``close``)."""
        actions: list[Action] = [_error(denied.code, denied.message, ref, room)]
        code = denied.close if denied.close is not None else close
        if code is not None:
            self._fire(Event.CLOSE)
            actions.append(Close(code, _close_reason(denied.code, denied.message)))
        return actions

    def _not_joined(self, room: str, ref: str, now: float) -> list[Action]:
        return [
            _error(ErrorCode.NOT_JOINED, f"join room {room!r} first", ref, room),
            *self._strike(now),
        ]

    def _strike(self, now: float) -> list[Action]:
        """Count a frame the client should never have sent; too many within
        INVALID_WINDOW seconds (valid frames in between or not) close with 4012."""
        if self._strikes is None:
            self._strikes = deque()
        strikes = self._strikes
        strikes.append(now)
        while strikes and strikes[0] < now - INVALID_WINDOW:
            strikes.popleft()
        if len(strikes) < self._max_strikes:
            return []
        self._fire(Event.CLOSE)
        return [Close(CloseCode.TOO_MANY_ERRORS, "too many invalid frames")]

    def failed(self, message: ClientMessage) -> list[Action]:
        """Handling ``message`` raised (a bug, or the policy's): say so and stay open;
        before hello there is no session to keep, so close with 1011."""
        if self.state is State.AWAITING_HELLO:
            self._fire(Event.CLOSE)
            return [Close(CloseCode.INTERNAL_ERROR, "internal error")]
        return [_error(ErrorCode.INTERNAL, "internal error; see the relay log", _tag(message))]


# A principal for policy calls before hello (never made: every handler that calls the
# policy runs in OPEN, after hello set the real one).
_NOBODY = Principal(user="")


def _error(code: ErrorCode, message: str, ref: str | None = None, room: str | None = None) -> Reply:
    return Reply(Error(code.value, message, ref, room))


def _tag(message: Any) -> str:
    return str(message.__struct_config__.tag)


def _close_reason(code: ErrorCode, message: str) -> str:
    """``code: message`` for a close frame, cut to the 123 bytes one may carry: the
    reason (and its limit) reaches a client that missed the error frame before it."""
    reason = f"{code.value}: {message}"
    return reason.encode()[:123].decode(errors="ignore")


# state -> message type -> handler; None: every other type. Class-level: no table of
# bound methods per connection.
_P = RelayProtocol
_HANDLERS: dict[State, dict[type | None, _Handler]] = {
    State.AWAITING_HELLO: {Hello: _P._on_hello, None: _P._expect_hello},
    State.OPEN: {
        Hello: _P._on_hello_again,
        Join: _P._on_join,
        Leave: _P._on_leave,
        OpMessage: _P._on_submit,
        Batch: _P._on_submit,
        PresenceMessage: _P._on_presence,
        Admin: _P._on_admin,
        Auth: _P._on_auth,
        History: _P._on_history,
        None: _P._ignore,
    },
    State.CLOSING: {None: _P._ignore},
    State.CLOSED: {None: _P._ignore},
}
