"""Test helpers: a raw wire-protocol client and deadline-bounded waits.

Timeouts are multiples of ``MS``, scaled by ``LIVEWIDGETS_TEST_TIMEOUT_FACTOR`` on
slow machines; waits are on messages or conditions, never sleep-then-assert.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from livewidgets.protocol import (
    JSON_SUBPROTOCOL,
    PROTOCOL_VERSION,
    AckMessage,
    Batch,
    Broadcast,
    Hello,
    Join,
    Joined,
    Op,
    OpMessage,
    ServerMessage,
    Snapshot,
    Welcome,
    client_codec,
)

MS = 0.001 * float(os.environ.get("LIVEWIDGETS_TEST_TIMEOUT_FACTOR", "1"))
TIMEOUT = 5000 * MS

T = TypeVar("T")


def snapshot_in(messages: list[ServerMessage]) -> Snapshot:
    """The catch-up's snapshot (it must be the first message)."""
    assert messages and isinstance(messages[0], Snapshot), messages[:1]
    return messages[0]


def broadcasts_in(messages: list[ServerMessage]) -> list[Broadcast]:
    """The catch-up's messages, which must all be broadcasts."""
    assert all(isinstance(m, Broadcast) for m in messages), messages
    return [m for m in messages if isinstance(m, Broadcast)]


class RawClient:
    """A raw ``websockets`` client that speaks the livewidgets wire protocol."""

    # Every client connected during the current test (tests/relay/conftest.py aborts
    # leftovers, so a failing test does not leak sockets into the next one).
    opened: ClassVar[list[RawClient]] = []

    def __init__(self, ws: ClientConnection, subprotocol: str) -> None:
        self.ws = ws
        self.codec = client_codec(subprotocol)
        # room -> the epoch of this connection's last join (joined.epoch).
        self.epochs: dict[str, str] = {}
        self.welcome: Welcome | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        subprotocol: str = JSON_SUBPROTOCOL,
        client_id: str | None = None,
        user: str = "",
        hello: bool = True,
        **options: Any,
    ) -> RawClient:
        """Connect; unless ``hello=False``, send hello and wait for welcome."""
        ws = await connect(url, subprotocols=[Subprotocol(subprotocol)], **options)
        client = cls(ws, subprotocol)
        cls.opened.append(client)
        if hello:
            await client.send(Hello(PROTOCOL_VERSION, client_id=client_id, user=user))
            client.welcome = await client.expect(Welcome)
        return client

    @property
    def client_id(self) -> str:
        assert self.welcome is not None
        return self.welcome.client_id

    async def send(self, message: Any) -> None:
        await self.ws.send(self.codec.frame(message))

    async def recv(self, timeout: float = TIMEOUT) -> ServerMessage:
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        return self.codec.decode(frame)

    async def expect(self, kind: type[T], timeout: float = TIMEOUT) -> T:
        """The next message, which must be a ``kind``."""
        message = await self.recv(timeout)
        assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
        return message

    async def recv_until(
        self, kind: type[T], timeout: float = TIMEOUT
    ) -> tuple[list[ServerMessage], T]:
        """Messages up to the first ``kind`` (bounded by ``timeout`` overall)."""
        return await asyncio.wait_for(self._recv_until(kind), timeout)

    async def _recv_until(self, kind: type[T]) -> tuple[list[ServerMessage], T]:
        before: list[ServerMessage] = []
        while True:
            message = await self.recv()
            if isinstance(message, kind):
                return before, message
            before.append(message)

    async def join(
        self,
        room: str,
        since: int | None = None,
        presence: dict[str, Any] | None = None,
        epoch: str | None = None,
    ) -> tuple[list[ServerMessage], Joined]:
        """Join; resuming (``since``) in ``epoch``, else the epoch a join on this
        connection last got for the room."""
        if since is not None and epoch is None:
            epoch = self.epochs.get(room)
        await self.send(Join(room, since, presence, epoch))
        before, joined = await self.recv_until(Joined)
        self.epochs[room] = joined.epoch
        return before, joined

    async def op(self, room: str, seq: int, op: Op, base: int = 0) -> None:
        await self.send(OpMessage(room, seq, base, op))

    async def batch(self, room: str, seq: int, ops: list[Op], base: int = 0) -> None:
        await self.send(Batch(room, seq, base, ops))

    async def ack(self, timeout: float = TIMEOUT) -> AckMessage:
        return await self.expect(AckMessage, timeout)

    async def closed(self, timeout: float = TIMEOUT) -> int | None:
        """Read (and drop) messages until the connection closes; the close code."""
        return await asyncio.wait_for(self._drain(), timeout)

    async def _drain(self) -> int | None:
        try:
            while True:
                await self.ws.recv()
        except ConnectionClosed:
            return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    """Whether the machine's Redis answers on 127.0.0.1:6379 (tests skip if not)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False
