"""One client connection's I/O: the read loop, the bounded send queue, the heartbeat.

What a frame means and what to do about it is decided by the connection's
:class:`~.session.RelayProtocol` (sans-I/O: hello, policy, strikes, expiry); the
connection reads frames, feeds them to it and carries out the actions it returns.

Reading: each frame is decoded and validated by the codec, then handed to the
protocol. Room work becomes commands for the room's runner; the reader stops
reading (TCP backpressure) while too many of its commands are still unprocessed
(reader credits: taken in :meth:`Connection._put`, returned only through
:meth:`Connection.command_done`), so a flooding client cannot grow a room's inbox;
and it stops reading until the deadline of a ``PauseReading`` (the sender is over
its advertised rate: docs/protocol.md "Pacing"), so a flooder is held to the rate
without losing or refusing an op.

Writing: a frame for a connection whose socket keeps up is written straight into
the transport (livewidgets.wsio, as ``websockets.broadcast`` does). Otherwise it
goes into a bounded queue drained by a writer task that exists only while the
queue is not empty, so a slow client never blocks a room. When the queue
overflows, the connection is closed with 4009 (SLOW_CONSUMER); the client
reconnects and resumes by delta (docs/protocol.md "Close codes").

Memory: an idle connection holds no task, event or queue of its own, only a timer
for its next ping (``__slots__``, class-level dispatch): thousands of idle members
cost little more than their sockets (docs/benchmarks.md).

Errors: a frame that fails validation is answered with ``error`` (code, message,
ref) and the connection stays open, until ``max_invalid_frames`` such frames (or
messages for rooms not joined) within ``session.INVALID_WINDOW`` seconds (close
4012; relay.session decides). Error replies are sent at once, so they may overtake acks of
earlier ops, which wait for their commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State as WsState

from .. import wsio
from ..protocol.codec import Codec, FrameError
from ..protocol.codes import CloseCode
from ..protocol.messages import (
    Auth,
    Batch,
    ClientMessage,
    Error,
    Hello,
    History,
    HistoryReply,
    OpMessage,
    Revoked,
    ServerMessage,
    Welcome,
)
from ..rules import Actor
from .fanout import Framed
from .framing import data_frame
from .hub import Command, JoinRoom, LeaveRoom, Submit
from .metrics import RelayMetrics
from .policy import Denied, Policy, Principal, RemoteAuthority
from .revocation import Revocation, RevokeKind
from .runner import RoomRunner
from .security import bearer_token
from .session import (
    Action,
    Close,
    ExpireAt,
    Kick,
    PauseReading,
    Put,
    ReadHistory,
    Register,
    RelayProtocol,
    Reply,
    Revoke,
    State,
)

__all__ = ["Connection", "ConnectionConfig", "RelayContext"]


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

    def client_address(self, ws: ServerConnection) -> str | None:
        """The client's IP address (through trusted proxies), for per-address limits."""
        ...

    async def revoke(self, revocation: Revocation) -> int:
        """Record and enforce a revocation (relay.revoker); connections closed here."""
        ...

    async def read_history(self, query: History, actor: Actor) -> HistoryReply:
        """The answer to a ``history`` query (docs/history.md)."""
        ...


@dataclass(frozen=True, slots=True)
class _Close:
    """Queue sentinel: close once everything queued before it is sent."""

    code: int
    reason: str


class Connection:
    """Serves one WebSocket from open to close; :meth:`run` is the whole lifetime.

    The I/O shell around a :class:`~.session.RelayProtocol`: reads frames, carries
    out the protocol's actions (:meth:`_execute`), owns the send queue and writer,
    the reader credits and the heartbeat.
    """

    __slots__ = (
        "_actor",
        "_actor_of",
        "_busy",
        "_bytes",
        "_capacity",
        "_close_code",
        "_closer",
        "_expiry",
        "_inflight",
        "_pause",
        "_ping_task",
        "_ping_timer",
        "_queue",
        "_queued_bytes",
        "_runners",
        "_writer",
        "client_id",
        "codec",
        "config",
        "connection_id",
        "protocol",
        "relay",
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
        # Copied from the protocol's Register action (plain attributes: the hub reads
        # them per message): the stable client id and the user name; empty before hello.
        self.client_id = ""
        self.user = ""
        # Who the room rules see (user, role, groups), and the principal it is of: a
        # renewed token may change the role.
        self._actor = Actor("", "read")
        self._actor_of: object = None
        # Every decision about this connection's frames.
        self.protocol = RelayProtocol(
            self,
            relay.policy,
            connection_id=self.connection_id,
            welcome=relay.welcome,
            max_invalid_frames=self.config.max_invalid_frames,
            request=ws.request,
        )
        # The runners of the rooms this connection put commands to, by name.
        self._runners: dict[str, RoomRunner[Connection]] = {}
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
        # Reader credits: commands queued to rooms and not yet processed; a reader
        # waiting for them to drop below max_inflight waits on this future.
        self._inflight = 0
        self._capacity: asyncio.Future[None] | None = None
        # Pacing (PauseReading): the reader sleeps on this future until the deadline
        # or a close, so a slowed sender's next frames stay in TCP buffers.
        self._pause: asyncio.Future[None] | None = None
        # The writer task is between taking a frame and having sent it.
        self._busy = False
        # Token expiry (ExpireAt).
        self._expiry: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.connection_id[:8]} client={self.client_id or '?'}>"

    @property
    def rooms(self) -> Collection[str]:
        """The rooms joined (or being joined) on this connection."""
        return self.protocol.rooms

    @property
    def principal(self) -> Principal | None:
        """Who the policy said this connection is (None before hello)."""
        return self.protocol.principal

    def revoke(self, denied: Denied) -> None:
        """Its token or link was revoked: an error, then close 4006 (relay.revoker)."""
        for action in self.protocol.revoked(denied):  # a reply and a close: nothing to await
            _ACTIONS[type(action)](self, action)

    # --- lifetime ------------------------------------------------------------------

    async def run(self) -> None:
        """Handshake, then serve frames until the connection closes; always cleans up."""
        protocol = self.protocol
        await self._execute(protocol.connect(self.relay.client_address(self.ws)))
        if protocol.state is not State.AWAITING_HELLO:
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

    async def _handshake(self) -> bool:
        """Wait for the first frame; True if it was a hello the protocol accepted."""
        try:
            frame = await _recv_within(self.ws, self.config.hello_timeout)
        except asyncio.TimeoutError:
            await self._execute(self.protocol.hello_timeout())
            return False
        self._bytes.received += len(frame)
        await self._on_frame(frame)
        _forget_handshake_headers(self.ws)
        return self.protocol.state is State.OPEN

    async def _read_loop(self) -> None:
        async for frame in self.ws:
            self._bytes.received += len(frame)
            if self.relay.stopping or self._close_code is not None:
                continue  # closing: unacked ops are resent after the client reconnects
            await self._on_frame(frame)

    async def _cleanup(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._put_now(self.protocol.connection_lost())
        self.relay.unregister(self)
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self._ping_task is not None:
            self._ping_task.cancel()
        await self._finish_writer()

    def _expire(self) -> None:
        self._expiry = None
        for action in self.protocol.expire():  # a reply and a close: nothing to await
            _ACTIONS[type(action)](self, action)

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
            self._put_now(self.protocol.release_rooms())
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
        if writer is not None and (self._close_code is None or self.ws.state is WsState.CLOSED):
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
        protocol = self.protocol
        try:
            message = self.codec.decode(frame)
        except FrameError as exc:
            await self._execute(protocol.invalid(exc, time.monotonic()))
            return
        try:
            if type(message) is OpMessage or type(message) is Batch:
                # The hot path: one Submit for a joined room, no action list.
                result = protocol.submit(message, time.monotonic())
                if type(result) is Submit:
                    await self._put(self._runners[message.room], result)
                    return
                assert isinstance(result, list)
                actions = result
            else:
                if type(message) is Hello or type(message) is Auth:
                    await self._verify_token(message)
                actions = protocol.receive(message, time.monotonic())
            await self._execute(actions)
        except Exception as exc:
            self.relay.logger.error(
                "%r: handling %s failed: %s", self, _tag(message), exc, exc_info=exc
            )
            await self._execute(protocol.failed(message))

    async def _verify_token(self, message: Hello | Auth) -> None:
        """A policy that asks a remote authority (the Hub) learns what the token is
        worth first; its synchronous hook then decides (relay.policy.RemoteAuthority)."""
        policy = self.relay.policy
        if not isinstance(policy, RemoteAuthority):
            return
        token = message.token or bearer_token(self.ws.request)
        if token:
            await policy.verify(token)

    # --- carrying out the protocol's actions -----------------------------------------

    async def _execute(self, actions: list[Action]) -> None:
        """Carry out ``actions`` in order (only a Put that waits for credits awaits)."""
        for action in actions:
            if isinstance(action, Put):
                await self._do_put(action)
            elif isinstance(action, Revoke):
                await self._do_revoke(action)
            elif isinstance(action, PauseReading):
                await self._pause_reading(action.until)
            elif isinstance(action, ReadHistory):
                self._reply(await self.relay.read_history(action.query, self.actor))
            else:
                _ACTIONS[type(action)](self, action)

    async def _pause_reading(self, until: float) -> None:
        """Backpressure: read nothing more before ``until`` (or a close). The sender's
        frames wait in its socket and TCP buffers; none is refused or dropped."""
        delay = until - time.monotonic()
        if delay <= 0 or self._close_code is not None:
            return
        loop = asyncio.get_running_loop()
        pause = self._pause = loop.create_future()
        timer = loop.call_later(delay, _wake, pause)
        try:
            await pause
        finally:
            timer.cancel()
            self._pause = None

    def _do_reply(self, action: Reply) -> None:
        self._reply(action.message)

    def _do_close(self, action: Close) -> None:
        self.close(action.code, action.reason, flush=action.flush)

    @property
    def actor(self) -> Actor:
        """Who this connection is to room rules (relay.hub.Member)."""
        principal = self.protocol.principal
        if principal is not self._actor_of:
            claims = principal.claims if principal is not None else {}
            self._actor = Actor.from_claims(self.user, claims)
            self._actor_of = principal
        return self._actor

    def _do_register(self, action: Register) -> None:
        self.client_id, self.user = action.client_id, action.user
        self.relay.register(self)

    def _do_expire_at(self, action: ExpireAt) -> None:
        """End the session when its credentials expire (docs/security.md, close 4004);
        a renewal replaces the deadline set before."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if action.deadline is None:
            return
        delay = max(0.0, action.deadline - time.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _do_kick(self, action: Kick) -> None:
        if not self.relay.kick(action.client_id, action.room):
            self._reply(action.absent)

    async def _do_revoke(self, action: Revoke) -> None:
        """Record the revocation (the admin waits for the store, as for an ack), then
        answer; a store failure recorded nothing and says so."""
        from .store import StoreError

        revocation = action.revocation
        try:
            closed = await self.relay.revoke(revocation)
        except StoreError as exc:
            self.relay.logger.error("%r: recording a revocation failed: %s", self, exc)
            detail = "the revocation could not be recorded; see the relay log"
            self._reply(Error("internal", detail, "admin", action.room))
            return
        link = revocation.id if revocation.kind is RevokeKind.LINK else None
        token_id = revocation.id if revocation.kind is RevokeKind.TOKEN else None
        self._reply(Revoked(action.room, link, token_id, closed))

    async def _do_put(self, action: Put[Connection]) -> None:
        runner = self._runner(action.room, action.command)
        if runner is None:
            return
        if action.wait:
            await self._put(runner, action.command)
        else:
            self._inflight += 1
            runner.put(action.command)

    def _put_now(self, actions: list[Action]) -> None:
        """Carry out the Puts that do not wait (leaving on close: see release_rooms)."""
        for action in actions:
            assert isinstance(action, Put) and not action.wait
            runner = self._runner(action.room, action.command)
            if runner is not None:
                self._inflight += 1
                runner.put(action.command)

    def _runner(self, room: str, command: Command[Connection]) -> RoomRunner[Connection] | None:
        """The runner for ``command``: loaded by a join, forgotten by a leave."""
        if isinstance(command, JoinRoom):
            runner = self._runners[room] = self.relay.room(room)
            return runner
        if isinstance(command, LeaveRoom):
            return self._runners.pop(room, None)
        return self._runners.get(room)

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
        """One of this connection's room commands was processed (or dropped by a failed
        room): its reader credit comes back. The only place credits are returned; the
        runner and the pipeline call it once per command put, whatever became of it."""
        self._inflight -= 1
        if self._inflight < self.config.max_inflight:
            self._release_reader()

    def _release_reader(self) -> None:
        capacity, self._capacity = self._capacity, None
        if capacity is not None and not capacity.done():
            capacity.set_result(None)

    def _reply(self, message: ServerMessage) -> None:
        if type(message) is Error:
            self.relay.metrics.errors.labels(message.code).inc()
        self.send(message)

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
        if not self._queue and not self._busy:
            if len(frames) == 1:  # the usual case: a presence flush, a broadcast
                payload, wire = frames[0]
                if wsio.write_frames(self.ws, wire):
                    self._bytes.sent += len(payload)
                    return
            elif wsio.write_frames(self.ws, [wire for _, wire in frames]):
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

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """Close with ``code``: after the queued frames (flush) or at once, dropping them."""
        if self._close_code is not None:
            return
        self._close_code = code
        self.protocol.close()
        self._release_reader()  # a reader waiting for room capacity must not wait forever
        if self._pause is not None:
            _wake(self._pause)  # nor one paused by pacing
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


# Action type -> how the connection carries it out (Put is awaited: see _execute).
_ACTIONS: dict[type, Callable[[Connection, Any], None]] = {
    Reply: Connection._do_reply,
    Close: Connection._do_close,
    Register: Connection._do_register,
    ExpireAt: Connection._do_expire_at,
    Kick: Connection._do_kick,
}


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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


def _tag(message: Any) -> str:
    return str(message.__struct_config__.tag)
