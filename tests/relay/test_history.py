"""A room with 100k ops of history: joins are served from the snapshot, not a log replay."""

from __future__ import annotations

import time
from pathlib import Path

from livewidgets.protocol import IncrementOp, SetOp, Snapshot
from livewidgets.relay.room import Accepted, RoomCore, RoomRecord
from livewidgets.relay.store.sqlite import SQLiteStore

from ..conftest import RelayFactory
from .helpers import RawClient, broadcasts_in, snapshot_in

HISTORY = 100_000
SNAPSHOT_EVERY = 1000


class RecordingStore(SQLiteStore):
    """Remembers how many log entries each load had to hand to the room for replay."""

    replayed: list[int]

    async def load(self, room: str) -> RoomRecord:
        record = await super().load(room)
        self.replayed = [*getattr(self, "replayed", []), len(record.log)]
        return record


async def build_history(path: Path) -> dict[str, object]:
    """Write HISTORY versions through the store API: batched appends, a snapshot per batch
    but the last (so a load must replay exactly one batch). Returns the final state."""
    store = SQLiteStore(str(path))
    core = RoomCore(RoomRecord("big"))
    for start in range(0, HISTORY, SNAPSHOT_EVERY):
        entries = []
        for seq in range(start + 1, start + SNAPSHOT_EVERY + 1):
            ops = (IncrementOp("count"), SetOp(f"items/{seq % 500}", value=seq))
            outcome = core.submit("writer", seq, core.version, ops)
            assert isinstance(outcome, Accepted)
            entries.append(outcome.entry)
        await store.append("big", entries)
        if core.version < HISTORY:
            await store.save_snapshot("big", *core.take_snapshot())
    await store.close()
    return core.state


async def test_join_of_100k_op_room_is_a_snapshot(
    relay_factory: RelayFactory, tmp_path: Path
) -> None:
    """Joining a 100k-version room gets one snapshot; loading replays <= snapshot_every."""
    path = tmp_path / "big.db"
    started = time.perf_counter()
    state = await build_history(path)
    built = time.perf_counter()
    store = RecordingStore(str(path))
    relay = await relay_factory(store=store, snapshot_every=SNAPSHOT_EVERY)
    client = await RawClient.connect(relay.url)
    before, joined = await client.join("big")
    joined_at = time.perf_counter()
    assert [type(m) for m in before] == [Snapshot]
    snapshot = snapshot_in(before)
    assert (snapshot.version, snapshot.state) == (HISTORY, state)
    assert (joined.version, joined.mode) == (HISTORY, "snapshot")
    epoch = joined.epoch
    assert store.replayed == [SNAPSHOT_EVERY]
    print(f"built {HISTORY} versions in {built - started:.2f}s; join took {joined_at - built:.3f}s")

    recent = await RawClient.connect(relay.url)
    before, joined = await recent.join("big", since=HISTORY - 10, epoch=epoch)
    assert [m.version for m in broadcasts_in(before)] == list(range(HISTORY - 9, HISTORY + 1))
    assert joined.mode == "delta"
    stale = await RawClient.connect(relay.url)
    before, joined = await stale.join("big", since=HISTORY // 2, epoch=epoch)
    assert [type(m) for m in before] == [Snapshot] and joined.mode == "snapshot"
    for c in (client, recent, stale):
        await c.close()
    await relay.stop()  # the relay does not own a store it was given
    await store.close()
