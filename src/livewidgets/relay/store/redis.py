"""A Redis store: rooms shared by several relay processes (``redis://host:port/db``).

Layout per room (keys share a ``{room}`` hash tag, so a Redis Cluster keeps them on
one slot and the scripts stay atomic):

======================  ====  ===================================================
``lw:{room}:head``      str   version of the last appended entry
``lw:{room}:log``       zset  msgpack [version, client_id, client_seq, ops, refused,
                              user, time], score = version
``lw:{room}:dedupe``    hash  client_id -> "highest_client_seq its_version"
``lw:{room}:snapshot``  hash  version, state, clock (msgpack)
``lw:{room}:snapshots`` hash  version -> state (msgpack): the kept history's snapshots
``lw:{room}:snaptimes`` hash  version -> Unix time the snapshot was taken
``lw:{room}:epoch``     str   the room's epoch (relay.lineage): set once, kept
``lw:{room}:events``    chan  pub/sub: the new head after each append
``lw:{room}:presence``  chan  pub/sub: presence (msgpack [relay_id, kind, ttl, states])
``lw:revocations``      hash  "kind id scope" -> msgpack [kind, id, scope, revoked_at]
``lw:revocations:new``  chan  pub/sub: each revocation as it is recorded (same blob)
======================  ====  ===================================================

Revocations (relay.revocation) are relay-wide, so their keys have no room tag.
:meth:`RedisStore.watch_revocations` hears them on their channel and, as for heads,
from a poll every ``poll_interval`` seconds (of the hash's length: revocations are
only ever added), so a relay learns of every revocation within that bound.

``append`` is one Lua script: it refuses entries that do not continue the stored
head (StoreConflict: another relay wrote first), then adds the entries, raises the
dedupe table, moves the head and PUBLISHes the new head on the room's channel,
atomically. Durability is Redis's: an ack means Redis accepted the write; run Redis
with ``appendonly yes`` and ``appendfsync always`` for the same crash guarantee as
the SQLite store.

Scale-out (docs/protocol.md "Durability"): several relays may serve one room. Each
sequences its own clients' ops against its copy of the room and appends them; the
conditional append keeps one total order per room. :meth:`RedisStore.watch` tells a
relay that the head moved, from one pub/sub connection per store (subscribed to the
channels of the rooms it has loaded) and, since pub/sub is at-most-once (a dropped
connection loses messages), from a poll of the watched heads every
``poll_interval`` seconds: a relay hears of every head within that bound. It then
reads the entries it lacks with ``read_log``. A snapshot keeps the last
``keep_log`` entries before it in the log (at least: history keeps more, see
relay.history), so a relay that lags by up to that many entries behind a compaction
still reads its gap instead of having to reload.

Presence (the :class:`~livewidgets.relay.store.PresenceBus` protocol) goes over the
room's presence channel only, never into keys: each store has a random relay id;
``publish_presence`` queues messages in a bounded outbox that one task publishes in
order (a pipeline per burst), so a room never waits on Redis for presence; the
watch's pub/sub connection and reader task deliver the messages of watched rooms.

Options, as keyword arguments or in the URL's query (``redis://h:6379/0?prefix=t``):
``prefix`` (key namespace, default ``lw``), ``keep_log`` (default 1000),
``poll_interval`` (seconds, default 1) and ``presence_heartbeat`` (seconds between
a relay's full presence tables per room, default 2; entries expire after 3 times
that without a refresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from ...state.ops import Op
from ..history import HistoryHorizon, HistoryRecord
from ..lineage import Lineage
from ..revocation import Revocation
from ..room import LogEntry, RoomRecord
from . import (
    HeadCallback,
    PresenceCallback,
    PresenceKind,
    PresenceMessage,
    RevocationCallback,
    StoreConflict,
    StoreError,
    Unwatch,
    check_continues,
    decode_revocation,
    encode_revocation,
)

__all__ = ["RedisStore"]

_encode = msgspec.msgpack.Encoder().encode


class _StoredEntry(msgspec.Struct, array_like=True):
    """A log blob: [version, client_id, client_seq, ops, refused]; ``refused`` is
    left out when empty (and by stores written before it existed)."""

    version: int
    client_id: str
    client_seq: int
    ops: list[Op]
    refused: tuple[tuple[int, str], ...] = ()
    user: str = ""
    time: float = 0.0


_decode_entry = msgspec.msgpack.Decoder(_StoredEntry).decode
_decode_state = msgspec.msgpack.Decoder(dict[str, Any]).decode
_decode_any = msgspec.msgpack.Decoder().decode
_decode_presence = msgspec.msgpack.Decoder(
    tuple[str, int, float, dict[str, dict[str, Any] | None]]
).decode

# Presence messages queued at most (per store) before new ones are dropped.
PRESENCE_OUTBOX = 4096

_logger = logging.getLogger("livewidgets.relay.store.redis")

# KEYS: head, log, dedupe. ARGV: expected head, new head, n entries, events channel,
# then per entry (version, blob), then per client (client_id, seq, version); dedupe
# values are "seq version" and only ever rise. Returns the stored head on conflict,
# else -1. The PUBLISH is part of the script: no append goes unannounced (to the
# subscribers connected then).
_APPEND = """
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
if head ~= tonumber(ARGV[1]) then return head end
local n = tonumber(ARGV[3])
local i = 5
for _ = 1, n do
  redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  local current = redis.call('HGET', KEYS[3], ARGV[i])
  local seq = tonumber(ARGV[i + 1])
  if (not current) or seq > tonumber(string.match(current, '^(%d+)')) then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1] .. ' ' .. ARGV[i + 2])
  end
  i = i + 3
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return -1
"""

# KEYS: head, log, snapshot, snapshots, snaptimes. ARGV: version, state, clock, time.
# Returns {0, head, snaptimes...} ok, {1} older (ignored), {-1} ahead of the head.
_SNAPSHOT = """
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local current = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')
local version = tonumber(ARGV[1])
if version <= current then return {1} end
if version > head then return {-1} end
redis.call('HSET', KEYS[3], 'version', version, 'state', ARGV[2], 'clock', ARGV[3])
redis.call('HSET', KEYS[4], version, ARGV[2])
redis.call('HSET', KEYS[5], version, ARGV[4])
return {0, head, redis.call('HGETALL', KEYS[5])}
"""

# KEYS: log, snapshots, snaptimes. ARGV: the version to trim the history to
# (relay.history): entries up to it and snapshots before it go.
_TRIM = """
local cut = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cut)
for _, version in ipairs(redis.call('HKEYS', KEYS[3])) do
  if tonumber(version) < cut then
    redis.call('HDEL', KEYS[2], version)
    redis.call('HDEL', KEYS[3], version)
  end
end
return 0
"""


class RedisStore:
    """The :class:`~livewidgets.relay.store.WatchableStore` protocol on Redis (redis-py
    asyncio).

    ``prefix`` namespaces the keys (several deployments, or tests, on one Redis);
    ``keep_log`` entries stay in the log before each snapshot; ``poll_interval``
    bounds how late a watcher hears of a head whose live notice was lost. Each
    defaults to the URL's query option of that name, else ``lw``, 1000 and 1.0.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        keep_log: int | None = None,
        poll_interval: float | None = None,
        presence_heartbeat: float | None = None,
        history: HistoryHorizon | None = None,
    ) -> None:
        url, options = _split_options(url)
        self.history = history or HistoryHorizon()
        self.url = url
        self.prefix = prefix if prefix is not None else options.get("prefix", "lw")
        self.keep_log = keep_log if keep_log is not None else int(options.get("keep_log", 1000))
        self.poll_interval = (
            poll_interval if poll_interval is not None else float(options.get("poll_interval", 1.0))
        )
        self.presence_heartbeat = (
            presence_heartbeat
            if presence_heartbeat is not None
            else float(options.get("presence_heartbeat", 2.0))
        )
        if (
            not self.prefix
            or self.keep_log < 0
            or not 0 < self.poll_interval < float("inf")
            or not 0 < self.presence_heartbeat < float("inf")
        ):
            raise ValueError(
                "redis store: need a prefix, keep_log >= 0, poll_interval > 0, "
                "presence_heartbeat > 0"
            )
        self.presence_ttl = 3 * self.presence_heartbeat
        self.relay_id = uuid.uuid4().hex[:16]
        self._closed = False
        self._redis: Redis = Redis.from_url(url)
        self._append = self._redis.register_script(_APPEND)
        self._snapshot = self._redis.register_script(_SNAPSHOT)
        self._trim = self._redis.register_script(_TRIM)
        # Watching: room -> callbacks; channel -> room for the subscribed channels; one
        # pub/sub connection and one reader task per store, made on the first watch.
        self._watchers: dict[str, list[HeadCallback]] = {}
        self._subscribed: dict[str, str] = {}
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribing = asyncio.Lock()
        self._resubscribed = asyncio.Event()
        # Presence: room -> callbacks; channel -> room; the outbox and its sender task.
        self._presence_watchers: dict[str, list[PresenceCallback]] = {}
        self._presence_subscribed: dict[str, str] = {}
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._outbox_ready = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self.presence_dropped = 0
        # Revocations: callbacks, whether their channel is subscribed, and how many
        # the last poll saw (the hash only grows, so its length tells of new ones).
        self._revocation_watchers: list[RevocationCallback] = []
        self._revocations_subscribed = False
        self._revocations_seen = 0

    def _keys(self, room: str) -> tuple[str, str, str, str]:
        if self._closed:
            raise StoreError("the store is closed")
        base = f"{self.prefix}:{{{room}}}"
        return f"{base}:head", f"{base}:log", f"{base}:dedupe", f"{base}:snapshot"

    def _history_keys(self, room: str) -> tuple[str, str]:
        base = f"{self.prefix}:{{{room}}}"
        return f"{base}:snapshots", f"{base}:snaptimes"

    def _epoch_key(self, room: str) -> str:
        return f"{self.prefix}:{{{room}}}:epoch"

    def _channel(self, room: str) -> str:
        return f"{self.prefix}:{{{room}}}:events"

    def _presence_channel(self, room: str) -> str:
        return f"{self.prefix}:{{{room}}}:presence"

    @property
    def _revocations_key(self) -> str:
        return f"{self.prefix}:revocations"

    @property
    def _revocations_channel(self) -> str:
        return f"{self.prefix}:revocations:new"

    async def load(self, room: str) -> RoomRecord:
        _, log_key, dedupe_key, snapshot_key = self._keys(room)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(snapshot_key)
                pipe.zrangebyscore(log_key, "-inf", "+inf", withscores=True)
                pipe.hgetall(dedupe_key)
                pipe.get(self._epoch_key(room))
                snapshot, scored, dedupe, epoch = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        record = RoomRecord(room, lineage=Lineage(epoch.decode()) if epoch else None)
        if snapshot:
            record.snapshot_version = int(snapshot[b"version"])
            record.snapshot_state = _decode_state(snapshot[b"state"])
            record.snapshot_clock = _decode_any(snapshot[b"clock"])
        # The log keeps keep_log entries before the snapshot (for catching-up relays).
        after = record.snapshot_version
        record.log = [_entry(blob) for blob, score in scored if score > after]
        record.dedupe = {cid.decode(): _seq_version(value) for cid, value in dedupe.items()}
        return record

    async def append(self, room: str, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        head_key, log_key, dedupe_key, _ = self._keys(room)
        first, last = entries[0].version, entries[-1].version
        check_continues(first - 1, entries)  # consecutive among themselves; Lua checks the head
        args: list[bytes | str | int] = [first - 1, last, len(entries), self._channel(room)]
        for entry in entries:
            blob = _encode(
                [
                    entry.version,
                    entry.client_id,
                    entry.client_seq,
                    list(entry.ops),
                    entry.refused,
                    entry.user,
                    entry.time,
                ]
            )
            args += [entry.version, blob]
        latest = {e.client_id: (e.client_seq, e.version) for e in entries}
        for client_id, (seq, version) in latest.items():
            args += [client_id, seq, version]
        try:
            result = await self._append(keys=[head_key, log_key, dedupe_key], args=args)
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        if int(result) != -1:
            raise StoreConflict(
                f"entry version {first} does not continue the log at {result}", int(result)
            )

    async def begin_epoch(self, room: str, lineage: Lineage) -> Lineage:
        # Relays sharing a room share its epoch: the first one recorded stays. (They
        # never send an op before it is committed, so no history forks.)
        key = self._epoch_key(room)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(key, lineage.epoch, nx=True)
                pipe.get(key)
                _, epoch = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        return lineage if epoch.decode() == lineage.epoch else Lineage(epoch.decode())

    async def read_log(self, room: str, after: int, limit: int) -> list[LogEntry]:
        _, log_key, _, _ = self._keys(room)
        try:
            blobs = await self._redis.zrangebyscore(
                log_key, f"({after}", "+inf", start=0, num=max(limit, 0)
            )
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        return [_entry(blob) for blob in blobs]

    async def save_snapshot(
        self, room: str, version: int, state: dict[str, Any], clock_data: Any
    ) -> None:
        head_key, log_key, _, snapshot_key = self._keys(room)
        snapshots_key, times_key = self._history_keys(room)
        now = time.time()
        args: list[bytes | int | float] = [version, _encode(state), _encode(clock_data), now]
        keys = [head_key, log_key, snapshot_key, snapshots_key, times_key]
        try:
            result = await self._snapshot(keys=keys, args=args)
            if int(result[0]) == -1:
                raise StoreConflict(f"snapshot at {version} is ahead of the log head")
            if int(result[0]) != 0:
                return
            head, flat = int(result[1]), result[2]
            # Relays catching up read the keep_log entries before the snapshot: the
            # history is never trimmed past them.
            kept = sorted(
                (int(v), float(t))
                for v, t in zip(flat[::2], flat[1::2], strict=True)
                if int(v) <= version - self.keep_log
            )
            cut = self.history.trim_to(head, kept, now)
            if cut is not None:
                await self._trim(keys=[log_key, snapshots_key, times_key], args=[cut])
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    async def read_history(self, room: str) -> HistoryRecord:
        # The history starts right before the oldest kept entry: at version 0, or at
        # the snapshot the log was last trimmed to (trims cut at snapshots).
        _, log_key, _, snapshot_key = self._keys(room)
        snapshots_key, _ = self._history_keys(room)
        try:
            for _ in range(10):  # a trim between the two reads moves the start: read again
                first = await self._redis.zrange(log_key, 0, 0, withscores=True)
                if first and int(first[0][1]) == 1:
                    state_key, state_field, base = None, "", 0
                elif first:
                    base = int(first[0][1]) - 1
                    state_key, state_field = snapshots_key, str(base)
                else:  # trimmed to the current snapshot, compacted before history, or new
                    base = int(await self._redis.hget(snapshot_key, "version") or 0)
                    state_key, state_field = snapshot_key, "state"
                async with self._redis.pipeline(transaction=True) as pipe:
                    if state_key is not None:
                        pipe.hget(state_key, state_field)
                    pipe.zrangebyscore(log_key, f"({base}", "+inf")
                    *state, blobs = await pipe.execute()
                entries = [_entry(blob) for blob in blobs]
                if entries and entries[0].version != base + 1:
                    continue
                if base == 0 or (state and state[0] is not None):
                    decoded = _decode_state(state[0]) if state and state[0] else {}
                    return HistoryRecord(room, base, decoded, entries)
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        raise StoreError(f"room {room!r}: its history kept moving while it was read")

    async def rooms(self) -> list[tuple[str, int]]:
        if self._closed:
            raise StoreError("the store is closed")
        pattern, rooms = f"{self.prefix}:{{*}}:head", []
        try:
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                name = key.decode()[len(self.prefix) + 2 : -len("}:head")]
                head = await self._redis.get(key)
                rooms.append((name, int(head or 0)))
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        return sorted(rooms)

    # --- watching heads (WatchableStore) ---------------------------------------------

    async def watch(self, room: str, callback: HeadCallback) -> Unwatch:
        self._keys(room)  # refuses when closed
        self._watchers.setdefault(room, []).append(callback)
        if self._reader is None:
            self._reader = asyncio.create_task(self._listen(), name="livewidgets redis watch")
        try:
            await self._sync_subscription(room)
        except RedisError as exc:
            # Not fatal: the poll still reports this room's head; it retries the SUBSCRIBE.
            _logger.warning("redis: cannot subscribe to room %r yet: %s", room, exc)

        async def unwatch() -> None:
            callbacks = self._watchers.get(room, [])
            if callback in callbacks:
                callbacks.remove(callback)
                if not callbacks:
                    del self._watchers[room]
            with contextlib.suppress(RedisError):
                await self._sync_subscription(room)

        return unwatch

    async def _sync_subscription(self, room: str) -> None:
        """Subscribe to the room's channels that are watched, unsubscribe the others."""
        async with self._subscribing:
            if self._closed:
                return
            for channel, subscribed, wanted in (
                (self._channel(room), self._subscribed, room in self._watchers),
                (
                    self._presence_channel(room),
                    self._presence_subscribed,
                    room in self._presence_watchers,
                ),
            ):
                if wanted and channel not in subscribed:
                    if self._pubsub is None:
                        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                    await self._pubsub.subscribe(channel)
                    subscribed[channel] = room
                    self._resubscribed.set()
                elif not wanted and channel in subscribed:
                    del subscribed[channel]
                    assert self._pubsub is not None
                    await self._pubsub.unsubscribe(channel)

    async def _listen(self) -> None:
        """Relay published heads to the watchers; poll every head each poll_interval."""
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + self.poll_interval
        while not self._closed:
            try:
                wait = max(0.0, next_poll - loop.time())
                listening = (
                    self._subscribed or self._presence_subscribed or self._revocations_subscribed
                )
                if listening and self._pubsub is not None:
                    message = await self._pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=wait
                    )
                    if message is not None and message.get("type") == "message":
                        self._published(message)
                else:  # nothing subscribed yet: wait for a subscription or the poll
                    self._resubscribed.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._resubscribed.wait(), wait)
                if loop.time() >= next_poll:
                    next_poll = loop.time() + self.poll_interval
                    await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost connection: redis-py reconnects, resubscribes
                if self._closed:
                    return
                _logger.warning("redis: watching rooms: %s; polling until it recovers", exc)
                await asyncio.sleep(min(self.poll_interval, 0.5))
                next_poll = loop.time()  # messages may have been lost: poll now

    def _published(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        if channel == self._revocations_channel:
            self._revoked([message["data"]])
            return
        room = self._presence_subscribed.get(channel)
        if room is not None:
            self._heard(room, message["data"])
            return
        room = self._subscribed.get(channel)
        if room is not None:
            self._notify(room, int(message["data"]))

    async def _poll(self) -> None:
        if self._revocation_watchers:
            await self._poll_revocations()
        for room in list(self._presence_watchers):  # a SUBSCRIBE that failed before
            if (
                room in self._presence_watchers
                and self._presence_channel(room) not in self._presence_subscribed
            ):
                await self._sync_subscription(room)
        rooms = list(self._watchers)
        if not rooms:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.get(self._keys(room)[0])
            heads = await pipe.execute()
        for room, head in zip(rooms, heads, strict=True):
            self._notify(room, int(head or 0))
        for room in rooms:  # a SUBSCRIBE that failed before
            if room in self._watchers and self._channel(room) not in self._subscribed:
                await self._sync_subscription(room)

    def _notify(self, room: str, head: int) -> None:
        for callback in list(self._watchers.get(room, ())):
            try:
                callback(head)
            except Exception:  # a watcher's bug must not stop the others' notices
                _logger.exception("redis: head callback for room %r failed", room)

    # --- revocations (relay-wide) ------------------------------------------------------

    async def revoke(self, revocation: Revocation) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        blob = _encode(encode_revocation(revocation))
        field = "\0".join(revocation.key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(self._revocations_key, field, blob)
                pipe.publish(self._revocations_channel, blob)
                await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    async def revocations(self) -> list[Revocation]:
        if self._closed:
            raise StoreError("the store is closed")
        try:
            blobs = await self._redis.hvals(self._revocations_key)
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        return self._decode_revocations(blobs)

    async def watch_revocations(self, callback: RevocationCallback) -> Unwatch:
        if self._closed:
            raise StoreError("the store is closed")
        self._revocation_watchers.append(callback)
        if self._reader is None:
            self._reader = asyncio.create_task(self._listen(), name="livewidgets redis watch")
        try:
            await self._subscribe_revocations()
        except RedisError as exc:
            # Not fatal: the poll still reports new revocations and retries the SUBSCRIBE.
            _logger.warning("redis: cannot subscribe to revocations yet: %s", exc)

        async def unwatch() -> None:
            if callback in self._revocation_watchers:
                self._revocation_watchers.remove(callback)

        return unwatch

    async def _subscribe_revocations(self) -> None:
        async with self._subscribing:
            if self._closed or self._revocations_subscribed:
                return
            if self._pubsub is None:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(self._revocations_channel)
            self._revocations_subscribed = True
            self._resubscribed.set()

    async def _poll_revocations(self) -> None:
        """The safety net under pub/sub: new entries in the hash go to the watchers."""
        count = int(await self._redis.hlen(self._revocations_key))
        if count != self._revocations_seen:
            self._revocations_seen = count
            self._revoked(await self._redis.hvals(self._revocations_key))
        if not self._revocations_subscribed:  # a SUBSCRIBE that failed before
            await self._subscribe_revocations()

    def _decode_revocations(self, blobs: Sequence[bytes | str]) -> list[Revocation]:
        revocations = []
        for blob in blobs:
            try:
                data = blob.encode() if isinstance(blob, str) else blob
                revocations.append(decode_revocation(_decode_any(data)))
            except (msgspec.DecodeError, ValueError, TypeError):
                _logger.warning("redis: ignoring a malformed revocation")
        return revocations

    def _revoked(self, blobs: Sequence[bytes | str]) -> None:
        revocations = self._decode_revocations(blobs)
        if not revocations:
            return
        for callback in list(self._revocation_watchers):
            try:
                callback(revocations)
            except Exception:  # a watcher's bug must not stop the others' notices
                _logger.exception("redis: revocation callback failed")

    # --- presence between relays (PresenceBus) -----------------------------------------

    async def watch_presence(self, room: str, callback: PresenceCallback) -> Unwatch:
        self._keys(room)  # refuses when closed
        self._presence_watchers.setdefault(room, []).append(callback)
        if self._reader is None:
            self._reader = asyncio.create_task(self._listen(), name="livewidgets redis watch")
        try:
            await self._sync_subscription(room)
        except RedisError as exc:
            # Not fatal: the poll retries; meanwhile this relay hears no presence.
            _logger.warning("redis: cannot subscribe to room %r presence yet: %s", room, exc)

        async def unwatch() -> None:
            callbacks = self._presence_watchers.get(room, [])
            if callback in callbacks:
                callbacks.remove(callback)
                if not callbacks:
                    del self._presence_watchers[room]
            with contextlib.suppress(RedisError):
                await self._sync_subscription(room)

        return unwatch

    def _encode_presence(
        self, kind: PresenceKind, states: dict[str, dict[str, Any] | None]
    ) -> bytes:
        return _encode((self.relay_id, int(kind), self.presence_ttl, states))

    def publish_presence(
        self, room: str, kind: PresenceKind, states: dict[str, dict[str, Any] | None]
    ) -> None:
        if self._closed:
            return
        if len(self._outbox) >= PRESENCE_OUTBOX:
            # Redis is slow or gone: drop; the next FULL heartbeat repairs the others.
            self.presence_dropped += 1
            if self.presence_dropped == 1 or self.presence_dropped % 1000 == 0:
                _logger.warning("redis: presence outbox full; %d dropped", self.presence_dropped)
            return
        self._outbox.append((self._presence_channel(room), self._encode_presence(kind, states)))
        self._outbox_ready.set()
        if self._sender is None:
            self._sender = asyncio.create_task(self._send(), name="livewidgets redis presence")

    async def request_presence(self, room: str) -> int:
        payload = self._encode_presence(PresenceKind.SYNC, {})
        try:
            return int(await self._redis.publish(self._presence_channel(room), payload))
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    async def _send(self) -> None:
        """Publish the outbox in order, a pipeline per burst, until closed and empty."""
        while True:
            if not self._outbox:
                if self._closed:
                    return
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            batch = list(self._outbox)
            self._outbox.clear()
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for channel, payload in batch:
                        pipe.publish(channel, payload)
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # lost: the next FULL heartbeat repairs
                _logger.warning("redis: publishing presence: %s", exc)
                if self._closed:
                    return
                await asyncio.sleep(0.1)

    def _heard(self, room: str, data: bytes) -> None:
        try:
            relay_id, kind, ttl, states = _decode_presence(data)
            message = PresenceMessage(relay_id, PresenceKind(kind), ttl, states)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            _logger.warning("redis: ignoring a malformed presence message for room %r", room)
            return
        for callback in list(self._presence_watchers.get(room, ())):
            try:
                callback(message)
            except Exception:
                _logger.exception("redis: presence callback for room %r failed", room)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._sender is not None:  # the last presence (rooms' exits) goes out
                self._outbox_ready.set()
                try:
                    await asyncio.wait_for(asyncio.shield(self._sender), 1.0)
                except (asyncio.TimeoutError, Exception):
                    self._sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._sender
            if self._reader is not None:
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
            if self._pubsub is not None:
                # Through a typed name: redis < 8.2 leaves PubSub.aclose unannotated.
                close_pubsub: Callable[[], Awaitable[None]] = self._pubsub.aclose
                with contextlib.suppress(RedisError, OSError):
                    await close_pubsub()
            await self._redis.aclose()


def _split_options(url: str) -> tuple[str, dict[str, str]]:
    """The URL without this store's own query options, and those options."""
    parts = urllib.parse.urlsplit(url)
    ours = {"prefix", "keep_log", "poll_interval", "presence_heartbeat"}
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    options = {k: v for k, v in query if k in ours}
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k not in ours])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), options


def _seq_version(value: bytes) -> tuple[int, int]:
    seq, version = value.split()
    return int(seq), int(version)


def _entry(blob: Any) -> LogEntry:
    stored = _decode_entry(blob)
    return LogEntry(
        stored.version,
        stored.client_id,
        stored.client_seq,
        tuple(stored.ops),
        stored.refused,
        stored.user,
        stored.time,
    )
