"""Pacing end to end: a write loop with no pauses against a relay with the default
policy (what ``livewidgets relay`` runs) gets every write applied once, none refused,
at the advertised rate (docs/protocol.md "Pacing")."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from livewidgets.client import Session
from livewidgets.relay import Relay
from livewidgets.relay.security import Limits, SecurityPolicy

from .helpers import TIMEOUT


class PolicyRelay:
    """A relay with SecurityPolicy(None, limits) (the CLI's loopback default) on its own
    event loop thread, so the blocking facade can write from the test's thread."""

    def __init__(self, limits: Limits) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-relay")
        self._thread.start()
        self.relay = Relay(host="127.0.0.1", port=0, policy=SecurityPolicy(None, limits=limits))
        asyncio.run_coroutine_threadsafe(self.relay.start(), self.loop).result(TIMEOUT)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.relay.stop(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture
def policy_relay() -> Iterator[Callable[[Limits], PolicyRelay]]:
    relays: list[PolicyRelay] = []

    def start(limits: Limits) -> PolicyRelay:
        relays.append(PolicyRelay(limits))
        return relays[-1]

    yield start
    for relay in relays:
        relay.stop()


def write_loop(session: Session, increments: int, pushes: int) -> list[Any]:
    """The issue's loop: writes with no pauses, acks not looked at while writing."""
    acks = [session.increment("n") for _ in range(increments)]
    acks += [session.push("log", i) for i in range(pushes)]
    return acks


def check_applied(acks: list[Any], reader: Session, increments: int, pushes: int) -> None:
    """Every write acked (none refused) and applied exactly once."""
    assert all(ack.done() and ack.exception() is None for ack in acks)
    assert sorted(ack.version for ack in acks) == list(range(1, len(acks) + 1))
    reader.flush(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while reader.get("n") != increments or len(reader.get("log", [])) != pushes:
        assert time.monotonic() < deadline, (reader.get("n"), len(reader.get("log", [])))
        time.sleep(0.01)  # polling a condition with a deadline
    assert reader.get("log", []) == list(range(pushes))


def test_default_relay_paces_the_issue_loop(
    policy_relay: Callable[[Limits], PolicyRelay], sync_connect: Callable[..., Session]
) -> None:
    """800 increments with no pauses against the default limits: all applied, in about
    (800 - burst) / rate seconds (200/s, burst 400: ~2 s), none rate_limited."""
    limits = Limits()
    relay = policy_relay(limits).relay
    session = sync_connect(relay.url)
    assert session._engine.limits["ops_per_second"] == limits.ops_per_second
    started = time.monotonic()
    acks = write_loop(session, 800, 0)
    session.flush(30 * TIMEOUT)
    elapsed = time.monotonic() - started
    floor = (800 - limits.ops_burst) / limits.ops_per_second
    print(f"\n800 increments: {elapsed:.2f} s (count/rate after the burst: {floor:.2f} s)")
    assert elapsed >= 0.8 * floor
    check_applied(acks, sync_connect(relay.url), 800, 0)


def test_write_loop_without_pauses_loses_nothing(
    policy_relay: Callable[[Limits], PolicyRelay], sync_connect: Callable[..., Session]
) -> None:
    """5,000 increments and 2,000 pushes with no pauses: every write applied exactly once,
    none refused, no exception; paced to the advertised rate (a test-only 1,000/s, burst
    2,000, so CI spends ~5 s rather than 33 s at the default 200/s)."""
    limits = Limits(
        ops_per_second=1000, ops_burst=2000, user_ops_per_second=1000, user_ops_burst=2000
    )
    relay = policy_relay(limits).relay
    session = sync_connect(relay.url)
    started = time.monotonic()
    acks = write_loop(session, 5000, 2000)
    session.flush(60 * TIMEOUT)
    elapsed = time.monotonic() - started
    floor = (7000 - limits.ops_burst) / limits.ops_per_second
    print(f"\n7000 writes: {elapsed:.2f} s (count/rate after the burst: {floor:.2f} s)")
    assert elapsed >= 0.8 * floor
    check_applied(acks, sync_connect(relay.url), 5000, 2000)


def test_a_full_outbox_blocks_the_writer_until_there_is_room(
    policy_relay: Callable[[Limits], PolicyRelay], sync_connect: Callable[..., Session]
) -> None:
    """With max_pending writes waiting, a write from a thread waits for room (up to
    queue_full_timeout) instead of raising QueueFull: the loop just runs at the rate."""
    limits = Limits(ops_per_second=500, ops_burst=50, user_ops_per_second=500)
    relay = policy_relay(limits).relay
    session = sync_connect(relay.url, max_pending=20)
    acks = write_loop(session, 300, 0)
    session.flush(10 * TIMEOUT)
    check_applied(acks, sync_connect(relay.url), 300, 0)


class CliRelay:
    """``livewidgets relay`` as a subprocess with no flags but a fixed port and an SQLite
    file: the default policy and limits, killable with SIGKILL and restartable on the
    same address so the client's reconnect finds it again."""

    def __init__(self, db: Path, log: Path) -> None:
        self.db, self.log = db, log
        self.port = _free_port_outside_ephemeral_range()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [
                    *[sys.executable, "-m", "livewidgets.cli", "relay", "--port", str(self.port)],
                    *["--store", f"sqlite:///{self.db}", "--log-level", "warning"],
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "listening on ws://..." once it serves
        log = self.log.read_text(errors="replace")[-2000:]
        assert b"listening on" in line, f"unexpected first line {line!r}; log:\n{log}"

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)  # this process only, by its pid
        self.process.wait(TIMEOUT)
        self._close_pipe()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


def _free_port_outside_ephemeral_range() -> int:
    """A free port below the kernel's ephemeral range: while the relay is down, the
    client's reconnect attempts bind ephemeral local ports, and one of them could take
    the relay's port if it lay in that range."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(100):  # bounded: a free one is found at once on an idle range
        port = rng.randrange(max(1024, low - 10_000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def test_write_loop_at_default_rate_survives_kill_9(
    tmp_path: Path, sync_connect: Callable[..., Session]
) -> None:
    """The issue's loop (5,000 increments, 2,000 pushes, no pauses) against a
    ``livewidgets relay`` with default settings on SQLite, SIGKILLed three times in the
    middle: every write applied exactly once, none refused, no exception in the loop,
    and the loop paced to the default 200/s (about 33 s)."""
    limits = Limits()
    relay = CliRelay(tmp_path / "room.db", tmp_path / "relay.log")
    relay.start()
    try:
        session = sync_connect(relay.url)
        assert session._engine.limits["ops_per_second"] == limits.ops_per_second
        outcome: dict[str, Any] = {}

        def run_loop() -> None:
            try:
                outcome["acks"] = write_loop(session, 5000, 2000)
            except BaseException as exc:  # reported by the assertion below
                outcome["error"] = exc

        started = time.monotonic()
        writer = threading.Thread(target=run_loop, name="write-loop")
        writer.start()
        kills = 0
        for kill_at in (6.0, 14.0, 22.0):  # seconds into the ~33 s loop
            time.sleep(max(0.0, started + kill_at - time.monotonic()))  # the kill point
            relay.kill()
            kills += 1
            relay.start()
        writer.join(120)
        assert not writer.is_alive() and "error" not in outcome, outcome.get("error")
        session.flush(120)
        elapsed = time.monotonic() - started
        floor = (7000 - limits.ops_burst) / limits.ops_per_second
        print(f"\n7000 writes, {kills} kills: {elapsed:.2f} s (count/rate: {floor:.2f} s)")
        assert kills == 3 and elapsed >= 0.8 * floor
        check_applied(outcome["acks"], sync_connect(relay.url), 5000, 2000)
    finally:
        relay.stop()
