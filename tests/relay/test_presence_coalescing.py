"""Presence is coalesced per room (docs/protocol.md "Presence"), over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from livewidgets.cli import build_parser
from livewidgets.protocol import AckMessage, Broadcast, IncrementOp, PresenceMessage, PresenceUpdate
from livewidgets.relay import Relay

from ..conftest import RelayFactory
from .helpers import MS, TIMEOUT, RawClient


async def presence_until(
    client: RawClient, done: Any, timeout: float = TIMEOUT
) -> list[PresenceUpdate]:
    """Presence messages received until ``done(known)`` holds for the merged states."""
    known: dict[str, Any] = {}
    seen: list[PresenceUpdate] = []
    async with asyncio.timeout(timeout):
        while not done(known):
            message = await client.expect(PresenceUpdate)
            seen.append(message)
            for client_id, state in message.states.items():
                if state is None:
                    known.pop(client_id, None)
                else:
                    known[client_id] = state
    return seen


async def test_a_burst_is_sent_first_change_then_latest(relay_factory: RelayFactory) -> None:
    """The first change after a quiet period goes out at once; the rest of the burst
    arrives as one message holding the latest state."""
    relay = await relay_factory(presence_interval=300 * MS)
    watcher = await RawClient.connect(relay.url)
    await watcher.join("r")
    mover = await RawClient.connect(relay.url)
    await mover.join("r", presence={})
    await watcher.expect(PresenceUpdate)  # mover joined
    await asyncio.sleep(400 * MS)  # quiet: the next change is a leading edge
    for x in range(10):
        await mover.send(PresenceMessage("r", {"cursor": x}))
    seen = await presence_until(watcher, lambda k: k.get(mover.client_id, {}).get("cursor") == 9)
    cursors = [m.states[mover.client_id]["cursor"] for m in seen]
    assert cursors[-1] == 9 and len(cursors) <= 3, cursors
    assert cursors == sorted(cursors)


async def test_presence_before_an_op_arrives_before_its_broadcast(relay: Relay) -> None:
    """A cursor set before an edit is never delivered after it, however it is coalesced."""
    watcher, mover, editor = [await RawClient.connect(relay.url) for _ in range(3)]
    for client in (watcher, mover, editor):
        await client.join("r", presence={})
    await presence_until(watcher, lambda k: len(k) == 2)
    await asyncio.sleep(100 * MS)
    await mover.send(PresenceMessage("r", {"cursor": 1}))
    await mover.send(PresenceMessage("r", {"cursor": 2}))  # within the interval: waits
    await editor.op("r", 1, IncrementOp("n"))
    first = await watcher.recv()
    second = await watcher.recv()
    assert isinstance(second, Broadcast), (first, second)
    merged = first.states if isinstance(first, PresenceUpdate) else {}
    assert merged[mover.client_id]["cursor"] in (1, 2)


async def test_a_join_storm_costs_each_member_few_messages(relay_factory: RelayFactory) -> None:
    """60 joins at once: the first member learns of all of them in a handful of
    presence messages (not 60), and nobody hears its own echo."""
    relay = await relay_factory(presence_interval=100 * MS)
    first = await RawClient.connect(relay.url)
    await first.join("r", presence={})
    crowd = await asyncio.gather(*(RawClient.connect(relay.url) for _ in range(60)))
    await asyncio.gather(*(client.join("r", presence={}) for client in crowd))
    ids = {client.client_id for client in crowd}
    seen = await presence_until(first, lambda known: set(known) == ids)
    assert len(seen) < 20, len(seen)
    for message in seen:
        assert first.client_id not in message.states


async def test_a_join_storm_of_listeners_costs_no_presence_messages(
    relay_factory: RelayFactory,
) -> None:
    """60 listeners (joins without presence) at once: no presence message to anyone,
    and each listener's table lists only the announced member. When they then set a
    state, the first member learns of all of them in a handful of messages."""
    relay = await relay_factory(presence_interval=100 * MS)
    first = await RawClient.connect(relay.url)
    await first.join("r", presence={})
    crowd = await asyncio.gather(*(RawClient.connect(relay.url) for _ in range(60)))
    joins = await asyncio.gather(*(client.join("r") for client in crowd))
    assert all(joined.presence == {first.client_id: {"user": ""}} for _, joined in joins)
    # A broadcast flushes every presence change before it: what anyone was going to
    # be told of the joins arrives before this op's ack and broadcast, or never.
    await first.op("r", 1, IncrementOp("n"))
    assert (await first.recv_until(AckMessage))[0] == []
    heard = await asyncio.gather(*(client.recv_until(Broadcast) for client in crowd))
    assert all(before == [] for before, _ in heard), [b for b, _ in heard if b][:1]
    for client in crowd:
        await client.send(PresenceMessage("r", {"topic": "votes"}))
    ids = {client.client_id for client in crowd}
    seen = await presence_until(first, lambda known: set(known) == ids)
    assert len(seen) < 20, len(seen)


def test_presence_interval_is_validated() -> None:
    assert build_parser().parse_args(["relay", "--presence-interval", "0"]).presence_interval == 0
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["relay", "--presence-interval", bad])
    with pytest.raises(ValueError, match="presence_interval"):
        Relay(presence_interval=-0.5)
