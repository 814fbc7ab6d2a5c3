"""The denylist: revoked links and tokens (docs/security.md "Revocation").

An admin revokes a link id (every token of that link) or a token id (``jti``: that
one token). A :class:`Revocation` is kept in the relay's store (every relay of a
Redis deployment reads the same ones) and mirrored in memory by each relay's policy
(:class:`Denylist`), which refuses revoked credentials at hello and finds the open
connections that use them (relay.revoker closes those).

**Scope.** A revocation carries the room scope of the admin who made it (the room
claim of their token) and applies only to tokens whose room claim lies within it
(:func:`covers`): the admin of one room cannot shut another room's links, even if
they learned their ids. A relay-wide admin (room ``*``, e.g. ``livewidgets revoke``
with the secret) covers every token.

Revocations are permanent (a few dozen bytes each): the store never forgets one, so
a revoked token stays refused until it expires anyway.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Denylist", "Revocation", "RevokeKind", "covers"]


class RevokeKind(str, enum.Enum):
    """What a revocation names."""

    LINK = "link"  # a link id (claim ``lid``): every token of that link
    TOKEN = "token"  # a token id (claim ``jti``): that token


@dataclass(frozen=True, slots=True)
class Revocation:
    """``kind`` ``id`` is revoked for tokens within room scope ``scope`` (a glob),
    since Unix time ``revoked_at``."""

    kind: RevokeKind
    id: str
    scope: str
    revoked_at: float

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two revocations the same (revoked_at aside)."""
        return (self.kind.value, self.id, self.scope)


_GLOB = frozenset("*?[")


def covers(scope: str, room_claim: str) -> bool:
    """Whether an admin of ``scope`` may revoke a token whose room claim is
    ``room_claim``: the same pattern, ``*``, or a plain room name that ``scope``
    matches. Conservative: a glob claim is only covered by ``*`` or itself, since
    telling whether one glob lies within another is not worth the risk."""
    if scope == "*" or scope == room_claim:
        return True
    return not (_GLOB & set(room_claim)) and fnmatch.fnmatchcase(room_claim, scope)


class Denylist:
    """The revocations a relay knows of, indexed by (kind, id)."""

    def __init__(self) -> None:
        self._by_id: dict[tuple[RevokeKind, str], list[Revocation]] = {}
        self._keys: set[tuple[str, str, str]] = set()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, revocations: Iterable[Revocation]) -> list[Revocation]:
        """Learn ``revocations``; the ones that were new."""
        new = []
        for revocation in revocations:
            if revocation.key in self._keys:
                continue
            self._keys.add(revocation.key)
            self._by_id.setdefault((revocation.kind, revocation.id), []).append(revocation)
            new.append(revocation)
        return new

    def match(
        self, token_id: str | None, link_id: str | None, room_claim: str
    ) -> Revocation | None:
        """The revocation that applies to a token with these claims, if any."""
        for kind, ident in ((RevokeKind.TOKEN, token_id), (RevokeKind.LINK, link_id)):
            if ident is None:
                continue
            for revocation in self._by_id.get((kind, ident), ()):
                if covers(revocation.scope, room_claim):
                    return revocation
        return None
