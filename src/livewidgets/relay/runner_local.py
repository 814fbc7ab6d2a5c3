"""The room runner for a store only this relay writes (memory, SQLite).

Each round is run through the hub and handed to the :class:`~.pipeline.CommitPipeline`:
the members with nothing waiting get their messages at once, with the room's
coalesced presence changes if the last presence message went out
``presence_interval`` ago or more; the entries are committed with **one**
``store.append`` per group (group commit: one commit in flight, what arrives
meanwhile is committed next, together); the sends the hub marked ``after_commit``
(the authors' acks), and whatever follows them for the same members, go out after
their commit. So an op is durable before its author hears it is, and a slow disk
delays only the acks it is writing. If the relay dies mid-commit, members saw
versions the store lacks; the room's next load starts a new epoch (relay.lineage)
and their resume gets a snapshot. A round waits up to ``COMMIT_PATIENCE`` for the
commit in flight, so rounds stay big while the disk keeps up. A snapshot is taken
when a group's commit starts and saved after it.

An op that arrives while the room is quiet (its task waits, nothing is queued or
being committed) is a round of its own, run at once by the connection that read it:
the others hear of it a loop turn sooner (fan-out p50 10 to 20% lower,
docs/benchmarks.md), and a busy room still queues, so rounds stay big under load.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .fanout import Peer
from .hub import Command, RoomHub, Submit
from .metrics import RelayMetrics
from .pipeline import CommitPipeline
from .room import LogEntry
from .runner_base import RoomSettings, RunnerBase
from .store import Store

__all__ = ["COMMIT_PATIENCE", "LocalRoomRunner"]

P = TypeVar("P", bound=Peer)

# Seconds a round waits for a commit in flight before the next round goes ahead.
COMMIT_PATIENCE = 0.005


class LocalRoomRunner(RunnerBase[P]):
    """Owns one room on a single-relay store: call :meth:`put` for each command, in
    the order they arrived."""

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
        super().__init__(name, store, settings, metrics=metrics, on_exit=on_exit, logger=logger)
        # Rounds go on while earlier ones are committed; a failed commit fails the room.
        self._pipeline: CommitPipeline[P] = CommitPipeline(self._write_group, self._commit_failed)

    def _run_alone(self, command: Command[P]) -> bool:
        """A lone op in a quiet room: a round of its own, run now by the connection
        that read it. That spares the hop to the room's task (a loop turn, ~25 µs of
        the others' latency). A busy room (something queued or committing) queues it,
        so rounds stay big under load."""
        if not isinstance(command, Submit) or not self._pipeline.idle:
            return False
        hub = self._hub
        assert hub is not None
        self._batch = [command]
        try:
            self._round(hub, self._batch)
        except Exception as exc:
            # The room's task fails the room, as for a round it ran itself.
            self._broken = exc
            self._wake.set()
        return True

    async def _process(self, hub: RoomHub[P], batch: list[Command[P]]) -> None:
        self._batch = batch
        self._round(hub, batch)
        # A commit that returns soon is waited for: what arrives meanwhile makes one
        # bigger round (cheaper fan-out). One that stalls lets the room go on.
        await self._pipeline.drain(COMMIT_PATIENCE)

    def _round(self, hub: RoomHub[P], batch: list[Command[P]]) -> None:
        """Run a round through the hub and hand it to the pipeline: members with no
        answer in it hear of it now, during its commit; the sends marked
        ``after_commit`` wait for it (durable), with everything else of their members."""
        sends = [send for command in batch for send in hub.handle(command)]
        if hub.presence_waiting:
            sends.extend(self._presence_sends(hub))
        self._pipeline.add(sends, hub.take_unsaved(), batch)
        self._metrics.observe_messages(send.message for send in sends)
        self._batch = []

    async def _drain(self) -> None:
        await self._pipeline.drain()

    def _abandon(self) -> list[Command[P]]:
        return self._pipeline.abandon()

    def _write_group(self, entries: list[LogEntry]) -> Awaitable[None]:
        """The pipeline starts a group's commit: the room is as of its last entry now,
        so a snapshot due is taken here and saved after the entries."""
        hub = self._hub
        assert hub is not None
        snapshot = None
        if hub.core.ops_since_snapshot >= self._settings.snapshot_every:
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
