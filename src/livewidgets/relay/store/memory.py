"""In-process store (``memory://``): same contract as SQLite, nothing survives the process.

Useful for tests and demos, and as the reference behaviour of the :class:`Store`
protocol. Entries and states are immutable, so they are kept by reference.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from typing import Any

from ..history import HistoryHorizon, HistoryRecord
from ..lineage import Lineage
from ..revocation import Revocation
from ..room import LogEntry, RoomRecord
from . import StoreConflict, StoreError, check_continues

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`~livewidgets.relay.store.Store` kept in dictionaries."""

    def __init__(self, *, history: HistoryHorizon | None = None) -> None:
        self.history = history or HistoryHorizon()
        # room -> its record; record.log holds every kept entry (history included),
        # load() hands out those after the snapshot.
        self._rooms: dict[str, RoomRecord] = {}
        # room -> kept snapshots, oldest first: (version, Unix time taken, state).
        self._snapshots: dict[str, list[tuple[int, float, dict[str, Any]]]] = {}
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
            self._after(record.log, record.snapshot_version),
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
        return self._after(self._room(room).log, after)[: max(limit, 0)]

    @staticmethod
    def _after(log: list[LogEntry], version: int) -> list[LogEntry]:
        return log[bisect.bisect_right(log, version, key=lambda entry: entry.version) :]

    async def read_history(self, room: str) -> HistoryRecord:
        # The history starts right before the oldest kept entry (trims cut at snapshots).
        record = self._room(room)
        if record.log and record.log[0].version == 1:
            return HistoryRecord(room, 0, {}, list(record.log))
        start = record.log[0].version - 1 if record.log else record.snapshot_version
        states = {version: state for version, _, state in self._snapshots.get(room, ())}
        return HistoryRecord(room, start, states.get(start, {}), list(record.log))

    async def rooms(self) -> list[tuple[str, int]]:
        if self._closed:
            raise StoreError("the store is closed")
        return sorted((name, record.head) for name, record in self._rooms.items())

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
        snapshots = self._snapshots.setdefault(room, [])
        snapshots.append((version, time.time(), state))
        cut = self.history.trim_to(head, [(v, t) for v, t, _ in snapshots], time.time())
        if cut is not None:
            self._snapshots[room] = [s for s in snapshots if s[0] >= cut]
            record.log = self._after(record.log, cut)

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
