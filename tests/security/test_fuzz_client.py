"""Fuzzing the client against a hostile relay: the decoder raises only FrameError, the
engine's frame handler never raises, and an engine talking to a fake relay that mixes
garbage and hostile values into an honest stream neither crashes nor stops syncing.

``LIVEWIDGETS_FUZZ_EXAMPLES`` scales the number of examples (default 300; the fake-relay
test runs a fifth of that, each example being a full round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from livewidgets.client import AsyncSession, connect_async
from livewidgets.client.engine import Engine, EngineConfig
from livewidgets.protocol import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    AckMessage,
    Batch,
    Broadcast,
    Error,
    FrameError,
    Hello,
    Join,
    Joined,
    OpMessage,
    PresenceUpdate,
    Reject,
    ServerMessage,
    SetOp,
    Snapshot,
    Welcome,
    client_codec,
    server_codec,
)
from livewidgets.state.ops import Op, OpError, apply_ops, check_value

from ..client.helpers import FAST, TIMEOUT
from .helpers import LoopThread, error_log, report
from .strategies import (
    MARKUP,
    ROOM,
    frames,
    hostile_presence,
    legal_ops,
    server_messages,
)

EXAMPLES = int(os.environ.get("LIVEWIDGETS_FUZZ_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
ENCODINGS = [JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL]
# Versions fit int64 on the wire (protocol.messages.Version).
LAST_VERSION = 2**63 - 1
_tried: dict[str, int] = {}


def tried(what: str, n: int = 1, unit: str = "inputs") -> None:
    key = f"{what} ({unit})"
    _tried[key] = _tried.get(key, 0) + n


@pytest.fixture(scope="module", autouse=True)
def _print_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end of the module, print how many inputs each client fuzz tried."""
    yield
    for what, n in sorted(_tried.items()):
        report(request.config, f"[fuzz] client, {what}: {n}")


def assert_plain(message: ServerMessage) -> None:
    """Values a decoded relay message hands the application are plain JSON data: str keys,
    finite numbers, no bytes or extension types."""
    if isinstance(message, Snapshot):
        assert_plain_value(message.state)
    if isinstance(message, PresenceUpdate):
        assert_plain_value(message.states)
    elif isinstance(message, Joined):
        assert_plain_value(message.presence)
    elif isinstance(message, Reject):
        assert_plain_value(message.current)
    elif isinstance(message, Broadcast):
        for op in message.ops:
            assert_plain_value(getattr(op, "value", None))


def assert_plain_value(value: Any) -> None:
    stack = [value]
    while stack:  # iterative: depth limits are the codec's business, not this check's
        item = stack.pop()
        if isinstance(item, float):
            assert math.isfinite(item), item
        elif isinstance(item, dict):
            assert all(isinstance(k, str) for k in item), item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            assert item is None or isinstance(item, (str, bool, int)), type(item)


# --- (1) the decoder --------------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", ENCODINGS)
def test_decoder_raises_only_frame_error(subprotocol: str) -> None:
    """client_codec().decode on hostile relay frames: a message of plain data, or FrameError."""
    codec = client_codec(subprotocol)

    @SETTINGS
    @given(frame=frames(subprotocol, server_messages()))
    def example(frame: bytes | str) -> None:
        tried(f"decoder {subprotocol}")
        try:
            message = codec.decode(frame)
        except FrameError as exc:
            assert exc.code in {
                "bad_frame",
                "unknown_type",
                "invalid_message",
                "invalid_op",
                "invalid_path",
            }
            return
        assert isinstance(
            message,
            (Welcome, Snapshot, Broadcast, Joined, AckMessage, Reject, PresenceUpdate, Error),
        )
        assert_plain(message)

    example()


def test_joined_presence_is_validated() -> None:
    """A joined whose presence holds NaN, bytes or an Ext type is refused (FrameError)."""
    frame = msgspec.msgpack.encode(
        {
            "type": "joined",
            "room": ROOM,
            "version": 0,
            "mode": "snapshot",
            "presence": {
                "p": {"name": float("nan"), "b": b"\x00", "e": msgspec.msgpack.Ext(1, b"")}
            },
        }
    )
    with pytest.raises(FrameError):
        client_codec(MSGPACK_SUBPROTOCOL).decode(frame)


# --- (2) the engine's frame handler -------------------------------------------------------


def bare_engine(subprotocol: str) -> Engine:
    """An engine with no loop and no socket, its frame handler fed by hand."""
    engine = Engine("ws://127.0.0.1:9", ROOM, config=EngineConfig(rng=random.Random(0)))
    engine._codec = client_codec(subprotocol)
    return engine


def prime(engine: Engine, tick: int) -> None:
    """Rejoin if a hostile frame made the engine resync, then deliver one honest
    broadcast at the next version: it must apply."""
    codec = engine._codec
    assert codec is not None
    if not engine.core.joined or engine.core.version >= LAST_VERSION:
        # A hostile frame made the engine resync, or took it to the last version there
        # is (no honest broadcast can follow that one): resync, as a relay would.
        with engine._lock:
            engine.core.connection_opened()
        at = engine.core.version if engine.core.version < LAST_VERSION else 0
        engine._on_frame(codec.frame(Snapshot(ROOM, at, engine.core.confirmed)))
        engine._on_frame(codec.frame(Joined(ROOM, at, "snapshot")))
        assert engine.core.joined
    version = engine.core.version + 1
    engine._on_frame(
        codec.frame(Broadcast(ROOM, version, "peer", tick, [SetOp("tick", value=tick)]))
    )
    assert engine.core.version == version and engine.core.visible.get("tick") == tick


@pytest.mark.parametrize("subprotocol", ENCODINGS)
def test_engine_frame_handler_never_raises(subprotocol: str) -> None:
    """Engine._on_frame never raises on hostile frames and applies the next honest broadcast."""
    engine = bare_engine(subprotocol)
    ticks = itertools.count(1)
    prime(engine, next(ticks))

    @SETTINGS
    @given(
        batch=st.lists(frames(subprotocol, server_messages()), min_size=1, max_size=8),
        write=st.booleans(),
    )
    def example(batch: list[bytes | str], write: bool) -> None:
        if write:  # a pending op, so acks, rejects and own broadcasts have something to hit
            engine.submit([SetOp(f"mine/{engine.core.next_seq}", value=True)])
        for frame in batch:
            tried(f"engine handler {subprotocol}")
            engine._on_frame(frame)
        assert isinstance(engine.core.visible, dict)
        prime(engine, next(ticks))

    with error_log("livewidgets.client") as errors:
        example()
    assert errors.messages() == []


# --- (3) an engine against a fake, hostile relay ----------------------------------------


@dataclass
class FakeRelay:
    """An honest sequencer for one room that also sends whatever frames it is told to.

    It answers hello, serves every join with a snapshot, applies and acks ops (with
    dedupe), and sequences its own "peer" broadcasts. :meth:`inject` sends raw frames;
    :meth:`publish` sequences legal but hostile content (ops, presence, errors).
    """

    subprotocol: str
    state: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    # client_id -> (highest client_seq, its version or 0 if refused)
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    queue: asyncio.Queue[bytes | str] | None = None
    connections: int = 0
    peer_seq: int = 0

    def __post_init__(self) -> None:
        self.codec = server_codec(self.subprotocol)

    def send(self, message: Any) -> None:
        if self.queue is not None:
            self.queue.put_nowait(self.codec.frame(message))

    async def handler(self, ws: ServerConnection) -> None:
        hello = self.codec.decode(await ws.recv())
        assert isinstance(hello, Hello) and hello.client_id
        client_id = hello.client_id
        self.queue = queue = asyncio.Queue[bytes | str]()
        self.connections += 1
        self.send(Welcome(1, client_id, f"c{self.connections}", "fake-relay/0", {}))
        writer = asyncio.create_task(self._write(ws, queue))
        try:
            async for frame in ws:
                try:
                    message = self.codec.decode(frame)
                except FrameError:
                    continue
                if isinstance(message, Join):
                    last = self.seen.get(client_id, (0, 0))[0]
                    self.send(Snapshot(ROOM, self.version, self.state, last))
                    self.send(Joined(ROOM, self.version, "snapshot"))
                elif isinstance(message, (OpMessage, Batch)):
                    self._submit(client_id, message)
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            if self.queue is queue:
                self.queue = None

    async def _write(self, ws: ServerConnection, queue: asyncio.Queue[bytes | str]) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send(await queue.get())

    def _submit(self, client_id: str, message: OpMessage | Batch) -> None:
        ops = [message.op] if isinstance(message, OpMessage) else list(message.ops)
        seq = message.client_seq
        last_seq, last_version = self.seen.get(client_id, (0, 0))
        if seq <= last_seq:
            self.send(AckMessage(ROOM, seq, last_version or self.version, duplicate=True))
            return
        try:
            self.state = apply_ops(self.state, ops)
        except OpError as exc:
            self.seen[client_id] = (seq, 0)
            self.send(Reject(ROOM, seq, exc.code, str(exc), exc.path))
            return
        self.version += 1
        self.seen[client_id] = (seq, self.version)
        self.send(AckMessage(ROOM, seq, self.version))

    def publish(self, ops: list[Any], origin: str = "peer") -> bool:
        """Sequence a peer's ops (False if they do not apply to the state)."""
        try:
            self.state = apply_ops(self.state, ops)
        except OpError:
            return False
        self.version += 1
        self.peer_seq += 1
        self.send(Broadcast(ROOM, self.version, origin, self.peer_seq, ops))
        return True

    def inject(self, frame: bytes | str) -> bool:
        """Send a raw frame, unless it would decode into a lie about this room's order
        (a hostile relay can always lie; the point here is that garbage never stops an
        engine that is otherwise told the truth)."""
        try:
            message = client_codec(self.subprotocol).decode(frame)
        except FrameError:
            message = None
        sequencing = (Broadcast, AckMessage, Reject, Snapshot, Joined)
        if isinstance(message, sequencing) and message.room == ROOM:
            return False
        if self.queue is not None:
            self.queue.put_nowait(frame)
        return True


@dataclass
class Script:
    """What the fake relay does in one example."""

    raw: list[bytes | str]
    ops: list[Any]
    presence: list[dict[str, Any] | None]
    errors: list[str]
    # Something that makes the engine drop the connection and resync (or nothing).
    disrupt: str | None


def scripts(subprotocol: str) -> st.SearchStrategy[Script]:
    return st.builds(
        Script,
        raw=st.lists(frames(subprotocol, server_messages()), max_size=6),
        ops=st.lists(legal_ops(), max_size=3),
        presence=st.lists(st.one_of(st.none(), hostile_presence()), max_size=3),
        errors=st.lists(st.sampled_from(MARKUP), max_size=2),
        disrupt=st.sampled_from([None, None, None, "not_joined", "gap", "oversize"]),
    )


@contextlib.asynccontextmanager
async def fake_relay_session(
    subprotocol: str,
) -> AsyncIterator[tuple[FakeRelay, AsyncSession]]:
    fake = FakeRelay(subprotocol)
    # No pings either way, and a seeded backoff: hypothesis checks that nothing touches the
    # global ``random`` while it draws (websockets' ping payloads would).
    async with serve(
        fake.handler, "127.0.0.1", 0, subprotocols=[Subprotocol(subprotocol)], ping_interval=None
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        options: dict[str, Any] = {
            **FAST,
            "heartbeat_interval": 3600.0,
            "rng": random.Random(0),
            "binary": subprotocol == MSGPACK_SUBPROTOCOL,
            "timeout": TIMEOUT,
        }
        session = await connect_async(f"ws://127.0.0.1:{port}", ROOM, user="kernel", **options)
        try:
            yield fake, session
        finally:
            await session.close()


@pytest.mark.parametrize("subprotocol", ENCODINGS)
def test_engine_survives_a_hostile_relay(subprotocol: str) -> None:
    """An engine fed garbage and hostile values by a fake relay stays connected and in sync."""
    thread = LoopThread()
    context = fake_relay_session(subprotocol)
    fake, session = thread.run(context.__aenter__())
    checkpoints = itertools.count(1)

    async def play(script: Script) -> None:
        for frame in script.raw:
            if fake.inject(frame):
                tried(f"fake relay {subprotocol}")
        for raw_op in script.ops:
            try:
                op = msgspec.convert(raw_op, Op)
                check_value(getattr(op, "value", None))
            except (msgspec.ValidationError, OpError):
                continue
            fake.publish([op])
            tried(f"fake relay {subprotocol}")
        for n, state in enumerate(script.presence):
            fake.send(PresenceUpdate(ROOM, {f"peer-{n}": state}))
            tried(f"fake relay {subprotocol}")
        for message in script.errors:
            fake.send(Error("internal", message))
            tried(f"fake relay {subprotocol}")
        if script.disrupt == "not_joined":  # the relay "forgot" us: the engine rejoins
            fake.send(Error("not_joined", "join first", "op", ROOM))
        elif script.disrupt == "gap":  # a version from the future: the engine resyncs
            fake.send(Broadcast(ROOM, fake.version + 5, "peer", 0, [SetOp("lie", value=1)]))
        elif script.disrupt == "oversize":  # over the engine's max_size: it closes (1009)
            fake.send(PresenceUpdate(ROOM, {"peer-big": {"name": "x" * (1 << 20)}}))
        tried(f"fake relay {subprotocol}", script.disrupt is not None)
        mark = next(checkpoints)
        assert fake.publish([SetOp("checkpoint", value=mark)])
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while session.get("checkpoint") != mark:
            assert asyncio.get_running_loop().time() < deadline, "checkpoint never applied"
            await asyncio.sleep(0.002)
        await asyncio.wait_for(session.set("kernel", mark), TIMEOUT)  # acked by the relay
        assert session.connection_state == "connected"
        engine = session._engine
        assert engine._task is not None and not engine._task.done()

    @settings(
        max_examples=max(10, EXAMPLES // 5),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(script=scripts(subprotocol))
    def example(script: Script) -> None:
        thread.run(play(script))

    try:
        with error_log("livewidgets.client") as errors:
            example()
            # Markup in a peer's presence is kept as the exact string: data, never markup.
            name = MARKUP[0] + MARKUP[1]

            arrived: asyncio.Future[dict[str, Any]] = thread.loop.create_future()

            def on_presence(event: dict[str, Any]) -> None:
                if event["client_id"] == "peer-x" and not arrived.done():
                    arrived.set_result(event["after"])

            session.on("presence", on_presence)  # called on the loop thread
            fake.send(PresenceUpdate(ROOM, {"peer-x": {"name": name, "user": MARKUP[2]}}))
            peer = thread.run(asyncio.wait_for(arrived, TIMEOUT))
            assert peer == {"name": name, "user": MARKUP[2]}
        assert errors.messages() == []
        tried(f"fake relay {subprotocol}", fake.connections, "connections")
    finally:
        thread.run(context.__aexit__(None, None, None))
        thread.close()
