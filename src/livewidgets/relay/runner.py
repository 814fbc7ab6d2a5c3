"""The asyncio shell around a room: one writer task, group commit, fan-out.

Each loaded room has exactly one :class:`RoomRunner` task. It loads the room from
the store, then loops:

1. take every command queued since the last round (joins, ops, presence, leaves),
   in arrival order, and run them through the pure :class:`~.hub.RoomHub`;
2. hand the round to the :class:`~.pipeline.CommitPipeline` (single-relay stores):
   the members with nothing waiting get their messages at once, with the room's
   coalesced presence changes if the last presence message went out
   ``presence_interval`` ago or more (else a timer flushes them then); the entries
   are committed with **one** ``store.append`` per group (group commit: one commit
   in flight, what arrives meanwhile is committed next, together); the authors'
   acks, and whatever follows them for the same members, go out after their
   commit. So an op is durable before its author hears it is, and a slow disk
   delays only the acks it is writing. If the relay dies mid-commit, members saw
   versions the store lacks; the room's next load starts a new epoch
   (relay.lineage) and their resume gets a snapshot. A round waits up to
   ``COMMIT_PATIENCE`` for the commit in flight, so rounds stay big while the
   disk keeps up. With a shared store a round is committed before anything of it
   is delivered (a refused append redoes the round);
3. every ``snapshot_every`` versions, save a snapshot (which compacts the log).

An op that arrives while a single-relay room is quiet (its task waits, nothing is
queued or being committed) is a round of its own, run at once by the connection
that read it: the others hear of it a loop turn sooner (fan-out p50 10 to 20% lower), and
a busy room still queues, so rounds stay big under load.

Each load records a new epoch in the store before the room serves anyone. If the
store fails (or the core hits a bug) the room's in-memory state may be ahead of
what is durable, so the room is dropped: its connections are closed with 1011 and
resume against a freshly loaded room, resending unacked ops.

With a store several relays share (:class:`~.store.WatchableStore`: Redis), other
relays append to the room too (docs/protocol.md "Scale-out"):

* **catch-up**: the store reports heads (live pub/sub, plus a poll as a safety
  net); when one is ahead of the room, the next round first reads the missing
  entries, applies them and broadcasts them to every member here (they are
  committed already). A round also catches up first when a client joins or
  submits against a version this relay has not reached (it came from another
  relay). A gap the store no longer holds fails the room (1011; clients resume).
* **conflict**: when the store refuses a round's append (another relay appended
  first), nothing of the round was delivered yet. The round is taken back
  (RoomCore.rollback_round), the other relay's entries are read and applied, the
  round's submissions run again against the newer state (RoomHub.redo) and are
  committed again, up to ``max_conflicts`` times in a row before the room fails.
  Joins and presence are not run twice: a join never follows an accepted op in a
  round (the round is cut there and the join waits for the next one), so every
  catch-up a joiner gets holds committed entries only.
* **presence** (a store that is also a :class:`~.store.PresenceBus`): the room's
  presence is shared with the other relays through a
  :class:`~.presence_link.PresenceLink` (sync on load, changes with each timed
  flush, heartbeats, an empty table on unload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ..protocol.codes import CloseCode
from .fanout import Framed, Peer, deliver
from .hub import Command, JoinRoom, RoomHub, Send, Submit
from .lineage import Lineage
from .metrics import RelayMetrics
from .pipeline import CommitPipeline
from .presence_link import PresenceLink
from .room import LogEntry, RoomCore
from .store import PresenceBus, Store, StoreConflict, StoreError, Unwatch, WatchableStore

__all__ = ["Framed", "Peer", "RoomRunner"]

P = TypeVar("P", bound=Peer)

# Seconds a round waits for a commit in flight before the next round goes ahead.
COMMIT_PATIENCE = 0.005


class RoomRunner(Generic[P]):
    """Owns one room: call :meth:`put` for each command, in the order they arrived."""

    def __init__(
        self,
        name: str,
        store: Store,
        *,
        snapshot_every: int,
        max_delta: int,
        metrics: RelayMetrics,
        on_exit: Callable[[RoomRunner[P]], None],
        logger: logging.Logger,
        max_batch: int = 1024,
        presence_interval: float = 0.0,
        max_state_bytes: int | None = None,
        max_conflicts: int = 32,
        read_chunk: int = 1000,
    ) -> None:
        self.name = name
        self._store = store
        # A store other relays write too: watch it, catch up, redo refused rounds.
        self._shared = isinstance(store, WatchableStore)
        self._unwatch: Unwatch | None = None
        # A head ahead of the room was reported (or may exist): catch up next round.
        self._behind = False
        # Refused appends of one round in a row before the room fails.
        self._max_conflicts = max_conflicts
        # Entries per read_log call while catching up.
        self._read_chunk = read_chunk
        self._snapshot_every = snapshot_every
        self._max_delta = max_delta
        # Bound on the room's encoded state (RoomCore; None: its default).
        self._max_state_bytes = max_state_bytes
        self._metrics = metrics
        # Called once when the task ends (idle, stopped or failed): unregister the room.
        self._on_exit = on_exit
        self._logger = logger
        # Most commands handled per round (bounds one commit and one burst of sends).
        self._max_batch = max_batch
        # Presence goes out at most this often (a join storm of N costs N frames per
        # member, not N²): the loop time the next flush is due, and its timer.
        self._presence_interval = presence_interval
        self._presence_due = 0.0
        self._presence_timer: asyncio.TimerHandle | None = None
        self._inbox: deque[Command[P]] = deque()
        self._wake = asyncio.Event()
        # Commands of the round in progress (their peers are closed if the round fails).
        self._batch: list[Command[P]] = []
        # Presence shared with other relays through the store (None: local only).
        self._link: PresenceLink[P] | None = (
            PresenceLink(store, name, wake=self._wake.set, logger=logger)
            if isinstance(store, PresenceBus)
            else None
        )
        self._hub: RoomHub[P] | None = None
        # Single-relay stores: rounds go on while earlier ones are committed.
        self._pipeline: CommitPipeline[P] = CommitPipeline(self._write_group, self._commit_failed)
        # A commit of the pipeline failed: the room fails at the next step.
        self._broken: BaseException | None = None
        # The task waits for commands (nothing queued, nothing to flush): an op that
        # arrives then is sequenced at once by its reader (see put).
        self._waiting = False
        self._inline = not self._shared and self._link is None
        self._stopping = False
        self._finished = False
        self._task: asyncio.Task[None] | None = None

    @property
    def version(self) -> int:
        """The room version (0 until loaded)."""
        return self._hub.core.version if self._hub is not None else 0

    @property
    def hub(self) -> RoomHub[P] | None:
        return self._hub

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"livewidgets room {self.name}")

    def put(self, command: Command[P]) -> None:
        """Queue a command; processed in order after every command queued before it."""
        if self._finished:
            # The room failed or stopped; its peers are being closed and will resume.
            command.member.command_done()
            return
        if (
            self._waiting
            and self._inline
            and isinstance(command, Submit)
            and not self._wake.is_set()
            and self._pipeline.idle
        ):
            self._run_inline(command)
            return
        self._inbox.append(command)
        self._wake.set()

    def _run_inline(self, command: Submit[P]) -> None:
        """A lone op in a quiet room: a round of its own, run now by the connection
        that read it. That spares the hop to the room's task (a loop turn, ~25 µs of
        the others' latency). A busy room (something queued or committing) queues it,
        so rounds stay big under load."""
        hub = self._hub
        assert hub is not None
        self._batch = [command]
        try:
            self._round(hub, self._batch)
        except Exception as exc:
            # The room's task fails the room, as for a round it ran itself.
            self._broken = exc
            self._wake.set()

    async def stop(self) -> None:
        """Process what is queued (commit, ack, broadcast), then end the task."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            record = await self._store.load(self.name)
            # A new epoch per load (relay.lineage): versions this relay sends before
            # they are committed must not be mistaken for the ones the store will hold.
            proposed = record.lineage.successor(record.head) if record.lineage else Lineage.first()
            record.lineage = await self._store.begin_epoch(self.name, proposed)
            core = RoomCore(record, max_state_bytes=self._max_state_bytes)
            hub = self._hub = RoomHub[P](
                core, max_delta=self._max_delta, share_presence=self._link is not None
            )
            if self._shared:
                assert isinstance(self._store, WatchableStore)
                self._unwatch = await self._store.watch(self.name, self._head_reported)
                # Entries appended between the load and the watch: look once.
                self._behind = True
            if self._link is not None:
                await self._link.start()
            while (batch := await self._next_batch()) is not None:
                if self._link is not None:
                    self._link.share(hub)
                if self._shared:
                    await self._catch_up(hub, batch)
                await self._process(hub, batch)
                if not hub.members and not self._inbox:
                    await self._pipeline.drain()
                    if not hub.members and not self._inbox:
                        break  # idle: unload; the store holds everything
            await self._pipeline.drain()
            if self._broken is not None:
                raise self._broken
        except Exception as exc:
            self._fail(exc)
        finally:
            self._finished = True
            if self._presence_timer is not None:
                self._presence_timer.cancel()
            if self._link is not None:
                # Nobody is here any more: the other relays drop this relay's entries.
                self._link.stop(announce_empty=self._hub is not None)
            self._on_exit(self)
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

    async def _next_batch(self) -> list[Command[P]] | None:
        """Everything queued (up to max_batch), waiting for at least one; None when
        stopped, [] when only the presence timer is due."""
        while not self._inbox:
            if self._broken is not None:
                raise self._broken
            if self._stopping:
                return None
            if self._presence_due_now() or self._behind:
                return []
            if self._link is not None and self._link.pending:
                return []
            self._wake.clear()
            self._waiting = True  # loaded, not stopping (both checked above)
            try:
                await self._wake.wait()
            finally:
                self._waiting = False
        count = min(len(self._inbox), self._max_batch)
        return [self._inbox.popleft() for _ in range(count)]

    async def _process(self, hub: RoomHub[P], batch: list[Command[P]]) -> None:
        self._batch = batch
        if self._shared:
            sends = await self._process_shared(hub, batch)
            batch = self._batch
            if hub.presence_waiting:
                sends.extend(self._presence_sends(hub))
            deliver(sends)
        else:
            self._round(hub, batch)
            # A commit that returns soon is waited for: what arrives meanwhile makes one
            # bigger round (cheaper fan-out). One that stalls lets the room go on.
            await self._pipeline.drain(COMMIT_PATIENCE)
            return
        self._metrics.observe_messages(send.message for send in sends)
        for command in batch:
            command.member.command_done()
        self._batch = []
        await self._maybe_snapshot(hub)

    def _round(self, hub: RoomHub[P], batch: list[Command[P]]) -> None:
        """Run a round through the hub and hand it to the pipeline (single-relay
        stores): members with no op in it hear of it now, during its commit; the
        authors' acks wait for it (durable), with everything else of theirs."""
        sends = [send for command in batch for send in hub.handle(command)]
        if hub.presence_waiting:
            sends.extend(self._presence_sends(hub))
        self._pipeline.add(sends, hub.take_unsaved(), batch)
        self._metrics.observe_messages(send.message for send in sends)
        self._batch = []

    def _write_group(self, entries: list[LogEntry]) -> Awaitable[None]:
        """The pipeline starts a group's commit: the room is as of its last entry now,
        so a snapshot due is taken here and saved after the entries."""
        hub = self._hub
        assert hub is not None
        snapshot = None
        if hub.core.ops_since_snapshot >= self._snapshot_every:
            snapshot = hub.core.take_snapshot()
        return self._commit_group(entries, snapshot)

    async def _commit_group(
        self, entries: list[LogEntry], snapshot: tuple[int, dict[str, Any], Any] | None
    ) -> None:
        await self._commit(entries)
        if snapshot is not None:
            await self._save_snapshot(*snapshot)

    def _commit_failed(self, exc: BaseException) -> None:
        self._broken = exc
        self._wake.set()

    # --- shared stores: catch-up and refused appends ----------------------------------

    async def _process_shared(self, hub: RoomHub[P], batch: list[Command[P]]) -> list[Send[P]]:
        """Handle and commit a round on a shared store, redoing it if the append is
        refused; the round's sends, in order (not delivered yet)."""
        hub.core.begin_round()
        groups: list[list[Send[P]]] = []
        for index, command in enumerate(batch):
            if hub.has_unsaved and isinstance(command, JoinRoom):
                # A joiner's catch-up must hold committed entries only, and a redo must
                # not run a join twice: commit first, the join opens the next round.
                self._inbox.extendleft(reversed(batch[index:]))
                batch = self._batch = batch[:index]
                break
            groups.append(hub.handle(command))
        before: list[Send[P]] = []
        entries = hub.take_unsaved()
        conflicts = 0
        while entries:
            try:
                await self._commit(entries)
                break
            except StoreConflict as exc:
                conflicts += 1
                if conflicts > self._max_conflicts:
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
        while True:
            chunk = await self._store.read_log(self.name, version, self._read_chunk)
            if chunk and chunk[0].version != version + 1:
                break
            entries += chunk
            if chunk:
                version = chunk[-1].version
            if len(chunk) < self._read_chunk:
                if head is None or version >= head:
                    return entries
                break
        raise StoreError(
            f"room {self.name!r}: entries after version {version} are no longer in the "
            "store's log (compacted); reloading the room"
        )

    def _presence_due_now(self) -> bool:
        hub = self._hub
        return (
            hub is not None
            and hub.presence_waiting
            and self._presence_timer is None
            and asyncio.get_running_loop().time() >= self._presence_due
        )

    def _presence_sends(self, hub: RoomHub[P]) -> list[Send[P]]:
        """Flush presence now if the interval has passed, else make sure a timer will."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._presence_due:
            self._presence_due = now + self._presence_interval
            if self._link is not None:
                self._link.publish_changes(hub.take_outgoing())
            return hub.flush_presence()
        if self._presence_timer is None:
            self._presence_timer = loop.call_at(self._presence_due, self._presence_timer_fired)
        return []

    def _presence_timer_fired(self) -> None:
        self._presence_timer = None
        self._wake.set()

    async def _commit(self, entries: list[LogEntry]) -> None:
        started = time.perf_counter()
        await self._store.append(self.name, entries)
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        self._metrics.commit_entries.observe(len(entries))

    async def _maybe_snapshot(self, hub: RoomHub[P]) -> None:
        if hub.core.ops_since_snapshot >= self._snapshot_every:
            await self._save_snapshot(*hub.core.take_snapshot())

    async def _save_snapshot(self, version: int, state: dict[str, Any], clock: Any) -> None:
        try:
            await self._store.save_snapshot(self.name, version, state, clock)
        except StoreError as exc:
            # Not fatal: the log still holds every entry; the next snapshot retries.
            self._logger.warning(
                "room %r: snapshot at version %d failed: %s", self.name, version, exc
            )

    def _fail(self, exc: Exception) -> None:
        """Drop the room after a store failure or bug: close everyone involved (1011)."""
        self._logger.error(
            "room %r failed; closing its connections so they resume: %s",
            self.name,
            exc,
            exc_info=exc,
        )
        pending = [*self._batch, *self._pipeline.abandon(), *self._inbox]
        self._inbox.clear()
        peers = dict.fromkeys(
            [*(self._hub.members if self._hub else ()), *(c.member for c in pending)]
        )
        for peer in peers:
            peer.close(CloseCode.INTERNAL_ERROR, "room failed; reconnect and resume")
        for command in pending:
            command.member.command_done()


def _ahead(command: Command[Any], version: int) -> bool:
    """The command comes from a client that saw a version after ``version`` (on another
    relay): catching up first spares it a snapshot or a refused base_version."""
    if isinstance(command, Submit):
        return command.base_version > version
    if isinstance(command, JoinRoom):
        return command.since is not None and command.since > version
    return False
