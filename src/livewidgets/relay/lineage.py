"""Epochs: which line of history a room's version numbers belong to.

A version number alone does not identify a room state. A single-relay room
(memory or SQLite store) sends an op to the members that did not make it *while*
the op is being committed, and acks the op's author after the commit
(relay.runner_local). If the relay dies in between, the members saw versions the store
never recorded; after the restart other ops take those numbers. A client that
resumed "since version 41" could then skip the new 41 and keep a 41 nobody else has.

So every load of a room starts a new **epoch** (a random id), recorded in the store
with the room's earlier epochs and, for each, the stored head when it ended
(``forked_at``): every version up to there is the same in that epoch and all later
ones, since it was committed. A client resumes with the epoch it joined in
(``join.epoch``); a delta is served only if that history continues into the room's
(:meth:`Lineage.continues`), else the client gets a snapshot. A relay that stopped
or unloaded the room cleanly committed everything it sent, so its clients' versions
are at most ``forked_at`` and they resume by delta, also across several reloads
(the last :data:`MAX_ANCESTORS` epochs are kept).

A store several relays share (Redis) keeps one epoch per room: those relays never
send an op before it is committed (a refused append re-sequences the round).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

__all__ = ["MAX_ANCESTORS", "Lineage"]


# Earlier epochs a room remembers: a client that was away for more reloads of the
# room than this resumes with a snapshot.
MAX_ANCESTORS = 32


@dataclass(frozen=True, slots=True)
class Lineage:
    """A room's current epoch and its earlier ones, newest first, each with the last
    version it shares with the epochs after it."""

    epoch: str
    ancestors: tuple[tuple[str, int], ...] = ()

    @classmethod
    def first(cls) -> Lineage:
        """The lineage of a room with no recorded epoch (new, or an older store)."""
        return cls(_new_epoch())

    def successor(self, head: int) -> Lineage:
        """A new epoch that branches off this one after version ``head`` (the head the
        store holds now: everything up to it was committed in this epoch)."""
        ancestors = ((self.epoch, head), *self.ancestors)[:MAX_ANCESTORS]
        return Lineage(_new_epoch(), ancestors)

    def continues(self, epoch: str | None, since: int) -> bool:
        """Whether a client at version ``since`` of ``epoch`` holds a prefix of this
        room's history (then a delta catches it up; otherwise it needs a snapshot)."""
        if epoch == self.epoch:
            return True
        shared = since  # the versions every later epoch kept from this ancestor on
        for ancestor, forked_at in self.ancestors:
            shared = min(shared, forked_at)
            if ancestor == epoch:
                return since <= shared
        return False


def _new_epoch() -> str:
    return secrets.token_urlsafe(9)
