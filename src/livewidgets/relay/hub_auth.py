"""The relay as a JupyterHub service: who connects is the Hub's answer (docs/deploy.md
"JupyterHub").

A kernel on a Hub single-user server connects with the token its server already has
(``$JUPYTERHUB_API_TOKEN``, which the server's kernels inherit) and nothing else. The
relay asks the Hub whose token it is with jupyterhub's own service-auth class,
:class:`jupyterhub.services.auth.HubAuth` (``user_for_token``, cached for
``cache_seconds``), so no Hub check is written here. The connection's user is the
Hub user's name; its role comes from the user's Hub groups (:class:`HubRoles`, e.g.
``teachers`` -> admin, everyone else -> write); its groups are also the room rules'
``group:NAME``.

Every ``recheck_interval`` seconds the relay asks again, past the cache, about each
token in use: a token the Hub no longer knows (revoked, the user deleted, the server
stopped) has its connections closed with 4006 ``auth_revoked``, so a removed user is
out within about that interval (60 s by default).

Everything else is the :class:`~.security.SecurityPolicy`'s: limits, rates, origins,
and, when the relay also has a secret, livewidgets tokens and share links (a token
with the JWT's three dot-separated parts is taken for one of ours).

The Hub answers identities with its own API token as the service's (the relay's
``$JUPYTERHUB_API_TOKEN`` as a managed service): groups come with the user's model
when that token may read them (a role with ``read:users:groups``), else the user has
none.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.http11 import Request

from ..auth import Role
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.messages import Hello
from .policy import Denied, Principal
from .security import SecurityPolicy, bearer_token

__all__ = ["HubIdentities", "HubPolicy", "HubRoles", "HubUser"]

log = logging.getLogger("livewidgets.relay.hub")


@dataclass(frozen=True, slots=True)
class HubUser:
    """Who the Hub says a token belongs to."""

    name: str
    groups: frozenset[str] = frozenset()
    # A Hub admin (the user model's ``admin``).
    admin: bool = False
    # "user", or "service" for a Hub service's own token.
    kind: str = "user"


@dataclass(frozen=True, slots=True)
class HubRoles:
    """Hub groups -> livewidgets roles: the highest role any of the user's groups
    maps to, else ``default``; Hub admins are admins (unless ``hub_admins`` is off)."""

    groups: Mapping[str, Role]
    default: Role = Role.WRITE
    hub_admins: bool = True

    @classmethod
    def parse(cls, pairs: Sequence[str], default: str = "write") -> HubRoles:
        """From ``GROUP=ROLE`` strings (``teachers=admin``); ValueError if malformed."""
        groups: dict[str, Role] = {}
        for pair in pairs:
            group, sep, role = pair.partition("=")
            if not sep or not group:
                raise ValueError(f"expected GROUP=ROLE, not {pair!r}")
            try:
                groups[group] = Role(role)
            except ValueError:
                raise ValueError(f"{pair!r}: the role must be read, write or admin") from None
        return cls(groups, Role(default))

    def role_of(self, user: HubUser) -> Role:
        if self.hub_admins and user.admin:
            return Role.ADMIN
        roles = [self.groups[g] for g in user.groups if g in self.groups]
        return max(roles, key=lambda role: role.rank, default=self.default)


class HubIdentities:
    """Hub tokens -> :class:`HubUser`, through jupyterhub's :class:`HubAuth`.

    ``hub_auth`` defaults to one configured from the service's environment
    (``$JUPYTERHUB_API_URL``, ``$JUPYTERHUB_API_TOKEN``), its answers cached for
    ``cache_seconds``.
    """

    def __init__(self, hub_auth: Any = None, *, cache_seconds: int = 60) -> None:
        if hub_auth is None:
            from jupyterhub.services.auth import HubAuth  # the ``hub`` extra

            hub_auth = HubAuth(cache_max_age=cache_seconds)
        self.hub_auth = hub_auth

    @property
    def api_url(self) -> str:
        return str(self.hub_auth.api_url)

    async def identify(self, token: str, *, use_cache: bool = True) -> HubUser | None:
        """The Hub user (or service) ``token`` belongs to; None if the Hub does not
        know it. Raises if the Hub cannot be asked (unreachable, no permission)."""
        model = await self.hub_auth.user_for_token(token, use_cache=use_cache, sync=False)
        if not model or not model.get("name"):
            return None
        return HubUser(
            name=str(model["name"]),
            groups=frozenset(map(str, model.get("groups") or ())),
            admin=bool(model.get("admin")),
            kind=str(model.get("kind") or "user"),
        )


@dataclass(slots=True)
class _KnownToken:
    user: HubUser | None
    # Open connections that hold it (they are rechecked while any does).
    holders: int = 0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _looks_like_ours(token: str) -> bool:
    """A livewidgets token (a JWT: three dot-separated parts); Hub tokens have none."""
    return token.count(".") == 2


class HubPolicy(SecurityPolicy):
    """:class:`SecurityPolicy` whose users are JupyterHub's (a
    :class:`~.policy.RemoteAuthority`: the relay awaits :meth:`verify` before hello
    and auth frames and runs :meth:`recheck` every ``recheck_interval`` seconds)."""

    def __init__(
        self,
        identities: HubIdentities,
        roles: HubRoles | None = None,
        *,
        recheck_interval: float = 60.0,
        secret: bytes | None = None,
        **options: Any,
    ) -> None:
        super().__init__(secret, **options)
        self.identities = identities
        self.roles = roles or HubRoles({})
        self.recheck_interval = recheck_interval
        # sha256(token) -> what the Hub said about it, and the token itself while a
        # connection holds it (to ask again); dropped when nobody holds it.
        self._known: dict[str, _KnownToken] = {}
        self._tokens: dict[str, str] = {}

    # --- RemoteAuthority ----------------------------------------------------------

    async def verify(self, token: str) -> None:
        if self.secret is not None and _looks_like_ours(token):
            return  # a livewidgets token: SecurityPolicy checks it itself
        digest = _digest(token)
        try:
            user = await self.identities.identify(token)
        except Exception as exc:  # the Hub is down or refuses us: no identity, said why
            log.error(
                "asking JupyterHub (%s) about a token failed: %s", self.identities.api_url, exc
            )
            user = None
        known = self._known.get(digest)
        if known is None:
            self._known[digest] = _KnownToken(user)
        else:
            known.user = user
        self._tokens[digest] = token

    async def recheck(self) -> bool:
        """Ask the Hub again (uncached) about every token an open connection holds."""
        dropped = False
        for digest, known in list(self._known.items()):
            if known.holders <= 0 or known.user is None:
                continue
            token = self._tokens.get(digest)
            if token is None:
                continue
            try:
                user = await self.identities.identify(token, use_cache=False)
            except Exception as exc:  # unreachable: keep what we knew, try next round
                log.warning("rechecking a token with JupyterHub failed: %s", exc)
                continue
            if user is None:
                log.info("JupyterHub no longer knows the token of %s", known.user.name)
                known.user = None
                dropped = True
        return dropped

    # --- Policy hooks -------------------------------------------------------------

    def on_hello(self, hello: Hello, request: Request | None) -> Principal | Denied:
        token = hello.token or bearer_token(request)
        if token is None:
            return Denied(
                ErrorCode.AUTH_REQUIRED,
                "this relay is a JupyterHub service: connect with a Hub token "
                "($JUPYTERHUB_API_TOKEN)",
                CloseCode.AUTH_INVALID,
            )
        if self.secret is not None and _looks_like_ours(token):
            return super().on_hello(hello, request)
        known = self._known.get(_digest(token))
        if known is None or known.user is None:
            self._forget(_digest(token))
            return Denied(
                ErrorCode.AUTH_INVALID,
                "JupyterHub does not know this token (or could not be asked)",
                CloseCode.AUTH_INVALID,
            )
        known.holders += 1
        return self._principal(known.user, _digest(token))

    def on_renew(
        self, principal: Principal, token: str, rooms: Sequence[str]
    ) -> Principal | Denied:
        if "hub_token" not in principal.claims:
            return super().on_renew(principal, token, rooms)
        known = self._known.get(_digest(token))
        if known is None or known.user is None:
            return Denied(ErrorCode.AUTH_INVALID, "JupyterHub does not know the new token")
        if known.user.name != principal.user:
            return Denied(
                ErrorCode.FORBIDDEN,
                f"the new token is {known.user.name!r}'s, this connection is "
                f"{principal.user!r}'s: another user needs a connection of their own",
            )
        renewed = self._principal(known.user, _digest(token))
        known.holders += 1
        self._release(principal)
        self._carry_over(principal, renewed)
        return renewed

    def revoked(self, principal: Principal) -> Denied | None:
        digest = principal.claims.get("hub_token")
        if digest is None:
            return super().revoked(principal)
        known = self._known.get(digest)
        if known is not None and known.user is not None:
            return None
        return Denied(
            ErrorCode.AUTH_REVOKED,
            "JupyterHub no longer accepts this token (revoked, or the user was removed)",
            CloseCode.REVOKED,
        )

    def on_close(self, principal: Principal | None, address: str | None) -> None:
        if principal is not None:
            self._release(principal)
        super().on_close(principal, address)

    # --- internals ----------------------------------------------------------------

    def _principal(self, user: HubUser, digest: str) -> Principal:
        role = self.roles.role_of(user)
        return Principal(
            user=user.name,
            claims={
                "room": "*",
                "role": role.value,
                "groups": tuple(sorted(user.groups)),
                "hub_token": digest,
                # As for livewidgets tokens (relay.security): the user's rate buckets,
                # and the namespace of their client ids.
                "owner": f"user:{user.name}",
                "client_scope": hashlib.sha256(user.name.encode()).hexdigest()[:12],
            },
        )

    def _release(self, principal: Principal) -> None:
        digest = principal.claims.get("hub_token")
        known = self._known.get(digest) if digest is not None else None
        if digest is None or known is None:
            return
        known.holders -= 1
        if known.holders <= 0:
            self._forget(digest)

    def _forget(self, digest: str) -> None:
        known = self._known.get(digest)
        if known is not None and known.holders > 0:
            return
        self._known.pop(digest, None)
        self._tokens.pop(digest, None)
