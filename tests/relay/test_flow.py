"""Flow control, presence, HTTP endpoints and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from livewidgets.protocol import (
    AckMessage,
    Broadcast,
    IncrementOp,
    Leave,
    PresenceMessage,
    PresenceUpdate,
    SetOp,
)
from livewidgets.relay import Relay, StoreError
from livewidgets.relay.store.sqlite import SQLiteStore

from ..conftest import RelayFactory
from .helpers import MS, TIMEOUT, RawClient


async def test_slow_consumer_is_closed_4009(relay_factory: RelayFactory) -> None:
    """A member that stops reading is closed with 4009; the others keep receiving."""
    relay = await relay_factory(send_queue_limit=8)
    slow = await RawClient.connect(relay.url, max_queue=1)
    fast = await RawClient.connect(relay.url)
    writer = await RawClient.connect(relay.url)
    for client in (slow, fast, writer):
        await client.join("r")
    slow.ws.transport.pause_reading()  # stop reading: the relay's buffers fill up
    count, payload = 60, "x" * 256_000  # 15 MB: more than the kernel buffers hold

    async def broadcasts_seen() -> list[int]:
        versions: list[int] = []
        while len(versions) < count:
            message = await fast.recv()
            if isinstance(message, Broadcast):
                versions.append(message.version)
        return versions

    async def send_and_collect_acks() -> list[int]:
        # One op at a time: bursts stay small, so only a client that stops reading falls behind.
        acks = []
        for seq in range(1, count + 1):
            await writer.op("r", seq, SetOp("blob", value=f"{seq}{payload}"))
            acks.append((await writer.ack()).version)
        return acks

    seen, acked = await asyncio.gather(broadcasts_seen(), send_and_collect_acks())
    assert seen == acked == list(range(1, count + 1))
    # Every broadcast was queued before the acks went out: the overflow has happened.
    assert relay.metrics.value("livewidgets_slow_consumer_closes_total") == 1
    slow.ws.transport.resume_reading()
    assert await slow.closed() == 4009
    for client in (fast, writer):
        await client.close()


async def test_presence_join_update_leave(relay: Relay) -> None:
    """Presence is opt-in, stamped with client_id and user, relayed to others, None on leave."""
    ann = await RawClient.connect(relay.url, user="ann")
    bob = await RawClient.connect(relay.url, user="bob")
    await ann.join("r", presence={"color": "red", "user": "mallory"})
    _, joined = await bob.join("r", presence={"color": "blue"})
    assert joined.presence == {ann.client_id: {"color": "red", "user": "ann"}}
    assert await ann.expect(PresenceUpdate) == PresenceUpdate(
        "r", {bob.client_id: {"color": "blue", "user": "bob"}}
    )
    await bob.send(PresenceMessage("r", {"cursor": 7}))
    assert await ann.expect(PresenceUpdate) == PresenceUpdate(
        "r", {bob.client_id: {"cursor": 7, "user": "bob"}}
    )
    await bob.send(Leave("r"))
    assert await ann.expect(PresenceUpdate) == PresenceUpdate("r", {bob.client_id: None})
    # Joining without a state listens unlisted: ann hears bob's op, no presence first.
    # bob got no echo of his own presence: the next thing he sees is his own ack.
    await bob.join("r")
    await bob.op("r", 1, IncrementOp("n"))
    assert isinstance(await bob.recv(), AckMessage)
    assert isinstance(await ann.recv(), Broadcast)
    await bob.send(PresenceMessage("r", {"cursor": 1}))
    assert await ann.expect(PresenceUpdate) == PresenceUpdate(
        "r", {bob.client_id: {"cursor": 1, "user": "bob"}}
    )
    await bob.close()
    assert await ann.expect(PresenceUpdate) == PresenceUpdate("r", {bob.client_id: None})
    await ann.close()


async def test_dead_peer_presence_is_cleared(relay_factory: RelayFactory) -> None:
    """A peer that stops answering pings is dropped and its presence set to None."""
    # Within ping_interval + ping_timeout: not after the closing handshake (close_timeout).
    relay = await relay_factory(ping_interval=50 * MS, ping_timeout=100 * MS, close_timeout=60)
    alive = await RawClient.connect(relay.url, ping_interval=None)
    dead = await RawClient.connect(relay.url, ping_interval=None)
    await alive.join("r")
    await dead.join("r", presence={"here": True})
    await alive.expect(PresenceUpdate)
    dead.ws.transport.pause_reading()  # no more pongs
    update = await alive.expect(PresenceUpdate, timeout=2000 * MS)
    assert update == PresenceUpdate("r", {dead.client_id: None})
    dead.ws.transport.abort()
    await alive.close()


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


async def test_http_endpoints(relay: Relay) -> None:
    """/healthz (JSON) and /metrics (Prometheus text) answer plain HTTP on the relay port."""
    client = await RawClient.connect(relay.url)
    await client.join("r")
    await client.op("r", 1, IncrementOp("n"))
    await client.ack()
    base = f"http://127.0.0.1:{relay.port}"
    status, kind, body = await asyncio.to_thread(http_get, f"{base}/healthz")
    assert (status, kind) == (200, "application/json")
    health = json.loads(body)
    assert health["status"] == "ok" and health["connections"] == 1 and health["rooms"] == 1
    status, kind, body = await asyncio.to_thread(http_get, f"{base}/metrics")
    assert status == 200 and kind.startswith("text/plain; version=")
    for line in [
        "livewidgets_connections 1.0",
        "livewidgets_rooms 1.0",
        "livewidgets_ops_accepted_total 1.0",
        'livewidgets_joins_total{mode="snapshot"} 1.0',
        "livewidgets_slow_consumer_closes_total 0.0",
    ]:
        assert line in body.splitlines()
    assert "livewidgets_received_bytes_total" in body and "livewidgets_sent_bytes_total" in body
    status, _, _ = await asyncio.to_thread(http_get, f"{base}/nope")
    assert status == 404
    await client.close()


async def test_graceful_stop_acks_commits_and_closes_1001(tmp_path: Path) -> None:
    """stop() commits and acks what the room accepted, closes clients with 1001, flushes."""
    path = tmp_path / "rooms.db"
    relay = Relay(store=f"sqlite:///{path}")
    await relay.start()
    client = await RawClient.connect(relay.url)
    await client.join("r")
    for seq in range(1, 201):
        await client.op("r", seq, IncrementOp("n"))
    await client.ack()  # the first commit is done; many more ops are in flight
    stopping = asyncio.create_task(relay.stop())
    acked = [1]
    with contextlib.suppress(ConnectionClosed):  # read acks until the relay closes
        for _ in range(200):
            acked.append((await client.ack()).version)
    assert client.ws.close_code == 1001
    await stopping
    assert acked == list(range(1, len(acked) + 1))
    with pytest.raises(StoreError):
        await relay.store.load("r")  # the relay closed the store it opened
    store = SQLiteStore(str(path))
    try:
        record = await store.load("r")
        head = record.log[-1].version if record.log else record.snapshot_version
        assert head == len(acked)  # everything committed was acked, nothing more
    finally:
        await store.close()
    assert relay.health()["status"] == "stopping"


async def test_stop_does_not_wait_forever_for_a_stuck_client(relay_factory: RelayFactory) -> None:
    """A client that stopped reading cannot hold stop() beyond about 2 x close_timeout."""
    relay = await relay_factory(close_timeout=100 * MS)
    stuck = await RawClient.connect(relay.url, max_queue=1)
    writer = await RawClient.connect(relay.url)
    await stuck.join("r")
    await writer.join("r")
    stuck.ws.transport.pause_reading()
    for seq in range(1, 41):  # 10 MB towards a peer that reads nothing
        await writer.op("r", seq, SetOp("blob", value=f"{seq}{'x' * 256_000}"))
        await writer.ack()
    await asyncio.wait_for(relay.stop(), TIMEOUT)
    stuck.ws.transport.abort()
