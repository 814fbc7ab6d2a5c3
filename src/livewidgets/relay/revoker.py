"""Putting revocations in force on a relay (docs/security.md "Revocation").

The :class:`Revoker` keeps the policy's denylist equal to the store's:

* at start, before the relay listens, it loads every recorded revocation, so a
  restarted relay refuses revoked tokens from its first connection;
* an admin's ``revoke`` (relay.session :class:`~.session.Revoke`) is recorded in the
  store first (durable before anyone is told), then put in force here;
* with a shared store (:class:`~.store.RevocationFeed`: Redis) it hears what the other
  relays record, live or at the latest after the store's poll interval.

Whenever the policy learns something new, every open connection is asked again
(``policy.revoked``) and those it denies are closed with 4006: revocations are rare,
so a sweep over the connections is cheaper than an index kept for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from .policy import Denied, Policy, Principal
from .revocation import Revocation
from .store import RevocationFeed, Store, Unwatch

__all__ = ["Revocable", "Revoker"]


class Revocable(Protocol):
    """An open connection, as the revoker sees it."""

    @property
    def principal(self) -> Principal | None: ...

    def revoke(self, denied: Denied) -> None:
        """Close with the denial's code (4006), telling the client why."""
        ...


class Revoker:
    """The denylist of one relay: loaded at start, extended by admins and peers."""

    def __init__(
        self,
        policy: Policy,
        connections: Callable[[], Iterable[Revocable]],
        logger: logging.Logger,
    ) -> None:
        self._policy = policy
        self._connections = connections
        self._logger = logger
        self._unwatch: Unwatch | None = None

    async def start(self, store: Store) -> None:
        """Load the store's revocations; follow other relays' if the store is shared.
        Watch first, then load: one recorded in between is heard twice, never missed."""
        if isinstance(store, RevocationFeed):
            self._unwatch = await store.watch_revocations(self._heard)
        self.learn(await store.revocations())

    async def stop(self) -> None:
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            await unwatch()

    async def revoke(self, store: Store, revocation: Revocation) -> int:
        """Record ``revocation`` (StoreError: nothing happened) and put it in force;
        how many of this relay's connections it closed."""
        await store.revoke(revocation)
        self._logger.info(
            "revoked %s %s (scope %r)", revocation.kind.value, revocation.id, revocation.scope
        )
        return self.learn([revocation])

    def _heard(self, revocations: list[Revocation]) -> None:
        self.learn(revocations)

    def learn(self, revocations: list[Revocation]) -> int:
        """Put ``revocations`` in force: close the connections they deny; how many."""
        if not self._policy.add_revoked(revocations):
            return 0
        return self.sweep()

    def sweep(self) -> int:
        """Ask the policy about every open connection again (it learned of a revocation,
        or a remote authority dropped a token); close those it denies; how many."""
        closed = 0
        for connection in list(self._connections()):
            principal = connection.principal
            denied = self._policy.revoked(principal) if principal is not None else None
            if denied is not None:
                connection.revoke(denied)
                closed += 1
        return closed
