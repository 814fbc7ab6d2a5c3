"""The relay's security policy: tokens and roles, origins, connection limits, rate limits.

Link tokens give each holder an identity of their own (relay.links); revoked links
and tokens are refused at hello and their connections closed (relay.revocation).

Implements :class:`~livewidgets.relay.policy.Policy` (docs/security.md). Everything
that decides is here; the server only asks and obeys. Rates are token buckets per
connection and per user; a sender over them is slowed (the relay reads it later),
not refused, so one flooding client slows only itself (docs/protocol.md "Pacing").
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from websockets.http11 import Request

from ..auth import Role, TokenClaims, TokenError, TokenExpired, relay_proof, verify_token
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.messages import Hello
from ..protocol.pacing import TokenBucket
from ..state.ops import Op
from .links import link_identity
from .policy import Denied, Principal, Slow
from .revocation import Denylist, Revocation, RevokeKind

__all__ = [
    "LOOPBACK_HOSTS",
    "LOOPBACK_ORIGINS",
    "Limits",
    "SecurityPolicy",
    "TokenBucket",
    "bearer_token",
    "origin_matches",
]

# Pages served from this machine, any port (the local relay's allowlist): a browser
# page elsewhere cannot open the relay even though it can reach 127.0.0.1.
LOOPBACK_ORIGINS: tuple[str, ...] = tuple(
    f"{scheme}://{host}{port}"
    for scheme in ("http", "https")
    for host in ("localhost", "127.0.0.1", "[::1]")
    for port in ("", ":*")
)

# Host headers naming this machine (the local relay's allowlist): a page whose DNS name
# was rebound to 127.0.0.1 sends its own name as Host and is refused (DNS rebinding).
LOOPBACK_HOSTS: tuple[str, ...] = tuple(
    f"{host}{port}" for host in ("localhost", "127.0.0.1", "[::1]") for port in ("", ":*")
)


@dataclass
class Limits:
    """Documented defaults (docs/security.md "Limits")."""

    max_rooms_per_connection: int = 16
    # A 1,000-person lesson (students, the teacher, a projector, a second kernel here
    # and there) fits with room to spare; the fan-out to a room this size is measured
    # in docs/benchmarks.md "Lesson".
    max_connections_per_room: int = 2000
    # Connections per address that carry no credentials: every connection until its
    # hello, and on a relay without a secret every connection (there the user is only
    # a claim). High, because whole classes share one address: a school's NAT, the
    # JupyterHub proxy, or 127.0.0.1 for every kernel on one machine.
    max_connections_per_ip: int = 2048
    # Connections per authenticated user (the token's sub), from any address: one
    # person's kernels, tabs and scripts, with room for reconnects in flight.
    max_connections_per_user: int = 32
    # Ops per second and burst (a batch counts its ops), per connection and per user
    # (one bucket shared by the user's connections; without a secret, per connection);
    # advertised in welcome.limits, enforced by reading slower (docs/protocol.md "Pacing").
    ops_per_second: float = 200.0
    ops_burst: float = 400.0
    user_ops_per_second: float = 200.0
    user_ops_burst: float = 400.0
    # Presence updates, per user.
    presence_per_second: float = 40.0
    presence_burst: float = 80.0
    # A connection that had to be slowed down for every frame it sent, without a break,
    # for this many seconds is not pacing itself at all: rate_limited and close 4008.
    max_throttled_seconds: float = 60.0

    def advertised(self) -> dict[str, float]:
        """The rates for welcome.limits; unlimited ones are left out (docs/protocol.md)."""
        rates = {
            "ops_per_second": self.ops_per_second,
            "ops_burst": self.ops_burst,
            "user_ops_per_second": self.user_ops_per_second,
            "user_ops_burst": self.user_ops_burst,
            "presence_per_second": self.presence_per_second,
            "presence_burst": self.presence_burst,
        }
        return {key: value for key, value in rates.items() if not math.isinf(value)}


@dataclass(slots=True)
class _Rates:
    """A user's token buckets: they outlive connections, so reconnecting does not buy
    a fresh burst."""

    owner: str
    ops: TokenBucket
    presence: TokenBucket
    connections: int = 0


@dataclass(slots=True)
class _ConnectionState:
    rates: _Rates
    # This connection's own ops bucket (the user's is rates.ops).
    ops: TokenBucket
    # The principal's role allows writes (decided once: a connection's principal is
    # fixed at hello, and this is asked for every op).
    may_write: bool
    rooms: set[str] = field(default_factory=set)
    # Since when every frame of this connection had to be slowed down (None: the
    # last one was within the rate). Per connection: a reconnect starts afresh.
    throttled_since: float | None = None


class SecurityPolicy:
    """Token auth (when a secret is set), origin allowlist, limits and rate limits."""

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        allow_origins: Sequence[str] = (),
        allow_hosts: Sequence[str] = (),
        limits: Limits | None = None,
    ) -> None:
        self.secret = secret
        # Origin globs, e.g. "https://hub.example.org", "http://localhost:*".
        self.allow_origins = list(allow_origins)
        self._origin_patterns = [_origin_pattern(allowed) for allowed in self.allow_origins]
        # Host header globs, e.g. "relay.example.org", "127.0.0.1:*"; empty: any Host.
        self.allow_hosts = list(allow_hosts)
        self._host_patterns = [_origin_pattern(allowed) for allowed in self.allow_hosts]
        self.limits = limits or Limits()
        self._states: dict[int, _ConnectionState] = {}
        # user -> rate state, shared by that user's connections (see _Rates).
        self._rates: dict[str, _Rates] = {}
        # Owners of _rates entries with no connection left, oldest first (an ordered set).
        self._idle: dict[str, None] = {}
        self._room_counts: Counter[str] = Counter()
        # Anonymous connections per address, and authenticated ones per user: a
        # connection counts for its address from on_connect until on_admit moves it to
        # its user (docs/security.md "Connection limits").
        self._ip_counts: Counter[str] = Counter()
        self._user_counts: Counter[str] = Counter()
        # id(principal) -> user, for connections counted per user.
        self._counted_users: dict[int, str] = {}
        # Revoked links and tokens, as the relay's store has them (relay.revoker).
        self.denylist = Denylist()

    # --- Policy hooks -------------------------------------------------------------

    def check_request(self, request: Request) -> Denied | None:
        """Every HTTP request (handshakes, /healthz, /metrics): a Host outside the
        allowlist is refused (DNS rebinding), then an Origin outside its allowlist
        (browsers send Origin; kernels send none)."""
        if self._host_patterns:
            host = request.headers.get("Host", "")
            if not any(pattern.fullmatch(host) for pattern in self._host_patterns):
                return Denied(ErrorCode.FORBIDDEN, f"host {host[:128]!r} is not allowed")
        origin = request.headers.get("Origin")
        if origin is None or not self.allow_origins:
            return None
        if any(pattern.fullmatch(origin) for pattern in self._origin_patterns):
            return None
        return Denied(
            ErrorCode.FORBIDDEN, f"origin {origin!r} is not allowed", CloseCode.ORIGIN_FORBIDDEN
        )

    def check_connect(self, address: str | None) -> Denied | None:
        """Would :meth:`on_connect` admit ``address`` now? Asked at the HTTP upgrade, so
        a refusal is a readable 429 before any WebSocket exists; counts nothing."""
        limit = self.limits.max_connections_per_ip
        if address is not None and self._ip_counts[address] >= limit:
            return Denied(
                ErrorCode.LIMIT_EXCEEDED,
                f"too many anonymous connections from {address} (limit {limit})",
                CloseCode.POLICY_VIOLATION,
                status=429,
            )
        return None

    def on_connect(self, address: str | None) -> Denied | None:
        """A TCP peer opened a WebSocket (before hello): it counts for its address.
        Checked again here: handshakes that passed check_connect together may overshoot."""
        denied = self.check_connect(address)
        if denied is None and address is not None:
            self._ip_counts[address] += 1
        return denied

    def on_admit(self, principal: Principal, address: str | None) -> Denied | None:
        """After hello: a connection with a personal token stops counting for its
        address and counts for its user instead (a class behind one NAT is many users).
        Link holders stay counted per address: their identity comes from the client id
        they ask for (relay.links), so a holder could mint as many as they like."""
        claims = principal.claims
        if "token_id" not in claims or claims.get("link_id") is not None:
            return None  # anonymous, or a link holder: stays counted per address
        user, limit = claims.get("owner") or principal.user, self.limits.max_connections_per_user
        if self._user_counts[user] >= limit:
            return Denied(
                ErrorCode.LIMIT_EXCEEDED,
                f"too many connections for user {principal.user[:64]!r} (limit {limit})",
                CloseCode.POLICY_VIOLATION,
            )
        self._release_address(address)
        self._user_counts[user] += 1
        self._counted_users[id(principal)] = user
        return None

    def prove(self, nonce: str) -> str | None:
        return relay_proof(self.secret, nonce) if self.secret is not None else None

    def on_hello(self, hello: Hello, request: Request | None) -> Principal | Denied:
        token = hello.token or bearer_token(request)
        if self.secret is None:
            return Principal(user=hello.user, claims={"role": Role.ADMIN.value})
        if token is None:
            return Denied(
                ErrorCode.AUTH_REQUIRED,
                "this relay needs a token (hello.token)",
                CloseCode.AUTH_INVALID,
            )
        try:
            claims = verify_token(self.secret, token)
        except TokenExpired:
            return Denied(ErrorCode.AUTH_EXPIRED, "the token has expired", CloseCode.AUTH_EXPIRED)
        except TokenError as exc:
            return Denied(ErrorCode.AUTH_INVALID, str(exc), CloseCode.AUTH_INVALID)
        if len(hello.client_id or "") > 48:
            return Denied(
                ErrorCode.INVALID_MESSAGE,
                "client_id: at most 48 characters",
                CloseCode.HELLO_REQUIRED,
            )
        principal = _principal(self.secret, claims, hello)
        denied = self.revoked(principal)
        return principal if denied is None else denied

    def expires_at(self, principal: Principal) -> float | None:
        """Unix time when this connection's token expires (None: never)."""
        value = principal.claims.get("expires_at")
        return float(value) if value is not None else None

    def on_renew(
        self, principal: Principal, token: str, rooms: Sequence[str]
    ) -> Principal | Denied:
        """A fresh token for an open connection (docs/security.md "Renewal").

        It must be valid now, name the connection's user (the client id namespace,
        presence stamps and rate buckets are that user's) and admit every room the
        connection has joined. Its role and room scope then hold from the next frame
        on, up or down: the token would grant no less on a fresh connection. A
        refusal leaves the connection as it was, old deadline included.
        """
        if self.secret is None:
            return principal  # no token is checked: nothing changes, nothing expires
        try:
            claims = verify_token(self.secret, token)
        except TokenExpired:
            return Denied(ErrorCode.AUTH_EXPIRED, "the new token has already expired")
        except TokenError as exc:
            return Denied(ErrorCode.AUTH_INVALID, f"the new token is invalid: {exc}")
        link_id = principal.claims.get("link_id")
        if claims.link_id != link_id or (link_id is None and claims.user != principal.user):
            held = f"link {link_id!r}" if link_id else f"user {principal.user!r}"
            got = f"link {claims.link_id!r}" if claims.link_id else f"user {claims.user!r}"
            return Denied(
                ErrorCode.FORBIDDEN,
                f"the new token is for {got}, this connection is {held}: "
                "another user needs a connection of their own",
            )
        for room in rooms:
            if not claims.admits(room):
                return Denied(
                    ErrorCode.FORBIDDEN,
                    f"the new token does not admit room {room!r}, joined on this connection",
                )
        # Who the connection is stays (user, client ids, buckets: for a link holder, the
        # identity relay.links gave them); what the token grants is the new token's.
        granted = {
            "room": claims.room,
            "role": claims.role.value,
            "expires_at": claims.expires_at,
            "token_id": claims.token_id,
            "groups": claims.groups,
        }
        renewed = Principal(
            user=principal.user,
            claims={**principal.claims, **granted},
            client_id=principal.client_id,
        )
        denied = self.revoked(renewed)
        if denied is not None:
            return Denied(denied.code, denied.message)  # refused; the old token holds
        self._carry_over(principal, renewed)
        return renewed

    def _carry_over(self, old: Principal, new: Principal) -> None:
        """A renewal: the connection's counts, buckets and throttling move to its new
        principal (still the same user's connection: on_admit counted it once)."""
        state = self._states.pop(id(old), None)
        if state is not None:
            state.may_write = self.role(new).allows(Role.WRITE)
            self._states[id(new)] = state
        counted = self._counted_users.pop(id(old), None)
        if counted is not None:
            self._counted_users[id(new)] = counted

    def on_join(self, principal: Principal, room: str) -> Denied | None:
        pattern = principal.claims.get("room")
        if pattern is not None and not fnmatch.fnmatchcase(room, pattern):
            return Denied(ErrorCode.FORBIDDEN, f"the token does not admit room {room!r}")
        state = self._state(principal)
        if room not in state.rooms:
            if len(state.rooms) >= self.limits.max_rooms_per_connection:
                return Denied(
                    ErrorCode.LIMIT_EXCEEDED,
                    "too many rooms on this connection "
                    f"(limit {self.limits.max_rooms_per_connection})",
                )
            if self._room_counts[room] >= self.limits.max_connections_per_room:
                return Denied(
                    ErrorCode.LIMIT_EXCEEDED,
                    f"room {room!r} is full (limit {self.limits.max_connections_per_room}"
                    " connections)",
                )
            state.rooms.add(room)
            self._room_counts[room] += 1
        return None

    def on_leave(self, principal: Principal, room: str) -> None:
        state = self._states.get(id(principal))
        if state is not None and room in state.rooms:
            state.rooms.discard(room)
            self._release_room(room)

    def on_write(
        self, principal: Principal, room: str, ops: Sequence[Op], now: float
    ) -> Denied | Slow | None:
        state = self._state(principal)
        if not state.may_write:
            return Denied(ErrorCode.FORBIDDEN, "read-only token: writes are not allowed")
        cost = len(ops)
        wait = state.ops.charge(now, cost)
        user_wait = state.rates.ops.charge(now, cost)
        if user_wait > wait:
            wait = user_wait
        if wait == 0.0:
            state.throttled_since = None
            return None
        return self._slow(state, now, wait, "operations")

    def on_presence(self, principal: Principal, room: str, now: float) -> Denied | Slow | None:
        state = self._state(principal)
        wait = state.rates.presence.charge(now)
        if wait == 0.0:
            return None
        return self._slow(state, now, wait, "presence updates")

    def rates(self) -> dict[str, float]:
        return self.limits.advertised()

    def on_admin(self, principal: Principal, room: str) -> Denied | None:
        if not self.role(principal).allows(Role.ADMIN):
            return Denied(ErrorCode.FORBIDDEN, "admin role required")
        return None

    def on_revoke(
        self, principal: Principal, room: str, kind: RevokeKind, ident: str
    ) -> Revocation | Denied:
        if self.secret is None:
            return Denied(ErrorCode.FORBIDDEN, "this relay checks no tokens: nothing to revoke")
        scope = principal.claims.get("room")
        if not self.role(principal).allows(Role.ADMIN) or scope is None:
            return Denied(ErrorCode.FORBIDDEN, "admin role required")
        if not fnmatch.fnmatchcase(room, scope):
            return Denied(ErrorCode.FORBIDDEN, f"the token does not admit room {room!r}")
        # The revoker's own room scope bounds what the revocation reaches (covers()).
        return Revocation(kind, ident, scope, time.time())

    def add_revoked(self, revocations: Iterable[Revocation]) -> bool:
        return bool(self.denylist.add(revocations))

    def revoked(self, principal: Principal) -> Denied | None:
        claims = principal.claims
        if "token_id" not in claims:
            return None  # no token, nothing to revoke
        found = self.denylist.match(claims["token_id"], claims.get("link_id"), claims["room"])
        if found is None:
            return None
        what = "link" if found.kind is RevokeKind.LINK else "token"
        return Denied(
            ErrorCode.AUTH_REVOKED, f"this {what} was revoked by an admin", CloseCode.REVOKED
        )

    def on_close(self, principal: Principal | None, address: str | None) -> None:
        """The connection ended: release what it held."""
        user = self._counted_users.pop(id(principal), None) if principal is not None else None
        if user is not None:
            self._user_counts[user] -= 1
            if self._user_counts[user] <= 0:
                del self._user_counts[user]
        else:
            self._release_address(address)
        if principal is None:
            return
        state = self._states.pop(id(principal), None)
        if state is None:
            return
        for room in state.rooms:
            self._release_room(room)
        rates = state.rates
        rates.connections -= 1
        if rates.connections <= 0:
            self._idle[rates.owner] = None
        self._forget_rested(time.monotonic())

    def _forget_rested(self, now: float, budget: int = 16) -> None:
        """Drop the buckets of users with no connection whose buckets are full again.

        Looks at no more than ``budget`` such users per call, oldest first, so that
        closing N connections costs O(N), not O(N²); every close makes progress, and a
        user still cooling down is looked at again later.
        """
        for owner in list(itertools.islice(self._idle, budget)):
            rates = self._rates[owner]
            del self._idle[owner]
            if rates.ops.rested(now) and rates.presence.rested(now):
                del self._rates[owner]
            else:
                self._idle[owner] = None  # to the back of the line

    def remembered_users(self) -> int:
        """Users whose rate state is kept (connected, or buckets not yet full again)."""
        return len(self._rates)

    # --- internals ----------------------------------------------------------------

    @staticmethod
    def role(principal: Principal) -> Role:
        return Role(principal.claims.get("role", Role.READ.value))

    def _state(self, principal: Principal) -> _ConnectionState:
        state = self._states.get(id(principal))
        if state is None:
            # Authenticated users share their buckets across connections (a link
            # holder's are their client id's: relay.links); without a secret the user
            # name is only a claim, so each connection has its own.
            owner = principal.claims.get("owner") or f"#{id(principal)}"
            rates = self._rates.get(owner)
            if rates is None:
                limits = self.limits
                rates = self._rates[owner] = _Rates(
                    owner,
                    TokenBucket(limits.user_ops_per_second, limits.user_ops_burst, -math.inf),
                    TokenBucket(limits.presence_per_second, limits.presence_burst, -math.inf),
                )
            self._idle.pop(owner, None)
            rates.connections += 1
            may_write = self.role(principal).allows(Role.WRITE)
            own = TokenBucket(self.limits.ops_per_second, self.limits.ops_burst, -math.inf)
            state = self._states[id(principal)] = _ConnectionState(rates, own, may_write)
        return state

    def _slow(self, state: _ConnectionState, now: float, wait: float, what: str) -> Slow | Denied:
        """Over the rate: read this connection later (backpressure), unless every frame
        it sent for max_throttled_seconds was over it (not pacing at all: 4008)."""
        since = state.throttled_since
        if since is None:
            state.throttled_since = now
        elif now - since > self.limits.max_throttled_seconds:
            limits = self.limits
            return Denied(
                ErrorCode.RATE_LIMITED,
                f"too many {what} for {limits.max_throttled_seconds:g} s: pace to "
                f"welcome.limits (at most {limits.ops_per_second:g} ops/s)",
                CloseCode.RATE_LIMITED,
            )
        return Slow(now + wait)

    def _release_address(self, address: str | None) -> None:
        if address is not None and self._ip_counts[address] > 0:
            self._ip_counts[address] -= 1
            if not self._ip_counts[address]:
                del self._ip_counts[address]

    def _release_room(self, room: str) -> None:
        self._room_counts[room] -= 1
        if self._room_counts[room] <= 0:
            del self._room_counts[room]


def origin_matches(origin: str, allowed: str) -> bool:
    """Whether ``origin`` matches the allowlist glob ``allowed``: ``*`` is any run of
    characters, ``?`` one character, everything else literal -- ``[`` too, unlike
    fnmatch, so ``http://[::1]:*`` means the IPv6 loopback. Case-insensitive (hosts are)."""
    return _origin_pattern(allowed).fullmatch(origin) is not None


def _origin_pattern(allowed: str) -> re.Pattern[str]:
    regex = ".*".join(
        ".".join(re.escape(piece) for piece in part.split("?")) for part in allowed.split("*")
    )
    return re.compile(regex, re.IGNORECASE | re.DOTALL)


def bearer_token(request: Request | None) -> str | None:
    """A token from ``Authorization: Bearer ...`` (never from the URL query)."""
    if request is None:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _principal(secret: bytes, claims: TokenClaims, hello: Hello) -> Principal:
    """Who a verified token makes the connection: its user, or for a link, an identity
    of the holder's own (relay.links)."""
    common = {
        "room": claims.room,
        "role": claims.role.value,
        "expires_at": claims.expires_at,
        "token_id": claims.token_id,
        # Room rules' group:NAME (docs/rules.md).
        "groups": claims.groups,
    }
    if claims.link_id is not None:
        identity = link_identity(secret, claims.link_id, hello.user, hello.client_id)
        return Principal(
            user=identity.user,
            claims={**common, "link_id": claims.link_id, "owner": f"link:{identity.client_id}"},
            client_id=identity.client_id,
        )
    assert claims.user is not None  # verify_token: exactly one of sub and lid
    return Principal(
        user=claims.user,
        claims={
            **common,
            # Rate buckets' key: prefixed, so no user name can equal a link holder's.
            "owner": f"user:{claims.user}",
            # Namespace for this user's client ids (relay.session scopes client_ids by
            # it); lowercase hex, never "L" as link holders' ids (relay.links).
            "client_scope": hashlib.sha256(claims.user.encode()).hexdigest()[:12],
        },
    )
