"""Signed access tokens: who may enter which rooms, with what role, until when.

Tokens are JSON Web Tokens signed with HMAC-SHA256 (PyJWT does the signing and
the checks; nothing cryptographic is hand-written here). Claims:

=======  ===================================================================
sub      the user id the relay stamps on the connection (presence, logs)
room     a room name or a glob (``class-*``, ``*``) the token admits
role     ``read`` (join, receive, presence) < ``write`` (+ ops) < ``admin``
exp/iat  expiry and issue time (unix seconds); ``exp`` is required
jti      a random token id, for audit and revocation lists
=======  ===================================================================

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
from collections.abc import Mapping
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
    "issue_token",
    "load_secret",
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
    user: str
    room: str
    role: Role
    expires_at: float
    token_id: str

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


def issue_token(
    secret: bytes,
    *,
    user: str,
    room: str,
    role: Role | str = Role.WRITE,
    ttl: float = 3600.0,
    now: float | None = None,
) -> str:
    """A signed token for ``user`` in ``room`` (name or glob) with ``role``."""
    role = Role(role)
    if not user or not room:
        raise ValueError("a token needs a user and a room")
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": user,
        "room": room,
        "role": role.value,
        "iat": issued,
        "exp": issued + max(1, int(ttl)),
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: bytes, token: str, *, now: float | None = None) -> TokenClaims:
    """Check signature, expiry and claim types; raise TokenExpired / TokenError."""
    options: Any = {"require": ["exp", "sub", "room", "role", "jti"], "verify_exp": now is None}
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options=options)
    except jwt.ExpiredSignatureError:
        raise TokenExpired("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    try:
        parsed = TokenClaims(
            user=_str(claims["sub"]),
            room=_str(claims["room"]),
            role=Role(claims["role"]),
            expires_at=float(claims["exp"]),
            token_id=_str(claims["jti"]),
        )
    except (ValueError, TypeError) as exc:
        raise TokenError(f"invalid token claims: {exc}") from None
    if now is not None and parsed.expired(now):
        raise TokenExpired("the token has expired")
    return parsed


def _str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
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
