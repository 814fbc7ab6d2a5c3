"""Group commit with one commit in flight, for single-relay stores (memory, SQLite).

The room runner hands each round to :meth:`CommitPipeline.add`. The round's messages
for members with nothing waiting go out at once; the ones for members the hub
answered (the sends it marked :attr:`~.hub.Delivery.after_commit`: acks, rejects) and
for members that still wait for an earlier commit go out after the round's commit.
While one commit runs, later rounds are sequenced and delivered the same way and
their entries gather for the next commit (group commit). So a slow or stalled disk
delays the acks it is writing, and what follows them for the same members, never
the rest of the room's view of it.

Order per member: once a member has messages waiting for a commit, its later
messages wait behind them, and commits are delivered in the order they ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .fanout import Encoded, Peer, commands_done, deliver, split
from .hub import Command, Delivery
from .room import LogEntry

__all__ = ["CommitPipeline"]

P = TypeVar("P", bound=Peer)


@dataclass(eq=False)
class _Group(Generic[P]):
    """Rounds committed together: their entries, and what waits for the commit."""

    entries: list[LogEntry] = field(default_factory=list)
    # Per round: its sends that wait, with that round's frames cache (a round's
    # messages are alive together, so their ids are unique keys within it).
    rounds: list[tuple[list[Delivery[P]], Encoded]] = field(default_factory=list)
    commands: list[Command[P]] = field(default_factory=list)
    # The members those sends go to.
    waiting: set[P] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.entries or self.rounds or self.commands)


class CommitPipeline(Generic[P]):
    """Call :meth:`add` for every round, in order; :meth:`drain` before unloading.

    ``write(entries)`` is called when a group's commit starts (synchronously, so it can
    look at the room as of the group's last entry) and returns what commits it.
    ``failed(exc)`` is told when a commit fails; nothing of that group or any later
    one is delivered then.
    """

    def __init__(
        self,
        write: Callable[[list[LogEntry]], Awaitable[None]],
        failed: Callable[[BaseException], None],
    ) -> None:
        self._write = write
        self._failed = failed
        self._building: _Group[P] = _Group()
        self._committing: _Group[P] | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._broken = False

    def add(
        self, sends: list[Delivery[P]], entries: list[LogEntry], commands: list[Command[P]]
    ) -> None:
        """One round: ``sends`` in order, the ``entries`` it accepted, its ``commands``
        (each told :meth:`~.fanout.Peer.command_done` once the round is delivered).

        A member with a send marked ``after_commit`` in a round that accepted entries
        gets all of that round after its commit, as does a member still waiting for an
        earlier commit: each member's messages stay in order."""
        # New sets only when something waits (usually nothing does).
        hold = self._building.waiting
        if self._committing is not None and self._committing.waiting:
            hold = hold | self._committing.waiting
        if entries:
            hold = hold | {peer for send in sends if send.after_commit for peer in send.to}
        encoded: Encoded = {}
        now, later = split(sends, hold)
        deliver(now, encoded)
        if not entries and not later:
            commands_done(commands)
            return
        group = self._building
        group.entries += entries
        group.commands += commands
        if later:
            group.rounds.append((later, encoded))
            group.waiting.update(peer for send in later for peer in send.to)
        self._start()

    @property
    def idle(self) -> bool:
        """Nothing is being committed or waits for a commit."""
        return self._idle.is_set()

    async def drain(self, timeout: float | None = None) -> None:
        """Until every round added so far is committed and delivered (or failed), or
        ``timeout`` seconds have passed."""
        if self._idle.is_set():
            return
        if timeout is None:
            await self._idle.wait()
        elif self._task is not None:
            # The commit's own callback (delivery) runs before this wait returns.
            await asyncio.wait((self._task,), timeout=timeout)

    def abandon(self) -> list[Command[P]]:
        """Stop (the room failed): the commands of every round not delivered."""
        self._broken = True
        if self._task is not None:
            self._task.cancel()
        commands = [
            *(self._committing.commands if self._committing else ()),
            *self._building.commands,
        ]
        self._committing, self._building = None, _Group()
        self._idle.set()
        return commands

    def _start(self) -> None:
        if self._task is not None or self._broken or not self._building:
            return
        group, self._building = self._building, _Group()
        if not group.entries:
            # Only messages that waited behind a commit that has finished now.
            self._deliver(group)
            return
        self._committing = group
        self._idle.clear()
        self._task = asyncio.ensure_future(self._write(group.entries))
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if task.cancelled() or self._broken:
            return
        exc = task.exception()
        if exc is not None:
            # The group stays in _committing: abandon() hands back its commands.
            self._broken = True
            self._idle.set()
            self._failed(exc)
            return
        group, self._committing = self._committing, None
        assert group is not None
        self._deliver(group)
        self._start()
        if self._task is None:
            self._idle.set()

    @staticmethod
    def _deliver(group: _Group[Any]) -> None:
        for sends, encoded in group.rounds:
            deliver(sends, encoded)
        commands_done(group.commands)
