"""One client connection: hello handshake, frame dispatch, bounded send queue.

Reading: each frame is decoded and validated by the codec, then dispatched on its
message type (:attr:`Connection._handlers`). Room work becomes commands for the
room's runner; the reader stops reading (TCP backpressure) while too many of its
commands are still unprocessed, so a flooding client cannot grow a room's inbox.

Writing: a frame for a connection whose socket keeps up is written straight into
the transport (as ``websockets.broadcast`` does). Otherwise it goes into a bounded
queue drained by a writer task that exists only while the queue is not empty, so a
slow client never blocks a room. When the queue overflows, the connection is closed
with 4009 (SLOW_CONSUMER); the client reconnects and resumes by delta
(docs/protocol.md "Close codes").

Memory: an idle connection holds no task, event or queue of its own, only a timer
for its next ping (``__slots__``, class-level dispatch): thousands of idle members
cost little more than their sockets (docs/benchmarks.md).

Errors: a frame that fails validation is answered with ``error`` (code, message,
ref) and the connection stays open, until ``max_invalid_frames`` such frames in a
row (close 4012). Error replies are sent at once, so they may overtake acks of
earlier ops, which wait for their commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from ..protocol.codec import Codec, FrameError
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.messages import (
    PROTOCOL_VERSION,
    Admin,
    Batch,
    ClientMessage,
    Error,
    Hello,
    Join,
    Leave,
    OpMessage,
    Presence,
    ServerMessage,
    Welcome,
)
from ..state.ops import Op
from .fanout import Framed
from .framing import data_frame
from .hub import Command, JoinRoom, LeaveRoom, ResetRoom, SetPresence, Submit
from .metrics import RelayMetrics
from .policy import Denied, Policy, Principal
from .room import Rejected
from .runner import RoomRunner

__all__ = ["Connection", "ConnectionConfig", "RelayContext"]

_ANONYMOUS = Principal(user="")


# Policy denials of an op that are transient: answered with an error, not a reject.
# Invalid frames are counted over this many seconds (Connection._strike).
INVALID_WINDOW = 10.0

# Below this many bytes waiting in the socket, frames are written at once (no task hop).
_DIRECT_WRITE_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Per-connection limits (see Relay for the meaning of each)."""

    hello_timeout: float
    send_queue_limit: int
    send_queue_bytes: int
    max_invalid_frames: int
    max_inflight: int
    close_timeout: float
    # Heartbeat (None: off). The relay pings itself rather than through websockets'
    # keepalive so that a dead peer is released at once, not after close_timeout.
    ping_interval: float | None = None
    ping_timeout: float | None = None


class RelayContext(Protocol):
    """What a connection needs from its relay."""

    @property
    def connection_config(self) -> ConnectionConfig: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def metrics(self) -> RelayMetrics: ...

    @property
    def logger(self) -> logging.Logger: ...

    @property
    def stopping(self) -> bool: ...

    def welcome(self, client_id: str, connection_id: str, nonce: str | None = None) -> Welcome: ...

    def room(self, name: str) -> RoomRunner[Connection]:
        """The running room called ``name`` (loaded on first use)."""
        ...

    def register(self, connection: Connection) -> None:
        """Record the connection under its client_id, replacing an older one."""
        ...

    def unregister(self, connection: Connection) -> None: ...

    def kick(self, client_id: str, room: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Close:
    """Queue sentinel: close once everything queued before it is sent."""

    code: int
    reason: str


class Connection:
    """Serves one WebSocket from hello to close; :meth:`run` is the whole lifetime."""

    __slots__ = (
        "_busy",
        "_bytes",
        "_capacity",
        "_close_code",
        "_closer",
        "_expiry",
        "_inflight",
        "_ping_task",
        "_ping_timer",
        "_queue",
        "_queued_bytes",
        "_strikes",
        "_writer",
        "client_id",
        "codec",
        "config",
        "connection_id",
        "principal",
        "relay",
        "rooms",
        "user",
        "ws",
    )

    def __init__(
        self, ws: ServerConnection, relay: RelayContext, codec: Codec[ClientMessage]
    ) -> None:
        self.ws = ws
        self.relay = relay
        self.codec = codec
        self.config = relay.connection_config
        # The relay's byte counters, counted per frame (a direct reference: hot path).
        self._bytes = relay.metrics.bytes
        # 128 random bits, as a UUID4 has, at a quarter of uuid4()'s cost.
        self.connection_id = os.urandom(16).hex()
        # Set by hello (empty before): the stable client id and the user name.
        self.client_id = ""
        self.user = ""
        self.principal = _ANONYMOUS
        # Rooms joined (or being joined), by name.
        self.rooms: dict[str, RoomRunner[Connection]] = {}
        # Frames waiting for the writer task (None: nothing ever waited), their size.
        self._queue: deque[bytes | _Close] | None = None
        self._queued_bytes = 0
        # Close code chosen by the relay (None while open); later closes are ignored.
        self._close_code: int | None = None
        # Drains _queue; exists only while it is not empty.
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        # Heartbeat: the timer of the next ping, or the ping waiting for its pong.
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_task: asyncio.Task[None] | None = None
        # Commands queued to rooms and not yet processed; a reader waiting for them to
        # drop below max_inflight waits on this future.
        self._inflight = 0
        self._capacity: asyncio.Future[None] | None = None
        # Times of recent invalid frames / not_joined messages (see _strike).
        self._strikes: deque[float] | None = None
        # The writer task is between taking a frame and having sent it.
        self._busy = False
        self._expiry: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.connection_id[:8]} client={self.client_id or '?'}>"

    # --- lifetime ------------------------------------------------------------------

    async def run(self) -> None:
        """Handshake, then serve frames until the connection closes; always cleans up."""
        address = _address(self.ws)
        denied = self.relay.policy.on_connect(address)
        if denied is not None:
            self._deny(denied, None, close=CloseCode.POLICY_VIOLATION)
            await self._finish_writer()
            return
        self._schedule_ping()
        try:
            if await self._handshake():
                await self._read_loop()
        except ConnectionClosed:
            pass  # the peer went away or we closed it: cleanup below is all there is to do
        except Exception as exc:
            self.relay.logger.error("%r failed: %s", self, exc, exc_info=exc)
            self.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            await self._cleanup()
            principal = self.principal if self.principal is not _ANONYMOUS else None
            self.relay.policy.on_close(principal, address)

    async def _handshake(self) -> bool:
        """Wait for a valid hello and answer welcome; False if the connection is refused."""
        try:
            frame = await _recv_within(self.ws, self.config.hello_timeout)
        except asyncio.TimeoutError:
            return self._refuse(
                ErrorCode.HELLO_REQUIRED, "no hello received in time", CloseCode.HELLO_REQUIRED
            )
        self._bytes.received += len(frame)
        try:
            hello = self.codec.decode(frame)
        except FrameError as exc:
            detail = f"the first frame must be a valid hello: {exc.message}"
            return self._refuse(ErrorCode.HELLO_REQUIRED, detail, CloseCode.HELLO_REQUIRED, exc.ref)
        if not isinstance(hello, Hello):
            detail = f"the first frame must be hello, not {_tag(hello)}"
            return self._refuse(
                ErrorCode.HELLO_REQUIRED, detail, CloseCode.HELLO_REQUIRED, _tag(hello)
            )
        if hello.protocol != PROTOCOL_VERSION:
            detail = (
                f"protocol {hello.protocol} is not supported; this relay speaks {PROTOCOL_VERSION}"
            )
            return self._refuse(
                ErrorCode.PROTOCOL_VERSION, detail, CloseCode.PROTOCOL_VERSION, "hello"
            )
        granted = self.relay.policy.on_hello(hello, self.ws.request)
        _forget_handshake_headers(self.ws)
        if isinstance(granted, Denied):
            close = granted.close or CloseCode.AUTH_INVALID
            return self._refuse(granted.code, granted.message, close, "hello")
        self.principal, self.user = granted, granted.user
        # An authenticated user's client ids live in their own namespace, so nobody can
        # take over another user's id (dedupe, presence, replacing its connection).
        scope = granted.claims.get("client_scope")
        chosen = hello.client_id or uuid.uuid4().hex
        self.client_id = f"{scope}.{chosen}" if scope else chosen
        self.relay.register(self)
        self.send(self.relay.welcome(self.client_id, self.connection_id, hello.nonce))
        self._schedule_expiry(self.relay.policy.expires_at(granted))
        return True

    def _schedule_expiry(self, expires_at: float | None) -> None:
        """End the session when its credentials expire (docs/security.md, close 4004)."""
        if expires_at is None:
            return
        delay = max(0.0, expires_at - time.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._error(ErrorCode.AUTH_EXPIRED, "the token expired; reconnect with a fresh one")
        self.close(CloseCode.AUTH_EXPIRED, "token expired")

    def _refuse(self, code: ErrorCode, message: str, close: int, ref: str | None = None) -> bool:
        self._error(code, message, ref)
        self.close(close, code.value)
        return False

    async def _read_loop(self) -> None:
        async for frame in self.ws:
            self._bytes.received += len(frame)
            if self.relay.stopping or self._close_code is not None:
                continue  # closing: unacked ops are resent after the client reconnects
            await self._on_frame(frame)

    async def _cleanup(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._release_rooms()
        self.relay.unregister(self)
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self._ping_task is not None:
            self._ping_task.cancel()
        await self._finish_writer()

    def _release_rooms(self) -> None:
        """Leave every room (members are told the presence is gone)."""
        for runner in self.rooms.values():
            self._inflight += 1
            runner.put(LeaveRoom(self))
        self.rooms.clear()

    def _schedule_ping(self) -> None:
        """Heartbeat: ping every ``ping_interval`` (a timer, not a task, while idle)."""
        interval = self.config.ping_interval
        if interval is not None and self._close_code is None:
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(interval, self._start_ping)

    def _start_ping(self) -> None:
        self._ping_timer = None
        if self._close_code is None:
            self._ping_task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        """One ping; a peer silent for ``ping_timeout`` is dead.

        Its rooms and presence are released at once (docs/protocol.md "Heartbeats"),
        then it is closed with 1011; the closing handshake, which a dead peer never
        completes, no longer delays the others by close_timeout.
        """
        try:
            await asyncio.wait_for(self._ping(), self.config.ping_timeout)
        except asyncio.TimeoutError:
            self.relay.logger.info("%r: no pong in time; dropping it", self)
            self._release_rooms()
            self.close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout", flush=False)
            return
        except ConnectionClosed:
            return  # the reader sees it too and cleans up
        finally:
            self._ping_task = None
        self._schedule_ping()

    async def _ping(self) -> None:
        pong = await self.ws.ping()
        await pong

    async def _finish_writer(self) -> None:
        """Let a requested close flush (bounded by close_timeout), else stop the writer."""
        writer = self._writer
        if writer is not None and (self._close_code is None or self.ws.state is State.CLOSED):
            writer.cancel()
        tasks = [t for t in (writer, self._closer) if t is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.config.close_timeout + 1)
        for task in pending:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, ConnectionClosed):
                continue  # stopped on purpose, or the peer was already gone
            except Exception as exc:
                self.relay.logger.error("%r: writer failed: %s", self, exc, exc_info=exc)

    # --- reading -------------------------------------------------------------------

    async def _on_frame(self, frame: str | bytes) -> None:
        try:
            message = self.codec.decode(frame)
        except FrameError as exc:
            self._invalid(exc)
            return
        try:
            await _HANDLERS[type(message)](self, message)
        except Exception as exc:
            self.relay.logger.error(
                "%r: handling %s failed: %s", self, _tag(message), exc, exc_info=exc
            )
            self._error(ErrorCode.INTERNAL, "internal error; see the relay log", _tag(message))

    def _invalid(self, exc: FrameError) -> None:
        self._error(exc.code, exc.message, exc.ref)
        self._strike()

    def _strike(self) -> None:
        """Count a frame the client should never have sent; too many within
        INVALID_WINDOW seconds (valid frames in between or not) close with 4012."""
        now = time.monotonic()
        if self._strikes is None:
            self._strikes = deque()
        strikes = self._strikes
        strikes.append(now)
        while strikes and strikes[0] < now - INVALID_WINDOW:
            strikes.popleft()
        if len(strikes) >= self.config.max_invalid_frames:
            self.close(CloseCode.TOO_MANY_ERRORS, "too many invalid frames")

    async def _on_hello_again(self, message: Hello) -> None:
        self._error(ErrorCode.HELLO_REQUIRED, "hello was already received", "hello")

    async def _on_join(self, message: Join) -> None:
        denied = self.relay.policy.on_join(self.principal, message.room)
        if denied is not None:
            self._deny(denied, "join", message.room)
            return
        if message.room in self.rooms:
            # docs/protocol.md "join": to resync, a client reconnects and joins again.
            detail = f"room {message.room!r} is already joined on this connection"
            self._error(ErrorCode.INVALID_MESSAGE, detail, "join", message.room)
            return
        runner = self.rooms[message.room] = self.relay.room(message.room)
        await self._put(runner, JoinRoom(self, message.since, message.presence, message.epoch))

    async def _on_leave(self, message: Leave) -> None:
        runner = self.rooms.pop(message.room, None)
        if runner is None:
            self._not_joined(message.room, "leave")
            return
        self.relay.policy.on_leave(self.principal, message.room)
        await self._put(runner, LeaveRoom(self))

    async def _on_op(self, message: OpMessage) -> None:
        ops = (message.op,)
        await self._submit(message.room, message.client_seq, message.base_version, ops, "op")

    async def _on_batch(self, message: Batch) -> None:
        ops = tuple(message.ops)
        await self._submit(message.room, message.client_seq, message.base_version, ops, "batch")

    async def _submit(self, room: str, seq: int, base: int, ops: tuple[Op, ...], ref: str) -> None:
        runner = self.rooms.get(room)
        if runner is None:
            self._not_joined(room, ref)
            return
        denied = self.relay.policy.on_write(self.principal, room, ops, time.monotonic())
        if denied is None:
            await self._put(runner, Submit(self, seq, base, ops))
            return
        # A refusal is final (the client rolls the op back and is told why), and goes
        # through the room so it consumes client_seq in order: a resend of it can never
        # be mistaken for an applied op.
        refused = Rejected(denied.code, denied.message)
        await self._put(runner, Submit(self, seq, base, ops, refused=refused))
        if denied.close is not None:
            # A flooder gets no more replies: close now, dropping what is queued for it.
            self.close(denied.close, denied.code.value, flush=False)

    async def _on_presence(self, message: Presence) -> None:
        runner = self.rooms.get(message.room)
        if runner is None:
            self._not_joined(message.room, "presence")
            return
        denied = self.relay.policy.on_presence(self.principal, message.room, time.monotonic())
        if denied is not None:
            self._deny(denied, "presence", message.room)
            return
        await self._put(runner, SetPresence(self, message.state))

    async def _on_admin(self, message: Admin) -> None:
        runner = self.rooms.get(message.room)
        if runner is None:
            self._not_joined(message.room, "admin")
            return
        denied = self.relay.policy.on_admin(self.principal, message.room)
        if denied is not None:
            self._deny(denied, "admin", message.room)
        elif message.action == "reset":
            await self._put(runner, ResetRoom(self))
        elif message.client_id is None:
            self._error(ErrorCode.INVALID_MESSAGE, "kick needs a client_id", "admin", message.room)
        elif not self.relay.kick(message.client_id, message.room):
            detail = f"no client {message.client_id!r} in room {message.room!r}"
            self._error(ErrorCode.INVALID_MESSAGE, detail, "admin", message.room)

    async def _put(self, runner: RoomRunner[Connection], command: Command[Connection]) -> None:
        """Queue a room command, first waiting while too many are unprocessed."""
        while self._inflight >= self.config.max_inflight and self._close_code is None:
            self._capacity = asyncio.get_running_loop().create_future()
            await self._capacity
        if self._close_code is not None:
            return  # closing: the client resends what was not acked
        self._inflight += 1
        runner.put(command)

    def command_done(self) -> None:
        self._inflight -= 1
        if self._inflight < self.config.max_inflight:
            self._release_reader()

    def _release_reader(self) -> None:
        capacity, self._capacity = self._capacity, None
        if capacity is not None and not capacity.done():
            capacity.set_result(None)

    def _not_joined(self, room: str, ref: str) -> None:
        self._error(ErrorCode.NOT_JOINED, f"join room {room!r} first", ref, room)
        self._strike()

    def _deny(
        self, denied: Denied, ref: str | None, room: str | None = None, *, close: int | None = None
    ) -> None:
        """Answer a policy denial with an error; close if it says so (or ``close``)."""
        self._error(denied.code, denied.message, ref, room)
        code = denied.close if denied.close is not None else close
        if code is not None:
            self.close(code, denied.code.value)

    def _error(
        self, code: ErrorCode, message: str, ref: str | None = None, room: str | None = None
    ) -> None:
        self.relay.metrics.errors.labels(code.value).inc()
        self.send(Error(code.value, message, ref, room))

    # --- writing -------------------------------------------------------------------

    def send(self, message: ServerMessage) -> None:
        """Encode and queue a message for this connection only."""
        data = self.codec.encode(message)
        self.enqueue_frames([(data, data_frame(data, binary=self.codec.binary))])

    def enqueue_frames(self, frames: list[Framed]) -> None:
        """Messages for this connection, in order: with nothing queued and a socket that
        keeps up, all of them in one write of their prebuilt frames (as
        ``websockets.broadcast`` would, without building a frame per receiver); else
        through the bounded queue."""
        if self._close_code is not None:
            return
        if not self._queue and not self._busy and self._writable():
            if len(frames) == 1:  # the usual case: a presence flush, a broadcast
                payload, wire = frames[0]
                self.ws.transport.write(wire)
                self._bytes.sent += len(payload)
                return
            self.ws.transport.write(b"".join([wire for _, wire in frames]))
            self._bytes.sent += sum([len(payload) for payload, _ in frames])
            return
        for payload, _ in frames:
            self._queue_up(payload)

    def _queue_up(self, data: bytes) -> None:
        """Queue an encoded message for the writer task; on overflow close with 4009
        instead of buffering more."""
        if self._close_code is not None:
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif queue:
            full = len(queue) >= self.config.send_queue_limit
            too_big = self._queued_bytes + len(data) > self.config.send_queue_bytes
            # An empty queue always takes one message, however large (it fits the frame
            # limit); a longer one stays within both bounds.
            if full or too_big:
                self.relay.metrics.slow_consumer_closes.inc()
                reason = "send queue overflow; resume by delta"
                self.close(CloseCode.SLOW_CONSUMER, reason, flush=False)
                return
        queue.append(data)
        self._queued_bytes += len(data)
        self._start_writer()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop())

    def _writable(self) -> bool:
        """Frames may go straight into the socket: open, no fragmented message being
        sent, and no more than _DIRECT_WRITE_LIMIT bytes waiting in its buffer."""
        ws = self.ws
        return (
            ws.protocol.state is State.OPEN
            and ws.send_in_progress is None
            and ws.transport.get_write_buffer_size() <= _DIRECT_WRITE_LIMIT
        )

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """Close with ``code``: after the queued frames (flush) or at once, dropping them."""
        if self._close_code is not None:
            return
        self._close_code = code
        self._release_reader()  # a reader waiting for room capacity must not wait forever
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if flush:
            if self._queue is None:
                self._queue = deque()
            self._queue.append(_Close(code, reason))
            self._start_writer()
            return
        self._queue = None
        self._queued_bytes = 0
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.create_task(self.ws.close(code, reason))

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake (last resort)."""
        self.ws.transport.abort()

    async def _write_loop(self) -> None:
        """Send what is queued, in order, then end (the next backlog starts a new task)."""
        text = not self.codec.binary
        try:
            while self._queue:
                item = self._queue.popleft()
                if isinstance(item, _Close):
                    await self.ws.close(item.code, item.reason)
                    return
                self._queued_bytes -= len(item)
                self._busy = True
                try:
                    await self.ws.send(item, text=text)
                finally:
                    self._busy = False
                self._bytes.sent += len(item)
        except ConnectionClosed:
            pass  # the peer is gone: the reader sees it too and cleans up
        except Exception as exc:  # nobody awaits a finished writer: report it here
            self.relay.logger.error("%r: writer failed: %s", self, exc, exc_info=exc)
        finally:
            # No await between the last emptiness check and here: enqueue cannot slip
            # a frame in that nobody would send.
            self._writer = None


# Message type -> handler (class-level: no bound-method table per connection).
_HANDLERS: dict[type, Callable[[Connection, Any], Awaitable[None]]] = {
    Hello: Connection._on_hello_again,
    Join: Connection._on_join,
    Leave: Connection._on_leave,
    OpMessage: Connection._on_op,
    Batch: Connection._on_batch,
    Presence: Connection._on_presence,
    Admin: Connection._on_admin,
}


if sys.version_info >= (3, 11):

    async def _recv_within(ws: ServerConnection, seconds: float) -> str | bytes:
        """The next frame, or TimeoutError after ``seconds``. ``asyncio.timeout`` runs
        the receive in the caller's task; ``wait_for`` would wrap it in a task of its own,
        per connection: a measurable share of a join storm's handshakes."""
        async with asyncio.timeout(seconds):
            return await ws.recv()

else:  # pragma: no cover - Python 3.10 has no asyncio.timeout

    async def _recv_within(ws: ServerConnection, seconds: float) -> str | bytes:
        """The next frame, or TimeoutError after ``seconds``."""
        return await asyncio.wait_for(ws.recv(), seconds)


def _forget_handshake_headers(ws: ServerConnection) -> None:
    """Nothing reads the opening handshake's headers again: let them go (~2.5 KiB per
    connection for a bare client; browsers send cookies, often far more). Cleared in
    place: websockets' parser generator still holds the request object."""
    if ws.request is not None:
        ws.request.headers.clear()
    if ws.response is not None:
        ws.response.headers.clear()


def _address(ws: ServerConnection) -> str | None:
    """The peer's IP address (None if the socket does not say)."""
    try:
        peer = ws.remote_address
    except OSError:
        return None
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def _tag(message: Any) -> str:
    return str(message.__struct_config__.tag)
