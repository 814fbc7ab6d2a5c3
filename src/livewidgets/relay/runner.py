"""The asyncio shell around a room: one task per loaded room orders its commands,
commits what they accepted and fans out what they send.

Callers (relay.server, relay.connection) see one interface, :class:`RoomRunner`;
:func:`room_runner` picks the kind by store:

* :class:`~.runner_local.LocalRoomRunner`, for a store only this relay writes (memory,
  SQLite): group commit with one commit in flight, the others hear of a round during
  its commit and its authors after it, a lone op in a quiet room runs at once;
* :class:`~.runner_shared.SharedRoomRunner`, for a store several relays append to
  (:class:`~.store.WatchableStore`: Redis): catch-up from the other relays, a round
  committed before any of it is delivered, a refused append redone.

What both share (loading, the epoch, the queue, presence pacing, snapshots, failing
the room) is :class:`~.runner_base.RunnerBase`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from .fanout import Framed, Peer
from .hub import Command, RoomHub
from .metrics import RelayMetrics
from .runner_base import RoomSettings
from .runner_local import LocalRoomRunner
from .runner_shared import SharedRoomRunner
from .store import Store, WatchableStore

__all__ = [
    "Framed",
    "LocalRoomRunner",
    "Peer",
    "RoomRunner",
    "RoomSettings",
    "SharedRoomRunner",
    "room_runner",
]

P = TypeVar("P", bound=Peer)


class RoomRunner(Protocol[P]):
    """One loaded room: :meth:`start` it, :meth:`put` each command in the order they
    arrived, :meth:`stop` it to process what is queued and end."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int:
        """The room version (0 until loaded)."""
        ...

    @property
    def hub(self) -> RoomHub[P] | None:
        """The room's routing state (None until loaded)."""
        ...

    def start(self) -> None: ...

    def put(self, command: Command[P]) -> None:
        """Queue a command; processed in order after every command queued before it."""
        ...

    async def stop(self) -> None:
        """Process what is queued (commit, ack, broadcast), then end the task."""
        ...


def room_runner(
    name: str,
    store: Store,
    settings: RoomSettings,
    *,
    metrics: RelayMetrics,
    on_exit: Callable[[RoomRunner[P]], None],
    logger: logging.Logger,
) -> RoomRunner[P]:
    """The runner of room ``name`` on ``store``: shared if other relays append to the
    store too, else local. ``on_exit`` is called once when its task ends (idle,
    stopped or failed). Call :meth:`~RoomRunner.start` next."""
    if isinstance(store, WatchableStore):
        return SharedRoomRunner(
            name, store, settings, metrics=metrics, on_exit=on_exit, logger=logger
        )
    return LocalRoomRunner(name, store, settings, metrics=metrics, on_exit=on_exit, logger=logger)
