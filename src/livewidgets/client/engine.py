"""The engine: a :class:`ClientProtocol` driven over a reconnecting WebSocket (asyncio shell).

Every decision (handshake, heartbeat, resends, presence pacing, reconnects) is the
protocol's (``protocol.py``); the engine owns the sockets, tasks, timers and
threads, feeds what happens into the protocol and carries out its actions.

Thread model: the engine's I/O runs on one asyncio loop (the caller's, or a
dedicated thread's for the sync facade). Writes may come from any thread: they
take ``_lock``, update the protocol at once (the user sees the write immediately)
and hand frames to the loop. Relay messages are applied on the loop thread under
the same lock. Callbacks run outside the lock.
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
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from .. import wsio
from ..errors import AuthExpired, ConnectionRefused, JoinRefused, QueueFull, SessionClosed
from ..protocol import JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL, CloseCode, FrameError, client_codec
from ..protocol.codec import Codec
from ..protocol.messages import ServerMessage
from . import protocol as lifecycle
from . import refusals
from .ack import Ack, rejection
from .backoff import Backoff
from .core import Acked, Changed, Failed, JoinedRoom, PresenceChanged, Priority, Resync, RoomSync
from .events import Emitter, Subscriptions, call_isolated
from .metrics import Metrics
from .presence import LocalPresence
from .protocol import Action, ClientProtocol, ProtocolConfig, SendMessages

__all__ = ["Engine", "EngineConfig"]

log = logging.getLogger("livewidgets.client")


# The protocol states in which the relay has welcomed this connection.
_WELCOMED = frozenset(
    {lifecycle.State.VERIFYING, lifecycle.State.JOINING, lifecycle.State.CONNECTED}
)


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
    # Writes waiting for the relay (unsent, paced, or unacknowledged) at most.
    max_pending: int = 10_000
    # A write from a thread other than the engine's loop that finds max_pending writes
    # waiting blocks until one is acknowledged, for at most this many seconds, then
    # raises QueueFull (0: raise at once). On the loop thread it never blocks.
    queue_full_timeout: float = 10.0
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
    # local relay, whose secret the client knows (livewidgets.local_relay.credentials).
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
        self.config = config = config or EngineConfig()
        self.user = user
        presence = LocalPresence(
            user,
            name=config.name,
            color=config.color,
            idle_after=config.idle_after,
            rate=config.presence_rate,
        )
        # Every decision about connections and the room; guarded by ``_lock``.
        self.protocol = ClientProtocol(
            [url] if isinstance(url, str) else list(url),
            [room],
            client_id=client_id or uuid.uuid4().hex,
            user=user,
            token=token,
            presence=presence,
            delays=lambda: config.backoff.delays(config.rng),
            config=ProtocolConfig(
                max_attempts=config.max_attempts,
                open_timeout=config.open_timeout,
                heartbeat_interval=config.heartbeat_interval,
                heartbeat_timeout=config.heartbeat_timeout,
                ack_timeout=config.ack_timeout,
                can_refresh=config.token_refresh is not None,
                verify=config.verify_relay is not None,
                announce=config.announce,
            ),
            nonces=lambda: secrets.token_urlsafe(24),
            max_pending=config.max_pending,
        )
        # The room's sync state (the protocol's; kept here for Session and tests).
        self.core: RoomSync = self.protocol.rooms[room]
        self.metrics = Metrics()
        self.events = Emitter()
        self.subscriptions = Subscriptions()
        # The public state (lifecycle.Status values), set from StateChanged actions.
        self.state = "disconnected"
        self._change_listeners: list[Callable[..., Any]] = []
        # Guards the protocol (writes come from user threads, relay messages from the loop).
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._joined_once: asyncio.Future[None] | None = None
        # The current socket and its codec; ``_live`` while the writer may use it.
        self._ws: ClientConnection | None = None
        self._codec: Codec[ServerMessage] | None = None
        self._live: ClientConnection | None = None
        # Frames for the writer, and whether it is between taking one and having sent it.
        self._outbox: deque[Any] = deque()
        self._outbox_ready: asyncio.Event | None = None
        self._writing = False
        # Frames handed over from user threads, waiting for the loop (see _enqueue).
        self._handoff: deque[Any] = deque()
        self._handoff_lock = threading.Lock()
        self._handoff_scheduled = False
        # What the protocol asked for last: a URL to dial, a delay before connect().
        self._dial: str | None = None
        self._retry_delay: float | None = None
        # The tick timer and the deadline it is armed for.
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        # Tasks of the current connection (pings, closes): cancelled when it ends.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._finished = False
        # The last error the relay sent outside any room (e.g. why it refused us).
        self.last_error: dict[str, Any] | None = None
        # Why the last refused attempt was refused (for connect()'s timeout message).
        self.last_refusal: ConnectionRefused | None = None
        # Set when this engine can no longer be used (e.g. in a forked child): why.
        self.unusable: str | None = None

    # --- the protocol's state, read through ---------------------------------------

    @property
    def url(self) -> str:
        """The relay the current (or next) attempt dials."""
        return self.protocol.url

    @url.setter
    def url(self, url: str) -> None:
        self.protocol.url = url

    @property
    def urls(self) -> list[str]:
        return self.protocol.urls

    @property
    def token(self) -> str | None:
        return self.protocol.token

    @property
    def client_id(self) -> str:
        return self.protocol.client_id

    @property
    def connection_id(self) -> str | None:
        return self.protocol.connection_id

    @property
    def limits(self) -> dict[str, int | float]:
        """The relay's limits from its welcome (max_frame_size, ops_per_second, ...)."""
        return self.protocol.limits

    @property
    def attempt(self) -> int:
        return self.protocol.attempt

    @property
    def presence(self) -> LocalPresence:
        return self.protocol.presence

    def _next_url(self) -> None:
        self.protocol.next_url()

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
        with self._lock:
            actions = self._stage(self.protocol.close(time.monotonic()))
        # The close frame and the final "closed" wait for the socket and the task.
        closed = lifecycle.StateChanged(lifecycle.Status.CLOSED)
        self._act([a for a in actions if not isinstance(a, lifecycle.Close) and a != closed])
        ws = self._ws
        if ws is not None and any(isinstance(a, lifecycle.Close) for a in actions):
            await ws.close(CloseCode.NORMAL, "client closed")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._finish()

    def abandon(self, reason: str) -> None:
        """This process is a fork's child (client.forks): the loop, thread and socket
        are the parent's. Touch none of them; fail what waits here, refuse all use."""
        # The parent's I/O thread may have held these at the fork: fresh ones.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._handoff_lock = threading.Lock()
        self.unusable, self.state = reason, "closed"
        # Nothing is ever handed to the parent's loop (its wake-up pipe is shared).
        self._loop, self._finished = None, True
        for ack, _ in [h for p in self.core.pending for h in p.handles]:
            ack.fail(SessionClosed(reason))

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            handles = [h for p in self.core.pending for h in p.handles]
        for ack, _ in handles:
            ack.fail(SessionClosed("the session closed before the relay acknowledged"))
        if self._joined_once is not None and not self._joined_once.done():
            self._joined_once.set_exception(SessionClosed("the session closed before joining"))
            self._joined_once.exception()  # mark retrieved: nobody may be waiting
        self._set_state("closed")
        with self._idle:
            self._idle.notify_all()

    def _set_state(self, state: str, **details: Any) -> None:
        if state == self.state and not details:
            return
        self.state = state
        self.events.emit(state, {"state": state, **details})

    async def _run(self) -> None:
        """Dial where the protocol says, wait as long as it says, until it is closed."""
        self._feed(self.protocol.connect)
        while self._dial is not None:
            url, self._dial = self._dial, None
            await self._connect_once(url)
            delay, self._retry_delay = self._retry_delay, None
            if delay is None:
                break
            await asyncio.sleep(delay)
            self._feed(self.protocol.connect)
        self._finish()

    async def _connect_once(self, url: str) -> None:
        """One connection's life, reported to the protocol from open to close."""
        self.metrics.attempts += 1
        subprotocols = (
            [Subprotocol(MSGPACK_SUBPROTOCOL), Subprotocol(JSON_SUBPROTOCOL)]
            if self.config.binary
            else [Subprotocol(JSON_SUBPROTOCOL)]
        )
        try:
            ws = await connect(
                url,
                subprotocols=subprotocols,
                open_timeout=self.config.open_timeout,
                ping_interval=None,  # our own heartbeat measures RTT and detects dead peers
                max_size=self.config.max_frame_size,
                ssl=self._ssl_context(url),
                user_agent_header=f"livewidgets/{_version()}",
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            self.metrics.failures += 1
            # Why, and whether waiting helps, is the protocol's call (client.refusals).
            refusal = refusals.from_exception(exc, url)
            self._feed(lambda now: self.protocol.connect_failed(now, refusal=refusal))
            return
        await self._serve(ws)

    def _ssl_context(self, url: str) -> Any:
        if self.config.ssl is not None or not url.startswith("wss:"):
            return self.config.ssl
        if self.config.cafile is not None:
            return ssl_module.create_default_context(cafile=self.config.cafile)
        return True  # websockets' default context: verified against the system's CAs

    async def _serve(self, ws: ClientConnection) -> None:
        self._ws, self._codec = ws, client_codec(ws.subprotocol)
        # Frames queued for the previous connection are stale: the hello and join go
        # first, and pending ops are resent from the core after the joined.
        self._outbox.clear()
        with self._handoff_lock:
            self._handoff.clear()
        writer = asyncio.create_task(self._writer(ws))
        self._live = ws
        try:
            self._feed(self.protocol.opened)
            async for frame in ws:
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        except Exception:  # a bug here must not end syncing: log it, reconnect
            log.exception("[livewidgets] connection failed unexpectedly")
            wsio.abort(ws)
        finally:
            self._live = None
            writer.cancel()
            for task in self._tasks:
                task.cancel()
        await ws.wait_closed()
        self._ws = None
        self.metrics.went_down(time.monotonic())
        code, by_peer = ws.close_code, wsio.closed_by_peer(ws)
        self._feed(lambda now: self.protocol.closed(code, now, by_peer=by_peer))

    def _on_frame(self, frame: bytes | str) -> None:
        assert self._codec is not None
        self.metrics.received(frame)
        try:
            message = self._codec.decode(frame)
        except FrameError as exc:
            self.metrics.decode_errors += 1
            log.warning("[livewidgets] invalid frame from the relay: %s", exc)
            error = exc
            self._feed(lambda now: self.protocol.invalid_frame(error, now))
            return
        welcomed = self.protocol.state in _WELCOMED
        self._feed(lambda now: self.protocol.receive(message, now))
        if not welcomed and self.protocol.state in _WELCOMED:
            self.metrics.went_up(time.monotonic())

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
        # Also keeps this loop the only writer if a rollback below (_too_large
        # dispatches events) queues more frames and re-enters through the hand-off.
        self._writing = True
        try:
            while self._outbox and wsio.writable(ws):  # checked before popping: nothing lost
                message = self._outbox.popleft()
                data = codec.encode(message)
                if self._too_large(message, data):
                    continue
                wsio.write_message(ws, data, binary=codec.binary)
                self.metrics.sent(data)
        finally:
            self._writing = False

    def _too_large(self, message: Any, frame: bytes | str) -> bool:
        """Whether the protocol refuses to send ``message`` (then it failed the op)."""
        size = len(frame.encode() if isinstance(frame, str) else frame)
        if self.protocol.fits(message, size):
            return False
        self._feed(lambda now: self.protocol.oversized(message, size, now))
        return True

    async def _send_frame(self, ws: ClientConnection, frame: bytes | str) -> None:
        await ws.send(frame)
        self.metrics.sent(frame)

    async def _ping(self, ws: ClientConnection) -> None:
        """Ping; report the pong (RTT). A missing pong is the protocol's tick's call."""
        try:
            pong = await ws.ping()
            latency = await pong
        except ConnectionClosed:
            return
        self.metrics.rtt_samples.append(latency)
        if ws is self._live:
            self._feed(self.protocol.pong)

    def _on_timer(self) -> None:
        self._timer, self._armed_at = None, None
        self._feed(self.protocol.tick)

    def _rearm(self) -> None:
        """Loop thread: arm the timer for the protocol's next deadline."""
        with self._lock:
            deadline = self.protocol.next_deadline()
        if deadline == self._armed_at or self._loop is None or self._finished:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = self._loop.call_later(delay, self._on_timer)

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

        The ops go out paced to the relay's advertised rate (docs/protocol.md
        "Pacing"). With ``max_pending`` writes already waiting, a caller on another
        thread than the engine's loop (a notebook cell) blocks until there is room,
        up to ``queue_full_timeout`` seconds; then, or at once on the loop thread,
        :class:`~livewidgets.errors.QueueFull` is raised and nothing changed.

        ``precondition(visible)`` runs under the engine lock right before the ops apply
        and may raise to refuse (compare-and-submit without a race with remote ops).
        """
        ack = ack or Ack()
        deadline: float | None = None
        with self._lock:
            while True:
                if self.state == "closed":
                    raise SessionClosed(self.unusable or "the session is closed")
                if precondition is not None:
                    precondition(self.core.visible)
                now = time.monotonic()
                try:
                    submitted = self.protocol.submit(
                        self.core.room, ops, now, batch=batch, handle=(ack, now), priority=priority
                    )
                except QueueFull:
                    if deadline is None:
                        deadline = now + self._queue_full_wait()
                    if now >= deadline:
                        raise
                    # Wakes on every batch of actions (acks free room); the lock is released.
                    self._idle.wait(min(deadline - now, 1.0))
                    continue
                actions = self._stage(submitted)
                break
        self._act(actions)
        return ack

    def _queue_full_wait(self) -> float:
        """How long a write may wait for room in the outbox (0 on the loop thread,
        whose acks it would be waiting for)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self._loop:
            return 0.0
        return self.config.queue_full_timeout

    def update_presence(self, fields: dict[str, Any]) -> None:
        """Merge fields into our presence and publish (throttled, latest wins)."""
        if self.unusable:
            raise SessionClosed(self.unusable)
        self._feed(lambda now: self.protocol.update_presence(fields, now))

    def rewrite_presence(self, change: Callable[[dict[str, Any]], None]) -> None:
        """``change(fields)`` edits our presence fields in place, under the engine lock,
        without publishing (peers make the same change themselves, e.g. move cursors)."""
        with self._lock:
            change(self.protocol.presence.fields)

    def send_admin(self, action: str, client_id: str | None = None) -> None:
        """Queue an admin message (reset/kick); it goes out once connected."""
        if self.unusable:
            raise SessionClosed(self.unusable)
        self._feed(lambda now: self.protocol.admin(self.core.room, action, client_id))

    def add_change_listener(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """``listener(change)`` with the core's :class:`Changed` event on each visible change."""
        self._change_listeners.append(listener)
        return lambda: (
            self._change_listeners.remove(listener) if listener in self._change_listeners else None
        )

    # --- actions ------------------------------------------------------------------

    def _feed(self, step: Callable[[float], list[Action]]) -> None:
        """Run one protocol input under the lock, then carry out its actions."""
        with self._lock:
            actions = self._stage(step(time.monotonic()))
        self._act(actions)

    def _stage(self, actions: list[Action]) -> list[Action]:
        """Under the engine lock: hand the protocol's frames over in the order it made
        them; the other actions are returned for :meth:`_act` (outside the lock).

        Staging outside the lock let two threads swap their frames on the way out: the
        relay takes a lower client_seq after a higher one for a resend.
        """
        frames = [m for a in actions if isinstance(a, SendMessages) for m in a.messages]
        if not frames:
            return actions
        self.metrics.retries += sum(a.resends for a in actions if isinstance(a, SendMessages))
        with self._handoff_lock:
            self._handoff.extend(frames)
        return [a for a in actions if not isinstance(a, SendMessages)]

    def _act(self, actions: list[Action]) -> None:
        """Carry out actions, outside the lock (callbacks may write again); wake the
        loop for frames staged by :meth:`_stage` and re-arm the tick timer."""
        self._kick()
        for action in actions:
            _HANDLERS[type(action)](self, action)
        with self._idle:
            self._idle.notify_all()
        deadline, armed = self.protocol.next_deadline(), self._armed_at
        if deadline is not None and (armed is None or deadline < armed):
            self._call_in_loop(self._rearm)

    def _on_changed(self, event: Changed) -> None:
        self.subscriptions.notify(event.before, event.after)
        for listener in list(self._change_listeners):
            call_isolated(listener, event)

    def _resolve(self, event: Acked) -> None:
        now = time.monotonic()
        for ack, created in event.handles:
            self.metrics.rtt_samples.append(now - created)
            ack.resolve(event.version)

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
            ack.fail(error)
        self.events.emit("conflict" if event.code == "conflict" else "rejected", payload)

    def _on_presence(self, event: PresenceChanged) -> None:
        kind = "join" if event.before is None else "leave" if event.after is None else "update"
        payload = {
            "client_id": event.client_id,
            "kind": kind,
            "before": event.before,
            "after": event.after,
        }
        self.events.emit("presence", payload)

    def _on_joined(self, event: JoinedRoom) -> None:
        if self._joined_once is not None and not self._joined_once.done():
            self._joined_once.set_result(None)

    def _on_resync(self, event: Resync) -> None:
        log.warning("[livewidgets] resynchronising room %r: %s", self.core.room, event.reason)

    def _on_state(self, action: lifecycle.StateChanged) -> None:
        if action.status is lifecycle.Status.CLOSED:
            self._finish()
        else:
            self._set_state(action.status.value, **action.details)

    def _on_connect(self, action: lifecycle.Connect) -> None:
        self._dial = action.url

    def _on_reconnect_after(self, action: lifecycle.ReconnectAfter) -> None:
        self._retry_delay = action.delay

    def _on_close(self, action: lifecycle.Close) -> None:
        ws = self._ws
        if ws is not None:
            self._spawn(ws.close(action.code, action.reason))

    def _on_abort(self, action: lifecycle.Abort) -> None:
        if action.reason is lifecycle.AbortReason.HEARTBEAT:
            self.metrics.heartbeat_timeouts += 1
            log.warning(
                "[livewidgets] relay silent for %.1f s: reconnecting",
                self.config.heartbeat_timeout,
            )
        ws = self._ws
        if ws is not None:
            self._call_in_loop(lambda: wsio.abort(ws))

    def _on_ping(self, action: lifecycle.Ping) -> None:
        ws = self._live
        if ws is not None:
            self._spawn(self._ping(ws))

    def _on_need_token(self, action: lifecycle.NeedToken) -> None:
        token = self._refresh_token()
        self._feed(lambda now: self.protocol.token_refreshed(token, now))

    def _refresh_token(self) -> str | None:
        """Ask the application for a new token (None if it has none, or failed)."""
        refresh = self.config.token_refresh
        if refresh is None:
            return None
        try:
            return refresh()
        except Exception:
            log.exception("[livewidgets] token_refresh failed")
            return None

    def _on_verify(self, action: lifecycle.VerifyProof) -> None:
        verify = self.config.verify_relay
        ok = verify is not None and verify(action.nonce, action.proof)
        if not ok:
            log.error("[livewidgets] %s did not prove it is the relay we expect", self.url)
        self._feed(lambda now: self.protocol.proof_checked(ok, now))

    def _on_relay_error(self, action: lifecycle.RelayError) -> None:
        if action.during is None:
            self.last_error = {"code": action.code, "message": action.message, "ref": action.ref}
            self.events.emit("error", dict(self.last_error))
        else:
            self.last_error = {"code": action.code, "message": action.message}
            self.events.emit("error", {**self.last_error, "during": action.during})

    def _on_refused(self, action: lifecycle.Refused) -> None:
        """A refused join also fails a pending connect()."""
        if self._joined_once is not None and not self._joined_once.done():
            self._joined_once.set_exception(JoinRefused(action.code.value, action.message))
            self._joined_once.exception()  # mark retrieved: nobody may be waiting

    def _on_refused_connection(self, action: lifecycle.RefusedConnection) -> None:
        """Say why an attempt was refused; a final refusal also fails connect()."""
        error = self.last_refusal = action.refusal.error(self.url)
        details = {"reason": error.reason, "transient": not action.final}
        self.events.emit("error", {"error": error, "during": "connect", **details})
        if action.final and self._joined_once is not None and not self._joined_once.done():
            self._joined_once.set_exception(error)
            self._joined_once.exception()  # mark retrieved: nobody may be waiting

    def _on_failed_connection(self, action: lifecycle.ConnectionFailed) -> None:
        self.events.emit("error", {"error": action.error, "during": action.during})

    def _on_gave_up(self, action: lifecycle.GaveUp) -> None:
        self.events.emit("reconnect_failed", {"attempts": action.attempts})

    def _on_auth_expired(self, action: lifecycle.AuthExpiredEvent) -> None:
        error = AuthExpired("the token expired; pass token_refresh= to renew it")
        self.events.emit("auth_expired", {"error": error})

    def _on_my_presence(self, action: lifecycle.MyPresence) -> None:
        self.events.emit("my_presence", {"client_id": self.client_id, "state": action.fields})

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Loop thread: run ``coroutine`` as a task of the current connection."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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


_HANDLERS: dict[type, Callable[[Engine, Any], None]] = {
    Changed: Engine._on_changed,
    Acked: Engine._resolve,
    Failed: Engine._fail,
    PresenceChanged: Engine._on_presence,
    JoinedRoom: Engine._on_joined,
    Resync: Engine._on_resync,
    lifecycle.StateChanged: Engine._on_state,
    lifecycle.Connect: Engine._on_connect,
    lifecycle.ReconnectAfter: Engine._on_reconnect_after,
    lifecycle.Close: Engine._on_close,
    lifecycle.Abort: Engine._on_abort,
    lifecycle.Ping: Engine._on_ping,
    lifecycle.NeedToken: Engine._on_need_token,
    lifecycle.VerifyProof: Engine._on_verify,
    lifecycle.RelayError: Engine._on_relay_error,
    lifecycle.Refused: Engine._on_refused,
    lifecycle.RefusedConnection: Engine._on_refused_connection,
    lifecycle.ConnectionFailed: Engine._on_failed_connection,
    lifecycle.GaveUp: Engine._on_gave_up,
    lifecycle.AuthExpiredEvent: Engine._on_auth_expired,
    lifecycle.MyPresence: Engine._on_my_presence,
}
