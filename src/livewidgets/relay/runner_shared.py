"""The room runner for a store several relays append to (:class:`~.store.WatchableStore`:
Redis; docs/protocol.md "Scale-out: several relays, one room").

A round is committed before anything of it is delivered: another relay may win the
append. Then:

* **catch-up**: the store reports heads (live pub/sub, plus a poll as a safety
  net); when one is ahead of the room, the next round first reads the missing
  entries, applies them and broadcasts them to every member here (they are
  committed already). A round also catches up first when a client joins or
  submits against a version this relay has not reached (it came from another
  relay). A gap the store no longer holds fails the room (1011; clients resume).
* **conflict**: when the store refuses a round's append (another relay appended
  first), nothing of the round was delivered yet. The round is taken back
  (RoomCore.rollback_round, from the undo log that begin_round opened), the other
  relay's entries are read and applied, the round's submissions run again against
  the newer state (RoomHub.redo) and are committed again, up to ``max_conflicts``
  times in a row before the room fails. Joins and presence are not run twice: a
  join never follows an accepted op in a round (the round is cut there and the join
  waits for the next one), so every catch-up a joiner gets holds committed entries
  only. (Reloading the room from the store instead would spare the undo log ~1 µs
  per op but cost milliseconds per conflict, and lose what only memory holds: the
  catch-up window beyond the last snapshot, remembered rejections.)
* **presence** (a store that is also a :class:`~.store.PresenceBus`): the room's
  presence is shared with the other relays through a
  :class:`~.presence_link.PresenceLink` (sync on load, changes with each timed
  flush, heartbeats, an empty table on unload).
* a snapshot is saved after the round that makes one due.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from .fanout import Peer, commands_done, deliver
from .hub import Command, Delivery, JoinRoom, RoomHub, Submit
from .metrics import RelayMetrics
from .presence_link import PresenceLink
from .room import LogEntry, RoomCore
from .runner_base import RoomSettings, RunnerBase
from .store import PresenceBus, StoreConflict, StoreError, Unwatch, WatchableStore

__all__ = ["SharedRoomRunner"]

P = TypeVar("P", bound=Peer)


class SharedRoomRunner(RunnerBase[P]):
    """Owns this relay's copy of one room on a shared store: call :meth:`put` for each
    command, in the order they arrived."""

    _store: WatchableStore

    def __init__(
        self,
        name: str,
        store: WatchableStore,
        settings: RoomSettings,
        *,
        metrics: RelayMetrics,
        on_exit: Callable[[RunnerBase[P]], None],
        logger: logging.Logger,
    ) -> None:
        super().__init__(name, store, settings, metrics=metrics, on_exit=on_exit, logger=logger)
        self._unwatch: Unwatch | None = None
        # A head ahead of the room was reported (or may exist): catch up next round.
        self._behind = False
        # Presence shared with other relays through the store (None: local only).
        self._link: PresenceLink[P] | None = (
            PresenceLink(store, name, wake=self._wake.set, logger=logger)
            if isinstance(store, PresenceBus)
            else None
        )

    # --- the task's hooks --------------------------------------------------------------

    def _new_hub(self, core: RoomCore) -> RoomHub[P]:
        return RoomHub[P](
            core, max_delta=self._settings.max_delta, share_presence=self._link is not None
        )

    async def _open(self, hub: RoomHub[P]) -> None:
        self._unwatch = await self._store.watch(self.name, self._head_reported)
        # Entries appended between the load and the watch: look once.
        self._behind = True
        if self._link is not None:
            await self._link.start()

    def _work_without_commands(self) -> bool:
        return self._behind or (self._link is not None and self._link.pending)

    def _share_presence(self, hub: RoomHub[P]) -> None:
        if self._link is not None:
            self._link.publish_changes(hub.take_outgoing())

    def _before_exit(self) -> None:
        if self._link is not None:
            # Nobody is here any more: the other relays drop this relay's entries.
            self._link.stop(announce_empty=self._hub is not None)

    async def _after_exit(self) -> None:
        if self._unwatch is not None:
            with contextlib.suppress(Exception):
                await self._unwatch()
        if self._link is not None:
            await self._link.unwatch()

    def _head_reported(self, head: int) -> None:
        """The shared store's head for this room (another relay's append, or ours)."""
        hub = self._hub
        if hub is not None and head > hub.core.version and not self._finished:
            self._behind = True
            self._wake.set()

    # --- rounds ------------------------------------------------------------------------

    async def _process(self, hub: RoomHub[P], batch: list[Command[P]]) -> None:
        # From here on a failure closes the round's peers too (joiners are no members).
        self._batch = batch
        if self._link is not None:
            self._link.share(hub)
        await self._catch_up(hub, batch)
        sends = await self._commit_round(hub, batch)
        batch = self._batch  # the round may have been cut before a join
        if hub.presence_waiting:
            sends.extend(self._presence_sends(hub))
        deliver(sends)
        self._metrics.observe_messages(send.message for send in sends)
        commands_done(batch)
        self._batch = []
        if hub.core.ops_since_snapshot >= self._settings.snapshot_every:
            await self._save_snapshot(*hub.core.take_snapshot())

    async def _commit_round(self, hub: RoomHub[P], batch: list[Command[P]]) -> list[Delivery[P]]:
        """Handle and commit a round, redoing it if the append is refused; the round's
        sends, in order (not delivered yet)."""
        hub.core.begin_round()
        groups: list[list[Delivery[P]]] = []
        for index, command in enumerate(batch):
            if hub.has_unsaved and isinstance(command, JoinRoom):
                # A joiner's catch-up must hold committed entries only, and a redo must
                # not run a join twice: commit first, the join opens the next round.
                self._inbox.extendleft(reversed(batch[index:]))
                batch = self._batch = batch[:index]
                break
            groups.append(hub.handle(command))
        before: list[Delivery[P]] = []
        entries = hub.take_unsaved()
        conflicts = 0
        while entries:
            try:
                await self._commit(entries)
                break
            except StoreConflict as exc:
                conflicts += 1
                if conflicts > self._settings.max_conflicts:
                    raise
                self._metrics.store_conflicts.inc()
                start = entries[0].version - 1  # the room's version when the round began
                remote = await self._read_after(start, exc.head)
                self._metrics.remote_entries.inc(len(remote))
                before += hub.redo(batch, groups, remote)
                entries = hub.take_unsaved()
        hub.core.end_round()
        before.extend(send for group in groups for send in group)
        return before

    async def _catch_up(self, hub: RoomHub[P], batch: list[Command[P]]) -> None:
        """Apply and broadcast what other relays committed, if the store reported a
        newer head or a command names a version this relay has not reached."""
        version = hub.core.version
        if not self._behind and not any(_ahead(command, version) for command in batch):
            return
        self._behind = False
        entries = await self._read_after(version, None)
        if entries:
            self._metrics.remote_entries.inc(len(entries))
            sends = hub.apply_remote(entries)
            deliver(sends)
            self._metrics.observe_messages(send.message for send in sends)

    async def _read_after(self, version: int, head: int | None) -> list[LogEntry]:
        """Every stored entry after ``version`` (up to ``head`` at least, if given).

        Raises StoreError when the store no longer holds the next entry (compacted
        behind a snapshot): this relay lagged too far and must reload the room."""
        entries: list[LogEntry] = []
        chunk_size = self._settings.read_chunk
        while True:
            chunk = await self._store.read_log(self.name, version, chunk_size)
            if chunk and chunk[0].version != version + 1:
                break
            entries += chunk
            if chunk:
                version = chunk[-1].version
            if len(chunk) < chunk_size:
                if head is None or version >= head:
                    return entries
                break
        raise StoreError(
            f"room {self.name!r}: entries after version {version} are no longer in the "
            "store's log (compacted); reloading the room"
        )


def _ahead(command: Command[Any], version: int) -> bool:
    """The command comes from a client that saw a version after ``version`` (on another
    relay): catching up first spares it a snapshot or a refused base_version."""
    if isinstance(command, Submit):
        return command.base_version > version
    if isinstance(command, JoinRoom):
        return command.since is not None and command.since > version
    return False
