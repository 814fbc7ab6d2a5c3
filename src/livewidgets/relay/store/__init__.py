"""Durable room storage: the :class:`Store` protocol and :func:`open_store`.

A store keeps, per room, a snapshot (version, state, path clock), the log of entries
after it, the dedupe table (client_id -> highest client_seq and its version) and
the room's epoch (relay.lineage: which history its version numbers belong to).
That is exactly a :class:`~livewidgets.relay.room.RoomRecord`, which is all the
room core needs to resume after a restart.

The protocol is shaped so that a store shared by several relay processes (Redis)
can implement it without touching the room core:

* :meth:`Store.append` is conditional: the entries must continue the stored log
  (first version = stored head + 1), else it raises :class:`StoreConflict`. Two
  relays that both think they own a room cannot both write version N.
* Durability is the store's job: when ``append`` returns, the entries and the
  dedupe updates derived from them are committed in one transaction.
* A shared store also implements :class:`WatchableStore`: ``watch`` tells a relay
  when another one moved a room's head, so it can read the new entries
  (``read_log``) and broadcast them to its own clients (relay.runner_shared). Single-relay
  stores (memory, SQLite) do not: nobody else writes their rooms.
* Compaction keeps history (relay.history): ``save_snapshot`` keeps the entries of
  the store's :class:`~livewidgets.relay.history.HistoryHorizon` behind the new
  snapshot, with the older snapshots that start them, and ``read_history`` returns
  them (the oldest kept snapshot, then every entry after it).
* Every store keeps the relay's revocations (relay.revocation: revoked link and token
  ids), outside any room; a shared store also implements :class:`RevocationFeed`, so
  that a revocation made on one relay closes its connections on the others.
* A shared store may also carry presence between relays (:class:`PresenceBus`:
  Redis): each relay publishes its members' presence changes, a full table as a
  heartbeat, and a sync request when it loads a room; the others merge them as
  remote entries (relay.hub). With memory and SQLite presence stays in the relay.

Backends: ``memory://`` (tests, demos; nothing survives the process),
``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (the embedded
default; WAL, synchronous=FULL, one writer thread; ``?synchronous=normal`` trades
power-loss durability for latency), and ``redis://host:port/db``
(shared by several relay processes; atomic Lua appends; the ``redis`` extra).
"""

from __future__ import annotations

import enum
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..history import HistoryHorizon, HistoryRecord
from ..lineage import Lineage
from ..revocation import Revocation, RevokeKind
from ..room import LogEntry, RoomRecord

__all__ = [
    "HeadCallback",
    "HistoryHorizon",
    "HistoryRecord",
    "LogEntry",
    "PresenceBus",
    "PresenceCallback",
    "PresenceKind",
    "PresenceMessage",
    "RevocationCallback",
    "RevocationFeed",
    "RoomRecord",
    "Store",
    "StoreConflict",
    "StoreError",
    "Unwatch",
    "WatchableStore",
    "check_continues",
    "decode_revocation",
    "encode_revocation",
    "open_store",
]


class StoreError(Exception):
    """The store failed; nothing of the failed call was committed."""


class StoreConflict(StoreError):
    """``append`` entries do not continue the stored log (another writer got there first).

    ``head``: the stored head the entries failed to continue, when the store knows it.
    """

    def __init__(self, message: str, head: int | None = None) -> None:
        super().__init__(message)
        self.head = head


@runtime_checkable
class Store(Protocol):
    """Async storage of room snapshots, logs and dedupe tables.

    Every method may be called from the event loop; implementations keep blocking
    work off it. Calls for one room come from one relay task at a time, in order.
    """

    async def load(self, room: str) -> RoomRecord:
        """The room's snapshot, the log after it and its dedupe table (empty if new)."""
        ...

    async def append(self, room: str, entries: Sequence[LogEntry]) -> None:
        """Durably append consecutive ``entries`` (one transaction: group commit).

        Also raises each entry's client to its ``client_seq`` in the dedupe table,
        in the same transaction. Raises :class:`StoreConflict` if the entries do not
        start right after the stored head, :class:`StoreError` on any other failure.
        """
        ...

    async def begin_epoch(self, room: str, lineage: Lineage) -> Lineage:
        """Record ``lineage`` as the room's (durably, before returning) and return the
        lineage in effect: ``lineage`` itself, or for a store several relays share, the
        one already recorded (their rooms keep one epoch; relay.lineage)."""
        ...

    async def read_log(self, room: str, after: int, limit: int) -> list[LogEntry]:
        """Up to ``limit`` stored entries with version > ``after``, in order."""
        ...

    async def save_snapshot(
        self, room: str, version: int, state: dict[str, Any], clock_data: Any
    ) -> None:
        """Store the room state at ``version`` as the room's snapshot (compaction), and
        trim the history to the store's horizon (relay.history: the entries and older
        snapshots out of it are dropped; the entries up to ``version`` are no longer
        loaded with the room).

        An older snapshot than the stored one is ignored.
        """
        ...

    async def read_history(self, room: str) -> HistoryRecord:
        """The room's kept history: the oldest kept snapshot and every entry after it."""
        ...

    async def rooms(self) -> list[tuple[str, int]]:
        """Every room stored, with its head version, sorted by name."""
        ...

    async def revoke(self, revocation: Revocation) -> None:
        """Durably record ``revocation`` (before returning; recording it again is a
        no-op) and, for a shared store, announce it to the other relays."""
        ...

    async def revocations(self) -> list[Revocation]:
        """Every revocation recorded, in no particular order."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release resources; the store is unusable after."""
        ...


# Called with revocations recorded by any relay of a shared store (on the event loop).
RevocationCallback = Callable[[list[Revocation]], None]


@runtime_checkable
class RevocationFeed(Protocol):
    """A store several relays share tells each of them about new revocations."""

    async def watch_revocations(self, callback: RevocationCallback) -> Unwatch:
        """Call ``callback`` with revocations recorded from now on, by any relay: live
        (soon after each ``revoke``) and, as a safety net, from a poll, so that one
        recorded at time t is reported by t + the store's poll interval at the latest.
        Entries may repeat; the callback ignores those it knows."""
        ...


def encode_revocation(revocation: Revocation) -> list[Any]:
    """A revocation as plain data, for stores that serialize it (msgpack)."""
    return [revocation.kind.value, revocation.id, revocation.scope, revocation.revoked_at]


def decode_revocation(data: Any) -> Revocation:
    """The inverse of :func:`encode_revocation` (ValueError/TypeError if malformed)."""
    kind, ident, scope, revoked_at = data
    if not isinstance(ident, str) or not isinstance(scope, str):
        raise TypeError("revocation id and scope must be strings")
    return Revocation(RevokeKind(kind), ident, scope, float(revoked_at))


# Called with a room's stored head version (on the event loop; must not block).
HeadCallback = Callable[[int], None]
# Stops a watch (idempotent).
Unwatch = Callable[[], Awaitable[None]]


@runtime_checkable
class WatchableStore(Store, Protocol):
    """A store several relays share: it reports heads moved by any of them."""

    async def watch(self, room: str, callback: HeadCallback) -> Unwatch:
        """Call ``callback(head)`` when ``room``'s stored head may have moved, until the
        returned coroutine function is awaited.

        Heads come live (soon after each append, the watcher's own included, possibly
        out of order or repeated) and, as a safety net, from a periodic poll: a head
        stored at time t is reported by t + the poll interval at the latest, even when
        a live notice was lost. The callback compares with what it has.
        """
        ...


class PresenceKind(enum.IntEnum):
    """What a presence message carries."""

    CHANGES = 0  # client_id -> state or None (gone), since the sender's last message
    FULL = 1  # the sender's whole table for the room (heartbeat, answer to SYNC, exit)
    SYNC = 2  # the sender just loaded the room: everyone answer with FULL


@dataclass(frozen=True, slots=True)
class PresenceMessage:
    """Presence one relay published for a room. ``ttl``: seconds its entries stay
    without a refresh (the sender heartbeats well within it)."""

    relay_id: str
    kind: PresenceKind
    ttl: float
    states: dict[str, dict[str, Any] | None]


# Called with each presence message published for a watched room, the watcher's own
# included (on the event loop; must not block).
PresenceCallback = Callable[[PresenceMessage], None]


@runtime_checkable
class PresenceBus(Protocol):
    """A shared store that also relays presence between the relays serving a room.

    Delivery is at-most-once and may lose messages; a sender's messages for a room
    arrive in the order it published them. The heartbeat (a FULL message every
    ``presence_heartbeat`` seconds while a relay has the room loaded) repairs losses;
    entries expire ``presence_ttl`` seconds after their last refresh.
    """

    @property
    def relay_id(self) -> str:
        """This store's (relay process's) id in presence messages."""
        ...

    @property
    def presence_heartbeat(self) -> float: ...

    @property
    def presence_ttl(self) -> float: ...

    async def watch_presence(self, room: str, callback: PresenceCallback) -> Unwatch:
        """Call ``callback`` with every presence message for ``room`` until unwatched."""
        ...

    def publish_presence(
        self, room: str, kind: PresenceKind, states: dict[str, dict[str, Any] | None]
    ) -> None:
        """Queue a message for publishing, in order, without blocking (a bounded
        outbox: when full, messages are dropped and the next FULL repairs)."""
        ...

    async def request_presence(self, room: str) -> int:
        """Publish a SYNC for ``room`` now; how many subscribers received it (this
        relay's own subscription included if it was active)."""
        ...


def check_continues(head: int, entries: Sequence[LogEntry]) -> None:
    """Raise StoreConflict unless ``entries`` are head+1, head+2, ...."""
    for offset, entry in enumerate(entries, start=1):
        if entry.version != head + offset:
            raise StoreConflict(
                f"entry version {entry.version} does not continue the log at {head + offset - 1}",
                head if offset == 1 else None,
            )


def open_store(url: str, *, history: HistoryHorizon | None = None) -> Store:
    """Open a store from a URL: ``memory://``, ``sqlite:///path/to/rooms.db`` or
    ``redis://host:6379/0``.

    ``sqlite:///rooms.db`` is relative to the working directory and
    ``sqlite:////var/lib/rooms.db`` is absolute (as in SQLAlchemy URLs);
    ``?synchronous=normal`` skips the fsync per commit (see relay.store.sqlite).
    Redis URLs take ``?prefix=lw``, ``?keep_log=1000`` and ``?poll_interval=1``
    (see relay.store.redis) besides redis-py's own options. ``history``: how much
    history to keep (default :class:`~livewidgets.relay.history.HistoryHorizon`).
    """
    history = history or HistoryHorizon()
    if url == "memory://":
        from .memory import MemoryStore

        return MemoryStore(history=history)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore  # needs the ``redis`` extra

        return RedisStore(url, history=history)
    prefix = "sqlite:///"
    if url.startswith(prefix) and len(url) > len(prefix):
        from .sqlite import SQLiteStore

        path, _, query = url[len(prefix) :].partition("?")
        options = urllib.parse.parse_qs(query, strict_parsing=bool(query))
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise ValueError(f"unknown SQLite store option(s): {', '.join(sorted(unknown))}")
        synchronous = options.get("synchronous", ["full"])[-1]
        return SQLiteStore(path, synchronous=synchronous, history=history)
    raise ValueError(
        f"unsupported store URL {url!r}: use memory://, sqlite:///path/to/rooms.db "
        "or redis://host:6379/0"
    )
