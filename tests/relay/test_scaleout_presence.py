"""Presence across relays: two relay processes serve one room through one Redis.

Real ``livewidgets relay`` subprocesses on a real Redis (127.0.0.1:6379, a random
key prefix per test, deleted afterwards) and raw wire-protocol clients. Every wait
is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from livewidgets.protocol import Joined, PresenceMessage, PresenceUpdate

from .helpers import RawClient, redis_available
from .test_scaleout import relay_process, wait_until

pytestmark = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")


class Watcher:
    """A raw client whose received presence is merged in ``known`` (in the background)."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.known: dict[str, Any] = {}
        self.joined: Joined | None = None
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def join(
        cls, url: str, room: str, presence: dict[str, Any] | None = None, **options: Any
    ) -> Watcher:
        client = await RawClient.connect(url, **options)
        _, joined = await client.join(room, presence=presence)
        watcher = cls(client)
        watcher.joined = joined
        watcher.known = dict(joined.presence)
        return watcher

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = self.client.codec.decode(await self.client.ws.recv())
                if isinstance(message, PresenceUpdate):
                    for client_id, state in message.states.items():
                        if state is None:
                            self.known.pop(client_id, None)
                        else:
                            self.known[client_id] = state

    @property
    def client_id(self) -> str:
        return self.client.client_id

    async def close(self) -> None:
        await self.client.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_a_client_sees_joins_cursors_and_leaves_on_the_other_relay(
    prefix: str, tmp_path: Path
) -> None:
    """(a) A client of relay A sees a client of relay B join, move its cursor and
    leave, live (well under the heartbeat), and B's client sees A's."""
    log = tmp_path / "relays.log"
    async with (
        relay_process(prefix, log, presence_heartbeat=30) as (_, url_a),
        relay_process(prefix, log, presence_heartbeat=30) as (_, url_b),
    ):
        watcher = await Watcher.join(url_a, "p", {}, user="ada")
        mover = await Watcher.join(url_b, "p", {"cursor": 0}, user="grace")
        cid = mover.client_id
        joined = await wait_until(
            lambda: watcher.known.get(cid) == {"cursor": 0, "user": "grace"}, 2.0, "B's join on A"
        )
        await wait_until(
            lambda: mover.known.get(watcher.client_id) == {"user": "ada"}, 2.0, "A's member on B"
        )
        delays = []
        for x in range(1, 11):
            started = time.monotonic()
            await mover.client.send(PresenceMessage("p", {"cursor": x}))
            await wait_until(
                lambda x=x: watcher.known.get(cid, {}).get("cursor") == x, 2.0, f"cursor {x}"
            )
            delays.append(time.monotonic() - started)
        await mover.close()
        left = await wait_until(lambda: cid not in watcher.known, 2.0, "B's leave on A")
        print(
            f"cross-relay presence: join {joined * 1000:.0f} ms, cursor max "
            f"{max(delays) * 1000:.0f} ms, leave {left * 1000:.0f} ms"
        )
        assert max(delays) < 1.0
        assert set(watcher.known) == set()
        await watcher.close()


async def test_joined_presence_lists_the_other_relays_members(prefix: str, tmp_path: Path) -> None:
    """(b) The first joiner of a room on relay A (the room loads there then) gets the
    members of relay B in its joined.presence, without waiting for a heartbeat."""
    log = tmp_path / "relays.log"
    async with (
        relay_process(prefix, log, presence_heartbeat=30) as (_, url_a),
        relay_process(prefix, log, presence_heartbeat=30) as (_, url_b),
    ):
        for round_ in range(3):
            room = f"j{round_}"
            others = [await Watcher.join(url_b, room, {"n": i}, user=f"b{i}") for i in range(3)]
            await wait_until(lambda o=others: len(o[0].known) == 2, 2.0, "B's members")
            joiner = await Watcher.join(url_a, room, {}, user="ada")
            assert joiner.joined is not None
            assert joiner.joined.presence == {
                o.client_id: {"n": i, "user": f"b{i}"} for i, o in enumerate(others)
            }
            # And B's members hear of A's joiner.
            await wait_until(
                lambda o=others, j=joiner: all(j.client_id in w.known for w in o),
                2.0,
                "A's joiner on B",
            )
            for watcher in (joiner, *others):
                await watcher.close()


async def test_a_killed_relays_members_disappear_within_the_ttl(
    prefix: str, tmp_path: Path
) -> None:
    """(c) kill -9 relay B: it never says its members left, but they vanish from A's
    members' presence once the TTL (3 heartbeats) has passed without a refresh."""
    log = tmp_path / "relays.log"
    heartbeat = 0.3
    async with (
        relay_process(prefix, log, presence_heartbeat=heartbeat) as (_, url_a),
        relay_process(prefix, log, presence_heartbeat=heartbeat) as (process_b, url_b),
    ):
        watcher = await Watcher.join(url_a, "k", user="ada")
        doomed = [await Watcher.join(url_b, "k", {"i": i}) for i in range(2)]
        ids = {d.client_id for d in doomed}
        await wait_until(lambda: ids <= set(watcher.known), 2.0, "B's members on A")
        # Heartbeats keep them there well past the TTL.
        await asyncio.sleep(4 * heartbeat)
        assert ids <= set(watcher.known)
        process_b.kill()  # SIGKILL, this process only
        await process_b.wait()
        gone = await wait_until(
            lambda: not ids & set(watcher.known), 3 * heartbeat + 3.0, "B's members gone"
        )
        print(f"killed relay's members gone from A after {gone:.2f}s (TTL {3 * heartbeat}s)")
        assert gone >= 2 * heartbeat  # by expiry, not by a leave
        assert set(watcher.known) == set()
        for client in (watcher, *doomed):
            await client.close()


async def test_a_client_moving_between_relays_keeps_one_entry(prefix: str, tmp_path: Path) -> None:
    """(d) A client reconnects from relay A to relay B (same client_id; its old
    connection on A closes only after the new one joined). Everyone, on both relays,
    ends with one entry for it, its state on B, which A's late leave does not delete,
    and which heartbeats keep."""
    log = tmp_path / "relays.log"
    heartbeat = 0.3
    async with (
        relay_process(prefix, log, presence_heartbeat=heartbeat) as (_, url_a),
        relay_process(prefix, log, presence_heartbeat=heartbeat) as (_, url_b),
    ):
        on_a = await Watcher.join(url_a, "m", {}, user="oa")
        on_b = await Watcher.join(url_b, "m", {}, user="ob")
        old = await Watcher.join(url_a, "m", {"at": "A"}, client_id="mover", user="mo")
        observers = (on_a, on_b)
        await wait_until(
            lambda: all(w.known.get("mover", {}).get("at") == "A" for w in observers),
            2.0,
            "the mover on A",
        )
        new = await Watcher.join(url_b, "m", {"at": "B"}, client_id="mover", user="mo")
        await wait_until(
            lambda: all(w.known.get("mover", {}).get("at") == "B" for w in observers),
            2.0,
            "the mover on B",
        )
        await old.close()  # A's leave for "mover" comes after B's join
        await asyncio.sleep(4 * heartbeat)  # past the TTL of A's last entry
        for watcher in observers:
            assert watcher.known["mover"] == {"at": "B", "user": "mo"}
            assert set(watcher.known) == {on_a.client_id, on_b.client_id} - {watcher.client_id} | {
                "mover"
            }
        assert new.known == {on_a.client_id: {"user": "oa"}, on_b.client_id: {"user": "ob"}}
        # A joiner on A gets one entry for it too.
        late = await Watcher.join(url_a, "m", user="late")
        assert late.joined is not None
        assert late.joined.presence["mover"] == {"at": "B", "user": "mo"}
        await new.close()
        await wait_until(
            lambda: all("mover" not in w.known for w in (*observers, late)), 2.0, "mover left"
        )
        for watcher in (*observers, late):
            await watcher.close()
