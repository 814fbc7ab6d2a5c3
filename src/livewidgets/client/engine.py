"""The engine: one room's RoomSync driven over a reconnecting WebSocket (asyncio shell).

Thread model: the engine's I/O runs on one asyncio loop (the caller's, or a
dedicated thread's for the sync facade). Writes may come from any thread: they
take ``_lock``, update the sans-I/O core at once (the user sees the write
immediately) and hand frames to the loop. Relay messages are applied on the loop
thread under the same lock. Callbacks run outside the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import ssl as ssl_module
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import State
from websockets.typing import Subprotocol

from ..errors import AuthExpired, JoinRefused, SessionClosed
from ..protocol import (
    FINAL_CLOSE_CODES,
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    PROTOCOL_VERSION,
    Admin,
    Batch,
    CloseCode,
    Error,
    ErrorCode,
    FrameError,
    Hello,
    OpMessage,
    Presence,
    Reject,
    Welcome,
    client_codec,
)
from ..protocol.codec import Codec
from ..protocol.messages import ServerMessage
from .ack import Ack, rejection
from .backoff import Backoff
from .core import (
    Acked,
    Changed,
    Event,
    Failed,
    JoinedRoom,
    PresenceChanged,
    Priority,
    Resync,
    RoomSync,
    Send,
)
from .events import Emitter, Subscriptions, call_isolated
from .metrics import Metrics
from .presence import LocalPresence

__all__ = ["Engine", "EngineConfig"]

log = logging.getLogger("livewidgets.client")

# Join errors that will not go away by waiting: connect() raises them at once.
# Below this many bytes waiting in the socket, frames are written at once (no task hop).
_DIRECT_WRITE_LIMIT = 64 * 1024

_JOIN_REFUSALS = frozenset({"forbidden", "limit_exceeded", "auth_expired", "auth_invalid"})

STATES = ("disconnected", "connecting", "connected", "reconnecting", "closed")


@dataclass
class EngineConfig:
    """Tunables of one engine (all times in seconds)."""

    backoff: Backoff = field(default_factory=Backoff)
    # Give up after this many failed attempts in a row (None: never).
    max_attempts: int | None = None
    open_timeout: float = 10.0
    # Heartbeat: a ping every interval; no pong within timeout = dead peer.
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 5.0
    # Resend in-flight ops whose ack is this late (the relay deduplicates).
    ack_timeout: float = 10.0
    max_pending: int = 10_000
    # Largest frame accepted FROM the relay: snapshots of big rooms exceed the 1 MiB the
    # relay accepts from clients, so this is much larger (ops we send are checked
    # against the relay's own limit from its welcome).
    max_frame_size: int = 64 << 20
    binary: bool = False
    # Called when the relay ends the session because the token expired (close 4004) or
    # was refused: return a fresh token to reconnect with it, or None to give up.
    token_refresh: Callable[[], str | None] | None = None
    # Check that the relay is the one we mean: called with our hello.nonce and its
    # welcome.proof; False ends the connection (retried with backoff). Set for the
    # local relay, whose secret the client knows (jupyter.local_relay.credentials).
    verify_relay: Callable[[str, str | None], bool] | None = None
    # Presence: at most this many updates per second (the latest always goes out),
    # and "idle" after this many seconds without local activity.
    presence_rate: float = 20.0
    idle_after: float = 60.0
    # False: join as a listener (dashboards, bots, a projected view): receive everything,
    # stay off the others' presence lists until update_presence() is first called.
    announce: bool = True
    name: str | None = None
    color: str | None = None
    # TLS for wss:// URLs: an ssl.SSLContext, or ``cafile`` to trust a private CA.
    # Certificates are always verified unless you pass a context that does not.
    ssl: Any = None
    cafile: str | None = None
    rng: random.Random | None = None


class Engine:
    """Keeps one room in sync over an unreliable link. Use through a Session facade."""

    def __init__(
        self,
        url: str | Sequence[str],
        room: str,
        *,
        user: str = "",
        token: str | None = None,
        client_id: str | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        # Relays serving the same rooms (a shared store, docs/protocol.md "Scale-out"):
        # after a failed or lost connection the next attempt goes to the next one.
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("connect needs at least one relay URL")
        self.url = self.urls[0]
        self.user = user
        self.token = token
        self.config = config or EngineConfig()
        self.client_id = client_id or uuid.uuid4().hex
        # The id we ask for in every hello; the relay may answer with a scoped form of it
        # (authenticated users get their own namespace), which becomes ``client_id``.
        self._requested_id = self.client_id
        self.connection_id: str | None = None
        self.core = RoomSync(room, self.client_id, max_pending=self.config.max_pending)
        self.metrics = Metrics()
        self.events = Emitter()
        self.subscriptions = Subscriptions()
        self.state = "disconnected"
        self.attempt = 0
        self.presence = LocalPresence(
            user,
            name=self.config.name,
            color=self.config.color,
            idle_after=self.config.idle_after,
            rate=self.config.presence_rate,
        )
        self._presence_timer: asyncio.TimerHandle | None = None
        self._announced = self.config.announce
        self._change_listeners: list[Callable[..., Any]] = []
        # Guards ``core`` (writes come from user threads, relay messages from the loop).
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._codec: Codec[ServerMessage] | None = None
        self._outbox: deque[Any] = deque()
        self._outbox_ready: asyncio.Event | None = None
        # The connection the writer task serves (set once hello/welcome is done), and
        # whether that task is between taking a frame and having sent it.
        self._live: ClientConnection | None = None
        self._writing = False
        self._closing = False
        self._resync = False
        self._joined_once: asyncio.Future[None] | None = None
        self._idle = threading.Condition(self._lock)
        # Frames handed over from user threads, waiting for the loop (see _enqueue).
        self._handoff: deque[Any] = deque()
        self._handoff_lock = threading.Lock()
        self._handoff_scheduled = False
        # Whether the current connection got to "joined" (see _run's backoff).
        self._joined_here = False
        # The relay's limits from its welcome (max_frame_size, ...).
        self.limits: dict[str, int] = {}
        # The last error the relay sent outside any room (e.g. why it refused us).
        self.last_error: dict[str, Any] | None = None

    # --- lifecycle (loop thread) --------------------------------------------------

    def start(self) -> None:
        """Start the connection task on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._outbox_ready = asyncio.Event()
        self._joined_once = self._loop.create_future()
        self._task = self._loop.create_task(self._run(), name=f"livewidgets:{self.core.room}")

    async def wait_joined(self, timeout: float | None) -> None:
        assert self._joined_once is not None, "start() first"
        await asyncio.wait_for(asyncio.shield(self._joined_once), timeout)

    async def aclose(self) -> None:
        """Close normally (no reconnect); pending writes fail with SessionClosed."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close(CloseCode.NORMAL, "client closed")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._finish()

    def _finish(self) -> None:
        with self._lock:
            handles = [h for p in self.core.pending for h in p.handles]
        for ack, _ in handles:
            ack._fail(SessionClosed("the session closed before the relay acknowledged"))
        if self._joined_once is not None and not self._joined_once.done():
            self._joined_once.set_exception(SessionClosed("the session closed before joining"))
            self._joined_once.exception()  # mark retrieved: nobody may be waiting
        self._set_state("closed")
        with self._idle:
            self._idle.notify_all()

    def _set_state(self, state: str, **details: Any) -> None:
        if state == self.state and not details:
            return
        assert state in STATES, state
        self.state = state
        self.events.emit(state, {"state": state, **details})

    async def _run(self) -> None:
        delays = self._delays()
        failures = 0
        while not self._closing:
            self._set_state(
                "connecting" if self.metrics.successes == 0 else "reconnecting",
                attempt=self.attempt,
            )
            self._joined_here = False
            try:
                code = await self._connect_once()
            except Exception:  # a bug here must not end syncing: log it, reconnect
                log.exception("[livewidgets] connection failed unexpectedly")
                code = None
            # Only a connection that got as far as joining resets the backoff: a relay
            # that accepts TCP but never welcomes us is still a failed attempt.
            if self._joined_here:
                failures = 0
                delays = self._delays()
            else:
                failures += 1
            if self._closing or self._should_stop(code):
                break
            if self.config.max_attempts is not None and failures >= self.config.max_attempts:
                self.events.emit("reconnect_failed", {"attempts": failures})
                break
            self._next_url()
            delay = next(delays)
            self.attempt += 1
            self._set_state("reconnecting", attempt=self.attempt, delay=delay)
            await asyncio.sleep(delay)
        self._finish()

    def _next_url(self) -> None:
        """Fail over: the next attempt goes to the next relay of ``urls`` (round robin)."""
        if len(self.urls) > 1:
            index = self.urls.index(self.url) if self.url in self.urls else -1
            self.url = self.urls[(index + 1) % len(self.urls)]

    def _delays(self) -> Iterator[float]:
        return self.config.backoff.delays(self.config.rng)

    def _should_stop(self, code: int | None) -> bool:
        if self._resync:
            self._resync = False
            return False
        if code in (CloseCode.AUTH_EXPIRED, CloseCode.AUTH_INVALID):
            if self._refresh_token():
                return False
            if code == CloseCode.AUTH_EXPIRED:
                error = AuthExpired("the token expired; pass token_refresh= to renew it")
                self.events.emit("auth_expired", {"error": error})
        return code is not None and code in FINAL_CLOSE_CODES

    def _refresh_token(self) -> bool:
        """Ask the application for a new token; True if we got a different one."""
        refresh = self.config.token_refresh
        if refresh is None:
            return False
        try:
            token = refresh()
        except Exception:
            log.exception("[livewidgets] token_refresh failed")
            return False
        if not token or token == self.token:
            return False
        self.token = token
        return True

    async def _connect_once(self) -> int | None:
        """One connection's life. Returns its close code, or None if it never opened."""
        self.metrics.attempts += 1
        subprotocols = (
            [Subprotocol(MSGPACK_SUBPROTOCOL), Subprotocol(JSON_SUBPROTOCOL)]
            if self.config.binary
            else [Subprotocol(JSON_SUBPROTOCOL)]
        )
        try:
            ws = await connect(
                self.url,
                subprotocols=subprotocols,
                open_timeout=self.config.open_timeout,
                ping_interval=None,  # our own heartbeat measures RTT and detects dead peers
                max_size=self.config.max_frame_size,
                ssl=self._ssl_context(),
                user_agent_header=f"livewidgets/{_version()}",
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self.metrics.failures += 1
            self.events.emit("error", {"error": exc, "during": "connect"})
            if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
                return int(CloseCode.AUTH_INVALID)
            return None
        self._ws, self._codec = ws, client_codec(ws.subprotocol)
        # Frames queued for the previous connection are stale: the join goes first, and
        # pending ops are resent from the core after it.
        self._outbox.clear()
        with self._handoff_lock:
            self._handoff.clear()
        try:
            return await self._serve(ws)
        finally:
            self._ws = None
            self.metrics.went_down(time.monotonic())
            with self._lock:
                events = self._stage(self.core.connection_lost())
            self._dispatch(events)
            if self.state == "connected":
                self._set_state("disconnected", code=ws.close_code)

    def _ssl_context(self) -> Any:
        if self.config.ssl is not None or not self.url.startswith("wss:"):
            return self.config.ssl
        if self.config.cafile is not None:
            return ssl_module.create_default_context(cafile=self.config.cafile)
        return True  # websockets' default context: verified against the system's CAs

    async def _serve(self, ws: ClientConnection) -> int:
        assert self._codec is not None
        tasks: list[asyncio.Task[None]] = []
        try:
            if not await self._handshake(ws):
                # The relay refused us (bad token, version, ...): its close code decides.
                await asyncio.wait_for(ws.wait_closed(), self.config.open_timeout)
                return ws.close_code if ws.close_code is not None else 1006
            self.metrics.went_up(time.monotonic())
            tasks = [
                asyncio.create_task(self._writer(ws)),
                asyncio.create_task(self._heartbeat(ws)),
            ]
            self._live = ws
            async for frame in ws:
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        except (TimeoutError, FrameError) as exc:
            self.events.emit("error", {"error": exc, "during": "handshake"})
            await ws.close(CloseCode.PROTOCOL_ERROR, "bad handshake")
        finally:
            self._live = None
            for task in tasks:
                task.cancel()
        await ws.wait_closed()
        code = ws.close_code if ws.close_code is not None else 1006
        # Our own normal close is not the relay's verdict: only _closing stops us then.
        if ws.protocol.close_rcvd is None and code == 1000 and not self._closing:
            code = 1006
        return code

    async def _handshake(self, ws: ClientConnection) -> bool:
        """Hello → welcome, and the join; False if the relay answered with an error.

        The join follows the hello without waiting for the welcome (one round trip less
        per connect; the relay reads frames in order), unless the relay must first prove
        who it is: then nothing about the room goes out before the proof checks out.
        """
        assert self._codec is not None
        verify = self.config.verify_relay
        nonce = secrets.token_urlsafe(24) if verify is not None else None
        hello = Hello(
            protocol=PROTOCOL_VERSION,
            client_id=self._requested_id,
            user=self.user,
            token=self.token,
            nonce=nonce,
        )
        await self._send_frame(ws, self._codec.frame(hello))
        if verify is None:
            await self._send_join(ws)
        frame = await asyncio.wait_for(ws.recv(), self.config.open_timeout)
        self.metrics.received(frame)
        welcome = self._codec.decode(frame)
        if isinstance(welcome, Error):
            self.last_error = {"code": welcome.code, "message": welcome.message}
            self.events.emit("error", {**self.last_error, "during": "handshake"})
            return False
        if not isinstance(welcome, Welcome):
            raise FrameError(
                ErrorCode.INVALID_MESSAGE, f"expected welcome, got {type(welcome).__name__}"
            )
        if verify is not None and nonce is not None and not verify(nonce, welcome.proof):
            # Something else answers on the relay's address (say, a process that took
            # the port of a relay that died): share nothing with it.
            message = f"{self.url} did not prove it is the relay we expect; not syncing with it"
            log.error("[livewidgets] %s", message)
            self.last_error = {"code": "relay_unverified", "message": message}
            self.events.emit("error", {**self.last_error, "during": "handshake"})
            await ws.close(CloseCode.POLICY_VIOLATION, "relay not verified")
            return False
        self.connection_id = welcome.connection_id
        self.limits = dict(welcome.limits)
        if welcome.client_id != self.client_id:
            with self._lock:  # our own ops come back with this origin
                self.client_id = self.core.client_id = welcome.client_id
        if verify is not None:
            await self._send_join(ws)
        return True

    async def _send_join(self, ws: ClientConnection) -> None:
        """(Re)join the room, resuming from our version; pending ops follow its joined."""
        assert self._codec is not None
        with self._lock:
            mine = self.presence.snapshot() if self._announced else None
            (join,) = self.core.connection_opened(mine)
        assert isinstance(join, Send)
        await self._send_frame(ws, self._codec.frame(join.message))

    def _on_frame(self, frame: bytes | str) -> None:
        assert self._codec is not None
        self.metrics.received(frame)
        try:
            message = self._codec.decode(frame)
        except FrameError as exc:
            self.metrics.decode_errors += 1
            log.warning("[livewidgets] ignoring an invalid frame from the relay: %s", exc)
            return
        if isinstance(message, Error):
            self._on_error(message)
            if message.room is None:
                return
        if getattr(message, "room", self.core.room) != self.core.room:
            return
        with self._lock:
            events = self._stage(self.core.receive(message, time.monotonic()))
        self._dispatch(events)

    def _on_error(self, error: Error) -> None:
        """Surface every relay error; a refused join also fails a pending connect()."""
        self.last_error = {"code": error.code, "message": error.message, "ref": error.ref}
        self.events.emit("error", dict(self.last_error))
        refused = error.ref == "join" and error.code in _JOIN_REFUSALS
        if refused and self._joined_once is not None and not self._joined_once.done():
            self._joined_once.set_exception(JoinRefused(error.code, error.message))
            self._joined_once.exception()  # mark retrieved: nobody may be waiting

    async def _writer(self, ws: ClientConnection) -> None:
        """Send the outbox in order when the socket is congested (else see _write_now)."""
        assert self._outbox_ready is not None and self._codec is not None
        while True:
            while self._outbox:
                message = self._outbox[0]
                frame = self._codec.frame(message)
                if self._too_large(message, frame):
                    self._outbox.popleft()
                    continue
                self._writing = True
                try:
                    await self._send_frame(ws, frame)
                except ConnectionClosed:
                    self.metrics.send_failures += 1
                    return  # the ops stay pending and are resent after reconnect
                finally:
                    self._writing = False
                self._outbox.popleft()
            self._outbox_ready.clear()
            await self._outbox_ready.wait()

    def _write_now(self) -> None:
        """Loop thread: write the outbox straight into the socket while it keeps up
        (no writer-task wake-up per op); what is left is the writer task's."""
        ws, codec = self._live, self._codec
        if ws is None or codec is None or self._writing:
            return
        transport = ws.transport
        # Also keeps this loop the only writer if a rollback below (_too_large
        # dispatches events) queues more frames and re-enters through the hand-off.
        self._writing = True
        try:
            while self._outbox and ws.protocol.state is State.OPEN:
                if ws.send_in_progress is not None:
                    return
                if transport.get_write_buffer_size() > _DIRECT_WRITE_LIMIT:
                    return
                message = self._outbox.popleft()
                data = codec.encode(message)
                if self._too_large(message, data):
                    continue
                if codec.binary:
                    ws.protocol.send_binary(data)
                else:
                    ws.protocol.send_text(data)
                ws.send_data()
                self.metrics.sent(data)
        finally:
            self._writing = False

    def _too_large(self, message: Any, frame: bytes | str) -> bool:
        """Refuse locally an op the relay would close the connection for (1009).

        Resending it after every reconnect would loop forever; the core rolls it back.
        """
        limit = self.limits.get("max_frame_size")
        size = len(frame.encode() if isinstance(frame, str) else frame)
        if limit is None or size <= limit or not isinstance(message, (OpMessage, Batch)):
            return False
        reject = Reject(
            room=message.room,
            client_seq=message.client_seq,
            code=ErrorCode.TOO_LARGE.value,
            message=f"the op is {size} bytes encoded; the relay accepts at most {limit}",
        )
        with self._lock:
            events = self._stage(self.core.receive(reject, time.monotonic()))
        self._dispatch(events)
        return True

    async def _send_frame(self, ws: ClientConnection, frame: bytes | str) -> None:
        await ws.send(frame)
        self.metrics.sent(frame)

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """Ping; a peer silent past the timeout is dead (half-open TCP): drop and reconnect."""
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            try:
                pong = await ws.ping()
                latency = await asyncio.wait_for(pong, self.config.heartbeat_timeout)
            except TimeoutError:
                self.metrics.heartbeat_timeouts += 1
                log.warning(
                    "[livewidgets] relay silent for %.1f s: reconnecting",
                    self.config.heartbeat_timeout,
                )
                ws.transport.abort()
                return
            except ConnectionClosed:
                return
            self.metrics.rtt_samples.append(latency)
            with self._lock:
                ticked = self.core.tick(time.monotonic(), self.config.ack_timeout)
                resent = sum(isinstance(e, Send) for e in ticked)
                events = self._stage(ticked)
                went_idle = self.presence.check_idle()
            if went_idle:
                self.events.emit(
                    "my_presence",
                    {"client_id": self.client_id, "state": dict(self.presence.fields)},
                )
                self._schedule_presence()
            self.metrics.retries += resent
            self._dispatch(events)

    # --- writes (any thread) ------------------------------------------------------

    def submit(
        self,
        ops: list[Any],
        *,
        batch: bool = False,
        priority: Priority = Priority.NORMAL,
        ack: Ack | None = None,
        precondition: Callable[[dict[str, Any]], None] | None = None,
    ) -> Ack:
        """Apply ops locally now, queue them for the relay; returns their Ack.

        ``precondition(visible)`` runs under the engine lock right before the ops apply
        and may raise to refuse (compare-and-submit without a race with remote ops).
        """
        if self.state == "closed":
            raise SessionClosed("the session is closed")
        ack = ack or Ack()
        if self.presence.touch():
            self._call_in_loop(self._schedule_presence)
        with self._lock:
            if precondition is not None:
                precondition(self.core.visible)
            events = self.core.submit(
                ops,
                batch=batch,
                handle=(ack, time.monotonic()),
                priority=priority,
                now=time.monotonic(),
            )
            events = self._stage(events)
        self._dispatch(events)
        return ack

    def update_presence(self, fields: dict[str, Any]) -> None:
        """Merge fields into our presence and publish (throttled, latest wins)."""
        with self._lock:
            self.presence.update(fields)
            self._announced = True
            mine = dict(self.presence.fields)
        self.events.emit("my_presence", {"client_id": self.client_id, "state": mine})
        self._call_in_loop(self._schedule_presence)

    def _schedule_presence(self) -> None:
        """Loop thread: send now if the rate allows, else once when it does."""
        if self.state != "connected" or self._presence_timer is not None or not self._announced:
            return
        delay = self.presence.delay()
        if delay <= 0:
            self._send_presence()
        elif self._loop is not None:
            self._presence_timer = self._loop.call_later(delay, self._send_presence)

    def _send_presence(self) -> None:
        self._presence_timer = None
        if self.state == "connected":
            with self._lock:
                state = self.presence.snapshot()
            self._enqueue([Presence(room=self.core.room, state=state)])

    def send_admin(self, action: str, client_id: str | None = None) -> None:
        """Queue an admin message (reset/kick); it goes out once connected."""
        message = Admin(room=self.core.room, action=action, client_id=client_id)  # type: ignore[arg-type]
        self._enqueue([message])

    def add_change_listener(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """``listener(change)`` with the core's :class:`Changed` event on each visible change."""
        self._change_listeners.append(listener)
        return lambda: (
            self._change_listeners.remove(listener) if listener in self._change_listeners else None
        )

    # --- events -------------------------------------------------------------------

    def _stage(self, events: list[Event]) -> list[Event]:
        """Under the engine lock: hand the core's frames over in the order it made them;
        the other events are returned for :meth:`_dispatch` (outside the lock).

        Staging outside the lock let two threads swap their frames on the way out: the
        relay takes a lower client_seq after a higher one for a resend.
        """
        messages = [event.message for event in events if isinstance(event, Send)]
        if not messages:
            return events
        with self._handoff_lock:
            self._handoff.extend(messages)
        return [event for event in events if not isinstance(event, Send)]

    def _dispatch(self, events: list[Event]) -> None:
        """Act on core events, outside the lock (callbacks may write again); wake the
        loop for frames staged by :meth:`_stage`."""
        self._kick()
        sends = []
        for event in events:
            if isinstance(event, Send):
                sends.append(event.message)
            elif isinstance(event, Changed):
                self.subscriptions.notify(event.before, event.after)
                for listener in list(self._change_listeners):
                    call_isolated(listener, event)
            elif isinstance(event, Acked):
                self._resolve(event)
            elif isinstance(event, Failed):
                self._fail(event)
            elif isinstance(event, PresenceChanged):
                kind = (
                    "join" if event.before is None else "leave" if event.after is None else "update"
                )
                self.events.emit(
                    "presence",
                    {
                        "client_id": event.client_id,
                        "kind": kind,
                        "before": event.before,
                        "after": event.after,
                    },
                )
            elif isinstance(event, JoinedRoom):
                self._joined(event)
            elif isinstance(event, Resync):
                self._force_resync(event.reason)
        if sends:
            self._enqueue(sends)
        with self._idle:
            self._idle.notify_all()

    def _resolve(self, event: Acked) -> None:
        now = time.monotonic()
        for ack, created in event.handles:
            self.metrics.rtt_samples.append(now - created)
            ack._resolve(event.version)

    def _fail(self, event: Failed) -> None:
        self.metrics.rejects += 1
        error = rejection(
            event.code,
            event.message,
            path=event.path,
            current=event.current,
            current_version=event.current_version,
        )
        payload = {
            "error": error,
            "code": event.code,
            "message": event.message,
            "path": event.path,
            "ops": event.ops,
            "current": event.current,
            "current_version": event.current_version,
        }
        for ack, _ in event.handles:
            ack._fail(error)
        self.events.emit("conflict" if event.code == "conflict" else "rejected", payload)

    def _joined(self, event: JoinedRoom) -> None:
        self.attempt = 0
        self._joined_here = True
        self._set_state("connected", version=event.version, mode=event.mode)
        if self._joined_once is not None and not self._joined_once.done():
            self._joined_once.set_result(None)

    def _force_resync(self, reason: str) -> None:
        log.warning("[livewidgets] resynchronising room %r: %s", self.core.room, reason)
        self._resync = True
        ws = self._ws
        if ws is not None:
            self._call_in_loop(lambda: ws.transport.abort())

    def _enqueue(self, messages: list[Any]) -> None:
        """Hand frames to the loop's writer, in order, from any thread.

        Writes from other threads collect in ``_handoff`` and cost one loop wake-up per
        burst (not one call_soon_threadsafe per write); the loop thread drains the
        hand-off first, so frames keep the order in which the core produced them.
        """
        with self._handoff_lock:
            self._handoff.extend(messages)
        self._kick()

    def _kick(self) -> None:
        """Have the loop drain the hand-off (once per burst)."""
        with self._handoff_lock:
            if self._handoff_scheduled or not self._handoff:
                return
            self._handoff_scheduled = True
        self._call_in_loop(self._drain_handoff)

    def _drain_handoff(self) -> None:
        """Loop thread: move handed-off frames to the writer's outbox."""
        with self._handoff_lock:
            self._outbox.extend(self._handoff)
            self._handoff.clear()
            self._handoff_scheduled = False
        self._write_now()
        if self._outbox and self._outbox_ready is not None:
            self._outbox_ready.set()

    def _call_in_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    # --- waiting (any thread) -----------------------------------------------------

    def pending_handles(self) -> list[Ack]:
        with self._lock:
            return [ack for p in self.core.pending for ack, _ in p.handles]

    def wait_idle(self, timeout: float | None) -> None:
        """Block until nothing is pending (thread side of ``flush``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self.core.pending:
                if self.state == "closed":
                    raise SessionClosed("the session closed with writes still pending")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"{len(self.core.pending)} writes still pending after {timeout} s"
                    )
                self._idle.wait(remaining if remaining is not None else 1.0)

    def metrics_dict(self) -> dict[str, Any]:
        with self._lock:
            depth, in_flight, version = (
                len(self.core.pending),
                self.core.in_flight,
                self.core.version,
            )
        return self.metrics.as_dict(
            queue_depth=depth,
            in_flight=in_flight,
            version=version,
            state=self.state,
            attempt=self.attempt,
        )


def _version() -> str:
    from .. import __version__

    return __version__
