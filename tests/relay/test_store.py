"""Store backends: the Store contract (memory, SQLite and Redis alike) and SQLite specifics."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from livewidgets.relay.lineage import Lineage
from livewidgets.relay.room import LogEntry, RoomCore
from livewidgets.relay.store import Store, StoreConflict, StoreError, WatchableStore, open_store
from livewidgets.relay.store.memory import MemoryStore
from livewidgets.relay.store.redis import RedisStore
from livewidgets.relay.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore
from livewidgets.state.ops import IncrementOp, PushOp, SetOp, TextOp

from .helpers import REDIS_URL, redis_available


def entry(version: int, client: str = "a", seq: int | None = None) -> LogEntry:
    ops = (SetOp(f"k/{version}", value={"v": version}), IncrementOp("n", by=1))
    return LogEntry(version, client, version if seq is None else seq, ops)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "redis":
        if not redis_available():
            pytest.skip("no Redis server on 127.0.0.1:6379")
        prefix = f"lwtest-{uuid.uuid4().hex}"
        redis_store = RedisStore(REDIS_URL, prefix=prefix)
        yield redis_store
        await redis_store.close()
        cleanup = Redis.from_url(REDIS_URL)
        keys = [key async for key in cleanup.scan_iter(f"{prefix}:*")]
        if keys:
            await cleanup.delete(*keys)
        await cleanup.aclose()
        return
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/rooms.db"
    store = open_store(url)
    yield store
    await store.close()


async def test_new_room_loads_empty(store: Store) -> None:
    """A room never written loads as version 0 with no log and no dedupe entries."""
    record = await store.load("fresh")
    assert (record.name, record.snapshot_version, record.snapshot_state) == ("fresh", 0, {})
    assert record.log == [] and record.dedupe == {}


async def test_append_load_round_trip(store: Store) -> None:
    """Appended entries load back equal, ops decoded into the same typed structs."""
    entries = [entry(1), entry(2, "b"), LogEntry(3, "a", 9, (TextOp("t", delta=[1, "x"]),))]
    await store.append("r", entries[:2])
    await store.append("r", entries[2:])
    record = await store.load("r")
    assert record.log == entries
    assert record.dedupe == {"a": (9, 3), "b": (2, 2)}


async def test_refusals_travel_with_their_entry(store: Store) -> None:
    """The refusals an entry carries (LogEntry.refused) load back with it."""
    carrying = LogEntry(2, "a", 5, (IncrementOp("n"),), ((3, "conflict"), (4, "forbidden")))
    await store.append("r", [entry(1, "b"), carrying])
    assert (await store.load("r")).log == [entry(1, "b"), carrying]
    assert await store.read_log("r", 1, 10) == [carrying]


async def test_epoch_is_recorded(store: Store) -> None:
    """begin_epoch records the room's lineage; load returns it. A store several relays
    share keeps the first epoch; the others take each new one (with its ancestry)."""
    assert (await store.load("r")).lineage is None
    first = Lineage.first()
    assert await store.begin_epoch("r", first) == first
    await store.append("r", [entry(1)])
    assert (await store.load("r")).lineage == first
    second = first.successor(1)
    in_effect = await store.begin_epoch("r", second)
    expected = first if isinstance(store, WatchableStore) else second
    assert in_effect == expected and (await store.load("r")).lineage == expected
    assert (await store.load("other")).lineage is None


async def test_append_must_continue_the_log(store: Store) -> None:
    """An append that skips or repeats a version is refused and changes nothing."""
    await store.append("r", [entry(1), entry(2)])
    with pytest.raises(StoreConflict):
        await store.append("r", [entry(2)])
    with pytest.raises(StoreConflict):
        await store.append("r", [entry(4)])
    with pytest.raises(StoreConflict):
        await store.append("r", [entry(3), entry(5)])
    assert [e.version for e in (await store.load("r")).log] == [1, 2]


async def test_dedupe_keeps_highest_seq(store: Store) -> None:
    """The dedupe table holds each client's highest client_seq and the version it got."""
    await store.append("r", [entry(1, "a", 1), entry(2, "a", 5), entry(3, "b", 1)])
    await store.append("r", [entry(4, "a", 6)])
    assert (await store.load("r")).dedupe == {"a": (6, 4), "b": (1, 3)}


async def test_snapshot_compacts_the_log(store: Store) -> None:
    """save_snapshot stores the state and drops log entries up to its version."""
    await store.append("r", [entry(v) for v in range(1, 6)])
    await store.save_snapshot("r", 3, {"n": 3}, [3, 3, {}])
    record = await store.load("r")
    assert (record.snapshot_version, record.snapshot_state) == (3, {"n": 3})
    assert record.snapshot_clock == [3, 3, {}]
    assert [e.version for e in record.log] == [4, 5]
    assert record.dedupe == {"a": (5, 5)}
    await store.append("r", [entry(6)])  # the head survives compaction
    await store.save_snapshot("r", 6, {"n": 6}, None)
    record = await store.load("r")
    assert (record.snapshot_version, record.log) == (6, [])
    await store.append("r", [entry(7)])
    assert [e.version for e in (await store.load("r")).log] == [7]


async def test_older_snapshot_is_ignored(store: Store) -> None:
    """A snapshot older than the stored one changes nothing; one ahead of the log is refused."""
    await store.append("r", [entry(v) for v in range(1, 5)])
    await store.save_snapshot("r", 3, {"n": 3}, None)
    await store.save_snapshot("r", 2, {"n": 2}, None)
    assert (await store.load("r")).snapshot_state == {"n": 3}
    with pytest.raises(StoreConflict):
        await store.save_snapshot("r", 9, {"n": 9}, None)


async def test_read_log_pages(store: Store) -> None:
    """read_log returns entries after ``after``, at most ``limit`` of them."""
    await store.append("r", [entry(v) for v in range(1, 11)])
    assert [e.version for e in await store.read_log("r", 3, 4)] == [4, 5, 6, 7]
    assert [e.version for e in await store.read_log("r", 8, 100)] == [9, 10]
    assert await store.read_log("r", 10, 5) == []


async def test_rooms_are_independent(store: Store) -> None:
    """Each room has its own versions, snapshot and dedupe table."""
    await store.append("r1", [entry(1, "a")])
    await store.append("r2", [entry(1, "b"), entry(2, "b")])
    assert [e.client_id for e in (await store.load("r1")).log] == ["a"]
    assert (await store.load("r2")).dedupe == {"b": (2, 2)}


async def test_closed_store_refuses_calls(store: Store) -> None:
    """After close, every call raises StoreError."""
    await store.close()
    with pytest.raises(StoreError):
        await store.load("r")


async def test_room_core_resumes_from_store(store: Store) -> None:
    """A RoomCore rebuilt from snapshot + log has the same state, version and dedupe."""
    core = RoomCore(await store.load("r"))
    for seq in range(1, 8):
        outcome = core.submit("a", seq, core.version, [PushOp("list", value=seq)])
        await store.append("r", [outcome.entry])  # type: ignore[union-attr]
        if seq == 4:
            await store.save_snapshot("r", *core.take_snapshot())
    again = RoomCore(await store.load("r"))
    assert (again.version, again.state, again.dedupe) == (7, core.state, core.dedupe)
    assert again.ops_since_snapshot == 3


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """memory:// and sqlite:/// URLs (relative and absolute) open; others are refused."""
    assert isinstance(open_store("memory://"), MemoryStore)
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")
    assert isinstance(absolute, SQLiteStore) and absolute.path == f"{tmp_path}/abs.db"
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel.db")
    assert isinstance(relative, SQLiteStore) and relative.path == "rel.db"
    assert (tmp_path / "rel.db").exists()
    assert isinstance(open_store("redis://127.0.0.1:6379/0"), RedisStore)
    normal = open_store(f"sqlite:///{tmp_path}/fast.db?synchronous=normal")
    assert isinstance(normal, SQLiteStore) and normal.path == f"{tmp_path}/fast.db"
    assert normal.synchronous == "normal"
    bad_urls = ["postgres://x", "sqlite://", "sqlite:///", "rooms.db"]
    bad_urls += [f"sqlite:///{tmp_path}/x.db?synchronous=off", f"sqlite:///{tmp_path}/x.db?fast=1"]
    for bad in bad_urls:
        with pytest.raises(ValueError):
            open_store(bad)


async def test_sqlite_wal_full_and_versioned(tmp_path: Path) -> None:
    """The SQLite file is in WAL mode, schema-versioned, and fsyncs every commit."""
    store = SQLiteStore(str(tmp_path / "rooms.db"))
    try:
        await store.append("r", [entry(1)])
        db = sqlite3.connect(tmp_path / "rooms.db")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        db.close()
        # synchronous is per connection: ask the store's own, in its thread (2 = FULL).
        query = "PRAGMA synchronous"
        assert await store._call(lambda: store._conn().execute(query).fetchone()[0]) == 2
    finally:
        await store.close()
    fast = SQLiteStore(str(tmp_path / "fast.db"), synchronous="normal")
    try:
        assert await fast._call(lambda: fast._conn().execute(query).fetchone()[0]) == 1
    finally:
        await fast.close()


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    """Everything appended and snapshotted is there after closing and reopening the file."""
    path = str(tmp_path / "rooms.db")
    store = SQLiteStore(path)
    await store.append("r", [entry(v) for v in range(1, 4)])
    await store.save_snapshot("r", 2, {"n": 2}, [2, 2, {}])
    await store.close()
    again = SQLiteStore(path)
    try:
        record = await again.load("r")
        assert (record.snapshot_version, [e.version for e in record.log]) == (2, [3])
        assert record.dedupe == {"a": (3, 3)}
    finally:
        await again.close()


async def test_sqlite_migrates_a_version_1_database(tmp_path: Path) -> None:
    """A database written before epochs and logged refusals opens, keeps its rooms,
    and loads them without an epoch (resumes from before get a snapshot)."""
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO rooms (room, head_version) VALUES ('r', 1)")
    db.execute("INSERT INTO log VALUES ('r', 1, 'a', 1, ?)", (msgspec.msgpack.encode([]),))
    db.execute("INSERT INTO dedupe VALUES ('r', 'a', 1, 1)")
    db.execute("PRAGMA user_version = 1")
    db.close()
    store = SQLiteStore(str(path))
    try:
        record = await store.load("r")
        assert record.log == [LogEntry(1, "a", 1, ())] and record.lineage is None
        await store.append("r", [LogEntry(2, "a", 3, (), ((2, "conflict"),))])
        assert (await store.load("r")).log[1].refused == ((2, "conflict"),)
    finally:
        await store.close()


def test_sqlite_refuses_newer_schema(tmp_path: Path) -> None:
    """A database written by a newer release (higher user_version) is not touched."""
    path = tmp_path / "future.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(str(path))


def test_sqlite_bad_path_fails_at_open(tmp_path: Path) -> None:
    """A path in a missing directory fails when the store is opened, not at first use."""
    with pytest.raises(sqlite3.OperationalError):
        SQLiteStore(str(tmp_path / "missing" / "rooms.db"))
