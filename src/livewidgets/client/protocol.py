"""The client's connection lifecycle as a sans-I/O state machine (h11 / websockets style).

:class:`ClientProtocol` decides everything about one client's connections to the
relay: which URL to dial, when the join goes out, what a welcome or an error
means, when to ping and when the relay is dead, which ops to resend, when to
publish presence, when to stop and how long to wait before trying again. It
never touches a socket, a thread, a timer or the clock: the shell
(:class:`~livewidgets.client.engine.Engine`) reports what happened through the
input methods, each taking ``now`` (monotonic seconds), and executes the actions
they return, in order. :meth:`ClientProtocol.next_deadline` says when to call
:meth:`ClientProtocol.tick` next.

Rules of this file (as h11's ``_state.py``): every state change goes through
:meth:`ClientProtocol._goto`, checked against :data:`TRANSITIONS`; every input
method checks :data:`ACCEPTS` first. Calling an input in the wrong state is the
shell's bug and raises :class:`LocalProtocolError` at once. A misbehaving relay
never raises out of here: it gets a :class:`Close` with the right code
(docs/protocol.md, "Close codes").

The rooms' data (pending ops, acks, rebasing) stays in one
:class:`~livewidgets.client.core.RoomSync` per room; their events pass through
unchanged, mixed with the actions below.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..protocol import FINAL_CLOSE_CODES, PROTOCOL_VERSION, CloseCode, ErrorCode, FrameError
from ..protocol.messages import (
    Admin,
    Auth,
    Authed,
    Batch,
    Error,
    Hello,
    History,
    HistoryReply,
    OpMessage,
    PresenceMessage,
    Welcome,
)
from ..protocol.pacing import TokenBucket
from .core import Event, JoinedRoom, Priority, Resync, RoomSync, Send
from .presence import LocalPresence
from .refusals import Refusal, from_http, from_relay
from .renewal import Renewal, RenewalConfig

__all__ = [
    "ACCEPTS",
    "TRANSITIONS",
    "Abort",
    "AbortReason",
    "Action",
    "AuthExpiredEvent",
    "ClientProtocol",
    "Close",
    "Connect",
    "ConnectionFailed",
    "GaveUp",
    "HistoryAnswered",
    "JoinRefusal",
    "LocalProtocolError",
    "MyPresence",
    "NeedToken",
    "Ping",
    "ProtocolConfig",
    "ReconnectAfter",
    "Refused",
    "RefusedConnection",
    "RelayError",
    "RenewToken",
    "SendMessages",
    "State",
    "StateChanged",
    "Status",
    "TokenRenewed",
    "VerifyProof",
]


class LocalProtocolError(AssertionError):
    """The shell called an input that the current state does not allow (a bug here)."""


class State(enum.Enum):
    """Where the connection lifecycle is (see :data:`TRANSITIONS`)."""

    # Created: connect() not called yet.
    IDLE = "idle"
    # The shell is opening a socket to ``url`` (a Connect action went out).
    CONNECTING = "connecting"
    # Socket open, hello sent (with the join, unless the relay must prove itself).
    HANDSHAKING = "handshaking"
    # Welcome received; the shell is checking its proof (a VerifyProof went out).
    VERIFYING = "verifying"
    # Welcomed, join sent: waiting for every room's joined.
    JOINING = "joining"
    # Every room joined: ops, presence and admin messages flow.
    CONNECTED = "connected"
    # This connection is over for us (we sent or asked for a close): waiting for closed().
    CLOSING = "closing"
    # The connection ended on an auth close: waiting for token_refreshed().
    REFRESHING = "refreshing"
    # Waiting out a reconnect delay (a ReconnectAfter went out); then connect().
    BACKOFF = "backoff"
    # For good: nothing more happens.
    CLOSED = "closed"


_LIVE = frozenset({State.HANDSHAKING, State.VERIFYING, State.JOINING, State.CONNECTED})

_ENDED = frozenset({State.CLOSING, State.REFRESHING, State.BACKOFF})

# Where a token may be renewed on the open connection (welcomed, and the relay proved
# itself if it had to).
_RENEWABLE = frozenset({State.JOINING, State.CONNECTED})

# Every state change the lifecycle may make. A connection ends (CLOSING when we end
# it, else straight to what comes next); CLOSED is reachable from everywhere (a local
# close, a final close code) and nothing leaves it.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.CONNECTING, State.CLOSED}),
    State.CONNECTING: frozenset({State.HANDSHAKING, State.REFRESHING, State.BACKOFF, State.CLOSED}),
    State.HANDSHAKING: frozenset({State.VERIFYING, State.JOINING, State.CLOSED}) | _ENDED,
    State.VERIFYING: frozenset({State.JOINING, State.CLOSED}) | _ENDED,
    State.JOINING: frozenset({State.CONNECTED, State.CLOSED}) | _ENDED,
    State.CONNECTED: frozenset({State.CLOSED}) | _ENDED,
    State.CLOSING: frozenset({State.REFRESHING, State.BACKOFF, State.CLOSED}),
    State.REFRESHING: frozenset({State.BACKOFF, State.CLOSED}),
    State.BACKOFF: frozenset({State.CONNECTING, State.CLOSED}),
    State.CLOSED: frozenset(),
}

# In which states the shell may call each input method. A socket may still deliver
# frames and its end after close(); receive() is allowed before any connection too,
# so that a core can be fed by hand (tests, fuzzing): room messages simply apply.
ACCEPTS: dict[str, frozenset[State]] = {
    "connect": frozenset({State.IDLE, State.BACKOFF}),
    "opened": frozenset({State.CONNECTING}),
    "connect_failed": frozenset({State.CONNECTING}),
    "closed": _LIVE | {State.CLOSING, State.CLOSED},
    "proof_checked": frozenset({State.VERIFYING}),
    "token_refreshed": frozenset({State.REFRESHING}),
    # The answer to a RenewToken may come after its connection ended (or the session).
    "token_renewed": frozenset(State),
    "pong": _LIVE | {State.CLOSING, State.CLOSED},
    "receive": frozenset(State),
}


class Status(str, enum.Enum):
    """The public connection state (``Session.connection_state`` and its events)."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class JoinRefusal(str, enum.Enum):
    """Join errors that will not go away by waiting: connect() raises them at once."""

    FORBIDDEN = "forbidden"
    LIMIT_EXCEEDED = "limit_exceeded"
    AUTH_EXPIRED = "auth_expired"
    AUTH_INVALID = "auth_invalid"


class AbortReason(enum.Enum):
    """Why the shell must drop the socket without a closing handshake."""

    # No pong within heartbeat_timeout: half-open TCP, the close would hang too.
    HEARTBEAT = "heartbeat"
    # Local and relay state disagree: reconnect for a snapshot.
    RESYNC = "resync"


# --- actions (outputs) --------------------------------------------------------------


@dataclass(frozen=True)
class Connect:
    """Open a WebSocket to ``url``; then call opened() or connect_failed()."""

    url: str


@dataclass(frozen=True)
class SendMessages:
    """Write these client messages, in order, on the open socket."""

    messages: list[Any]
    # How many of them are resends of ops whose ack was late (the shell counts them).
    resends: int = 0


@dataclass(frozen=True)
class Close:
    """Close the socket with this code (the relay's close then ends in closed())."""

    code: CloseCode
    reason: str


@dataclass(frozen=True)
class Abort:
    """Drop the socket at once (no closing handshake); closed() follows."""

    reason: AbortReason


@dataclass(frozen=True)
class Ping:
    """Send a WebSocket ping; call pong() when its pong arrives."""


@dataclass(frozen=True)
class ReconnectAfter:
    """Wait ``delay`` seconds, then call connect() (which dials ``url``)."""

    delay: float
    url: str


@dataclass(frozen=True)
class NeedToken:
    """The relay ended the session on its token (``code``): ask the application for a
    new one and call token_refreshed() with it (None: there is none)."""

    code: CloseCode


@dataclass(frozen=True)
class RenewToken:
    """The connection's token expires soon: ask the application for a fresh one,
    without blocking the connection, and call token_renewed() with it (None: none)."""


@dataclass(frozen=True)
class TokenRenewed:
    """The relay took the fresh token: the connection now expires in ``expires_in``
    seconds (None: never), with no reconnect."""

    expires_in: float | None


@dataclass(frozen=True)
class VerifyProof:
    """Check that the relay that signed ``proof`` knows our secret for ``nonce``;
    call proof_checked() with the answer."""

    nonce: str
    proof: str | None


@dataclass(frozen=True)
class StateChanged:
    """The public state changed (or a new attempt began): tell the application."""

    status: Status
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RelayError:
    """The relay sent an error (or did not prove who it is): surface it."""

    code: str
    message: str
    ref: str | None = None
    # "handshake" when it ended the connection attempt, else None.
    during: str | None = None


@dataclass(frozen=True)
class Refused:
    """The relay refused a join for a reason that waiting will not fix."""

    code: JoinRefusal
    message: str


@dataclass(frozen=True)
class RefusedConnection:
    """An attempt was refused during its handshake (refusals.Refusal says why).
    ``final``: the session stops here (connect() raises it); else it retries, and
    the RECONNECTING state change carries the reason."""

    refusal: Refusal
    final: bool


@dataclass(frozen=True)
class ConnectionFailed:
    """The handshake failed on our side (no welcome in time, a bad first frame)."""

    error: Exception
    during: str


@dataclass(frozen=True)
class GaveUp:
    """``attempts`` failed attempts in a row reached max_attempts: stopping."""

    attempts: int


@dataclass(frozen=True)
class AuthExpiredEvent:
    """The token expired and no new one came: stopping."""


@dataclass(frozen=True)
class HistoryAnswered:
    """The relay answered our ``history`` query ``reply.id``."""

    reply: HistoryReply


@dataclass(frozen=True)
class MyPresence:
    """Our own presence fields changed (an update, or we went idle)."""

    fields: dict[str, Any]


Action = (
    Connect
    | SendMessages
    | Close
    | Abort
    | Ping
    | ReconnectAfter
    | NeedToken
    | RenewToken
    | TokenRenewed
    | VerifyProof
    | StateChanged
    | RelayError
    | Refused
    | RefusedConnection
    | ConnectionFailed
    | GaveUp
    | AuthExpiredEvent
    | MyPresence
    | HistoryAnswered
    | Event
)

_AUTH_CLOSES = frozenset({CloseCode.AUTH_EXPIRED, CloseCode.AUTH_INVALID})
# Close code when the socket closed without a code (websockets' "abnormal closure").
_ABNORMAL = 1006


@dataclass(frozen=True)
class ProtocolConfig:
    """The lifecycle's tunables (seconds); :class:`EngineConfig` fills them."""

    # Give up after this many failed attempts in a row (None: never).
    max_attempts: int | None = None
    # How long the relay may take to welcome us, or to close after refusing us.
    open_timeout: float = 10.0
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 5.0
    ack_timeout: float = 10.0
    # Whether the application can renew tokens (EngineConfig.token_refresh): after an
    # auth close, and ahead of the expiry the relay states (docs/security.md "Renewal").
    can_refresh: bool = False
    renewal: RenewalConfig = field(default_factory=RenewalConfig)
    # Whether the relay must prove who it is before anything about a room goes out.
    verify: bool = False
    # False: join as a listener, off the presence lists until update_presence().
    announce: bool = True


class ClientProtocol:
    """One client's connections to a relay, and the rooms it syncs over them."""

    def __init__(
        self,
        urls: Sequence[str],
        rooms: Sequence[str],
        *,
        client_id: str,
        user: str,
        token: str | None,
        presence: LocalPresence,
        delays: Callable[[], Iterator[float]],
        config: ProtocolConfig | None = None,
        nonces: Callable[[], str] | None = None,
        max_pending: int = 10_000,
    ) -> None:
        """``delays()`` starts a fresh backoff sequence (seeded by the caller);
        ``nonces()`` draws the nonce a verified relay must sign."""
        if not urls:
            raise ValueError("connect needs at least one relay URL")
        # Relays serving the same rooms (a shared store, docs/protocol.md "Scale-out"):
        # after a failed or lost connection the next attempt goes to the next one.
        self.urls = list(urls)
        # The relay the current (or next) attempt dials.
        self.url = self.urls[0]
        self.config = config or ProtocolConfig()
        if self.config.verify and nonces is None:
            raise ValueError("verifying the relay needs a nonce source")
        self.user = user
        self.token = token
        # The id we ask for in every hello; the relay may answer with a scoped form of it
        # (authenticated users get their own namespace), which becomes ``client_id``.
        self.requested_id = client_id
        self.client_id = client_id
        # One sync state per room of this connection (the wire allows several).
        self.rooms = {room: RoomSync(room, client_id, max_pending=max_pending) for room in rooms}
        self.presence = presence
        self.state = State.IDLE
        # Retry number of the current attempt (0: the first, or the first after a join).
        self.attempt = 0
        # From the welcome: our connection's id and the relay's limits (max_frame_size).
        self.connection_id: str | None = None
        self.limits: dict[str, int | float] = {}
        # Who the relay takes us for, from its welcome ("": it did not say): the user
        # name room rules see (a share link's holder gets one of their own) and role.
        self.relay_user = ""
        self.role = ""
        # Paces our ops to the relay's advertised rates (None: none advertised); kept
        # across reconnects, as the relay keeps the user's bucket (docs/protocol.md "Pacing").
        self.pacer: TokenBucket | None = None
        # When the pacer will let the first held-back op go (a tick is due then).
        self._pace_due: float | None = None
        self._delays = delays
        self._backoff = delays()
        self._nonces = nonces
        # Failed attempts in a row (a connection that got to joined resets it).
        self._failures = 0
        # Whether any connection was ever welcomed ("connecting" vs "reconnecting").
        self._welcomed_ever = False
        # Whether the current connection got to joined (see closed()).
        self._joined_here = False
        # A resync aborted the connection: reconnect whatever its close code.
        self._resync = False
        # The close code that sent us to REFRESHING.
        self._auth_code: CloseCode | None = None
        # Renewing the token on the open connection (auth / authed).
        self._renewal = Renewal(self.config.renewal)
        # The nonce of the current hello (verified relays only).
        self._nonce: str | None = None
        # Rooms not yet joined on this connection.
        self._joining: set[str] = set()
        # When the relay must have welcomed us (or closed after refusing us).
        self._handshake_deadline: float | None = None
        # The error the relay answered our hello with (its close follows).
        self._handshake_error: Error | None = None
        # Why the attempt that is ending was refused (for its RECONNECTING details).
        self._retry_reason: Refusal | None = None
        # Heartbeat: when the next ping is due; when its pong is overdue.
        self._ping_at: float | None = None
        self._pong_deadline: float | None = None
        # When to look for overdue acks next (checked at every tick).
        self._ack_check_at: float | None = None
        # Presence: whether we are on the lists; last publish; a throttled one due.
        self._announced = self.config.announce
        self._presence_sent_at = float("-inf")
        self._presence_due: float | None = None
        # Admin messages waiting for the connection.
        self._admin: list[Admin] = []
        # History queries not answered yet, by id: (re)sent whenever the rooms are
        # joined, so one asked offline, or lost with a connection, is answered later.
        self._queries: dict[int, History] = {}

    # --- the rule book ------------------------------------------------------------

    def _accept(self, method: str) -> None:
        if self.state not in ACCEPTS[method]:
            raise LocalProtocolError(f"{method}() is not allowed in state {self.state.name}")

    def _goto(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise LocalProtocolError(f"no transition from {self.state.name} to {state.name}")
        self.state = state

    # --- inputs: the connection ---------------------------------------------------

    def connect(self, now: float) -> list[Action]:
        """Start an attempt: at first, and when a ReconnectAfter delay is over."""
        self._accept("connect")
        self._goto(State.CONNECTING)
        status = Status.RECONNECTING if self._welcomed_ever else Status.CONNECTING
        return [StateChanged(status, {"attempt": self.attempt}), Connect(self.url)]

    def opened(self, now: float) -> list[Action]:
        """The socket is open (subprotocol chosen): say hello, and join at once unless
        the relay must first prove who it is (one round trip less per connect; the
        relay reads frames in order)."""
        self._accept("opened")
        self._goto(State.HANDSHAKING)
        self._joined_here = False
        self._handshake_error = None
        self._handshake_deadline = now + self.config.open_timeout
        self._nonce = self._nonces() if self._nonces is not None and self.config.verify else None
        hello = Hello(
            protocol=PROTOCOL_VERSION,
            client_id=self.requested_id,
            user=self.user,
            token=self.token,
            nonce=self._nonce,
        )
        messages: list[Any] = [hello]
        if not self.config.verify:
            messages += self._joins(now)
        return [SendMessages(messages)]

    def connect_failed(
        self, now: float, status: int | None = None, refusal: Refusal | None = None
    ) -> list[Action]:
        """The socket did not open: ``refusal`` says why (the shell classifies what
        failed, refusals.from_exception); ``status`` alone: the relay answered HTTP."""
        self._accept("connect_failed")
        if refusal is None and status is not None:
            refusal = from_http(status, None)
        if refusal is None:
            return self._after_connection(None, now)
        code = CloseCode.AUTH_INVALID if refusal.status == 401 else None
        return self._after_refusal(refusal, code, now)

    def closed(self, code: int | None, now: float, *, by_peer: bool = True) -> list[Action]:
        """The socket is closed (``by_peer``: the relay sent a close frame)."""
        self._accept("closed")
        if self.state is State.CLOSED:
            return []
        # Our own normal close is not the relay's verdict: only close() stops us then.
        if code is None or (code == CloseCode.NORMAL and not by_peer):
            code = _ABNORMAL
        actions: list[Action] = []
        for sync in self.rooms.values():
            actions += sync.connection_lost()
        if self.state is State.CONNECTED:
            actions.append(StateChanged(Status.DISCONNECTED, {"code": code}))
        self._stop_timers()
        error, self._handshake_error = self._handshake_error, None
        if error is not None:  # the relay refused our hello, then closed
            refusal = from_relay(error.code, error.message, code)
            return actions + self._after_refusal(refusal, refusal.close_code, now)
        return actions + self._after_connection(code, now)

    def token_refreshed(self, token: str | None, now: float) -> list[Action]:
        """The application's answer to NeedToken (None or the same token: none)."""
        self._accept("token_refreshed")
        code, self._auth_code = self._auth_code, None
        if token and token != self.token:
            self.token = token
            return self._retry(now)
        actions: list[Action] = []
        if code is CloseCode.AUTH_EXPIRED:
            actions.append(AuthExpiredEvent())
        return actions + self._stop()

    def token_renewed(self, token: str | None, now: float) -> list[Action]:
        """The application's answer to RenewToken: offer the relay the new token on
        this connection (None, or the same token: ask again later, until expiry)."""
        self._accept("token_renewed")
        offer = self._renewal.answered(token, self.token, now)
        if offer is None:
            return []
        if self.state not in _RENEWABLE:
            # Asked on a connection that ended; the next one is not verified yet.
            self._renewal.refused(now)
            return []
        return [SendMessages([Auth(offer)])]

    def proof_checked(self, ok: bool, now: float) -> list[Action]:
        """The answer to VerifyProof: join, or share nothing with an impostor."""
        self._accept("proof_checked")
        if ok:
            self._goto(State.JOINING)
            return [SendMessages(self._joins(now))]
        # Something else answers on the relay's address (say, a process that took the
        # port of a relay that died): share nothing with it; retried with backoff.
        message = f"{self.url} did not prove it is the relay we expect; not syncing with it"
        self._goto(State.CLOSING)
        return [
            RelayError("relay_unverified", message, during="handshake"),
            Close(CloseCode.POLICY_VIOLATION, "relay not verified"),
        ]

    def close(self, now: float) -> list[Action]:
        """The application closes the session: no reconnect, ever."""
        actions: list[Action] = []
        if self.state in _LIVE or self.state is State.CLOSING:
            actions.append(Close(CloseCode.NORMAL, "client closed"))
        if self.state is State.CONNECTED:
            for sync in self.rooms.values():
                actions += sync.connection_lost()
            actions.append(StateChanged(Status.DISCONNECTED, {"code": int(CloseCode.NORMAL)}))
        if self.state is not State.CLOSED:
            actions += self._stop()
        return actions

    # --- inputs: relay messages ---------------------------------------------------

    def receive(self, message: Any, now: float) -> list[Action]:
        """A decoded relay message. Never raises on anything the relay sends."""
        self._accept("receive")
        if self.state is State.HANDSHAKING:
            return self._handshake(message, now)
        if isinstance(message, Authed):
            return self._authed(message, now)
        if isinstance(message, HistoryReply):
            asked = self._queries.pop(message.id, None)
            return [HistoryAnswered(message)] if asked is not None else []
        actions: list[Action] = []
        if isinstance(message, Error):
            if message.ref == "auth":  # the new token was refused: the old one holds
                self._renewal.refused(now)
            actions += self._relay_error(message)
            if message.room is None:
                return actions
        sync = self.rooms.get(getattr(message, "room", None) or "")
        if sync is None:
            return actions
        return actions + self._room_events(sync, sync.receive(message, now), now)

    def invalid_frame(self, error: FrameError, now: float) -> list[Action]:
        """A frame that did not decode: fatal in the handshake, else ignored."""
        if self.state is State.HANDSHAKING:
            return self._bad_handshake(error)
        return []

    def _handshake(self, message: Any, now: float) -> list[Action]:
        """The first frame: a welcome, or the error that refuses us."""
        if isinstance(message, Error):
            # The relay closes next; with its close code, this error decides what we do.
            self._goto(State.CLOSING)
            self._handshake_error = message
            self._handshake_deadline = now + self.config.open_timeout
            return [RelayError(message.code, message.message, during="handshake")]
        if not isinstance(message, Welcome):
            error = FrameError(
                ErrorCode.INVALID_MESSAGE, f"expected welcome, got {type(message).__name__}"
            )
            return self._bad_handshake(error)
        return self._welcomed(message, now)

    def _welcomed(self, welcome: Welcome, now: float) -> list[Action]:
        self._handshake_deadline = None
        self._welcomed_ever = True
        self.connection_id = welcome.connection_id
        self.limits = dict(welcome.limits)
        self.relay_user, self.role = welcome.user, welcome.role
        self._pace(now)
        self._renewal.stated(_lifetime(self.limits) if self.config.can_refresh else None, now)
        self._ping_at = now + self.config.heartbeat_interval
        if welcome.client_id != self.client_id:  # our own ops come back with this origin
            self.client_id = welcome.client_id
            for sync in self.rooms.values():
                sync.client_id = welcome.client_id
        if self._nonce is not None:
            self._goto(State.VERIFYING)
            return [VerifyProof(self._nonce, welcome.proof)]
        self._goto(State.JOINING)
        return []

    def _pace(self, now: float) -> None:
        """Pace sends to the welcome's rates: the stricter of the per-connection and
        per-user ones (we cannot see the user's other connections, so a client of a
        user with several at full speed is slowed by the relay, never refused)."""
        limits = self.limits
        inf = math.inf
        rate = min(limits.get("ops_per_second", inf), limits.get("user_ops_per_second", inf))
        burst = min(limits.get("ops_burst", inf), limits.get("user_ops_burst", inf))
        if math.isinf(rate) or rate <= 0:
            self.pacer = None
        else:
            burst = max(1.0, rate if math.isinf(burst) else burst)
            pacer = self.pacer
            if pacer is None or (pacer.rate, pacer.burst) != (rate, burst):
                self.pacer = TokenBucket(rate, burst, now)
        for sync in self.rooms.values():
            sync.pacer, sync.paced_cost = self.pacer, None
        presence_rate = limits.get("presence_per_second")
        if presence_rate and presence_rate > 0:
            # Each update goes to every room: the relay's presence rate is per user.
            interval = len(self.rooms) / presence_rate
            self.presence.min_interval = max(self.presence.min_interval, interval)

    def _authed(self, authed: Authed, now: float) -> list[Action]:
        """The relay took our new token: it is the one to reconnect with, too."""
        token = self._renewal.accepted(authed.expires_in, now)
        if token is None:
            return []  # an answer to no auth of ours: nothing changes
        self.token = token
        return [TokenRenewed(authed.expires_in)]

    def _bad_handshake(self, error: FrameError) -> list[Action]:
        self._goto(State.CLOSING)
        return [
            ConnectionFailed(error, "handshake"),
            Close(CloseCode.PROTOCOL_ERROR, "bad handshake"),
        ]

    def _relay_error(self, error: Error) -> list[Action]:
        """Surface every relay error; a refused join also fails a pending connect()."""
        actions: list[Action] = [RelayError(error.code, error.message, error.ref)]
        if error.ref == "join" and error.code in _REFUSALS:
            actions.append(Refused(JoinRefusal(error.code), error.message))
        return actions

    # --- inputs: the user ---------------------------------------------------------

    def submit(
        self,
        room: str,
        ops: Sequence[Any],
        now: float,
        *,
        batch: bool = False,
        handle: Any = None,
        priority: Priority = Priority.NORMAL,
    ) -> list[Action]:
        """Apply ops locally now and send what may go; raises OpError or QueueFull."""
        actions: list[Action] = self._schedule_presence(now) if self.presence.touch() else []
        sync = self.rooms[room]
        events = sync.submit(ops, batch=batch, handle=handle, priority=priority, now=now)
        return actions + self._room_events(sync, events, now)

    def undo(
        self, room: str, path: str | None, now: float, *, handle: Any = None, redo: bool = False
    ) -> list[Action] | None:
        """Undo (redo) the latest own write within ``path``; None: nothing to undo."""
        sync = self.rooms[room]
        events = sync.undo(path, handle=handle, now=now, redo=redo)
        if events is None:
            return None
        return self._room_events(sync, events, now)

    def update_presence(self, fields: dict[str, Any], now: float) -> list[Action]:
        """Merge ``fields`` into our presence and publish it (throttled, latest wins)."""
        self.presence.update(fields)
        self._announced = True
        return [MyPresence(dict(self.presence.fields)), *self._schedule_presence(now)]

    def admin(self, room: str, action: str, client_id: str | None = None) -> list[Action]:
        """An admin message (reset/kick): now if connected, else once we are."""
        self._admin.append(Admin(room=room, action=action, client_id=client_id))  # type: ignore[arg-type]
        return self._flush_admin() if self.state is State.CONNECTED else []

    def query(self, query: History) -> list[Action]:
        """A history query (docs/history.md): now if connected, else once we are."""
        self._queries[query.id] = query
        return [SendMessages([query])] if self.state is State.CONNECTED else []

    def forget_query(self, query_id: int) -> None:
        """The asker stopped waiting for ``query_id`` (a late answer is ignored)."""
        self._queries.pop(query_id, None)

    def fits(self, message: Any, size: int) -> bool:
        """Whether a frame of ``size`` bytes encoding ``message`` may be sent."""
        limit = self.limits.get("max_frame_size")
        return limit is None or size <= limit or not isinstance(message, (OpMessage, Batch))

    def oversized(self, message: OpMessage | Batch, size: int, now: float) -> list[Action]:
        """The shell did not send ``message`` (not :meth:`fits`): fail its op.

        The relay would close the connection for it (1009), and resending it after
        every reconnect would loop forever; so it fails here, rolled back.
        """
        limit = self.limits.get("max_frame_size")
        text = f"the op is {size} bytes encoded; the relay accepts at most {limit}"
        sync = self.rooms[message.room]
        events = sync.fail(message.client_seq, ErrorCode.TOO_LARGE.value, text, now)
        return self._room_events(sync, events, now)

    # --- inputs: time -------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the shell must call tick() next (None: no deadline)."""
        deadlines = (
            self._handshake_deadline,
            self._ping_at,
            self._pong_deadline,
            self._ack_check_at,
            self._presence_due,
            self._pace_due,
            self._renewal.due if self.state in _RENEWABLE else None,
        )
        return min((d for d in deadlines if d is not None), default=None)

    def tick(self, now: float) -> list[Action]:
        """Time passed: handshake timeout, heartbeat, ack resends, throttled presence,
        ops the pacer held back, renewing the token."""
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            return self._handshake_timeout()
        actions: list[Action] = []
        if self._pong_deadline is not None and now >= self._pong_deadline:
            self._stop_timers()
            return [Abort(AbortReason.HEARTBEAT)]
        if self._ping_at is not None and now >= self._ping_at:
            self._ping_at, self._pong_deadline = None, now + self.config.heartbeat_timeout
            actions.append(Ping())
        if self._presence_due is not None and now >= self._presence_due:
            self._presence_due = None
            actions += self._send_presence(now)
        if self._ack_check_at is not None and now >= self._ack_check_at:
            actions += self._resend_overdue(now)
        if self._pace_due is not None and now >= self._pace_due:
            for sync in self.rooms.values():
                actions += self._room_events(sync, sync.flush(now), now)
        if self.state in _RENEWABLE and self._renewal.ask(now):
            actions.append(RenewToken())
        return actions

    def pong(self, now: float) -> list[Action]:
        """Our ping's pong arrived: the relay lives; next ping after the interval."""
        self._accept("pong")
        if self._pong_deadline is None:
            return []
        self._pong_deadline, self._ping_at = None, now + self.config.heartbeat_interval
        if self._ack_check_at is None:  # a heartbeat round is the ack check's period
            self._ack_check_at = now
        if self.presence.check_idle():
            return [MyPresence(dict(self.presence.fields)), *self._schedule_presence(now)]
        return []

    def _handshake_timeout(self) -> list[Action]:
        self._handshake_deadline = None
        if self.state is State.CLOSING:  # refused, but the relay never closed
            return [Abort(AbortReason.HEARTBEAT)]
        error = TimeoutError(f"no welcome within {self.config.open_timeout} s")
        self._goto(State.CLOSING)
        return [
            ConnectionFailed(error, "handshake"),
            Close(CloseCode.PROTOCOL_ERROR, "bad handshake"),
        ]

    def _resend_overdue(self, now: float) -> list[Action]:
        """Resend in-flight ops whose ack is late (the relay deduplicates them)."""
        actions: list[Action] = []
        for sync in self.rooms.values():
            actions += sync.tick(now, self.config.ack_timeout)
        sent = [p.sent_at for s in self.rooms.values() for p in s.pending if p.sent]
        self._ack_check_at = min(sent) + self.config.ack_timeout if sent else None
        messages = [action.message for action in actions if isinstance(action, Send)]
        return [SendMessages(messages, resends=len(messages))] if messages else []

    # --- internals ----------------------------------------------------------------

    def _joins(self, now: float) -> list[Any]:
        """(Re)join every room, resuming from its version; pending ops follow joined."""
        mine = self._presence_snapshot(now) if self._announced else None
        self._joining = set(self.rooms)
        joins = []
        for sync in self.rooms.values():
            (join,) = sync.connection_opened(mine)
            assert isinstance(join, Send)
            joins.append(join.message)
        return joins

    def _room_events(self, sync: RoomSync, events: list[Event], now: float) -> list[Action]:
        """A room's events, with what they mean for the connection."""
        actions: list[Action] = []
        for event in events:
            actions.append(event)
            if isinstance(event, JoinedRoom):
                actions += self._room_joined(sync, event, now)
            elif isinstance(event, Resync):
                self._resync = True
                actions.append(Abort(AbortReason.RESYNC))
        self._pace_due = self._pacing_deadline()
        return self._collect(actions)

    def _pacing_deadline(self) -> float | None:
        """When the pacer lets the first held-back op of any room go (None: none held)."""
        pacer = self.pacer
        if pacer is None:
            return None
        costs = [s.paced_cost for s in self.rooms.values() if s.paced_cost is not None]
        return pacer.ready_at(min(costs)) if costs else None

    def _room_joined(self, sync: RoomSync, event: JoinedRoom, now: float) -> list[Action]:
        self._joining.discard(sync.room)
        if self._joining or self.state is not State.JOINING:
            return [StateChanged(Status.CONNECTED, {"version": event.version, "mode": event.mode})]
        self._goto(State.CONNECTED)
        self.attempt, self._joined_here = 0, True
        if self._ack_check_at is None:
            self._ack_check_at = now + self.config.ack_timeout
        return [
            StateChanged(Status.CONNECTED, {"version": event.version, "mode": event.mode}),
            *self._flush_admin(),
        ]

    def _collect(self, actions: list[Action]) -> list[Action]:
        """Gather the rooms' Send events into one SendMessages, in their order, at the
        place of the first (frames keep the order the cores made them in)."""
        out: list[Action] = []
        batch: list[Any] | None = None
        for action in actions:
            if isinstance(action, Send):
                if batch is None:
                    batch = []
                    out.append(SendMessages(batch))
                batch.append(action.message)
            elif isinstance(action, SendMessages):
                if batch is None:
                    batch = []
                    out.append(SendMessages(batch))
                batch.extend(action.messages)
            else:
                out.append(action)
        return out

    def _flush_admin(self) -> list[Action]:
        admin, self._admin = self._admin, []
        waiting = [*admin, *self._queries.values()]
        return [SendMessages(waiting)] if waiting else []

    def _schedule_presence(self, now: float) -> list[Action]:
        """Publish now if the rate allows, else once when it does (latest wins)."""
        if self.state is not State.CONNECTED or not self._announced:
            return []
        due = self._presence_sent_at + self.presence.min_interval
        if now >= due:
            self._presence_due = None
            return self._send_presence(now)
        if self._presence_due is None:
            self._presence_due = due
        return []

    def _send_presence(self, now: float) -> list[Action]:
        if self.state is not State.CONNECTED:
            return []
        state = self._presence_snapshot(now)
        return [SendMessages([PresenceMessage(room=room, state=state) for room in self.rooms])]

    def _presence_snapshot(self, now: float) -> dict[str, Any]:
        self._presence_sent_at = now
        return self.presence.snapshot()

    def _stop_timers(self) -> None:
        self._handshake_deadline = self._ping_at = self._pong_deadline = None
        self._ack_check_at = self._presence_due = self._pace_due = None
        self._renewal.stop()

    def _after_connection(self, code: int | None, now: float) -> list[Action]:
        """A connection (or an attempt) ended with ``code``: stop, refresh or retry."""
        # Only a connection that got as far as joining resets the backoff: a relay that
        # accepts TCP but never welcomes us is still a failed attempt.
        if self._joined_here:
            self._failures, self._backoff = 0, self._delays()
        else:
            self._failures += 1
        self._joined_here = False
        if self._resync:
            self._resync = False
            return self._retry(now)
        if code in _AUTH_CLOSES and self.config.can_refresh:
            self._goto(State.REFRESHING)
            self._auth_code = CloseCode(code)
            return [NeedToken(CloseCode(code))]
        if code in FINAL_CLOSE_CODES:
            expired = [AuthExpiredEvent()] if code == CloseCode.AUTH_EXPIRED else []
            return [*expired, *self._stop()]
        return self._retry(now)

    def _after_refusal(self, refusal: Refusal, code: int | None, now: float) -> list[Action]:
        """An attempt was refused: stop at once if waiting cannot fix it, else retry
        with backoff and say why (a new token may fix an auth refusal: NeedToken)."""
        if code in _AUTH_CLOSES and self.config.can_refresh:
            return self._after_connection(code, now)
        if refusal.transient:
            self._retry_reason = refusal
            try:
                actions = self._after_connection(code, now)
            finally:
                self._retry_reason = None
            return [RefusedConnection(refusal, self.state is State.CLOSED), *actions]
        self._failures += 1
        self._joined_here = False
        expired = [AuthExpiredEvent()] if code == CloseCode.AUTH_EXPIRED else []
        return [RefusedConnection(refusal, final=True), *expired, *self._stop()]

    def _retry(self, now: float) -> list[Action]:
        limit = self.config.max_attempts
        if limit is not None and self._failures >= limit:
            return [GaveUp(self._failures), *self._stop()]
        self.next_url()
        delay = next(self._backoff)
        self.attempt += 1
        self._goto(State.BACKOFF)
        details: dict[str, Any] = {"attempt": self.attempt, "delay": delay}
        why = self._retry_reason
        if why is not None:  # the status says what the wait is for
            details.update(reason=why.reason, message=why.message)
            if why.limit is not None:
                details["limit"] = why.limit
        return [StateChanged(Status.RECONNECTING, details), ReconnectAfter(delay, self.url)]

    def _stop(self) -> list[Action]:
        self._goto(State.CLOSED)
        self._stop_timers()
        return [StateChanged(Status.CLOSED)]

    def next_url(self) -> None:
        """Fail over: the next attempt goes to the next relay of ``urls`` (round robin)."""
        if len(self.urls) > 1:
            index = self.urls.index(self.url) if self.url in self.urls else -1
            self.url = self.urls[(index + 1) % len(self.urls)]


_REFUSALS = frozenset(refusal.value for refusal in JoinRefusal)


def _lifetime(limits: dict[str, int | float]) -> float | None:
    """How long the connection's token holds, as the welcome states it (None: forever)."""
    value = limits.get("expires_in")
    return float(value) if value is not None and math.isfinite(value) and value >= 0 else None
