"""The public session API against a real relay on loopback: async and threaded facades."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import livewidgets
from livewidgets.client import (
    AsyncSession,
    ConflictError,
    OpRejected,
    Session,
    SessionClosed,
)
from livewidgets.relay import Relay

from .conftest import Background, Connect
from .helpers import MS, TIMEOUT, Recorder, abandon, eventually, eventually_sync
from .proxy import Proxy

METRIC_KEYS = {
    "attempts",
    "successes",
    "failures",
    "disconnections",
    "messages_sent",
    "messages_received",
    "bytes_sent",
    "bytes_received",
    "retries",
    "rejects",
    "send_failures",
    "decode_errors",
    "heartbeat_timeouts",
    "rtt_avg_ms",
    "rtt_p50_ms",
    "rtt_p99_ms",
    "uptime_s",
    "queue_depth",
}


async def settle(writer: AsyncSession, *readers: AsyncSession, key: str = "barrier") -> None:
    """A barrier: ``writer`` bumps ``key``; wait until every reader has seen it."""
    await writer.increment(key)
    target = writer.get(key)
    for reader in readers:
        await eventually(lambda r=reader: r.get(key) == target, what=f"{key} == {target}")


# --- entry points -------------------------------------------------------------------


def test_public_entry_points() -> None:
    """livewidgets.connect is the threaded facade, livewidgets.asyncio.connect the async one."""
    from livewidgets.client.session import connect, connect_async

    assert livewidgets.connect is connect
    assert livewidgets.asyncio.connect is connect_async
    assert livewidgets.asyncio.AsyncSession is AsyncSession


async def test_connect_joins_and_reports_connected(relay: Relay, connect: Connect) -> None:
    """After connect() the session is joined: connected, at the room's version."""
    a = await connect(relay.url, user="ann")
    assert a.connection_state == "connected"
    assert (a.room, a.user, a.version, a.state) == ("room", "ann", 0, {})


# --- subscriptions ------------------------------------------------------------------


async def test_subscription_fires_once_per_change_without_echo(
    relay: Relay, connect: Connect
) -> None:
    """callback(value, path) once per visible change at/below the path; the ack adds none."""
    a = await connect(relay.url)
    b = await connect(relay.url)
    seen: list[tuple[str, Any]] = []
    a.subscribe("poll", lambda value, path: seen.append((path, value)))
    ack = a.set("poll/q", 1)
    assert seen == [("poll", {"q": 1})]  # optimistic, at once
    await ack
    assert seen == [("poll", {"q": 1})]  # no echo when our op is acknowledged
    await b.set("poll/q", 2)
    await eventually(lambda: len(seen) == 2)
    assert seen[1] == ("poll", {"q": 2})
    await b.set("elsewhere", 1)  # a sibling path
    await settle(b, a)
    assert len(seen) == 2


async def test_unsubscribe_stops_callbacks(relay: Relay, connect: Connect) -> None:
    """The function subscribe() returns removes the callback."""
    a = await connect(relay.url)
    seen: list[Any] = []
    off = a.subscribe("k", lambda value, path: seen.append(value))
    a.set("k", 1)
    off()
    await a.set("k", 2)
    assert seen == [1]


async def test_a_write_from_a_change_callback_keeps_seq_order(
    relay: Relay, connect: Connect
) -> None:
    """A subscriber that writes (a derived value) while its own write is being
    dispatched: both frames leave in client_seq order, so the relay applies both
    (out of order, the first would look like a resend and be acked unapplied)."""
    a = await connect(relay.url)
    b = await connect(relay.url)
    derived: list[Any] = []

    def double(value: Any, path: str) -> None:
        if value is not None and a.get("double") != 2 * value:
            derived.append(a.set("double", 2 * value))

    a.subscribe("x", double)
    first = a.set("x", 21)
    assert await asyncio.wait_for(first, TIMEOUT) >= 1
    assert await asyncio.wait_for(derived[0], TIMEOUT) > await first
    await eventually(lambda: b.get("double") == 42 and b.get("x") == 21, what="both at b")


async def test_batch_is_atomic_for_another_client(relay: Relay, connect: Connect) -> None:
    """B's subscription sees each batch whole, once: never a partial batch."""
    a = await connect(relay.url)
    b = await connect(relay.url)
    states: list[Any] = []
    b.subscribe("x", lambda value, path: states.append(value))
    acks = []
    for i in range(1, 21):
        with a.batch() as ack:
            a.set("x/a", i)
            a.increment("x/n")
            a.set("x/b", i)
        acks.append(ack)
    versions = [await ack for ack in acks]
    assert versions == list(range(1, 21))  # one version per batch
    await eventually(lambda: b.get("x/b") == 20)
    assert states == [{"a": i, "n": i, "b": i} for i in range(1, 21)]


async def test_rejected_batch_is_invisible_to_others(relay: Relay, connect: Connect) -> None:
    """A batch with one failing op is refused whole: the other client never sees any of it."""
    a = await connect(relay.url)
    b = await connect(relay.url)
    await a.set("guard", 0)
    stale = a.version
    await b.set("guard", 1)
    await eventually(lambda: a.get("guard") == 1)
    seen: list[Any] = []
    b.subscribe("y", lambda value, path: seen.append(value))
    with a.batch() as ack:
        a.set("y/a", 1)
        a.set("guard", 2, if_version=stale)
    assert a.get("y/a") == 1
    with pytest.raises(ConflictError):
        await ack
    assert a.get("y") is None and a.get("guard") == 1  # rolled back whole
    await settle(a, b)
    assert seen == [] and b.get("y") is None


# --- rejects, conflicts -------------------------------------------------------------


async def test_reject_rolls_back_and_reports(relay: Relay, proxy: Proxy, connect: Connect) -> None:
    """An increment that meets a concurrent string fails with OpRejected and rolls back."""
    a = await connect(proxy.url, heartbeat_interval=60.0)
    b = await connect(relay.url)
    await a.set("x", 1)
    await eventually(lambda: b.get("x") == 1)
    events = Recorder(a, ["rejected"])
    seen: list[Any] = []
    a.subscribe("x", lambda value, path: seen.append(value))
    proxy.stall()  # a does not hear of b's change before its own op reaches the relay
    ack = a.increment("x", 5)
    assert a.get("x") == 6
    await b.set("x", "text")
    proxy.resume()
    with pytest.raises(OpRejected) as info:
        await asyncio.wait_for(ack, TIMEOUT)
    assert not isinstance(info.value, ConflictError)
    assert (info.value.code, info.value.path) == ("type_mismatch", "x")
    assert a.get("x") == "text"
    assert seen == [6, "text"]
    (payload,) = events.of("rejected")
    assert payload["code"] == "type_mismatch" and payload["path"] == "x"
    assert payload["error"] is info.value
    assert a.metrics["rejects"] == 1


async def test_stale_if_version_conflict(relay: Relay, connect: Connect) -> None:
    """if_version older than the path's last change: ConflictError, rolled back, event."""
    a = await connect(relay.url)
    b = await connect(relay.url)
    await a.set("doc/title", "A")
    base = a.version
    theirs = await b.set("doc/title", "B")
    await eventually(lambda: a.get("doc/title") == "B")
    events = Recorder(a, ["conflict", "rejected"])
    ack = a.set("doc/title", "mine", if_version=base)
    assert a.get("doc/title") == "mine"
    with pytest.raises(ConflictError) as info:
        await ack
    error = info.value
    assert (error.code, error.path, error.current, error.current_version) == (
        "conflict",
        "doc/title",
        "B",
        theirs,
    )
    assert a.get("doc/title") == "B"
    assert events.names() == ["conflict"]
    (payload,) = events.of("conflict")
    assert payload["code"] == "conflict" and payload["path"] == "doc/title"
    assert (payload["current"], payload["current_version"]) == ("B", theirs)
    assert b.get("doc/title") == "B"


async def test_on_conflict_handler_writes_its_resolution(relay: Relay, connect: Connect) -> None:
    """on_conflict(path, handler): the value it returns is written over theirs."""
    a = await connect(relay.url)
    b = await connect(relay.url)
    await a.set("doc/title", "A")
    base = a.version
    await b.set("doc/title", "B")
    await eventually(lambda: a.get("doc/title") == "B")
    conflicts: list[dict[str, Any]] = []

    def resolve(conflict: dict[str, Any]) -> Any:
        conflicts.append(conflict)
        return f"{conflict['theirs']}+mine"

    a.on_conflict("doc/title", resolve)
    with pytest.raises(ConflictError):
        await a.set("doc/title", "mine", if_version=base)
    await a.flush(TIMEOUT)
    assert a.get("doc/title") == "B+mine"
    await eventually(lambda: b.get("doc/title") == "B+mine")
    (conflict,) = conflicts
    assert conflict["path"] == "doc/title" and conflict["theirs"] == "B"


async def test_on_conflict_returning_none_keeps_theirs(relay: Relay, connect: Connect) -> None:
    """A handler returning None writes nothing: their value stays."""
    a = await connect(relay.url)
    b = await connect(relay.url)
    await a.set("k", 1)
    base = a.version
    await b.set("k", 2)
    await eventually(lambda: a.get("k") == 2)
    a.on_conflict("k", lambda conflict: None)
    with pytest.raises(ConflictError):
        await a.set("k", 3, if_version=base)
    assert a.pending == 0 and a.get("k") == 2


async def test_local_misuse_raises_at_once(relay: Relay, connect: Connect) -> None:
    """An op that cannot apply locally, or an unshareable value, raises ValueError now."""
    a = await connect(relay.url)
    await a.set("s", "text")
    with pytest.raises(ValueError):
        a.increment("s", 1)
    with pytest.raises(ValueError):
        a.set("obj", object())
    with pytest.raises(ValueError):
        a.set("bad//path", 1)
    assert a.pending == 0 and a.state == {"s": "text"}


# --- handlers are isolated ----------------------------------------------------------


async def test_failing_callback_is_isolated(
    relay: Relay, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising subscription callback is logged; other callbacks and the engine go on."""
    a = await connect(relay.url)
    b = await connect(relay.url)
    calls: list[Any] = []

    def broken(value: Any, path: str) -> None:
        raise ZeroDivisionError("boom")

    a.subscribe("k", broken)
    a.subscribe("k", lambda value, path: calls.append(value))
    a.on("rejected", lambda payload: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="livewidgets.client"):
        await a.set("k", 1)  # local change: callbacks run in the writer's context
        await b.set("k", 2)  # remote change: callbacks run on the engine's loop
        await eventually(lambda: calls == [1, 2])
        base = a.version
        await b.set("k", 3)
        await eventually(lambda: a.get("k") == 3)
        with pytest.raises(ConflictError):
            await a.set("k", 4, if_version=base - 1)
        assert await a.set("after", True) > 0  # the engine still syncs
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert len(failures) >= 3
    assert all("[livewidgets] handler" in r.getMessage() for r in failures)
    assert a.connection_state == "connected"
    assert a.metrics["callback_errors"] == len(failures)
    assert "ZeroDivisionError('boom')" in a.metrics["last_callback_error"]


# --- metrics, flush -----------------------------------------------------------------


async def test_metrics_dict_has_every_key(relay: Relay, connect: Connect) -> None:
    """metrics: counters, RTT avg/p50/p99 in ms, uptime and queue depth."""
    a = await connect(relay.url)
    for i in range(5):
        a.set(f"k{i}", i)
    await a.flush(TIMEOUT)
    metrics = a.metrics
    assert metrics.keys() >= METRIC_KEYS
    assert metrics["attempts"] == metrics["successes"] == 1
    assert metrics["failures"] == metrics["disconnections"] == 0
    assert metrics["messages_sent"] >= 7  # hello, join, 5 ops
    assert metrics["messages_received"] >= 7  # welcome, snapshot, joined, 5 acks
    assert metrics["bytes_sent"] > 0 and metrics["bytes_received"] > 0
    assert metrics["queue_depth"] == 0
    assert 0 < metrics["rtt_p50_ms"] <= metrics["rtt_p99_ms"]
    assert metrics["rtt_avg_ms"] > 0
    assert metrics["uptime_s"] > 0


async def test_flush_waits_for_every_ack(relay: Relay, connect: Connect) -> None:
    """flush() returns once the relay acknowledged every write made so far."""
    a = await connect(relay.url)
    acks = [a.increment("n") for _ in range(50)]
    await a.flush(TIMEOUT)
    assert all(ack.done() for ack in acks)
    assert a.pending == 0 and a.version == 50


async def test_flush_times_out_while_unreachable(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """flush(timeout) raises TimeoutError while the relay cannot be reached."""
    a = await connect(proxy.url)
    events = Recorder(a, ["disconnected"])
    proxy.refuse(True)
    proxy.cut()
    await eventually(lambda: events.count("disconnected"))
    a.set("k", 1)
    with pytest.raises(TimeoutError):
        await a.flush(100 * MS)
    proxy.refuse(False)
    await a.flush(TIMEOUT)
    assert a.pending == 0


async def test_writes_after_close_raise(relay: Relay, connect: Connect) -> None:
    """A closed session refuses writes with SessionClosed."""
    a = await connect(relay.url)
    await a.close()
    assert a.connection_state == "closed"
    with pytest.raises(SessionClosed):
        a.set("k", 1)


async def test_close_with_pending_writes_fails_them(
    relay: Relay, proxy: Proxy, connect: Connect
) -> None:
    """Closing with unacknowledged writes fails their Acks with SessionClosed."""
    a = await connect(proxy.url)
    events = Recorder(a, ["disconnected"])
    proxy.refuse(True)
    proxy.cut()
    await eventually(lambda: events.count("disconnected"))
    ack = a.set("k", 1)
    try:
        await a.close()
        assert a.connection_state == "closed"
        with pytest.raises(SessionClosed):
            await ack
    finally:
        await abandon(a)


# --- the threaded facade ------------------------------------------------------------


def test_sync_facade_roundtrip(
    background: Background, sync_connect: Callable[..., Session]
) -> None:
    """livewidgets.connect(): blocking writes, Ack.result(), flush, remote changes."""
    a = sync_connect(background.relay.url, user="ann")
    b = sync_connect(background.relay.url, user="bob")
    seen: list[Any] = []
    a.subscribe("poll", lambda value, path: seen.append(value))
    assert a.set("poll/q", 1).result(TIMEOUT) == 1
    a.flush(TIMEOUT)  # callbacks run on the session's callback thread: flush waits for them
    assert seen == [{"q": 1}]
    with b.batch():
        b.set("poll/q", 2)
        b.increment("poll/n")
    b.flush(TIMEOUT)
    eventually_sync(lambda: a.get("poll") == {"q": 2, "n": 1})
    a.flush(TIMEOUT)
    assert seen == [{"q": 1}, {"q": 2, "n": 1}]
    assert "connected" in repr(a)


def test_sync_facade_conflict(background: Background, sync_connect: Callable[..., Session]) -> None:
    """A stale if_version fails the Ack with ConflictError from a plain thread."""
    a = sync_connect(background.relay.url)
    b = sync_connect(background.relay.url)
    a.set("k", 1).result(TIMEOUT)
    base = a.version
    b.set("k", 2).result(TIMEOUT)
    eventually_sync(lambda: a.get("k") == 2)
    ack = a.set("k", 3, if_version=base)
    with pytest.raises(ConflictError):
        ack.result(TIMEOUT)
    assert isinstance(ack.exception(), ConflictError)
    assert a.get("k") == 2


def test_sync_facade_offline_queue_and_flush(
    background: Background, sync_connect: Callable[..., Session]
) -> None:
    """Threaded facade: writes queue offline, flush times out, then delivers in order."""
    a = sync_connect(background.proxy.url)
    events = Recorder(a, ["disconnected", "connected"])
    background.call(lambda: background.proxy.refuse(True))
    background.call(background.proxy.cut)
    eventually_sync(lambda: events.count("disconnected"))
    acks = [a.push("log", i) for i in range(5)]
    assert a.metrics["queue_depth"] == 5 and not any(ack.done() for ack in acks)
    with pytest.raises(TimeoutError):
        a.flush(50 * MS)
    background.call(lambda: background.proxy.refuse(False))
    a.flush(TIMEOUT)
    assert [ack.result(0) for ack in acks] == list(range(1, 6))
    fresh = sync_connect(background.relay.url)
    assert fresh.get("log") == [0, 1, 2, 3, 4]


def test_sync_close_is_final(background: Background, sync_connect: Callable[..., Session]) -> None:
    """Session.close(): closed, no reconnect, writes raise SessionClosed; close twice is fine."""
    a = sync_connect(background.relay.url)
    events = Recorder(a)
    a.close()
    a.close()
    assert a.connection_state == "closed"
    assert events.names() == ["disconnected", "closed"]  # no reconnecting
    with pytest.raises(SessionClosed):
        a.set("k", 1)


def test_sync_facade_reconnects_after_a_cut(
    background: Background, sync_connect: Callable[..., Session]
) -> None:
    """Threaded facade: an RST is followed by reconnecting and a delta resume."""
    a = sync_connect(background.proxy.url)
    b = sync_connect(background.relay.url)
    events = Recorder(a, ["disconnected", "reconnecting", "connected"])
    background.call(lambda: background.proxy.refuse(True))
    background.call(background.proxy.cut)
    eventually_sync(lambda: events.count("disconnected"))
    b.set("k", "while away").result(TIMEOUT)
    ack = a.increment("n")
    background.call(lambda: background.proxy.refuse(False))
    assert ack.result(TIMEOUT) == 2
    eventually_sync(lambda: a.get("k") == "while away")
    assert events.names()[0] == "disconnected" and "reconnecting" in events.names()
    assert events.of("connected")[-1]["mode"] == "delta"


def test_sync_writes_from_many_threads(
    background: Background, sync_connect: Callable[..., Session]
) -> None:
    """Writes from several threads at once: each applied once, all acknowledged."""
    a = sync_connect(background.relay.url)
    b = sync_connect(background.relay.url)
    acks: list[Any] = []

    def writer(who: int) -> None:
        for i in range(50):
            acks.append(a.increment("n"))
            acks.append(a.push(f"by/{who}", i))

    threads = [threading.Thread(target=writer, args=(who,)) for who in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    a.flush(TIMEOUT)
    assert sorted(ack.result(0) for ack in acks) == list(range(1, 401))
    assert a.get("n") == 200
    eventually_sync(lambda: b.version == 400)
    assert b.state == a.state
    assert all(b.get(f"by/{who}") == list(range(50)) for who in range(4))


def test_sync_burst_with_a_refused_oversized_text_edit(
    background: Background,
    sync_connect: Callable[..., Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """From a user thread: a text edit over the frame limit, then small edits queued
    behind it (one text op per path in flight). The big one is refused while the burst
    is written; its rollback releases the next edit, which is written exactly once."""
    a = sync_connect(background.relay.url)
    b = sync_connect(background.relay.url)
    text = a.text("doc")
    # Keep a's loop busy so the whole burst is handed over at once (deterministic).
    loop = a._engine._loop
    assert loop is not None
    started = threading.Event()
    loop.call_soon_threadsafe(lambda: (started.set(), time.sleep(0.2)))
    started.wait(TIMEOUT)
    big = text.insert(0, "x" * (1 << 20))  # over the relay's 1 MiB frame limit
    small = [text.insert(0, ch) for ch in "abc"]
    with pytest.raises(OpRejected):
        big.result(TIMEOUT)
    for ack in small:
        ack.result(TIMEOUT)
    eventually_sync(lambda: b.get("doc") == a.get("doc") == "cba")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors  # e.g. the loop's "Exception in callback"


def test_a_slow_callback_holds_up_nothing_else(
    background: Background, sync_connect: Callable[..., Session]
) -> None:
    """A subscribe callback that sleeps 5 s runs on its session's callback thread: the
    I/O loop all sessions share keeps answering heartbeats (no reconnect, with a 0.4 s
    heartbeat timeout) and another session's writes are acked promptly meanwhile."""
    slow = sync_connect(background.relay.url, user="slow")
    other = sync_connect(background.relay.url, user="other")
    started, done = threading.Event(), threading.Event()

    def sleepy(value: Any, path: str) -> None:
        started.set()
        time.sleep(5)
        done.set()

    slow.subscribe("k", sleepy)
    other.set("k", 1).result(TIMEOUT)
    assert started.wait(TIMEOUT)
    latencies = []
    while not done.is_set():  # bounded: the callback ends after 5 s
        sent = time.monotonic()
        other.set("n", len(latencies)).result(TIMEOUT)
        latencies.append(time.monotonic() - sent)
        time.sleep(0.05)
    latencies.sort()
    median, worst = latencies[len(latencies) // 2], latencies[-1]
    print(
        f"\n{len(latencies)} writes during the callback: median {1000 * median:.1f} ms, "
        f"max {1000 * worst:.1f} ms"
    )
    assert len(latencies) > 20 and median < 0.05
    for session in (slow, other):
        assert session.metrics["disconnections"] == 0
        assert session.metrics["heartbeat_timeouts"] == 0
    slow.flush(TIMEOUT)
    assert slow.get("n") == len(latencies) - 1  # it kept syncing under the sleeping callback
