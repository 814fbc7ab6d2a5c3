"""Scale-out: two relay processes serve one room through one Redis.

Real ``livewidgets relay`` subprocesses on a real Redis (127.0.0.1:6379, a random
key prefix per test, deleted afterwards) and real clients (livewidgets.asyncio).
Every wait is bounded in time; every loop in count.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import livewidgets
import livewidgets.asyncio as lwa
from livewidgets.client import Backoff
from livewidgets.relay.room import LogEntry, RoomCore, RoomRecord
from livewidgets.relay.store.redis import RedisStore
from livewidgets.state.ops import PushOp

from .helpers import REDIS_URL, TIMEOUT, redis_available

pytestmark = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")

FAST = Backoff(initial=0.02, cap=0.2)
# The package under test, for the relay subprocesses (never an installed copy).
SRC = str(Path(livewidgets.__file__).resolve().parents[1])


@contextlib.asynccontextmanager
async def relay_process(
    prefix: str,
    log: Path,
    *,
    poll_interval: float = 1.0,
    snapshot_every: int = 100_000,
    presence_heartbeat: float = 2.0,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``python -m livewidgets.cli relay`` on the shared Redis; yield it and its URL."""
    store = (
        f"{REDIS_URL}?prefix={prefix}&poll_interval={poll_interval}"
        f"&presence_heartbeat={presence_heartbeat}"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "livewidgets.cli", "relay", "--port", "0"],
            *["--store", store, "--snapshot-every", str(snapshot_every)],
            *["--ops-rate", "0", "--log-level", "warning"],
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 4 * TIMEOUT)
        match = re.search(rb"listening on (ws://\S+)", line)
        assert match, f"unexpected first line {line!r}; see {log}"
        yield process, match[1].decode()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)  # this process only, by its pid
            try:
                await asyncio.wait_for(process.wait(), 4 * TIMEOUT)
            except asyncio.TimeoutError:
                process.kill()
        await process.wait()


def metric(url: str, name: str) -> float:
    """One sample of a relay's /metrics (blocking; call in a thread)."""
    with urllib.request.urlopen(url.replace("ws://", "http://") + "/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


async def wait_until(condition: Any, timeout: float, what: str) -> float:
    """Poll ``condition()`` every 5 ms until true; the time it took. Fails after ``timeout``."""
    started = time.monotonic()
    for _ in range(int(timeout / 0.005) + 1):
        if condition():
            return time.monotonic() - started
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def stored_log(prefix: str, room: str) -> list[LogEntry]:
    store = RedisStore(REDIS_URL, prefix=prefix)
    try:
        return await store.read_log(room, 0, 10**9)
    finally:
        await store.close()


def check_log(log: list[LogEntry], acked: dict[str, set[int]]) -> None:
    """One total order; every op is in it once; each client's acks name exactly the
    versions of its entries (composed keystrokes share one op, hence one version)."""
    assert [e.version for e in log] == list(range(1, len(log) + 1))
    ids = Counter((e.client_id, e.client_seq) for e in log)
    assert max(ids.values(), default=1) == 1, [k for k, n in ids.items() if n > 1]
    for client_id, versions in acked.items():
        assert {e.version for e in log if e.client_id == client_id} == versions


# --- (a) live fan-out ----------------------------------------------------------------


async def test_an_op_on_one_relay_reaches_a_client_of_the_other_live(
    prefix: str, tmp_path: Path
) -> None:
    """A client of relay B hears an op accepted on relay A within a bound far below
    the safety-net poll (set to 30 s here): the pub/sub notice, not the poll."""
    log = tmp_path / "relays.log"
    async with (
        relay_process(prefix, log, poll_interval=30) as (_, url_a),
        relay_process(prefix, log, poll_interval=30) as (_, url_b),
    ):
        a = await lwa.connect(url_a, "live", "ada", backoff=FAST)
        b = await lwa.connect(url_b, "live", "grace", backoff=FAST)
        delays = []
        for round_ in range(1, 21):
            version = await asyncio.wait_for(a.increment("n"), TIMEOUT)
            delays.append(
                await wait_until(lambda r=round_: b.get("n") == r, 2.0, f"n == {round_} on B")
            )
            assert b.version == version
            # And back: B's op reaches A.
            await asyncio.wait_for(b.push("l", round_), TIMEOUT)
            await wait_until(lambda r=round_: len(a.get("l", [])) == r, 2.0, "l on A")
        assert a.state == b.state and a.version == b.version == 40
        assert a.metrics["successes"] == b.metrics["successes"] == 1
        delays.sort()
        print(
            f"cross-relay delivery after ack: p50 {delays[10] * 1000:.1f} ms, "
            f"max {delays[-1] * 1000:.1f} ms"
        )
        assert delays[-1] < 1.0
        await a.close()
        await b.close()


# --- (b) concurrent writers on two relays --------------------------------------------


async def _writer(
    session: lwa.AsyncSession, name: str, count: int, rng: random.Random, inserts: Counter[str]
) -> set[int]:
    """Mixed increments, pushes and text inserts, a few in flight at a time; returns
    the versions its acks named; counts its text inserts (of its digit) in ``inserts``."""
    versions: list[int] = []
    in_flight: list[Any] = []
    inserts[name[-1]] = 0
    text = session.text("doc")
    for i in range(count):
        kind = rng.random()
        if kind < 0.4:
            ack = session.increment("n")
        elif kind < 0.7:
            ack = session.push(f"items/{name}", i)
        else:
            ack = text.insert(rng.randint(0, len(text)), name[-1])
            inserts[name[-1]] += 1
        in_flight.append(ack)
        if len(in_flight) >= 4:
            versions.append(await asyncio.wait_for(in_flight.pop(0), 4 * TIMEOUT))
        if rng.random() < 0.2:
            await asyncio.sleep(rng.random() * 0.005)
    for ack in in_flight:
        versions.append(await asyncio.wait_for(ack, 4 * TIMEOUT))
    return set(versions)


async def test_writers_on_two_relays_converge(prefix: str, tmp_path: Path) -> None:
    """Six writers, three per relay, write one room at once: increments, pushes and
    text inserts. Nobody is disconnected; all end with the same state and version;
    the log holds every acked op once; the relays did resolve append races."""
    log = tmp_path / "relays.log"
    rng = random.Random(7)
    count = 120
    async with (
        relay_process(prefix, log) as (_, url_a),
        relay_process(prefix, log) as (_, url_b),
    ):
        urls = [url_a, url_b] * 3
        sessions = [
            await lwa.connect(url, "busy", f"w{i}", backoff=FAST) for i, url in enumerate(urls)
        ]
        # Every writer's own list (a push needs one) and, once, the text.
        setup: list[set[int]] = []
        for i, session in enumerate(sessions):
            setup.append({await asyncio.wait_for(session.set(f"items/w{i}", []), TIMEOUT)})
        setup[0].add(await asyncio.wait_for(sessions[0].set("doc", ""), TIMEOUT))
        await wait_until(
            lambda: all(s.get("doc") == "" for s in sessions), 5.0, "the text everywhere"
        )
        started = time.monotonic()
        inserts: Counter[str] = Counter()
        results = await asyncio.gather(
            *(
                _writer(s, f"w{i}", count, random.Random(rng.random()), inserts)
                for i, s in enumerate(sessions)
            )
        )
        elapsed = time.monotonic() - started
        head = max(max(r) for r in results)
        await wait_until(
            lambda: all(s.version >= head and s.pending == 0 for s in sessions),
            10.0,
            "every client at the head",
        )
        states = [s.state for s in sessions]
        assert all(state == states[0] for state in states)
        assert len({s.version for s in sessions}) == 1
        stored = await stored_log(prefix, "busy")
        assert len(stored) == sessions[0].version
        acked = {s.client_id: results[i] | setup[i] for i, s in enumerate(sessions)}
        check_log(stored, acked)
        # The state is the log replayed, and each writer's pushes are all there, once.
        replayed = RoomCore(RoomRecord("busy", log=stored))
        assert replayed.state == states[0]
        pushes = [e for e in stored if isinstance(e.ops[0], PushOp)]
        for i in range(len(sessions)):
            mine = [e.ops[0].value for e in pushes if e.ops[0].path == f"items/w{i}"]
            assert states[0]["items"][f"w{i}"] == mine
        n = sum(1 for e in stored if e.ops[0].path == "n")
        assert states[0]["n"] == n
        assert Counter(states[0]["doc"]) == inserts  # every keystroke, once
        for session in sessions:
            assert session.metrics["successes"] == 1, "a client was disconnected"
            assert session.metrics["rejects"] == 0
            await session.close()
        conflicts = [
            await asyncio.to_thread(metric, u, "livewidgets_store_conflicts_total")
            for u in (url_a, url_b)
        ]
        total = len(sessions) * count
        print(
            f"{total} ops from 6 writers on 2 relays in {elapsed:.2f}s "
            f"({total / elapsed:.0f} ops/s); append races redone: {conflicts}"
        )
        assert sum(conflicts) > 0, "the test never made the relays race"


# --- (c) one relay dies ----------------------------------------------------------------


async def _pusher(session: lwa.AsyncSession, name: str, count: int, window: int) -> set[int]:
    """Push 0..count-1 onto ``items/<name>``, ``window`` in flight; the acked versions."""
    versions: set[int] = set()
    in_flight: list[Any] = []
    for i in range(count):
        in_flight.append(session.push(f"items/{name}", i))
        if len(in_flight) >= window:
            versions.add(await asyncio.wait_for(in_flight.pop(0), 6 * TIMEOUT))
        if i % 10 == 0:
            await asyncio.sleep(0.002)  # spread the load over the kill
    for ack in in_flight:
        versions.add(await asyncio.wait_for(ack, 6 * TIMEOUT))
    return versions


async def test_killing_one_relay_loses_nothing(prefix: str, tmp_path: Path) -> None:
    """kill -9 relay A while four writers (two per relay) push: B's clients carry on
    undisturbed; A's clients reconnect to B (pointed there by hand) and resend what
    was not acked; B acks resends A had committed as duplicates. Every writer's list
    ends as exactly 0..N-1: nothing lost, nothing applied twice, one order."""
    log = tmp_path / "relays.log"
    count = 300
    async with (
        relay_process(prefix, log) as (process_a, url_a),
        relay_process(prefix, log) as (_, url_b),
    ):
        urls = [url_a, url_b, url_a, url_b]
        sessions = [
            await lwa.connect(url, "crash", f"p{i}", backoff=FAST) for i, url in enumerate(urls)
        ]
        setup = [
            {await asyncio.wait_for(s.set(f"items/p{i}", []), TIMEOUT)}
            for i, s in enumerate(sessions)
        ]
        writers = [
            asyncio.create_task(_pusher(s, f"p{i}", count, window=8))
            for i, s in enumerate(sessions)
        ]
        # Kill A once the writers are well under way (bounded wait).
        await wait_until(
            lambda: min(len(s.get(f"items/p{i}", [])) for i, s in enumerate(sessions)) >= 60,
            20.0,
            "the writers to get going",
        )
        process_a.kill()  # SIGKILL, this process only
        await process_a.wait()
        killed_at = [len(s.get(f"items/p{i}", [])) for i, s in enumerate(sessions)]
        for session in sessions[0::2]:
            session._engine.url = url_b  # by hand: the client knows one URL
        results = await asyncio.wait_for(asyncio.gather(*writers), 30.0)
        head = max(max(r) for r in results)
        await wait_until(
            lambda: all(s.version >= head and s.pending == 0 for s in sessions),
            10.0,
            "every client at the head",
        )
        state = sessions[1].state
        assert all(s.state == state for s in sessions)
        for i in range(len(sessions)):
            assert state["items"][f"p{i}"] == list(range(count)), f"writer p{i}"
        stored = await stored_log(prefix, "crash")
        assert len(stored) == sessions[0].version == 4 + 4 * count
        check_log(stored, {s.client_id: results[i] | setup[i] for i, s in enumerate(sessions)})
        for session in sessions[1::2]:
            assert session.metrics["successes"] == 1, "a client of the surviving relay dropped"
        for session in sessions[0::2]:
            assert session.metrics["successes"] == 2
        print(f"killed A with the writers at {killed_at} of {count}")
        for session in sessions:
            await session.close()
