"""A room's presence shared with the other relays of a store that carries it.

With a :class:`~.store.PresenceBus` store (Redis), each relay publishes its local
members' presence and merges what the other relays publish into its
:class:`~.hub.RoomHub` (docs/protocol.md "Scale-out"). The runner owns one link per
loaded room and drives it:

* :meth:`PresenceLink.start` when the room loads: subscribe, ask the other relays
  for their full tables and wait for them (at most ``SYNC_WAIT``), so the first
  joiners' ``joined.presence`` lists the members of other relays too;
* :meth:`PresenceLink.share` at the start of each round: merge what was heard,
  and on the heartbeat expire stale remote entries and republish the local table
  (also the answer to another relay's sync request);
* :meth:`PresenceLink.stop` and :meth:`PresenceLink.unwatch` when the room unloads:
  an empty table tells the others this relay's members are gone.

Messages arrive from the store's reader task and only wake the room; the hub (pure)
is touched in the room's own task, between rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .hub import Member, RoomHub
from .store import PresenceBus, PresenceKind, PresenceMessage, StoreError, Unwatch

__all__ = ["SYNC_WAIT", "PresenceLink"]

# Longest wait, when a room loads, for the other relays' presence tables (seconds).
SYNC_WAIT = 0.5

M = TypeVar("M", bound=Member)


class PresenceLink(Generic[M]):
    """One loaded room's presence on a :class:`PresenceBus`; ``wake`` wakes the room."""

    def __init__(
        self, bus: PresenceBus, room: str, *, wake: Callable[[], None], logger: logging.Logger
    ) -> None:
        self._bus = bus
        self._room = room
        self._wake = wake
        self._logger = logger
        self._unwatch: Unwatch | None = None
        # Messages heard and not merged yet; a full table owed (sync request or heartbeat).
        self._heard: deque[PresenceMessage] = deque()
        self._owe_full = False
        # The heartbeat: due, and its timer.
        self._tick_due = False
        self._tick_timer: asyncio.TimerHandle | None = None
        # The load-time sync: how many relays got our request (None: not waiting), whether
        # our own request came back, and which relays answered.
        self._sync_count: int | None = None
        self._sync_echo = False
        self._sync_answers: set[str] = set()
        self._synced = asyncio.Event()
        self._stopped = False

    @property
    def pending(self) -> bool:
        """Something for :meth:`share` to do (the room should run a round)."""
        return bool(self._heard) or self._owe_full or self._tick_due

    async def start(self) -> None:
        """Subscribe to the room's presence and ask the other relays for their tables;
        wait until all that received the request answered (at most SYNC_WAIT)."""
        self._unwatch = await self._bus.watch_presence(self._room, self._heard_message)
        try:
            self._sync_count = await self._bus.request_presence(self._room)
        except StoreError as exc:  # not fatal: heartbeats bring the tables later
            self._logger.warning("room %r: presence sync request failed: %s", self._room, exc)
            return
        self._check_synced()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._synced.wait(), SYNC_WAIT)
        self._sync_count = None
        self._schedule_tick()

    def share(self, hub: RoomHub[M]) -> None:
        """Merge what other relays published; on the heartbeat expire stale remote
        entries and republish the local table; answer sync requests."""
        now = asyncio.get_running_loop().time()
        while self._heard:
            message = self._heard.popleft()
            full = message.kind is PresenceKind.FULL
            hub.apply_remote_presence(
                message.relay_id, message.states, now, ttl=message.ttl, full=full
            )
        if self._tick_due:
            self._tick_due = False
            hub.expire_remote_presence(now)
            self._owe_full = True
            self._schedule_tick()
        if self._owe_full:
            self._owe_full = False
            hub.take_outgoing()  # the full table says it all
            table: dict[str, dict[str, Any] | None] = dict(hub.local_presence())
            self._bus.publish_presence(self._room, PresenceKind.FULL, table)

    def publish_changes(self, states: dict[str, dict[str, Any] | None]) -> None:
        """This relay's coalesced local changes, as flushed to its own members."""
        if states:
            self._bus.publish_presence(self._room, PresenceKind.CHANGES, states)

    def stop(self, *, announce_empty: bool) -> None:
        """The room is unloading: no more heartbeats; with ``announce_empty`` tell the
        other relays that this relay's members are gone."""
        self._stopped = True
        if self._tick_timer is not None:
            self._tick_timer.cancel()
        if announce_empty:
            with contextlib.suppress(Exception):
                self._bus.publish_presence(self._room, PresenceKind.FULL, {})

    async def unwatch(self) -> None:
        if self._unwatch is not None:
            with contextlib.suppress(Exception):
                await self._unwatch()

    # --- internals ---------------------------------------------------------------

    def _check_synced(self) -> None:
        count = self._sync_count
        if count is None:
            return
        # The request's receivers include this relay if its subscription was active
        # then (its own request came back): every other receiver answers once.
        others = count - 1 if self._sync_echo else count
        if len(self._sync_answers) >= others:
            self._synced.set()

    def _heard_message(self, message: PresenceMessage) -> None:
        """A presence message for this room (from the store's reader task)."""
        if self._stopped:
            return
        if message.relay_id == self._bus.relay_id:  # our own
            if message.kind is PresenceKind.SYNC:
                self._sync_echo = True
                self._check_synced()
            return
        if message.kind is PresenceKind.SYNC:
            self._owe_full = True
        else:
            self._heard.append(message)
            if message.kind is PresenceKind.FULL and self._sync_count is not None:
                self._sync_answers.add(message.relay_id)
                self._check_synced()
        self._wake()

    def _schedule_tick(self) -> None:
        if not self._stopped:
            loop = asyncio.get_running_loop()
            self._tick_timer = loop.call_later(self._bus.presence_heartbeat, self._tick_fired)

    def _tick_fired(self) -> None:
        self._tick_timer = None
        self._tick_due = True
        self._wake()
