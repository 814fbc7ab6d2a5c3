"""Signed access tokens: who may enter which rooms, with what role, until when.

Tokens are JSON Web Tokens signed with HMAC-SHA256 (PyJWT does the signing and
the checks; nothing cryptographic is hand-written here). Claims:

=======  ===================================================================
sub      the user id the relay stamps on the connection (presence, logs)
lid      instead of ``sub``: a link id. A link token names a link, not a person:
         everyone who holds it gets an identity of their own (relay.links)
room     a room name or a glob (``class-*``, ``*``) the token admits
role     ``read`` (join, receive, presence) < ``write`` (+ ops) < ``admin``
exp/iat  expiry and issue time (unix seconds); ``exp`` is required
jti      a random token id, for audit and revocation (relay.revocation)
groups   optional: the groups of ``sub``, for room rules' ``group:NAME``
=======  ===================================================================

A token has exactly one of ``sub`` and ``lid``: a personal token or a link.

The secret comes from ``--secret-file`` or ``LIVEWIDGETS_SECRET`` (docs/security.md).

The same secret lets a relay prove itself to a client that knows it (the local
relay's kernels): ``hello.nonce`` in, ``welcome.proof`` = :func:`relay_proof` out
(HMAC-SHA256 from the standard library), so a process that took over a dead relay's
port cannot pass for it.
"""

from __future__ import annotations

import base64
import enum
import fnmatch
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

__all__ = [
    "MIN_SECRET_BYTES",
    "Role",
    "TokenClaims",
    "TokenError",
    "TokenExpired",
    "is_link_user",
    "issue_link_token",
    "issue_token",
    "load_secret",
    "new_link_id",
    "parse_ttl",
    "relay_proof",
    "verify_relay_proof",
    "verify_token",
]

ALGORITHM = "HS256"
# RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32


class Role(str, enum.Enum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return ("read", "write", "admin").index(self.value)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class TokenError(ValueError):
    """The token is malformed, badly signed, or its claims are invalid."""


class TokenExpired(TokenError):
    """The token was valid but its ``exp`` has passed."""


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says. Exactly one of ``user`` (a personal token) and
    ``link_id`` (a link: its holders name themselves, relay.links) is set."""

    user: str | None
    room: str
    role: Role
    expires_at: float
    token_id: str
    link_id: str | None = None
    # Groups the token's user is in (room rules' group:NAME); links have none.
    groups: tuple[str, ...] = ()

    def admits(self, room: str) -> bool:
        """True if this token's room claim (a name or glob) covers ``room``."""
        return fnmatch.fnmatchcase(room, self.room)

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


def load_secret(
    secret_file: str | None = None, env: Mapping[str, str] | None = None
) -> bytes | None:
    """The relay secret from a file (stripped) or ``LIVEWIDGETS_SECRET``; None if neither."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if secret_file:
        secret = Path(secret_file).read_bytes().strip()
    elif environ.get("LIVEWIDGETS_SECRET"):
        secret = environ["LIVEWIDGETS_SECRET"].encode()
    else:
        return None
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret must be at least {MIN_SECRET_BYTES} bytes long")
    return secret


_TTL = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_ttl(text: str) -> float:
    """``"90"``/``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` → seconds."""
    match = _TTL.match(text.strip())
    if not match:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 15m, 1h or 7d")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    return float(match[1]) * scale


# User ids the relay gives link holders (relay.links): "<name> (guest)" or
# "guest-<digits>". Personal tokens are refused such ids, so a link holder's name can
# never be mistaken for a user with a token of their own.
_LINK_USER = re.compile(r"(?s)^(guest-\d+|.* \(guest\))\Z")
# Link and token ids: short, URL-safe (what token_urlsafe makes); those made here also
# never start with "-", which a command line would take for an option (_new_id).
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


def is_link_user(user: str) -> bool:
    """Whether ``user`` has the form the relay reserves for link holders."""
    return _LINK_USER.match(user) is not None


def new_link_id() -> str:
    """A fresh random link id (72 bits, 12 URL-safe characters)."""
    return _new_id(9)


def _new_id(nbytes: int) -> str:
    """``secrets.token_urlsafe(nbytes)`` that does not start with "-": one in 64 did,
    and ``livewidgets revoke --link -x...`` then read the id as an option."""
    while True:
        ident = secrets.token_urlsafe(nbytes)
        if not ident.startswith("-"):
            return ident


def issue_token(
    secret: bytes,
    *,
    user: str,
    room: str,
    role: Role | str = Role.WRITE,
    ttl: float = 3600.0,
    now: float | None = None,
    groups: Sequence[str] = (),
) -> str:
    """A signed token for ``user`` in ``room`` (name or glob) with ``role``, and the
    ``groups`` room rules may name (``group:NAME``, docs/rules.md)."""
    if not user or not room:
        raise ValueError("a token needs a user and a room")
    if is_link_user(user):
        raise ValueError(
            f"user {user!r} has the form reserved for link holders "
            "('<name> (guest)', 'guest-<digits>'); choose another"
        )
    if any(not isinstance(group, str) or not group for group in groups):
        raise ValueError("groups must be non-empty strings")
    who: dict[str, Any] = {"sub": user, "groups": list(groups)} if groups else {"sub": user}
    return _sign(secret, who, room, role, ttl, now)


def issue_link_token(
    secret: bytes,
    *,
    room: str,
    role: Role | str = Role.READ,
    ttl: float = 7200.0,
    link_id: str | None = None,
    now: float | None = None,
) -> tuple[str, str]:
    """A signed link for ``room`` with ``role``: ``(token, link_id)``.

    Everyone who connects with it gets an identity of their own (the name they give,
    else ``guest-<n>``; relay.links). ``link_id`` (default: a new one) is what an
    admin revokes to shut the link, and every token carrying it, at once.
    """
    link_id = new_link_id() if link_id is None else link_id
    if not room:
        raise ValueError("a link needs a room")
    if not ID_PATTERN.match(link_id):
        raise ValueError(f"invalid link id {link_id!r}: 1-64 of A-Z a-z 0-9 _ -")
    return _sign(secret, {"lid": link_id}, room, role, ttl, now), link_id


def _sign(
    secret: bytes,
    who: dict[str, Any],
    room: str,
    role: Role | str,
    ttl: float,
    now: float | None,
) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        **who,
        "room": room,
        "role": Role(role).value,
        "iat": issued,
        "exp": issued + max(1, int(ttl)),
        "jti": _new_id(12),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: bytes, token: str, *, now: float | None = None) -> TokenClaims:
    """Check signature, expiry and claim types; raise TokenExpired / TokenError."""
    options: Any = {"require": ["exp", "room", "role", "jti"], "verify_exp": now is None}
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options=options)
    except jwt.ExpiredSignatureError:
        raise TokenExpired("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    if ("sub" in claims) == ("lid" in claims):
        raise TokenError("invalid token claims: need exactly one of sub (a user) and lid (a link)")
    try:
        parsed = TokenClaims(
            user=_str(claims["sub"]) if "sub" in claims else None,
            room=_str(claims["room"]),
            role=Role(claims["role"]),
            expires_at=float(claims["exp"]),
            token_id=_str(claims["jti"]),
            link_id=_id(claims["lid"]) if "lid" in claims else None,
            groups=_groups(claims.get("groups", [])),
        )
    except (ValueError, TypeError) as exc:
        raise TokenError(f"invalid token claims: {exc}") from None
    if now is not None and parsed.expired(now):
        raise TokenExpired("the token has expired")
    return parsed


def _groups(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > 64:
        raise TypeError("groups: expected a list of at most 64 names")
    return tuple(_str(group) for group in value)


def _str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def _id(value: object) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ValueError("lid: expected 1-64 of A-Z a-z 0-9 _ -")
    return value


# What the proof signs besides the nonce: a relay proof is never valid as anything else.
_PROOF_CONTEXT = b"livewidgets relay proof v1\0"


def relay_proof(secret: bytes, nonce: str) -> str:
    """The relay's answer to a client's ``hello.nonce``: HMAC-SHA256 under its secret."""
    digest = hmac.new(secret, _PROOF_CONTEXT + nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify_relay_proof(secret: bytes, nonce: str, proof: str | None) -> bool:
    """Whether ``proof`` shows the relay holds ``secret`` (constant-time compare)."""
    return proof is not None and hmac.compare_digest(relay_proof(secret, nonce), proof)
