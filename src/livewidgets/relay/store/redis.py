"""A Redis store: rooms shared by several relay processes (``redis://host:port/db``).

Layout per room (keys share a ``{room}`` hash tag, so a Redis Cluster keeps them on
one slot and the scripts stay atomic):

======================  ====  ===================================================
``lw:{room}:head``      str   version of the last appended entry
``lw:{room}:log``       zset  msgpack [version, client_id, client_seq, ops], score = version
``lw:{room}:dedupe``    hash  client_id -> "highest_client_seq its_version"
``lw:{room}:snapshot``  hash  version, state, clock (msgpack)
======================  ====  ===================================================

``append`` is one Lua script: it refuses entries that do not continue the stored
head (StoreConflict: another relay wrote first), then adds the entries, raises the
dedupe table and moves the head, atomically. Durability is Redis's: an ack means
Redis accepted the write; run Redis with ``appendonly yes`` and
``appendfsync always`` for the same crash guarantee as the SQLite store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ...state.ops import Op
from ..room import LogEntry, RoomRecord
from . import StoreConflict, StoreError, check_continues

__all__ = ["RedisStore"]

_encode = msgspec.msgpack.Encoder().encode
_decode_entry = msgspec.msgpack.Decoder(tuple[int, str, int, list[Op]]).decode
_decode_state = msgspec.msgpack.Decoder(dict[str, Any]).decode
_decode_any = msgspec.msgpack.Decoder().decode

# KEYS: head, log, dedupe. ARGV: expected head, new head, n entries, then per entry
# (version, blob), then per client (client_id, seq, version); dedupe values are
# "seq version" and only ever rise. Returns the stored head on conflict, else -1.
_APPEND = """
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
if head ~= tonumber(ARGV[1]) then return head end
local n = tonumber(ARGV[3])
local i = 4
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
return -1
"""

# KEYS: head, log, snapshot. ARGV: version, state, clock. Returns 0 ok, 1 older
# (ignored), -1 ahead of the head.
_SNAPSHOT = """
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local current = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')
local version = tonumber(ARGV[1])
if version <= current then return 1 end
if version > head then return -1 end
redis.call('HSET', KEYS[3], 'version', version, 'state', ARGV[2], 'clock', ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', version)
return 0
"""


class RedisStore:
    """The :class:`~livewidgets.relay.store.Store` protocol on Redis (redis-py asyncio).

    ``prefix`` namespaces the keys (several deployments, or tests, on one Redis).
    """

    def __init__(self, url: str, *, prefix: str = "lw") -> None:
        self.url = url
        self.prefix = prefix
        self._closed = False
        self._redis: Redis = Redis.from_url(url)
        self._append = self._redis.register_script(_APPEND)
        self._snapshot = self._redis.register_script(_SNAPSHOT)

    def _keys(self, room: str) -> tuple[str, str, str, str]:
        if self._closed:
            raise StoreError("the store is closed")
        base = f"{self.prefix}:{{{room}}}"
        return f"{base}:head", f"{base}:log", f"{base}:dedupe", f"{base}:snapshot"

    async def load(self, room: str) -> RoomRecord:
        _, log_key, dedupe_key, snapshot_key = self._keys(room)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(snapshot_key)
                pipe.zrangebyscore(log_key, "-inf", "+inf")
                pipe.hgetall(dedupe_key)
                snapshot, blobs, dedupe = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        record = RoomRecord(room)
        if snapshot:
            record.snapshot_version = int(snapshot[b"version"])
            record.snapshot_state = _decode_state(snapshot[b"state"])
            record.snapshot_clock = _decode_any(snapshot[b"clock"])
        record.log = [e for e in map(_entry, blobs) if e.version > record.snapshot_version]
        record.dedupe = {cid.decode(): _seq_version(value) for cid, value in dedupe.items()}
        return record

    async def append(self, room: str, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        head_key, log_key, dedupe_key, _ = self._keys(room)
        first, last = entries[0].version, entries[-1].version
        check_continues(first - 1, entries)  # consecutive among themselves; Lua checks the head
        args: list[bytes | str | int] = [first - 1, last, len(entries)]
        for entry in entries:
            blob = _encode((entry.version, entry.client_id, entry.client_seq, list(entry.ops)))
            args += [entry.version, blob]
        latest = {e.client_id: (e.client_seq, e.version) for e in entries}
        for client_id, (seq, version) in latest.items():
            args += [client_id, seq, version]
        try:
            result = await self._append(keys=[head_key, log_key, dedupe_key], args=args)
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        if int(result) != -1:
            raise StoreConflict(f"entry version {first} does not continue the log at {result}")

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
        args: list[bytes | int] = [version, _encode(state), _encode(clock_data)]
        try:
            result = await self._snapshot(keys=[head_key, log_key, snapshot_key], args=args)
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
        if int(result) == -1:
            raise StoreConflict(f"snapshot at {version} is ahead of the log head")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._redis.aclose()


def _seq_version(value: bytes) -> tuple[int, int]:
    seq, version = value.split()
    return int(seq), int(version)


def _entry(blob: Any) -> LogEntry:
    version, client_id, client_seq, ops = _decode_entry(blob)
    return LogEntry(version, client_id, client_seq, tuple(ops))
