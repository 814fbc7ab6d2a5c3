"""kill -9 at random points: every acked op survives, versions never skip or repeat.

The relay runs as a real subprocess (the ``livewidgets relay`` CLI) on one SQLite
file. One client pushes its ``client_seq`` onto a list, with up to WINDOW ops in
flight, and the relay is SIGKILLed after a random (seeded) delay. After each
restart the client rejoins, settles the ops the snapshot says were processed
(``Snapshot.last_seq``) and resends the rest in order. Because it is the only
writer and the relay applies each op exactly once, in order, op ``seq`` must get
version ``seq`` and the state must be ``[1, 2, ..., version]`` at every join.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from livewidgets.protocol import AckMessage, Broadcast, PushOp, Snapshot

from .helpers import TIMEOUT, RawClient

ROUNDS = 24
WINDOW = 16
OPS_PER_ROUND = 200
SNAPSHOT_EVERY = 50


@dataclass
class Progress:
    # Highest client_seq sent so far, and the highest acked (acks come in order).
    sent: int = 0
    acked: int = 0


@contextlib.asynccontextmanager
async def relay_process(
    db: Path, log: Path, query: str = ""
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Run ``python -m livewidgets.cli relay`` on ``db``; yield it and its URL; kill it after."""
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "livewidgets.cli", "relay", "--port", "0"],
            *["--store", f"sqlite:///{db}{query}", "--snapshot-every", str(SNAPSHOT_EVERY)],
            *["--log-level", "warning"],
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 4 * TIMEOUT)
        match = re.search(rb"listening on (ws://\S+)", line)
        assert match, f"unexpected first line {line!r}; see {log}"
        yield process, match[1].decode()
    finally:
        if process.returncode is None:
            process.kill()  # this process only, by its pid
        await process.wait()


async def check_join(url: str, progress: Progress) -> int:
    """Join from scratch and check the state is exactly [1..version]; return version."""
    async with await RawClient.connect(url) as observer:
        before, joined = await observer.join("r")
        assert isinstance(before[0], Snapshot)
        assert before[0].state.get("log", []) == list(range(1, joined.version + 1))
        assert progress.acked <= joined.version <= progress.sent
        # A delta join a few versions back sees the same entries, consecutively.
        since = max(0, joined.version - 20)
    async with await RawClient.connect(url) as observer:
        before, delta = await observer.join("r", since=since, epoch=joined.epoch)
        if delta.mode == "delta":
            got = [(m.version, m.ops[0]) for m in before if isinstance(m, Broadcast)]
            assert got == [
                (v, PushOp("log", value=v)) for v in range(since + 1, joined.version + 1)
            ]
    return joined.version


async def resume(url: str, progress: Progress, version: int) -> RawClient:
    """Reconnect as the writer; the snapshot's last_seq settles the ops already applied."""
    client = await RawClient.connect(url, client_id="writer")
    before, joined = await client.join("r")
    assert isinstance(before[0], Snapshot) and joined.version == version
    # Ops whose ack was lost in the crash are in the state already (check_join saw it):
    # they are settled, not resent (docs/protocol.md "Dedupe").
    assert before[0].last_seq == version
    progress.acked = version
    return client


async def pump(client: RawClient, progress: Progress, base: int, new_ops: int) -> None:
    """Resend unacked ops in order, then new ones, WINDOW at most in flight, until all acked."""
    target = progress.sent + new_ops
    acked = asyncio.Event()

    async def read_acks() -> None:
        while progress.acked < target:
            message = await client.recv()
            if isinstance(message, AckMessage):
                # Exactly once, in order, no gaps: the only writer's seq s is version s.
                assert (message.client_seq, message.version) == (progress.acked + 1,) * 2
                progress.acked = message.client_seq
                acked.set()

    async def send_ops() -> None:
        for seq in range(progress.acked + 1, target + 1):
            while seq - progress.acked > WINDOW:
                acked.clear()
                await acked.wait()
            await client.op("r", seq, PushOp("log", value=seq), base=base)
            progress.sent = max(progress.sent, seq)

    reader, writer = asyncio.create_task(read_acks()), asyncio.create_task(send_ops())
    try:
        await reader  # returns once all are acked; raises when the relay dies
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


@pytest.mark.parametrize("query", ["", "?synchronous=normal"], ids=["full", "normal"])
async def test_acked_ops_survive_kill_9(tmp_path: Path, query: str) -> None:
    """SIGKILL at 24 random points: acked ops survive, versions continue without gaps.

    Also with ``synchronous=normal`` (no fsync per commit): a killed process loses
    nothing committed; only a machine crash could.
    """
    rng = random.Random(20261126)
    db, log = tmp_path / "rooms.db", tmp_path / "relay.log"
    progress = Progress()
    started = time.perf_counter()
    kills = 0
    for _ in range(ROUNDS):
        async with relay_process(db, log, query) as (process, url):
            version = await check_join(url, progress)
            client = await resume(url, progress, version)
            work = asyncio.create_task(pump(client, progress, version, OPS_PER_ROUND))
            # The kill point: random, seeded. Not a wait-then-assert.
            await asyncio.wait({work}, timeout=rng.uniform(0.005, 0.25))
            process.send_signal(signal.SIGKILL)
            kills += 1
            with contextlib.suppress(ConnectionClosed):
                await work
            await client.ws.wait_closed()
    async with relay_process(db, log, query) as (process, url):
        version = await check_join(url, progress)
        client = await resume(url, progress, version)
        await pump(client, progress, version, 0)  # resend what is still unacked
        assert await check_join(url, progress) == progress.sent == progress.acked
        await client.close()
        process.send_signal(signal.SIGTERM)  # graceful stop exits cleanly
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    elapsed = time.perf_counter() - started
    print(f"{kills} kills, {progress.acked} ops acked and recovered in {elapsed:.1f}s")
    assert kills >= 20 and progress.acked > ROUNDS


async def test_kill_9_mid_commit_leaves_no_member_on_a_lost_version(tmp_path: Path) -> None:
    """The reader hears of op 2 while the relay commits it (the file is write-locked by
    this test, so the commit waits), then the relay is SIGKILLed: op 2 was never stored.
    After the restart another client's op takes version 2. The reader resumes from its
    version 2 in the old epoch and must get a snapshot with the new version 2, not an
    empty delta; the writer's resend then applies once."""
    db, log = tmp_path / "rooms.db", tmp_path / "relay.log"
    async with relay_process(db, log) as (process, url):
        writer = await RawClient.connect(url, client_id="writer")
        reader = await RawClient.connect(url, client_id="reader")
        _, joined = await writer.join("r")
        await reader.join("r")
        await writer.op("r", 1, PushOp("log", value="durable"))
        assert (await writer.ack()).version == 1
        assert (await reader.recv_until(Broadcast))[1].version == 1
        lock = sqlite3.connect(db, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")  # the relay's next commit waits for this
            await writer.op("r", 2, PushOp("log", value="lost"), base=1)
            _, phantom = await reader.recv_until(Broadcast)
            assert (phantom.version, phantom.ops) == (2, [PushOp("log", value="lost")])
            process.send_signal(signal.SIGKILL)
            await process.wait()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
    async with relay_process(db, log) as (process, url):
        async with await RawClient.connect(url, client_id="carol") as carol:
            await carol.join("r")
            await carol.op("r", 1, PushOp("log", value="carol"), base=1)
            assert (await carol.ack()).version == 2
        async with await RawClient.connect(url, client_id="reader") as reader:
            before, rejoined = await reader.join("r", since=2, epoch=joined.epoch)
            assert before == [Snapshot("r", 2, {"log": ["durable", "carol"]})]
            assert rejoined.mode == "snapshot" and rejoined.epoch != joined.epoch
        async with await RawClient.connect(url, client_id="writer") as writer:
            _, resumed = await writer.join("r", since=1, epoch=joined.epoch)
            assert resumed.mode == "delta"  # version 1 was committed: shared by both epochs
            await writer.op("r", 2, PushOp("log", value="lost"), base=2)
            assert (await writer.ack()).version == 3
        async with await RawClient.connect(url) as observer:
            before, _ = await observer.join("r")
            assert before == [Snapshot("r", 3, {"log": ["durable", "carol", "lost"]})]
