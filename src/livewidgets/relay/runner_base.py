"""What every room runner does, whoever else writes its store (relay.runner).

One task per loaded room. It loads the room, records a new epoch in the store before
the room serves anyone (relay.lineage: versions this relay sends before they are
committed must not be mistaken for the ones the store will hold), then loops: take
every command queued since the last round (joins, ops, presence, leaves), in arrival
order, up to ``max_batch``, and hand them to the subclass's :meth:`_process`, which
runs them through the pure :class:`~.hub.RoomHub`, commits what they accepted and
delivers what they send. Presence goes out at most every ``presence_interval`` (a
timer flushes what waits). The room unloads when its last member has left.

If the store fails (or the core hits a bug) the room's in-memory state may be ahead
of what is durable, so the room is dropped: its connections are closed with 1011 and
resume against a freshly loaded room, resending unacked ops (docs/protocol.md
"Durability").
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..protocol.codes import CloseCode
from .fanout import Peer, commands_done
from .hub import Command, Delivery, RoomHub
from .lineage import Lineage
from .metrics import RelayMetrics
from .room import LogEntry, RoomCore
from .room_rules import DefaultRules, RoomRules
from .store import Store, StoreError

__all__ = ["RoomSettings", "RunnerBase"]

P = TypeVar("P", bound=Peer)


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """A room runner's limits and pacing (the relay's options, per room)."""

    # Save a snapshot (which compacts the log) every this many versions.
    snapshot_every: int
    # Longest catch-up served as broadcasts; beyond it a joiner gets a snapshot.
    max_delta: int
    # Presence goes out at most this often (a join storm of N costs N frames per
    # member, not N²).
    presence_interval: float = 0.0
    # Bound on the room's encoded state (RoomCore; None: its default).
    max_state_bytes: int | None = None
    # Most commands handled per round (bounds one commit and one burst of sends).
    max_batch: int = 1024
    # Shared stores: refused appends of one round in a row before the room fails.
    max_conflicts: int = 32
    # Shared stores: entries per read_log call while catching up.
    read_chunk: int = 1000
    # The relay's rule set for rooms without their own (docs/rules.md).
    rules: DefaultRules | None = None


class RunnerBase(ABC, Generic[P]):
    """The task, the queue, presence pacing, commits and failure of one room.

    Subclasses say how a round is processed (:meth:`_process`) and hook into the
    task's start, idle wait and end; they must keep each command's
    ``command_done`` once it is delivered (or the room failed).
    """

    def __init__(
        self,
        name: str,
        store: Store,
        settings: RoomSettings,
        *,
        metrics: RelayMetrics,
        on_exit: Callable[[RunnerBase[P]], None],
        logger: logging.Logger,
    ) -> None:
        self.name = name
        self._store = store
        self._settings = settings
        self._metrics = metrics
        # Called once when the task ends (idle, stopped or failed): unregister the room.
        self._on_exit = on_exit
        self._logger = logger
        # The loop time the next presence flush is due, and the timer that wakes the
        # task then if presence waits.
        self._presence_due = 0.0
        self._presence_timer: asyncio.TimerHandle | None = None
        self._inbox: deque[Command[P]] = deque()
        self._wake = asyncio.Event()
        # Commands of the round in progress (their peers are closed if the round fails).
        self._batch: list[Command[P]] = []
        self._hub: RoomHub[P] | None = None
        # A failure outside the task (a commit callback, a round run by a reader):
        # the task raises it at its next step, which fails the room.
        self._broken: BaseException | None = None
        # The task waits for commands (loaded, nothing queued, nothing to flush).
        self._waiting = False
        self._stopping = False
        self._finished = False
        self._task: asyncio.Task[None] | None = None

    @property
    def version(self) -> int:
        """The room version (0 until loaded)."""
        return self._hub.core.version if self._hub is not None else 0

    @property
    def hub(self) -> RoomHub[P] | None:
        """The room's routing state (None until loaded)."""
        return self._hub

    def start(self) -> None:
        """Start the room's task (once, right after construction)."""
        self._task = asyncio.create_task(self._run(), name=f"livewidgets room {self.name}")

    def put(self, command: Command[P]) -> None:
        """Queue a command; processed in order after every command queued before it."""
        if self._finished:
            # The room failed or stopped; its peers are being closed and will resume.
            commands_done((command,))
            return
        if self._waiting and not self._wake.is_set() and self._run_alone(command):
            return
        self._inbox.append(command)
        self._wake.set()

    async def stop(self) -> None:
        """Process what is queued (commit, ack, broadcast), then end the task."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)

    # --- what subclasses define ------------------------------------------------------

    @abstractmethod
    async def _process(self, hub: RoomHub[P], batch: list[Command[P]]) -> None:
        """Run one round: handle ``batch``, commit what it accepted, deliver what it
        sends (or hand both to something that will)."""

    def _run_alone(self, command: Command[P]) -> bool:
        """``command`` arrives while the task waits and nothing woke it yet: True if it
        was run at once (a round of its own), False to queue it. Called only then, so a
        busy room pays nothing."""
        return False

    def _new_hub(self, core: RoomCore) -> RoomHub[P]:
        return RoomHub[P](core, max_delta=self._settings.max_delta)

    async def _open(self, hub: RoomHub[P]) -> None:
        """The room is loaded; called before its first round."""

    def _work_without_commands(self) -> bool:
        """Something to do although nothing is queued: run an empty round."""
        return False

    def _share_presence(self, hub: RoomHub[P]) -> None:
        """Presence is about to be flushed to the members here."""

    async def _drain(self) -> None:
        """Until every round processed so far is committed and delivered."""

    def _abandon(self) -> list[Command[P]]:
        """The room fails: the commands of rounds processed but not delivered yet."""
        return []

    def _before_exit(self) -> None:
        """The task ends: called before the room is unregistered."""

    async def _after_exit(self) -> None:
        """The task ends: called once the room is unregistered."""

    # --- the task ----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            hub = self._hub = self._new_hub(await self._load())
            await self._open(hub)
            while (batch := await self._next_batch()) is not None:
                await self._process(hub, batch)
                if not hub.members and not self._inbox:
                    await self._drain()
                    if not hub.members and not self._inbox:
                        break  # idle: unload; the store holds everything
            await self._drain()
            if self._broken is not None:
                raise self._broken
        except Exception as exc:
            self._fail(exc)
        finally:
            self._finished = True
            if self._presence_timer is not None:
                self._presence_timer.cancel()
            self._before_exit()
            self._on_exit(self)
            await self._after_exit()

    async def _load(self) -> RoomCore:
        record = await self._store.load(self.name)
        proposed = record.lineage.successor(record.head) if record.lineage else Lineage.first()
        record.lineage = await self._store.begin_epoch(self.name, proposed)
        rules = RoomRules(self._settings.rules)
        return RoomCore(record, max_state_bytes=self._settings.max_state_bytes, rules=rules)

    async def _next_batch(self) -> list[Command[P]] | None:
        """Everything queued (up to max_batch), waiting for at least one; None when
        stopped, [] when there is work without commands (the presence timer is due)."""
        while not self._inbox:
            if self._broken is not None:
                raise self._broken
            if self._stopping:
                return None
            if self._presence_due_now() or self._work_without_commands():
                return []
            self._wake.clear()
            self._waiting = True  # loaded, not stopping (both checked above)
            try:
                await self._wake.wait()
            finally:
                self._waiting = False
        count = min(len(self._inbox), self._settings.max_batch)
        return [self._inbox.popleft() for _ in range(count)]

    # --- presence pacing ---------------------------------------------------------------

    def _presence_due_now(self) -> bool:
        hub = self._hub
        return (
            hub is not None
            and hub.presence_waiting
            and self._presence_timer is None
            and asyncio.get_running_loop().time() >= self._presence_due
        )

    def _presence_sends(self, hub: RoomHub[P]) -> list[Delivery[P]]:
        """Flush presence now if the interval has passed, else make sure a timer will."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._presence_due:
            self._presence_due = now + self._settings.presence_interval
            self._share_presence(hub)
            return hub.flush_presence()
        if self._presence_timer is None:
            self._presence_timer = loop.call_at(self._presence_due, self._presence_timer_fired)
        return []

    def _presence_timer_fired(self) -> None:
        self._presence_timer = None
        self._wake.set()

    # --- the store ---------------------------------------------------------------------

    async def _commit(self, entries: list[LogEntry]) -> None:
        started = time.perf_counter()
        await self._store.append(self.name, entries)
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        self._metrics.commit_entries.observe(len(entries))

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
        pending = [*self._batch, *self._abandon(), *self._inbox]
        self._inbox.clear()
        peers = dict.fromkeys(
            [*(self._hub.members if self._hub else ()), *(c.member for c in pending)]
        )
        for peer in peers:
            peer.close(CloseCode.INTERNAL_ERROR, "room failed; reconnect and resume")
        commands_done(pending)
