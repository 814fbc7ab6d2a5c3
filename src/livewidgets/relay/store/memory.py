"""In-process store (``memory://``): same contract as SQLite, nothing survives the process.

Useful for tests and demos, and as the reference behaviour of the :class:`Store`
protocol. Entries and states are immutable, so they are kept by reference.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from ..lineage import Lineage
from ..revocation import Revocation
from ..room import LogEntry, RoomRecord
from . import StoreConflict, StoreError, check_continues

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`~livewidgets.relay.store.Store` kept in dictionaries."""

    def __init__(self) -> None:
        self._rooms: dict[str, RoomRecord] = {}
        self._revocations: dict[tuple[str, str, str], Revocation] = {}
        self._closed = False

    def _room(self, room: str) -> RoomRecord:
        if self._closed:
            raise StoreError("the store is closed")
        return self._rooms.setdefault(room, RoomRecord(room))

    async def load(self, room: str) -> RoomRecord:
        record = self._room(room)
        return RoomRecord(
            room,
            record.snapshot_version,
            record.snapshot_state,
            record.snapshot_clock,
            list(record.log),
            dict(record.dedupe),
            record.lineage,
        )

    async def begin_epoch(self, room: str, lineage: Lineage) -> Lineage:
        self._room(room).lineage = lineage
        return lineage

    async def append(self, room: str, entries: Sequence[LogEntry]) -> None:
        record = self._room(room)
        head = record.log[-1].version if record.log else record.snapshot_version
        check_continues(head, entries)
        record.log.extend(entries)
        for entry in entries:
            seq, _ = record.dedupe.get(entry.client_id, (0, 0))
            if entry.client_seq > seq:
                record.dedupe[entry.client_id] = (entry.client_seq, entry.version)

    async def read_log(self, room: str, after: int, limit: int) -> list[LogEntry]:
        log = self._room(room).log
        start = bisect.bisect_right(log, after, key=lambda entry: entry.version)
        return log[start : start + max(limit, 0)]

    async def save_snapshot(
        self, room: str, version: int, state: dict[str, Any], clock_data: Any
    ) -> None:
        record = self._room(room)
        if version <= record.snapshot_version:
            return
        head = record.log[-1].version if record.log else record.snapshot_version
        if version > head:
            raise StoreConflict(f"snapshot at {version} is ahead of the log head {head}")
        record.snapshot_version = version
        record.snapshot_state = state
        record.snapshot_clock = clock_data
        record.log = [entry for entry in record.log if entry.version > version]

    async def revoke(self, revocation: Revocation) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        self._revocations.setdefault(revocation.key, revocation)

    async def revocations(self) -> list[Revocation]:
        if self._closed:
            raise StoreError("the store is closed")
        return list(self._revocations.values())

    async def close(self) -> None:
        self._closed = True
