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

:class:`PipelineCore` makes every decision and does no I/O: its inputs (a round, a
commit's end) return the actions to carry out, in order (:class:`Deliver`,
:class:`CommandsDone`, :class:`StartCommit`, :class:`Fail`), as h11 does. The
asyncio :class:`CommitPipeline` runs the commits as tasks and carries the actions
out; the simulation (tests/sim) drives the same core on its fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .fanout import Encoded, Peer, commands_done, deliver, split
from .hub import Command, Delivery
from .room import LogEntry

__all__ = [
    "CommandsDone",
    "CommitPipeline",
    "Deliver",
    "Fail",
    "PipelineAction",
    "PipelineCore",
    "StartCommit",
]

P = TypeVar("P", bound=Peer)


# --- actions ---------------------------------------------------------------------------


@dataclass(slots=True)
class Deliver(Generic[P]):
    """Send these now, in order (one round's, sharing its frame cache)."""

    sends: list[Delivery[P]]
    # A round's messages are alive together, so their ids are unique keys within it;
    # a cache, not part of what is delivered.
    encoded: Encoded = field(default_factory=dict, compare=False, repr=False)


@dataclass(slots=True)
class CommandsDone(Generic[P]):
    """These commands are delivered: return their reader credits."""

    commands: list[Command[P]]


@dataclass(slots=True)
class StartCommit:
    """Start committing ``entries`` now (the room is as of the last one); report its
    end with :meth:`PipelineCore.commit_done` or :meth:`PipelineCore.commit_failed`."""

    entries: list[LogEntry]


@dataclass(slots=True)
class Fail:
    """The commit failed: the room fails; nothing of it or later is delivered."""

    error: BaseException


PipelineAction = Deliver[P] | CommandsDone[P] | StartCommit | Fail


# --- the core --------------------------------------------------------------------------


@dataclass(eq=False)
class _Group(Generic[P]):
    """Rounds committed together: their entries, and what waits for the commit."""

    entries: list[LogEntry] = field(default_factory=list)
    # Per round: its sends that wait, with that round's frame cache.
    rounds: list[tuple[list[Delivery[P]], Encoded]] = field(default_factory=list)
    commands: list[Command[P]] = field(default_factory=list)
    # The members those sends go to.
    waiting: set[P] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.entries or self.rounds or self.commands)


class PipelineCore(Generic[P]):
    """Group commit with one commit in flight, sans I/O: feed it rounds and commit
    ends, carry out the actions it returns in their order."""

    def __init__(self) -> None:
        self._building: _Group[P] = _Group()
        self._committing: _Group[P] | None = None
        # A commit failed or the room stopped: no commit starts, nothing held is sent.
        self.broken = False

    @property
    def idle(self) -> bool:
        """Nothing is being committed (or the pipeline stopped)."""
        return self._committing is None or self.broken

    @property
    def committing(self) -> bool:
        """A commit is in flight (its end is yet to be reported)."""
        return self._committing is not None and not self.broken

    def add(
        self, sends: list[Delivery[P]], entries: list[LogEntry], commands: list[Command[P]]
    ) -> list[PipelineAction[P]]:
        """One round: ``sends`` in order, the ``entries`` it accepted, its ``commands``.

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
        actions: list[PipelineAction[P]] = [Deliver(now, encoded)] if now else []
        if not entries and not later:
            if commands:
                actions.append(CommandsDone(commands))
            return actions
        group = self._building
        group.entries += entries
        group.commands += commands
        if later:
            group.rounds.append((later, encoded))
            group.waiting.update(peer for send in later for peer in send.to)
        actions += self._start()
        return actions

    def commit_done(self) -> list[PipelineAction[P]]:
        """The commit in flight is durable: what waited for it goes out, the next starts."""
        group, self._committing = self._committing, None
        assert group is not None and not self.broken, "no commit in flight"
        return self._delivered(group) + self._start()

    def commit_failed(self, error: BaseException) -> list[PipelineAction[P]]:
        """The commit in flight failed. Its group stays: :meth:`abandon` hands back
        its commands."""
        assert self._committing is not None and not self.broken, "no commit in flight"
        self.broken = True
        return [Fail(error)]

    def abandon(self) -> list[Command[P]]:
        """Stop (the room failed): the commands of every round not delivered."""
        self.broken = True
        commands = [
            *(self._committing.commands if self._committing else ()),
            *self._building.commands,
        ]
        self._committing, self._building = None, _Group()
        return commands

    def _start(self) -> list[PipelineAction[P]]:
        if self._committing is not None or self.broken or not self._building:
            return []
        group, self._building = self._building, _Group()
        if not group.entries:
            # Only messages that waited behind a commit that has finished now.
            return self._delivered(group)
        self._committing = group
        return [StartCommit(group.entries)]

    @staticmethod
    def _delivered(group: _Group[P]) -> list[PipelineAction[P]]:
        actions: list[PipelineAction[P]] = [
            Deliver(sends, encoded) for sends, encoded in group.rounds
        ]
        if group.commands:
            actions.append(CommandsDone(group.commands))
        return actions


# --- the asyncio shell -----------------------------------------------------------------


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
        self._core: PipelineCore[P] = PipelineCore()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def add(
        self, sends: list[Delivery[P]], entries: list[LogEntry], commands: list[Command[P]]
    ) -> None:
        """One round (:meth:`PipelineCore.add`); each of ``commands`` is told
        :meth:`~.fanout.Peer.command_done` once the round is delivered."""
        self._do(self._core.add(sends, entries, commands))

    @property
    def idle(self) -> bool:
        """Nothing is being committed or waits for a commit."""
        return self._core.idle

    async def drain(self, timeout: float | None = None) -> None:
        """Until every round added so far is committed and delivered (or failed), or
        ``timeout`` seconds have passed."""
        if self._core.idle:
            return
        if timeout is None:
            await self._idle.wait()
        elif self._task is not None:
            # The commit's own callback (delivery) runs before this wait returns.
            await asyncio.wait((self._task,), timeout=timeout)

    def abandon(self) -> list[Command[P]]:
        """Stop (the room failed): the commands of every round not delivered."""
        commands = self._core.abandon()
        if self._task is not None:
            self._task.cancel()
        self._idle.set()
        return commands

    def _do(self, actions: list[PipelineAction[P]]) -> None:
        # The core's state is final here: drain() may wake as soon as the loop turns.
        if self._core.idle:
            self._idle.set()
        else:
            self._idle.clear()
        for action in actions:
            if isinstance(action, Deliver):
                deliver(action.sends, action.encoded)
            elif isinstance(action, CommandsDone):
                commands_done(action.commands)
            elif isinstance(action, StartCommit):
                self._task = asyncio.ensure_future(self._write(action.entries))
                self._task.add_done_callback(self._done)
            else:
                self._failed(action.error)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._task = None
        if task.cancelled() or self._core.broken:
            return
        exc = task.exception()
        self._do(self._core.commit_failed(exc) if exc is not None else self._core.commit_done())
