"""Reconnecting through a fault-injecting proxy: resume by delta, exactly-once delivery,
jittered backoff, the offline queue and relay restarts."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import pytest

from livewidgets.client import OpRejected, Priority, QueueFull
from livewidgets.relay import Relay

from .conftest import Connect
from .helpers import FAST, MS, TIMEOUT, Recorder, abandon, eventually
from .proxy import Proxy

LIFECYCLE = ["connecting", "connected", "disconnected", "reconnecting", "closed"]


async def go_offline(proxy: Proxy, events: Recorder) -> None:
    """Reset the connection and refuse new ones; wait until the client noticed."""
    before = events.count("disconnected")
    proxy.refuse(True)
    proxy.cut()
    await eventually(lambda: events.count("disconnected") > before, what="disconnected")


# --- one cut ------------------------------------------------------------------------


async def test_cut_reconnects_and_resumes_by_delta(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """RST: disconnected -> reconnecting(attempt, delay) -> connected, caught up by delta."""
    a = await connect(proxy.url)
    b = await connect(relay.url)
    await a.set("k", 1)
    events = Recorder(a, LIFECYCLE)
    await go_offline(proxy, events)
    await b.set("k", 2)  # a misses this while away
    await b.set("other", 1)
    proxy.refuse(False)
    await eventually(lambda: events.count("connected"))
    names = events.names()
    assert names[0] == "disconnected" and names[-1] == "connected"
    assert set(names[1:-1]) == {"reconnecting"}
    assert events.of("disconnected")[0]["code"] == 1006
    first = events.of("reconnecting")[0]
    assert first["attempt"] == 1 and 0 < first["delay"] <= FAST["backoff"].initial
    (connected,) = events.of("connected")
    assert connected["mode"] == "delta" and connected["version"] == 3
    assert a.state == {"k": 2, "other": 1}
    assert relay.metrics.value("livewidgets_joins_total", mode="delta") == 1
    m = a.metrics
    assert (m["disconnections"], m["successes"]) == (1, 2)
    assert m["failures"] == m["attempts"] - 2  # refused attempts, if any
    assert a.connection_state == "connected" and a.metrics["attempt"] == 0


async def test_backoff_delays_are_jittered_and_seeded(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """Failed attempts wait the seeded jittered delays: all different, growing ceilings."""
    policy = FAST["backoff"]
    a = await connect(proxy.url, rng=random.Random(1234))
    events = Recorder(a, ["disconnected", "reconnecting", "connected"])
    await go_offline(proxy, events)
    await eventually(lambda: len([p for p in events.of("reconnecting") if "delay" in p]) >= 6)
    proxy.refuse(False)
    await eventually(lambda: events.count("connected"))
    waits = [p for p in events.of("reconnecting") if "delay" in p]
    delays = [p["delay"] for p in waits]
    expected = list(itertools.islice(policy.delays(random.Random(1234)), len(delays)))
    assert delays == expected  # deterministic with a seeded rng
    assert len(set(delays)) == len(delays)  # jittered
    assert [p["attempt"] for p in waits] == list(range(1, len(waits) + 1))
    for n, delay in enumerate(delays):
        assert policy.minimum <= delay <= min(policy.cap, policy.initial * policy.factor**n)


async def test_resend_after_cut_is_applied_once(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """An op the relay applied but whose ack was lost is confirmed on resume, not reapplied."""
    a = await connect(proxy.url)
    events = Recorder(a, ["disconnected", "connected"])
    proxy.delay = 30 * MS  # the op reaches the relay; its ack is still on the way back
    ack = a.increment("n")
    await eventually(lambda: relay.metrics.value("livewidgets_ops_accepted_total") == 1)
    proxy.delay = 0
    await go_offline(proxy, events)
    assert not ack.done()
    proxy.refuse(False)
    assert await asyncio.wait_for(ack, TIMEOUT) == 1
    assert a.get("n") == 1 and a.version == 1
    assert relay.metrics.value("livewidgets_ops_accepted_total") == 1


# --- many cuts ----------------------------------------------------------------------


async def test_no_acked_write_lost_none_applied_twice_across_cuts(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """Increments under 15 random cuts: counter == acked increments == room versions."""
    rng = random.Random(20240601)
    proxy.delay = 2 * MS  # keep frames in flight when the cut lands
    a = await connect(proxy.url, rng=random.Random(1), ack_timeout=300 * MS)
    events = Recorder(a, ["disconnected", "connected"])
    acks = []
    for round_ in range(15):
        await eventually(lambda r=round_: events.count("connected") == r)
        acks += [a.increment("n") for _ in range(rng.randint(1, 12))]
        await asyncio.sleep(rng.uniform(0, 15) * MS)  # schedules the fault, asserts nothing
        proxy.cut()
    await a.flush(TIMEOUT)
    await eventually(lambda: events.count("disconnected") == 15)  # every cut was noticed
    versions = [await ack for ack in acks]
    assert len(set(versions)) == len(acks)  # every write acked, each with its own version
    b = await connect(relay.url)
    assert b.get("n") == a.get("n") == len(acks)
    assert b.version == len(acks)  # no op applied twice


async def test_short_gaps_resume_by_delta_not_snapshot(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """After cuts with writes on both sides, every rejoin is a delta catch-up."""
    a = await connect(proxy.url)
    b = await connect(relay.url)
    events = Recorder(a, ["disconnected", "connected"])
    for round_ in range(5):
        await go_offline(proxy, events)
        a.increment("a")
        await b.increment("b")
        proxy.refuse(False)
        await eventually(lambda r=round_: events.count("connected") == r + 1)
        await a.flush(TIMEOUT)
    assert [p["mode"] for p in events.of("connected")] == ["delta"] * 5
    assert relay.metrics.value("livewidgets_joins_total", mode="snapshot") == 2  # first joins
    await eventually(lambda: a.state == b.state == {"a": 5, "b": 5})


async def test_writes_racing_a_cut_resume_by_delta(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """Writes made just as the link dies: the client resumes by delta and delivers them."""
    a = await connect(proxy.url)
    events = Recorder(a, ["disconnected", "connected"])
    try:
        for round_ in range(5):
            proxy.cut()
            for _ in range(3):  # written before the engine noticed the RST
                a.increment("n")
            await eventually(lambda r=round_: events.count("connected") == r + 1, 1000 * MS)
            await a.flush(1000 * MS)
        modes = [p["mode"] for p in events.of("connected")]
        assert modes == ["delta"] * 5
        assert a.get("n") == 15
    finally:
        await abandon(a)


# --- offline queue ------------------------------------------------------------------


async def test_offline_writes_queue_then_deliver_in_order(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """Offline: writes apply locally and queue; back online they are acked in order."""
    a = await connect(proxy.url)
    events = Recorder(a)
    await go_offline(proxy, events)
    acks = []
    for i in range(10):
        acks.append(a.push("log", i))
        assert a.metrics["queue_depth"] == i + 1
    assert a.get("log") == list(range(10))
    assert not any(ack.done() for ack in acks)
    proxy.refuse(False)
    versions = [await asyncio.wait_for(ack, TIMEOUT) for ack in acks]
    assert versions == list(range(1, 11))
    assert a.metrics["queue_depth"] == 0
    b = await connect(relay.url)
    assert b.get("log") == list(range(10))


async def test_full_queue_raises_never_drops(relay: Relay, proxy: Proxy, connect: Connect) -> None:
    """max_pending writes queued: the next one raises QueueFull and changes nothing."""
    a = await connect(proxy.url, max_pending=3)
    events = Recorder(a)
    await go_offline(proxy, events)
    acks = [a.push("log", i) for i in range(3)]
    with pytest.raises(QueueFull):
        a.push("log", 3)
    assert a.get("log") == [0, 1, 2]
    assert a.metrics["queue_depth"] == 3
    proxy.refuse(False)
    assert [await asyncio.wait_for(ack, TIMEOUT) for ack in acks] == [1, 2, 3]
    assert a.push("log", 3) is not None  # room again once acked
    await a.flush(TIMEOUT)
    assert a.get("log") == [0, 1, 2, 3]


async def test_high_priority_write_evicts_a_low_one_and_says_so(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """A full queue makes room for a high-priority write by failing a low one (queue_full)."""
    a = await connect(proxy.url, max_pending=2)
    events = Recorder(a)
    await go_offline(proxy, events)
    keep = a.set("a", 1, priority=Priority.LOW)
    evicted = a.set("b", 1, priority=Priority.LOW)
    urgent = a.set("c", 1, priority=Priority.HIGH)
    with pytest.raises(OpRejected) as info:
        await evicted
    assert info.value.code == "queue_full"
    assert [p["code"] for p in events.of("rejected")] == ["queue_full"]
    assert a.state == {"a": 1, "c": 1}
    proxy.refuse(False)
    assert await asyncio.wait_for(keep, TIMEOUT) == 1
    assert await asyncio.wait_for(urgent, TIMEOUT) == 2
    b = await connect(relay.url)
    assert b.state == {"a": 1, "c": 1}


# --- relay restart ------------------------------------------------------------------


async def test_relay_restart_on_same_port_and_file(tmp_path: Path, connect: Connect) -> None:
    """Stop a SQLite-backed relay, start a new one on its port and file: clients converge."""
    store = f"sqlite:///{tmp_path / 'rooms.db'}"
    relay = Relay(port=0, store=store)
    await relay.start()
    port = relay.port
    replacement = Relay(port=port, store=store)
    try:
        a = await connect(relay.url)
        b = await connect(relay.url)
        for _ in range(10):
            a.increment("n")
        await a.flush(TIMEOUT)
        events = Recorder(a, ["disconnected", "connected"])
        await relay.stop()
        await eventually(lambda: events.count("disconnected"))
        assert events.of("disconnected")[0]["code"] == 1001  # going away: reconnect
        late = a.increment("n")  # made while no relay runs
        b.push("log", "b was here")
        await replacement.start()
        assert await asyncio.wait_for(late, TIMEOUT) in (11, 12)  # b's push may come first
        await a.flush(TIMEOUT)
        await b.flush(TIMEOUT)
        assert events.of("connected")[-1]["mode"] == "delta"
        fresh = await connect(replacement.url)
        assert fresh.version == 12
        assert fresh.state == {"n": 11, "log": ["b was here"]}
        await eventually(lambda: a.state == b.state == fresh.state)
        for session in (a, b, fresh):
            await session.close()
    finally:
        await relay.stop()
        await replacement.stop()
