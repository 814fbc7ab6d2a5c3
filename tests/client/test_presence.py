"""Presence over a real relay: joins, updates, leaves, dead peers, throttling, idle.

Clients run on the test's event loop (``livewidgets.asyncio``), except the ones we
kill: those run in a subprocess so SIGKILL/SIGSTOP hit a real process and no
close frame is ever sent. Waits are on conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import livewidgets.asyncio as lw
from livewidgets.client import AsyncSession
from livewidgets.client.presence import color_for

from ..conftest import RelayFactory

MS = 0.001 * float(os.environ.get("LIVEWIDGETS_TEST_TIMEOUT_FACTOR", "1"))
TIMEOUT = 5000 * MS
POLL = 0.01
# The relay's heartbeat in the dead-peer tests: a ping every 0.2 s, 0.2 s to answer.
PING = 0.2

Connect = Callable[..., Awaitable[AsyncSession]]


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> float:
    """Poll ``predicate`` every 10 ms until true; seconds it took. Fails after ``timeout``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        await asyncio.sleep(POLL)
    return loop.time() - start


@pytest.fixture
async def sessions() -> AsyncIterator[list[AsyncSession]]:
    """Sessions to close at teardown (append each one you open)."""
    opened: list[AsyncSession] = []
    yield opened
    for session in reversed(opened):
        await session.close()


@pytest.fixture
async def connect(relay_factory: RelayFactory, sessions: list[AsyncSession]) -> Connect:
    """Open sessions on one relay (room "room"); all closed at teardown."""
    relay = await relay_factory()

    async def open_session(user: str, room: str = "room", **options: Any) -> AsyncSession:
        session = await lw.connect(relay.url, room, user, timeout=TIMEOUT, **options)
        sessions.append(session)
        return session

    return open_session


def peer_events(session: AsyncSession) -> list[dict[str, Any]]:
    """Start recording ``session``'s presence events."""
    events: list[dict[str, Any]] = []
    session.on("presence", events.append)
    return events


def kinds(events: list[dict[str, Any]], client_id: str) -> list[str]:
    return [e["kind"] for e in events if e["client_id"] == client_id]


# --- join, update, leave ----------------------------------------------------------------


async def test_join_shows_who_with_name_colour_status_and_times(connect: Connect) -> None:
    """A joining peer appears with user, name, colour, status, joined_at and last_seen."""
    ann = await connect("ann", name="Ann")
    events = peer_events(ann)
    bob = await connect("bob")
    await wait_for(lambda: bob.client_id in ann.presence, "ann to see bob")
    state = ann.presence[bob.client_id]
    assert state["user"] == "bob" and state["name"] == "bob"
    assert state["color"] == color_for("bob")
    assert state["status"] == "active"
    assert isinstance(state["joined_at"], float) and isinstance(state["last_seen"], float)
    assert state["last_seen"] >= state["joined_at"]
    join = next(e for e in events if e["client_id"] == bob.client_id)
    assert join["kind"] == "join" and join["before"] is None and join["after"] == state
    # The newcomer learns who was already there.
    await wait_for(lambda: ann.client_id in bob.presence, "bob to see ann")
    assert bob.presence[ann.client_id]["name"] == "Ann"
    assert bob.presence[ann.client_id]["color"] == color_for("ann")
    assert ann.client_id not in ann.presence  # peers only


async def test_a_listener_sees_everyone_and_is_listed_once_it_updates(connect: Connect) -> None:
    """announce=False joins unlisted; the first update_presence puts it on the lists."""
    ann = await connect("ann")
    listener = await connect("screen", announce=False)
    await wait_for(lambda: ann.client_id in listener.presence, "the listener to see ann")
    carol = await connect("carol")
    # Joins are announced in order: once ann sees carol, she would have seen the listener.
    await wait_for(lambda: carol.client_id in ann.presence, "ann to see carol")
    assert listener.client_id not in ann.presence
    assert listener.client_id not in carol.presence
    await wait_for(lambda: carol.client_id in listener.presence, "the listener to see carol")
    listener.update_presence(topic="votes")
    await wait_for(lambda: listener.client_id in ann.presence, "ann to see the listener")
    assert ann.presence[listener.client_id]["topic"] == "votes"
    assert ann.presence[listener.client_id]["user"] == "screen"


async def test_colour_is_stable_per_user(connect: Connect) -> None:
    """Two sessions of one user share a colour; another user gets another one."""
    watcher = await connect("watcher")
    first, second, other = await connect("bob"), await connect("bob"), await connect("zoe")
    ids = [first.client_id, second.client_id, other.client_id]
    await wait_for(lambda: all(cid in watcher.presence for cid in ids), "three peers")
    colours = [watcher.presence[cid]["color"] for cid in ids]
    assert colours[0] == colours[1] == color_for("bob") == first.my_presence["color"]
    assert colours[2] == color_for("zoe") != colours[0]
    assert color_for("bob") == color_for("bob")


async def test_update_reaches_peers_and_a_clean_close_is_a_leave(connect: Connect) -> None:
    """update_presence arrives as an "update"; close() as a "leave" with no state."""
    ann = await connect("ann")
    events = peer_events(ann)
    bob = await connect("bob")
    await wait_for(lambda: bob.client_id in ann.presence, "bob to join")
    bob.update_presence(topic="maps")
    await wait_for(lambda: ann.presence[bob.client_id].get("topic") == "maps", "bob's topic")
    update = [e for e in events if e["client_id"] == bob.client_id][-1]
    assert update["kind"] == "update"
    assert "topic" not in update["before"] and update["after"]["topic"] == "maps"
    assert update["after"]["last_seen"] >= update["before"]["last_seen"]
    bob.update_presence(topic=None)  # None removes a key
    await wait_for(lambda: "topic" not in ann.presence[bob.client_id], "bob's topic removed")
    await bob.close()
    await wait_for(lambda: bob.client_id not in ann.presence, "bob to leave")
    leave = [e for e in events if e["client_id"] == bob.client_id][-1]
    assert leave["kind"] == "leave" and leave["after"] is None
    assert leave["before"]["user"] == "bob"
    assert kinds(events, bob.client_id)[0] == "join"


async def test_peer_claims_cannot_change_its_user(connect: Connect) -> None:
    """The relay stamps the authenticated user over whatever the client publishes."""
    ann = await connect("ann")
    bob = await connect("bob")
    bob.update_presence(user="mallory", name="Mallory")
    await wait_for(lambda: ann.presence.get(bob.client_id, {}).get("name") == "Mallory", "name")
    assert ann.presence[bob.client_id]["user"] == "bob"


# --- dead peers ------------------------------------------------------------------------

CHILD = """
import sys, time
import livewidgets
session = livewidgets.connect(sys.argv[1], "room", user="zed", timeout=10)
print(session.client_id, flush=True)
time.sleep(60)
"""


class Child:
    """A client in another process: ``zed``, joined to "room" until it is killed."""

    def __init__(self, process: asyncio.subprocess.Process, client_id: str) -> None:
        self.process = process
        self.client_id = client_id

    @classmethod
    async def start(cls, url: str) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, url, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(4 * TIMEOUT):
                line = await process.stdout.readline()
        except BaseException:
            await cls(process, "").kill()
            raise
        assert line, "the child client exited before joining"
        return cls(process, line.decode().strip())

    def signal(self, sig: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(sig)

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # already reaped
            self.process.kill()
        await self.process.wait()
        if self.process.stdout is not None:
            await self.process.stdout.read()  # drain to EOF so the pipe closes


@pytest.fixture
async def dead_peer_room(
    relay_factory: RelayFactory, sessions: list[AsyncSession]
) -> Callable[..., Awaitable[tuple[AsyncSession, Child]]]:
    """A relay with a fast heartbeat, ann connected, and zed joined from a subprocess."""
    children: list[Child] = []

    async def start(**relay_options: Any) -> tuple[AsyncSession, Child]:
        relay = await relay_factory(ping_interval=PING, ping_timeout=PING, **relay_options)
        ann = await lw.connect(relay.url, "room", "ann", timeout=TIMEOUT)
        sessions.append(ann)
        child = await Child.start(relay.url)
        children.append(child)
        await wait_for(lambda: child.client_id in ann.presence, "ann to see zed")
        assert ann.presence[child.client_id]["user"] == "zed"
        return ann, child

    yield start
    for child in children:
        await child.kill()


async def test_killed_client_leaves_presence(dead_peer_room: Any) -> None:
    """SIGKILL (no close frame): the peer's presence goes, reported as a leave."""
    ann, zed = await dead_peer_room()
    events = peer_events(ann)
    zed.signal(signal.SIGKILL)
    took = await wait_for(lambda: zed.client_id not in ann.presence, "zed to disappear")
    assert took < 2 * PING + 1.0
    assert kinds(events, zed.client_id) == ["leave"]


async def test_frozen_client_is_dropped_after_heartbeat_and_close_timeout(
    dead_peer_room: Any,
) -> None:
    """SIGSTOP (socket open, no pongs): presence goes once pings time out and the close
    handshake gives up (``close_timeout``, small here)."""
    ann, zed = await dead_peer_room(close_timeout=0.2)
    zed.signal(signal.SIGSTOP)
    took = await wait_for(lambda: zed.client_id not in ann.presence, "zed to disappear")
    assert took < 2 * PING + 0.2 + 1.5


async def test_frozen_client_leaves_presence_within_the_heartbeat_timeout(
    dead_peer_room: Any,
) -> None:
    """SIGSTOP: the peer is dead once a ping goes unanswered for ping_timeout."""
    ann, zed = await dead_peer_room()
    zed.signal(signal.SIGSTOP)
    await wait_for(lambda: zed.client_id not in ann.presence, "zed to disappear", 2 * PING + 1.5)


# --- throttling --------------------------------------------------------------------------


async def test_rapid_updates_are_throttled_and_the_last_one_arrives(connect: Connect) -> None:
    """200 update_presence calls in a burst: a handful of messages, ending on the last."""
    ann = await connect("ann")
    bob = await connect("bob", presence_rate=20)
    await wait_for(lambda: bob.client_id in ann.presence, "bob to join")
    events = peer_events(ann)
    for n in range(200):
        bob.update_presence(n=n)
    await wait_for(lambda: ann.presence[bob.client_id].get("n") == 199, "the last update")
    updates = kinds(events, bob.client_id)
    assert set(updates) == {"update"}
    assert len(updates) <= 3, f"{len(updates)} presence messages for one burst"


async def test_spread_updates_respect_the_rate(connect: Connect) -> None:
    """200 updates over ~0.5 s at 20/s: about ten messages, and the last value wins."""
    ann = await connect("ann")
    bob = await connect("bob", presence_rate=20)
    await wait_for(lambda: bob.client_id in ann.presence, "bob to join")
    events = peer_events(ann)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(200):
        bob.update_presence(n=n)
        await asyncio.sleep(0.0025)
    await wait_for(lambda: ann.presence[bob.client_id].get("n") == 199, "the last update")
    elapsed = loop.time() - start
    updates = [e for e in events if e["client_id"] == bob.client_id]
    assert len(updates) <= elapsed * 20 + 2, f"{len(updates)} messages in {elapsed:.2f} s"
    assert len(updates) >= 2
    seen = [e["after"]["n"] for e in updates]
    assert seen == sorted(seen) and seen[-1] == 199  # never out of order
    stamps = [e["after"]["last_seen"] for e in updates]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 1 / 20 * 0.9, f"two messages {min(gaps):.3f} s apart"


# --- idle ----------------------------------------------------------------------------------


async def test_status_turns_idle_and_back_to_active_on_a_write(connect: Connect) -> None:
    """No activity for idle_after: "idle"; a write or a presence update: "active" again."""
    watcher = await connect("watcher")
    loop = asyncio.get_running_loop()
    joined = loop.time()
    ann = await connect("ann", idle_after=0.3, heartbeat_interval=0.05)
    events = peer_events(watcher)

    def status() -> str | None:
        return watcher.presence.get(ann.client_id, {}).get("status")

    await wait_for(lambda: status() == "idle", "ann to turn idle")
    assert loop.time() - joined >= 0.3
    assert ann.my_presence["status"] == "idle"
    await ann.set("x", 1)
    await wait_for(lambda: status() == "active", "a write to make ann active")
    await wait_for(lambda: status() == "idle", "ann to turn idle again")
    ann.text("doc").insert(0, "hi")
    await wait_for(lambda: status() == "active", "a text edit to make ann active")
    await wait_for(lambda: status() == "idle", "ann to turn idle once more")
    ann.update_presence(topic="maps")
    await wait_for(lambda: status() == "active", "a presence update to make ann active")
    assert watcher.presence[ann.client_id]["topic"] == "maps"
    statuses = [e["after"]["status"] for e in events if e["client_id"] == ann.client_id]
    assert statuses.count("idle") == 3
    # Each idle <-> active switch is one message, not a stream.
    assert len(statuses) <= 8, statuses
    await ann.flush(TIMEOUT)
