"""The engine: a :class:`ClientProtocol` driven over a reconnecting WebSocket (asyncio shell).

Every decision (handshake, heartbeat, resends, presence pacing, reconnects) is the
protocol's (``protocol.py``); the engine owns the sockets, tasks, timers and
threads, feeds what happens into the protocol and carries out its actions.

Thread model: the engine's I/O runs on one asyncio loop (the caller's, or a
dedicated thread's for the sync facade). Writes may come from any thread: they
take ``_lock``, update the protocol at once (the user sees the write immediately)
and hand frames to the loop. Relay messages are applied on the loop thread under
the same lock. Callbacks run outside the lock.

The engine keeps the sockets, tasks and timers, and wires its helpers together:
``config.py`` (tunables), ``handoff.py`` (frames and waits across threads),
``writer.py`` (one connection's outbox) and ``dispatch.py`` (acks, listeners, events).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .. import wsio
from ..errors import ConnectionRefused, SessionClosed
from ..protocol import CloseCode, FrameError, client_codec
from ..protocol.codec import Codec
from ..protocol.messages import History, HistoryReply, ServerMessage
from . import protocol as lifecycle
from . import refusals
from .ack import Ack
from .callbacks import Callbacks
from .config import EngineConfig
from .core import Priority, RoomSync
from .dispatch import Dispatcher
from .handoff import Handoff, Waiters
from .history import HistoryQueries
from .metrics import Metrics
from .presence import LocalPresence
from .protocol import Action, SendMessages
from .writer import Writer

__all__ = ["Engine", "EngineConfig"]

log = logging.getLogger("livewidgets.client")


# The protocol states in which the relay has welcomed this connection.
_WELCOMED = frozenset(
    {lifecycle.State.VERIFYING, lifecycle.State.JOINING, lifecycle.State.CONNECTED}
)


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
        # Every decision about connections and the room; guarded by ``_lock``.
        self.protocol = config.new_protocol(
            [url] if isinstance(url, str) else list(url),
            room,
            user=user,
            token=token,
            client_id=client_id or uuid.uuid4().hex,
        )
        # The room's sync state (the protocol's; kept here for Session and tests).
        self.core: RoomSync = self.protocol.rooms[room]
        self.metrics = Metrics()
        # Acks, listeners and named events (outside the lock).
        self.callbacks = Callbacks(
            self.metrics,
            threaded=config.callback_thread,
            name=f"callbacks-{room}",
        )
        self.dispatch = Dispatcher(room, self.protocol.client_id, self.metrics, self.callbacks)
        self.events = self.dispatch.events
        self.subscriptions = self.dispatch.subscriptions
        # The public state (lifecycle.Status values), set from StateChanged actions.
        self.state = "disconnected"
        # Guards the protocol (writes come from user threads, relay messages from the loop).
        self._lock = threading.RLock()
        self._waiters = Waiters(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        # The current socket and its codec; ``_live`` while the writer may use it.
        self._ws: ClientConnection | None = None
        self._codec: Codec[ServerMessage] | None = None
        self._live: ClientConnection | None = None
        # Frames staged by any thread (see _stage) go to the writer on the loop.
        self._writer = Writer(self.metrics, self._too_large)
        self._handoff = Handoff(self._writer.take)
        # What the protocol asked for last: a URL to dial, a delay before connect().
        self._dial: str | None = None
        self._retry_delay: float | None = None
        # The provider's answer after an auth close, from a worker thread (NeedToken).
        self._token_answer: asyncio.Future[str | None] | None = None
        # The tick timer and the deadline it is armed for.
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        # Tasks of the current connection (pings, closes): cancelled when it ends.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._finished = False
        # Set when this engine can no longer be used (in a forked child): why.
        self.unusable: str | None = None
        # History queries waiting for the relay's answer (client.history).
        self.history_queries = HistoryQueries()

    # --- the protocol's state, read through ---------------------------------------

    @property
    def url(self) -> str:
        """The relay the current (or next) attempt dials."""
        return self.protocol.url

    @url.setter
    def url(self, url: str) -> None:
        self.protocol.url = url

    @property
    def token(self) -> str | None:
        return self.protocol.token

    @property
    def client_id(self) -> str:
        return self.protocol.client_id

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

    @property
    def last_error(self) -> dict[str, Any] | None:
        """The last error the relay sent outside any room (e.g. why it refused us)."""
        return self.dispatch.last_error

    @property
    def last_refusal(self) -> ConnectionRefused | None:
        """Why the last refused attempt was refused (connect()'s timeout names it)."""
        return self.dispatch.last_refusal

    def _next_url(self) -> None:
        self.protocol.next_url()

    # --- lifecycle (loop thread) --------------------------------------------------

    def start(self) -> None:
        """Start the connection task on the running loop."""
        self._loop = self._handoff.loop = asyncio.get_running_loop()
        self.dispatch.joined = self._loop.create_future()
        self._task = self._loop.create_task(self._run(), name=f"livewidgets:{self.core.room}")

    async def wait_joined(self, timeout: float | None) -> None:
        assert self.dispatch.joined is not None, "start() first"
        await asyncio.wait_for(asyncio.shield(self.dispatch.joined), timeout)

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
        self._waiters = Waiters(self._lock)
        self._handoff = Handoff(self._writer.take)  # loop None: nothing reaches the parent's
        self.unusable, self.state = reason, "closed"
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
        self.dispatch.fail_joined(SessionClosed("the session closed before joining"))
        self.history_queries.fail_all(SessionClosed("the session closed before the answer"))
        self._set_state("closed")
        self._waiters.notify()
        self.callbacks.close()  # after "closed" reached its listeners

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
            answer, self._token_answer = self._token_answer, None
            if answer is not None:  # the relay ended the session on its token
                token = await answer
                self._feed(functools.partial(self.protocol.token_refreshed, token))
            delay, self._retry_delay = self._retry_delay, None
            if delay is None:
                break
            await asyncio.sleep(delay)
            self._feed(self.protocol.connect)
        self._finish()

    async def _connect_once(self, url: str) -> None:
        """One connection's life, reported to the protocol from open to close."""
        self.metrics.attempts += 1
        self.dispatch.url = url  # a refusal names the relay that refused
        try:
            ws = await connect(
                url,
                subprotocols=self.config.subprotocols(),
                open_timeout=self.config.open_timeout,
                ping_interval=None,  # our own heartbeat measures RTT and detects dead peers
                max_size=self.config.max_frame_size,
                ssl=self.config.ssl_for(url),
                user_agent_header=f"livewidgets/{_version()}",
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            self.metrics.failures += 1
            # Why, and whether waiting helps, is the protocol's call (client.refusals).
            refusal = refusals.from_exception(exc, url)
            self._feed(lambda now: self.protocol.connect_failed(now, refusal=refusal))
            return
        await self._serve(ws)

    async def _serve(self, ws: ClientConnection) -> None:
        self._ws, self._codec = ws, client_codec(ws.subprotocol)
        self._handoff.clear()  # stale, like the writer's outbox
        self._writer.open(ws, self._codec)
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
            self._writer.close()
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

    def _too_large(self, message: Any, frame: bytes | str) -> bool:
        """Whether the protocol refuses to send ``message`` (then it failed the op)."""
        size = len(frame.encode() if isinstance(frame, str) else frame)
        if self.protocol.fits(message, size):
            return False
        self._feed(lambda now: self.protocol.oversized(message, size, now))
        return True

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

        def attempt(now: float) -> list[Action]:
            if self.state == "closed":
                raise SessionClosed(self.unusable or "the session is closed")
            if precondition is not None:
                precondition(self.core.visible)
            submitted = self.protocol.submit(
                self.core.room, ops, now, batch=batch, handle=(ack, now), priority=priority
            )
            return self._stage(submitted)

        # On the loop thread a full queue raises at once: it would wait for its own acks.
        wait = 0.0 if self._handoff.on_loop_thread() else self.config.queue_full_timeout
        actions = self._waiters.retry_while_full(attempt, wait)
        self._act(actions)
        return ack

    def undo(self, path: str | None = None, *, redo: bool = False) -> Ack | None:
        """Undo (redo) this client's latest own write within ``path`` (client.undo);
        returns its Ack, or None when there is nothing to undo."""
        if self.state == "closed":
            raise SessionClosed(self.unusable or "the session is closed")
        ack = Ack()
        with self._lock:
            now = time.monotonic()
            actions = self.protocol.undo(self.core.room, path, now, handle=(ack, now), redo=redo)
            if actions is None:
                return None
            actions = self._stage(actions)
        self._act(actions)
        return ack

    def can_undo(self, path: str | None = None, *, redo: bool = False) -> bool:
        with self._lock:
            return self.core.can_undo(path, redo=redo)

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

    async def query_history(self, timeout: float | None, **fields: Any) -> HistoryReply:
        """Ask the relay for the room's history (protocol ``history``; ``fields``: its
        query fields) and wait for the answer; raises HistoryError, TimeoutError."""
        if self.unusable:
            raise SessionClosed(self.unusable)
        if self._finished:
            raise SessionClosed("the session is closed")
        query_id, answer = self.history_queries.open()
        query = History(room=self.core.room, id=query_id, **fields)
        self._feed(lambda now: self.protocol.query(query))
        try:
            return await asyncio.wait_for(answer, timeout)
        finally:
            self.history_queries.close(query_id)
            with self._lock:
                self.protocol.forget_query(query_id)

    def _on_history_answered(self, action: lifecycle.HistoryAnswered) -> None:
        self.history_queries.answered(action.reply)

    def add_change_listener(self, listener: Callable[..., Any]) -> Callable[[], None]:
        """``listener(change)`` with the core's :class:`Changed` event on each visible change."""
        return self.dispatch.add_change_listener(listener)

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
        self._handoff.put(frames)
        return [a for a in actions if not isinstance(a, SendMessages)]

    def _act(self, actions: list[Action]) -> None:
        """Carry out actions, outside the lock (callbacks may write again); wake the
        loop for frames staged by :meth:`_stage` and re-arm the tick timer."""
        self._handoff.kick()
        for action in actions:
            handler = _HANDLERS.get(type(action))
            if handler is not None:
                handler(self, action)
            else:
                self.dispatch.deliver(action)
        self._waiters.notify()
        deadline, armed = self.protocol.next_deadline(), self._armed_at
        if deadline is not None and (armed is None or deadline < armed):
            self._handoff.call_in_loop(self._rearm)

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
            self._handoff.call_in_loop(lambda: wsio.abort(ws))

    def _on_ping(self, action: lifecycle.Ping) -> None:
        ws = self._live
        if ws is not None:
            self._spawn(self._ping(ws))

    def _on_need_token(self, action: lifecycle.NeedToken) -> None:
        """Ask the provider on a worker thread; _run waits for the answer (the loop,
        shared by every sync session, is not held up by a slow token command)."""
        assert self._loop is not None
        self._token_answer = self._loop.run_in_executor(None, self._refresh_token)

    def _on_renew_token(self, action: lifecycle.RenewToken) -> None:
        """Ask the provider on a worker thread (a command may take seconds): the
        connection, its ops and heartbeats go on meanwhile."""

        def ask() -> None:
            token = self._refresh_token()
            self._feed(lambda now: self.protocol.token_renewed(token, now))

        def start() -> None:
            assert self._loop is not None
            self._loop.run_in_executor(None, ask)

        self._handoff.call_in_loop(start)

    def _on_token_renewed(self, action: lifecycle.TokenRenewed) -> None:
        self.metrics.token_renewals += 1
        self.events.emit("token_renewed", {"expires_in": action.expires_in})

    def _refresh_token(self) -> str | None:
        """Ask the application for a new token (None if it has none, or failed)."""
        refresh = self.config.token_refresh
        if refresh is None:
            return None
        try:
            return refresh()
        except Exception as exc:
            log.error("[livewidgets] token_refresh failed: %s", exc, exc_info=exc)
            self.events.emit("error", {"error": exc, "during": "token_refresh"})
            return None

    def _on_verify(self, action: lifecycle.VerifyProof) -> None:
        ok = self.config.relay_proven(action.nonce, action.proof)
        if not ok:
            log.error("[livewidgets] %s did not prove it is the relay we expect", self.url)
        self._feed(lambda now: self.protocol.proof_checked(ok, now))

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Loop thread: run ``coroutine`` as a task of the current connection."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- waiting (any thread) -----------------------------------------------------

    def wait_idle(self, timeout: float | None) -> None:
        """Block until nothing is pending, and the callbacks of what arrived so far
        have run (thread side of ``flush``)."""
        started = time.monotonic()
        self._waiters.wait_idle(
            lambda: len(self.core.pending), lambda: self.state == "closed", timeout
        )
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        if not self.callbacks.wait_idle(left):
            raise TimeoutError(f"callbacks still running after {timeout} s")

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
            callbacks_pending=self.callbacks.pending,
        )


def _version() -> str:
    from .. import __version__

    return __version__


# The actions the engine carries out itself; the others are events (Dispatcher).
_HANDLERS: dict[type, Callable[[Engine, Any], None]] = {
    lifecycle.StateChanged: Engine._on_state,
    lifecycle.Connect: Engine._on_connect,
    lifecycle.ReconnectAfter: Engine._on_reconnect_after,
    lifecycle.Close: Engine._on_close,
    lifecycle.Abort: Engine._on_abort,
    lifecycle.Ping: Engine._on_ping,
    lifecycle.NeedToken: Engine._on_need_token,
    lifecycle.RenewToken: Engine._on_renew_token,
    lifecycle.TokenRenewed: Engine._on_token_renewed,
    lifecycle.VerifyProof: Engine._on_verify,
    lifecycle.HistoryAnswered: Engine._on_history_answered,
}
