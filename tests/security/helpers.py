"""Helpers for the security tests: tokens, a handshake that returns the relay's answer,
the "relay still serves a well-behaved client" check, and relay error-log capture.

Timeouts come from tests/relay/helpers.py (multiples of ``MS``, scaled by
``LIVEWIDGETS_TEST_TIMEOUT_FACTOR``); waits are on messages, never sleep-then-assert.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from livewidgets.auth import Role, issue_token
from livewidgets.protocol import (
    JSON_SUBPROTOCOL,
    PROTOCOL_VERSION,
    AckMessage,
    Hello,
    IncrementOp,
    PresenceUpdate,
    ServerMessage,
    Welcome,
)

from ..relay.helpers import TIMEOUT, RawClient

T = TypeVar("T")

# One secret for every relay of the suite (>= 32 bytes, as load_secret demands).
SECRET = secrets.token_bytes(32)

_probe_ids = itertools.count(1)


def token(
    room: str = "*",
    role: Role | str = Role.WRITE,
    *,
    user: str = "ada",
    ttl: float = 3600.0,
    secret: bytes = SECRET,
) -> str:
    """A token signed with the suite's secret."""
    return issue_token(secret, user=user, room=room, role=role, ttl=ttl)


async def hello(
    url: str,
    token: str | None = None,
    *,
    client_id: str | None = None,
    user: str = "",
    subprotocol: str = JSON_SUBPROTOCOL,
    **options: Any,
) -> tuple[RawClient, ServerMessage]:
    """Connect, send hello (with ``token``), return the client and the relay's answer."""
    client = await RawClient.connect(url, subprotocol=subprotocol, hello=False, **options)
    await client.send(Hello(PROTOCOL_VERSION, client_id=client_id, user=user, token=token))
    answer = await client.recv()
    if isinstance(answer, Welcome):
        client.welcome = answer
    return client, answer


async def admitted(url: str, token: str | None = None, **options: Any) -> RawClient:
    """A client the relay welcomed (fails the test otherwise)."""
    client, answer = await hello(url, token, **options)
    assert isinstance(answer, Welcome), f"expected welcome, got {answer!r}"
    return client


async def ack_for(client: RawClient, room: str, seq: int, timeout: float = TIMEOUT) -> AckMessage:
    """Read (skipping broadcasts and presence) until the ack of ``seq`` in ``room``."""

    async def wait() -> AckMessage:
        while True:
            message = await client.recv()
            if isinstance(message, AckMessage) and (message.room, message.client_seq) == (
                room,
                seq,
            ):
                return message
            assert getattr(message, "code", None) is None, f"refused: {message!r}"

    return await asyncio.wait_for(wait(), timeout)


async def reply(client: RawClient, kind: type[T], timeout: float = TIMEOUT) -> T:
    """The next message that is not a presence update (members come and go), a ``kind``."""

    async def wait() -> ServerMessage:
        while True:
            message = await client.recv()
            if not isinstance(message, PresenceUpdate):
                return message

    message = await asyncio.wait_for(wait(), timeout)
    assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
    return message


async def assert_serves(
    url: str, token: str | None = None, room: str = "probe", **opts: Any
) -> int:
    """A fresh, well-behaved client can connect, join, write and get its ack; the version."""
    async with await admitted(url, token, **opts) as client:
        _, joined = await client.join(room)
        seq = next(_probe_ids)
        await client.op(room, seq, IncrementOp("probes"), base=joined.version)
        ack = await ack_for(client, room, seq)
        return ack.version


class ErrorLog(logging.Handler):
    """Collects ERROR (and worse) records of one logger, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self._lock_records = threading.Lock()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)

    def messages(self) -> list[str]:
        with self._lock_records:
            return [self.format(r) for r in self.records]


@contextmanager
def error_log(name: str = "livewidgets.relay") -> Iterator[ErrorLog]:
    """Capture ERROR records of logger ``name`` for the duration of the block."""
    handler = ErrorLog()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def report(config: Any, line: str) -> None:
    """Print ``line`` to the terminal even while pytest captures output (fuzz counts)."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        print(f"\n{line}", flush=True)


class LoopThread:
    """An asyncio loop on its own thread, for hypothesis tests (which are synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="security-loop")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10 * TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()
