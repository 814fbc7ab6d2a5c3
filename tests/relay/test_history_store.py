"""History in the stores and the pure reader (relay.history): the horizon, trims at
snapshots, the start of the kept history, entries' users and times, and a SQLite
file from before history existed."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from livewidgets.protocol.messages import History
from livewidgets.relay.history import (
    HistoryHorizon,
    HistoryRecord,
    OutOfHistory,
    answer,
    select,
    state_at,
)
from livewidgets.relay.room import LogEntry
from livewidgets.relay.store import Store, open_store
from livewidgets.relay.store.redis import RedisStore
from livewidgets.relay.store.sqlite import MIGRATIONS, SQLiteStore
from livewidgets.rules import Actor
from livewidgets.state.ops import IncrementOp, SetOp, apply_ops

from .helpers import REDIS_URL, redis_available

DAY = 86_400.0
MakeStore = Callable[[HistoryHorizon], Store]


def entry(version: int, user: str = "ada", at: float = 1000.0) -> LogEntry:
    ops = (IncrementOp("n"), SetOp(f"by/{user}", value=version))
    return LogEntry(version, f"c-{user}", version, ops, (), user, at + version)


def replay(entries: list[LogEntry], upto: int) -> dict:
    state: dict = {}
    for e in entries:
        if e.version <= upto:
            state = apply_ops(state, e.ops)
    return state


# --- the horizon (pure) ---------------------------------------------------------------


def test_the_horizon_trims_to_the_newest_snapshot_out_of_it() -> None:
    horizon = HistoryHorizon(entries=100, days=1)
    now = 10 * DAY
    fresh = [(v, now) for v in (50, 100, 150, 200)]
    assert horizon.trim_to(200, fresh, now) == 100  # 200 - 100 >= 100 entries
    assert horizon.trim_to(199, fresh, now) == 50
    assert horizon.trim_to(140, fresh[:2], now) is None
    old = [(50, now - 3 * DAY), (100, now - 2 * DAY), (150, now - 0.5 * DAY)]
    assert horizon.trim_to(150, old, now) == 100  # older than a day: everything before it is
    assert HistoryHorizon(entries=0).trim_to(7, [(3, now), (7, now)], now) == 7
    with pytest.raises(ValueError):
        HistoryHorizon(entries=-1)


def test_select_and_state_at_on_a_record() -> None:
    entries = [entry(v, "ada" if v % 2 else "bob") for v in range(11, 21)]
    record = HistoryRecord("r", 10, {"n": 10}, entries)
    chosen = select(record, user="bob", limit=3)
    assert [e.version for e in chosen.entries] == [16, 18, 20] and chosen.more
    assert [e.version for e in select(record, path="by/ada", before=15).entries] == [11, 13]
    assert select(record, path="by").more is False
    assert state_at(record, 10) == {"n": 10}
    assert state_at(record, 13)["n"] == 13
    with pytest.raises(OutOfHistory, match="versions 10 to 20"):
        state_at(record, 9)
    refused = answer(record, History(room="r", id=4, at=21), Actor("ada"), None)
    assert (refused.error, refused.id) == ("out_of_history", 4)


# --- every store -----------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    made: list[Store] = []
    prefix = f"lwtest-{uuid.uuid4().hex}"
    if request.param == "redis" and not redis_available():
        pytest.skip("no Redis server on 127.0.0.1:6379")

    def make(horizon: HistoryHorizon) -> Store:
        if request.param == "redis":
            store: Store = RedisStore(REDIS_URL, prefix=prefix, keep_log=0, history=horizon)
        elif request.param == "sqlite":
            store = open_store(f"sqlite:///{tmp_path}/rooms.db", history=horizon)
        else:
            store = open_store("memory://", history=horizon)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
    if request.param == "redis":
        cleanup = Redis.from_url(REDIS_URL)
        keys = [key async for key in cleanup.scan_iter(f"{prefix}:*")]
        if keys:
            await cleanup.delete(*keys)
        await cleanup.aclose()


async def test_compaction_keeps_the_history_and_its_users_and_times(make_store: MakeStore) -> None:
    store = make_store(HistoryHorizon())
    entries = [entry(v, "ada" if v % 2 else "grace") for v in range(1, 13)]
    await store.append("r", entries[:6])
    await store.save_snapshot("r", 5, replay(entries, 5), None)
    await store.append("r", entries[6:])
    await store.save_snapshot("r", 12, replay(entries, 12), None)
    record = await store.load("r")
    assert record.snapshot_version == 12 and record.log == []  # a room loads from its snapshot
    history = await store.read_history("r")
    assert (history.base_version, history.base_state, history.entries) == (0, {}, entries)
    assert [e.user for e in history.entries[:2]] == ["ada", "grace"]
    assert history.entries[0].time == 1001.0
    assert await store.rooms() == [("r", 12)]


async def test_the_horizon_trims_whole_snapshot_intervals(make_store: MakeStore) -> None:
    store = make_store(HistoryHorizon(entries=4))
    entries = [entry(v) for v in range(1, 13)]
    for start, snapshot in ((0, 3), (3, 6), (6, 9), (9, 12)):
        await store.append("r", entries[start:snapshot])
        await store.save_snapshot("r", snapshot, replay(entries, snapshot), None)
    history = await store.read_history("r")
    # Snapshots at 3, 6, 9, 12; the newest at least 4 versions behind the head is 6.
    assert history.base_version == 6
    assert history.base_state == replay(entries, 6)
    assert [e.version for e in history.entries] == [7, 8, 9, 10, 11, 12]
    assert state_at(history, 8) == replay(entries, 8)
    await store.append("r", [entry(13)])
    assert [e.version for e in (await store.read_history("r")).entries][-1] == 13


async def test_no_history_keeps_nothing_behind_the_snapshot(make_store: MakeStore) -> None:
    store = make_store(HistoryHorizon(entries=0))
    entries = [entry(v) for v in range(1, 6)]
    await store.append("r", entries)
    await store.save_snapshot("r", 4, replay(entries, 4), None)
    history = await store.read_history("r")
    assert (history.base_version, [e.version for e in history.entries]) == (4, [5])
    assert history.base_state == replay(entries, 4)


# --- SQLite from before history ---------------------------------------------------------


async def test_a_database_from_before_history_starts_its_history_at_its_snapshot(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for migration in MIGRATIONS[:3]:
        db.executescript(migration)
    db.execute("PRAGMA user_version = 3")
    encode = msgspec.msgpack.Encoder().encode
    db.execute(
        "INSERT INTO rooms (room, head_version, snapshot_version, snapshot_state, snapshot_clock)"
        " VALUES ('r', 6, 5, ?, NULL)",
        (encode({"n": 5}),),
    )
    db.execute(
        "INSERT INTO log (room, version, client_id, client_seq, ops) VALUES ('r', 6, 'a', 6, ?)",
        (encode([{"op": "increment", "path": "n"}]),),
    )
    db.commit()
    db.close()
    store = SQLiteStore(str(path))
    history = await store.read_history("r")
    assert (history.base_version, history.base_state) == (5, {"n": 5})
    assert [(e.version, e.user, e.time) for e in history.entries] == [(6, "", 0.0)]
    assert state_at(history, 6) == {"n": 6}
    await store.close()
