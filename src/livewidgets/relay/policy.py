"""The seam for authentication, authorization and limits (docs/security.md).

The relay asks its policy at every decision point and does what it says:

==============  ===============================================  ======================
hook            when                                             typical use
==============  ===============================================  ======================
check_request   HTTP upgrade request, before the handshake       Origin allowlist
check_connect   HTTP upgrade request (read-only): 429 if full    connections per IP
on_connect      WebSocket open, before hello                     connections per IP
on_hello        the hello frame                                  verify a token, roles
on_admit        hello granted: the principal is known            connections per user
on_renew        an auth frame: a new token, same connection      token renewal
on_join         each join                                        room scope, read role
on_leave        each leave (not on close: see on_close)          room counts
on_write        each op / batch, before it reaches the room      write role, pacing
on_presence     each presence update                             pacing
on_admin        each admin message (reset, kick)                 admin role
on_revoke       each admin revoke: may it, and with what scope   admin role, scope
add_revoked     revocations learnt (store, other relays)         the denylist
revoked         each open connection, after add_revoked          close 4006
expires_at      after hello and each renewal: credentials end    token expiry (close 4004)
rates           each welcome                                     advertised rates
on_close        the connection ended (if on_connect admitted it) release counts
==============  ===============================================  ======================

``on_write`` and ``on_presence`` may answer :class:`Slow`: the op (or update) is
accepted, but the relay reads nothing more from that connection before
``Slow.until`` (backpressure: traffic is shaped, not dropped; docs/protocol.md
"Pacing"). A :class:`Denied` from ``on_write`` is answered with ``reject``: the
refusal goes through the room in client_seq order and is final (the client rolls
the op back); a denial that sets ``close`` (e.g. 4008: still over the rate long
after being slowed) also closes the connection at once (relay.session,
docs/protocol.md "Errors"). Denials of join, presence and admin are answered with
``error``.

Hooks are synchronous and pure apart from the policy's own state (e.g. token
buckets); ``now`` is passed in (monotonic seconds) so limits are testable.
:class:`AllowAll` is the default.

A policy whose credentials are checked by someone else (JupyterHub: relay.hub_auth)
is also a :class:`RemoteAuthority`: the relay awaits :meth:`RemoteAuthority.verify`
with a hello's or auth's token before handing the frame to the synchronous hooks,
which then decide from what it learned, and runs :meth:`RemoteAuthority.recheck`
every ``recheck_interval`` seconds, asking every connection ``revoked`` again when
it says something changed (a user removed, a token revoked: close 4006).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from websockets.http11 import Request

from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.messages import Hello
from ..state.ops import Op
from .revocation import Revocation, RevokeKind

__all__ = ["AllowAll", "Denied", "Policy", "Principal", "RemoteAuthority", "Slow"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a connection is, as the policy established it at hello."""

    user: str
    # What the policy learned (e.g. token roles and room scope); opaque to the relay.
    claims: Mapping[str, Any] = field(default_factory=dict)
    # The client id the policy assigned (link holders: relay.links); None: the one
    # the hello asked for, scoped by claims["client_scope"] if set (relay.session).
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Denied:
    """A refusal: answered with ``code``; ``close`` also ends the connection."""

    code: ErrorCode
    message: str
    close: CloseCode | None = None
    # The HTTP status when refused before the handshake (check_request and
    # check_connect; None: 403). 429 and 503 tell clients to come back later.
    status: int | None = None


@dataclass(frozen=True, slots=True)
class Slow:
    """Accepted, but read nothing more from this connection before ``until``
    (monotonic seconds): the sender is over its rate."""

    until: float


class Policy(Protocol):
    """Decides who may connect, join, write and publish presence."""

    def check_request(self, request: Request) -> Denied | None:
        """Before any HTTP answer (handshake, /healthz, /metrics); a denial is a 403."""
        ...

    def check_connect(self, address: str | None) -> Denied | None:
        """Whether ``on_connect`` would admit ``address`` now (counts nothing): a
        denial answers the upgrade request with its ``status`` and message."""
        ...

    def on_connect(self, address: str | None) -> Denied | None:
        """A WebSocket opened from ``address`` (IP); a denial closes it."""
        ...

    def on_hello(self, hello: Hello, request: Request | None) -> Principal | Denied:
        """Authenticate the connection (denials should set ``close``)."""
        ...

    def on_admit(self, principal: Principal, address: str | None) -> Denied | None:
        """``on_hello`` granted ``principal``: admit it (per-user limits); a denial
        closes the connection, which is then released with ``on_close(None, ...)``."""
        ...

    def on_renew(
        self, principal: Principal, token: str, rooms: Sequence[str]
    ) -> Principal | Denied:
        """A fresh ``token`` for an open connection (``auth``) that joined ``rooms``:
        the principal the connection is from now on, or a denial (the connection
        stays open with its old principal and deadline; docs/security.md "Renewal")."""
        ...

    def on_join(self, principal: Principal, room: str) -> Denied | None: ...

    def on_leave(self, principal: Principal, room: str) -> None: ...

    def on_write(
        self, principal: Principal, room: str, ops: Sequence[Op], now: float
    ) -> Denied | Slow | None: ...

    def on_presence(self, principal: Principal, room: str, now: float) -> Denied | Slow | None: ...

    def on_admin(self, principal: Principal, room: str) -> Denied | None: ...

    def on_revoke(
        self, principal: Principal, room: str, kind: RevokeKind, ident: str
    ) -> Revocation | Denied:
        """An admin (acting in ``room``) revokes a link or token id: the revocation to
        record (with the scope it applies to, stamped with the time), or a denial."""
        ...

    def add_revoked(self, revocations: Iterable[Revocation]) -> bool:
        """Learn revocations (from the store, this relay's admins or other relays);
        True if any was new (then the relay asks :meth:`revoked` for each connection)."""
        ...

    def revoked(self, principal: Principal) -> Denied | None:
        """A denial (close 4006) if the connection's credentials are revoked."""
        ...

    def rates(self) -> Mapping[str, float]:
        """The rates to advertise in ``welcome.limits`` (docs/protocol.md "Pacing"),
        e.g. ``ops_per_second``; a rate not given is unlimited."""
        ...

    def expires_at(self, principal: Principal) -> float | None:
        """Unix time at which the connection must end with 4004 (None: never)."""
        ...

    def on_close(self, principal: Principal | None, address: str | None) -> None:
        """The connection ended; ``principal`` is None if it never got past hello."""
        ...

    def prove(self, nonce: str) -> str | None:
        """``welcome.proof`` for ``hello.nonce``: shows clients that know the relay's
        secret that this is that relay (auth.relay_proof); None without a secret."""
        ...


@runtime_checkable
class RemoteAuthority(Protocol):
    """A policy that asks a remote service who a token belongs to (relay.hub_auth)."""

    # Seconds between two rechecks of the tokens in use.
    recheck_interval: float

    async def verify(self, token: str) -> None:
        """Learn what ``token`` is worth (cached), before ``on_hello``/``on_renew``
        with it; never raises (an unknown or unreachable answer leaves it unknown,
        and the synchronous hook refuses it)."""
        ...

    async def recheck(self) -> bool:
        """Ask again about the tokens of open connections; True if one is no longer
        valid (the relay then asks every connection ``revoked``)."""
        ...


class AllowAll:
    """Everyone may do everything; the user is whatever the hello says."""

    def check_request(self, request: Request) -> Denied | None:
        return None

    def check_connect(self, address: str | None) -> Denied | None:
        return None

    def on_connect(self, address: str | None) -> Denied | None:
        return None

    def on_admit(self, principal: Principal, address: str | None) -> Denied | None:
        return None

    def prove(self, nonce: str) -> str | None:
        return None

    def on_hello(self, hello: Hello, request: Request | None) -> Principal | Denied:
        return Principal(user=hello.user)

    def on_renew(
        self, principal: Principal, token: str, rooms: Sequence[str]
    ) -> Principal | Denied:
        return principal  # no tokens are checked: nothing changes

    def on_join(self, principal: Principal, room: str) -> Denied | None:
        return None

    def on_leave(self, principal: Principal, room: str) -> None:
        return None

    def on_write(
        self, principal: Principal, room: str, ops: Sequence[Op], now: float
    ) -> Denied | Slow | None:
        return None

    def on_presence(self, principal: Principal, room: str, now: float) -> Denied | Slow | None:
        return None

    def rates(self) -> Mapping[str, float]:
        return {}

    def on_admin(self, principal: Principal, room: str) -> Denied | None:
        return None

    def on_revoke(
        self, principal: Principal, room: str, kind: RevokeKind, ident: str
    ) -> Revocation | Denied:
        return Denied(ErrorCode.FORBIDDEN, "this relay checks no tokens: nothing to revoke")

    def add_revoked(self, revocations: Iterable[Revocation]) -> bool:
        return False

    def revoked(self, principal: Principal) -> Denied | None:
        return None

    def expires_at(self, principal: Principal) -> float | None:
        return None

    def on_close(self, principal: Principal | None, address: str | None) -> None:
        return None
