"""The public client API: ``connect()`` (threads) and ``livewidgets.asyncio.connect()``.

Both facades share :class:`SessionAPI` (reads, writes, subscriptions, events) over
one :class:`~livewidgets.client.engine.Engine`; they differ only in how they wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ..errors import ConnectTimeout, JoinRefused, OpRejected, SessionClosed
from ..local_relay import LocalCredentials, credentials
from ..protocol.messages import HistoryReply
from ..rules import RULES_PATH
from ..state.ops import (
    DeleteOp,
    IncrementOp,
    MergeOp,
    Op,
    PushOp,
    RemoveOp,
    SetOp,
    apply_ops,
    check_value,
    get_path,
)
from ..state.paths import parse_path
from . import forks
from .ack import Ack
from .core import Priority
from .engine import Engine, EngineConfig
from .history import HistoryPage, revert_ops
from .text import TextHandle
from .tokens import TokenCommand

__all__ = ["AsyncSession", "Session", "SessionAPI", "connect", "connect_async"]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def shareable(value: Any) -> Any:
    """A private, plain-JSON copy of ``value`` (tuples become lists); ValueError if impossible."""
    try:
        copy = _decode(_encode(value))
    except (TypeError, msgspec.EncodeError) as exc:
        raise ValueError(f"cannot share {type(value).__name__}: {exc}") from None
    check_value(copy)
    return copy


class _BatchContext(threading.local):
    ops: list[Op] | None = None
    ack: Ack | None = None


ConflictHandler = Callable[[dict[str, Any]], Any]


class SessionAPI:
    """Reads, writes and subscriptions on one room (shared by both facades)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._batch = _BatchContext()
        self._conflict_handlers: dict[str, ConflictHandler] = {}
        self._texts: dict[str, TextHandle] = {}
        engine.events.on("conflict", self._on_conflict)

    @property
    def engine(self) -> Engine:
        """The engine behind this session: the lower-level API that helpers such as
        :class:`SharedText` build on (change listeners, guarded submits, presence)."""
        return self._engine

    # --- reading ------------------------------------------------------------------

    def get(self, path: str = "", default: Any = None) -> Any:
        """The visible value at ``path`` (your pending writes included)."""
        return get_path(self._engine.core.visible, path, default)

    @property
    def state(self) -> dict[str, Any]:
        """The whole visible state (treat it as read-only)."""
        return self._engine.core.visible

    @property
    def version(self) -> int:
        """The room version this client has confirmed."""
        return self._engine.core.version

    @property
    def client_id(self) -> str:
        return self._engine.client_id

    @property
    def url(self) -> str:
        """The relay this session talks to."""
        return self._engine.url

    @property
    def room(self) -> str:
        return self._engine.core.room

    @property
    def user(self) -> str:
        """Who this session is in the room: the relay's name for it once welcomed (the
        token's user; a share link's holder gets one of their own), else the one asked."""
        return self._engine.protocol.relay_user or self._engine.user

    @property
    def role(self) -> str | None:
        """``"read"``, ``"write"`` or ``"admin"``, as the relay said (None: not yet, or an
        older relay that does not say)."""
        return self._engine.protocol.role or None

    @property
    def connection_state(self) -> str:
        """disconnected, connecting, connected, reconnecting or closed."""
        return self._engine.state

    @property
    def metrics(self) -> dict[str, Any]:
        return self._engine.metrics_dict()

    @property
    def pending(self) -> int:
        return len(self._engine.core.pending)

    # --- writing ------------------------------------------------------------------

    def set(
        self,
        path: str,
        value: Any,
        *,
        if_version: int | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Ack:
        """Replace the value at ``path`` (last write in room order wins)."""
        return self._write(
            SetOp(path=_path(path), value=shareable(value), if_version=if_version), priority
        )

    def merge(
        self,
        path: str,
        mapping: dict[str, Any],
        *,
        if_version: int | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Ack:
        """Shallow-merge keys into the mapping at ``path``."""
        if not isinstance(mapping, dict):
            raise ValueError(f"merge needs a mapping, not {type(mapping).__name__}")
        return self._write(
            MergeOp(path=_path(path), value=shareable(mapping), if_version=if_version), priority
        )

    def push(self, path: str, item: Any, *, priority: Priority = Priority.NORMAL) -> Ack:
        """Append ``item`` to the list at ``path``; a dict item gets an ``id`` if it has none."""
        item = shareable(item)
        if isinstance(item, dict) and "id" not in item:
            item["id"] = uuid.uuid4().hex[:16]
        return self._write(PushOp(path=_path(path), value=item), priority)

    def remove(self, path: str, item_id: str | int, *, priority: Priority = Priority.NORMAL) -> Ack:
        """Remove the list items whose ``id`` is ``item_id`` (idempotent)."""
        return self._write(RemoveOp(path=_path(path), id=item_id), priority)

    def increment(
        self, path: str, n: int | float = 1, *, priority: Priority = Priority.NORMAL
    ) -> Ack:
        """Add ``n`` to the number at ``path``; concurrent increments all count."""
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            raise ValueError(f"increment needs a number, not {type(n).__name__}")
        return self._write(IncrementOp(path=_path(path), by=shareable(n)), priority)

    def delete(self, path: str, *, priority: Priority = Priority.NORMAL) -> Ack:
        """Remove the key at ``path``."""
        return self._write(DeleteOp(path=_path(path)), priority)

    def apply(self, op: Op, *, priority: Priority = Priority.NORMAL) -> Ack:
        """Submit a ready-made op (from ``livewidgets.state``)."""
        return self._write(op, priority)

    # --- undo and redo (docs/undo.md) -----------------------------------------------

    def undo(self, path: str | None = None) -> Ack | None:
        """Take back your latest own write (within ``path`` if given) as a new write that
        keeps everyone else's changes; None when there is nothing to undo.

        The Ack fails with :class:`~livewidgets.errors.ConflictError` when a value the
        undo would restore was changed by someone since (``current`` says what it is now).
        """
        if path is not None:
            parse_path(path)
        return self._engine.undo(path)

    def redo(self, path: str | None = None) -> Ack | None:
        """Take back your latest undo (within ``path``); None when there is nothing to redo.
        Any new write of yours clears what can be redone."""
        if path is not None:
            parse_path(path)
        return self._engine.undo(path, redo=True)

    def can_undo(self, path: str | None = None) -> bool:
        return self._engine.can_undo(path)

    def can_redo(self, path: str | None = None) -> bool:
        return self._engine.can_undo(path, redo=True)

    # --- room rules ---------------------------------------------------------------

    def set_rules(self, rules: Any) -> Ack:
        """Set the room's rules (admins only; docs/rules.md): a list of rule tables, a
        ``{"rule": [...]}`` mapping or a :class:`~livewidgets.rules.RuleSet`. ``None``
        removes them (the relay's default rules apply again, if it has any).

        The rules are checked here first, so a mistake raises :class:`RulesError` at
        once; the relay checks them again and refuses non-admins (``forbidden``).
        """
        from ..rules import RuleSet, parse_rules

        if rules is None:
            return self.delete(RULES_PATH)
        parsed = rules if isinstance(rules, RuleSet) else parse_rules(rules)
        return self.set(RULES_PATH, parsed.to_data())

    @property
    def rules(self) -> Any:
        """The room's own rules as set with :meth:`set_rules` (None: none)."""
        return self.get(RULES_PATH)

    @contextlib.contextmanager
    def batch(self) -> Iterator[Ack]:
        """Group writes into one atomic op: every reader sees all of them or none."""
        if self._batch.ops is not None:
            yield self._batch.ack  # type: ignore[misc]  # nested: join the outer batch
            return
        self._batch.ops, self._batch.ack = [], Ack()
        ack = self._batch.ack
        try:
            yield ack
            ops = self._batch.ops
        finally:
            self._batch.ops, self._batch.ack = None, None
        if ops:
            self._engine.submit(ops, batch=True, ack=ack)
        else:
            ack.resolve(self.version)

    def _write(self, op: Op, priority: Priority) -> Ack:
        if self._batch.ops is not None:
            # Check it applies on top of the batch so far; the batch lands at exit.
            apply_ops(self._engine.core.visible, [*self._batch.ops, op])
            self._batch.ops.append(op)
            assert self._batch.ack is not None
            return self._batch.ack
        return self._engine.submit([op], priority=priority)

    # --- history (docs/history.md) -------------------------------------------------

    @staticmethod
    def _history_query(
        path: str | None, limit: int, user: str | None, before: int | None
    ) -> dict[str, Any]:
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be between 1 and 1000, not {limit}")
        return {
            "path": None if path is None or path == "" else _path(path),
            "limit": limit,
            "user": user,
            "before": before,
        }

    def _revert(self, reply: HistoryReply, path: str) -> Ack:
        """Submit the batch that makes ``path`` (the room when "") what it was in
        ``reply.state``, against the state as it is when the batch applies."""
        if self.role not in (None, "admin"):
            raise OpRejected("forbidden", "only an admin may revert the room")
        past = reply.state or {}
        for _ in range(100):  # a remote op landing in between: compute again
            seen = self._engine.core.visible
            ops = revert_ops(seen, past, path)
            if not ops:
                ack = Ack()
                ack.resolve(self.version)
                return ack

            def unchanged(visible: dict[str, Any], seen: dict[str, Any] = seen) -> None:
                if visible is not seen:
                    raise _Moved

            try:
                return self._engine.submit(ops, batch=True, precondition=unchanged)
            except _Moved:
                continue
        raise OpRejected("conflict", "the room kept changing while the revert was computed")

    # --- observing ----------------------------------------------------------------

    def subscribe(self, path: str, callback: Callable[[Any, str], Any]) -> Callable[[], None]:
        """``callback(value, path)`` once per visible change at or below ``path``."""
        return self._engine.subscriptions.add(path, callback)

    def on(self, event: str, callback: Callable[[dict[str, Any]], Any]) -> Callable[[], None]:
        """Listen to connected, disconnected, reconnecting, reconnect_failed, conflict, ..."""
        return self._engine.events.on(event, callback)

    def on_conflict(self, path: str, handler: ConflictHandler) -> Callable[[], None]:
        """Resolve conflicts at ``path``: ``handler(conflict)`` returns a value to write
        (mine, or a merge; written with ``if_version`` = their version), an Op, or None
        to keep theirs. ``conflict`` has path, mine (my ops), theirs, their_version."""
        parse_path(path)
        self._conflict_handlers[path] = handler

        def remove() -> None:
            self._conflict_handlers.pop(path, None)

        return remove

    def _on_conflict(self, payload: dict[str, Any]) -> None:
        path = payload.get("path")
        handler = self._conflict_handlers.get(path) if path else None
        if handler is None or path is None:
            return
        conflict = {
            "path": path,
            "mine": payload["ops"],
            "theirs": payload["current"],
            "their_version": payload["current_version"],
        }
        resolution = handler(conflict)
        if resolution is None:
            return
        if isinstance(resolution, (SetOp, MergeOp, PushOp, RemoveOp, IncrementOp, DeleteOp)):
            self._engine.submit([resolution])
        else:
            self.set(path, resolution, if_version=payload["current_version"])

    # --- presence -----------------------------------------------------------------

    @property
    def presence(self) -> dict[str, dict[str, Any]]:
        """Peers in the room (client_id -> their presence), not including this client."""
        return {k: v for k, v in self._engine.core.presence.items() if k != self.client_id}

    @property
    def my_presence(self) -> dict[str, Any]:
        """What this client publishes (user, name, color, status, cursors, ...)."""
        return dict(self._engine.presence.fields)

    def update_presence(self, **fields: Any) -> None:
        """Merge ``fields`` into this client's presence (None removes a key) and publish it,
        throttled to ``presence_rate`` per second with the latest value always sent."""
        self._engine.update_presence(shareable(fields))

    # --- administration (admin role) ---------------------------------------------

    def reset_room(self) -> None:
        """Delete every top-level key for everyone (admin role; refusals arrive as
        ``error`` events with code ``forbidden``)."""
        self._engine.send_admin("reset")

    def kick(self, client_id: str) -> None:
        """Disconnect a peer from this room (admin role; close code 4011)."""
        self._engine.send_admin("kick", client_id)

    # --- text ---------------------------------------------------------------------

    def text(self, path: str) -> TextHandle:
        """The collaborative text at ``path`` (one handle per path)."""
        handle = self._texts.get(path)
        if handle is None:
            handle = self._texts[path] = TextHandle(self, path)
        return handle


def _path(path: str) -> str:
    parse_path(path)
    return path


# --- threads ------------------------------------------------------------------------


class _LoopThread:
    """One daemon thread running the asyncio loop all sync sessions share (one per
    process: a forked child starts its own, see client.forks)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def forget(cls) -> None:
        """In a forked child: the thread did not survive the fork, and its lock may
        have been held by another thread at that moment."""
        cls._lock = threading.Lock()
        cls._loop = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="livewidgets-io", daemon=True
                )
                thread.start()
                cls._loop = loop
            return cls._loop


class _Moved(Exception):
    """The room changed between computing a revert and submitting it."""


class Session(SessionAPI):
    """A room session for ordinary (threaded) code; its I/O runs on a background loop."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(engine)
        self._loop = loop

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Block until the relay acknowledged every write made so far, or raise."""
        self._engine.wait_idle(timeout)

    def history(
        self,
        path: str | None = None,
        limit: int = 100,
        *,
        user: str | None = None,
        before: int | None = None,
        timeout: float | None = 10.0,
    ) -> HistoryPage:
        """Who changed what and when (docs/history.md): the newest ``limit`` (at most
        1000) entries that changed ``path`` (or below or above it; None: anything),
        oldest first, written by ``user`` (None: anyone), before version ``before``.
        Each has ``version``, ``time`` (Unix), ``user``, ``client_id`` and ``ops`` as
        applied, as the room's rules let you read them; the list's ``more`` says
        whether older ones match too. Blocks up to ``timeout``."""
        query = self._history_query(path, limit, user, before)
        return HistoryPage(self._run(self._engine.query_history(timeout, **query)))

    def state_at(self, version: int, path: str = "", *, timeout: float | None = 10.0) -> Any:
        """The value at ``path`` (the room when "") right after ``version``, within the
        kept history (else :class:`~livewidgets.client.history.HistoryError`
        ``out_of_history``)."""
        reply = self._run(self._engine.query_history(timeout, at=version))
        return get_path(reply.state or {}, path) if path else reply.state

    def revert_to(self, version: int, path: str = "", *, timeout: float | None = 10.0) -> Ack:
        """Make ``path`` (the whole room when "") what it was right after ``version``,
        as one new batch of the changes needed (admins; the room's ``$rules`` stay).
        Nothing is destroyed: history keeps what it replaced, and it can be undone."""
        if path:
            _path(path)
        reply = self._run(self._engine.query_history(timeout, at=version))
        return self._revert(reply, path)

    def close(self) -> None:
        """Leave the room and close the connection (no reconnect); returns once the
        callbacks of what happened before (the "closed" event included) have run."""
        if self._engine.state != "closed":
            self._run(self._engine.aclose(), timeout=10)
        self._engine.callbacks.wait_idle(10)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<livewidgets.Session room={self.room!r} user={self.user!r} "
            f"{self.connection_state} v{self.version}>"
        )


class AsyncSession(SessionAPI):
    """A room session for asyncio code; writes return Acks you can ``await``."""

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until the relay acknowledged every write made so far, or raise."""
        await asyncio.to_thread(self._engine.wait_idle, timeout)

    async def history(
        self,
        path: str | None = None,
        limit: int = 100,
        *,
        user: str | None = None,
        before: int | None = None,
        timeout: float | None = 10.0,
    ) -> HistoryPage:
        """See :meth:`Session.history`."""
        query = self._history_query(path, limit, user, before)
        return HistoryPage(await self._engine.query_history(timeout, **query))

    async def state_at(self, version: int, path: str = "", *, timeout: float | None = 10.0) -> Any:
        """See :meth:`Session.state_at`."""
        reply = await self._engine.query_history(timeout, at=version)
        return get_path(reply.state or {}, path) if path else reply.state

    async def revert_to(self, version: int, path: str = "", *, timeout: float | None = 10.0) -> int:
        """See :meth:`Session.revert_to`; returns the version the revert got."""
        if path:
            _path(path)
        reply = await self._engine.query_history(timeout, at=version)
        return int(await self._revert(reply, path))

    async def close(self) -> None:
        await self._engine.aclose()

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _engine(
    url: str | Sequence[str],
    room: str,
    user: str | None,
    token: str | None,
    client_id: str | None,
    options: dict[str, Any],
) -> Engine:
    command = options.pop("token_cmd", None)
    if command is not None:
        if options.get("token_refresh") is not None:
            raise ValueError("pass token_refresh= or token_cmd=, not both")
        provider = command if isinstance(command, TokenCommand) else TokenCommand(command)
        options["token_refresh"] = provider
        if token is None:
            token = provider()  # TokenCommandError says why it failed
    if token is None and options.get("token_refresh") is None and isinstance(url, str):
        local = _local_relay_credentials(url, room, user)
        if local is not None:
            token = local.token
            options["token_refresh"] = local.token_refresh
            options.setdefault("verify_relay", local.verify_relay)
    config = EngineConfig(**options)
    engine = Engine(url, room, user=user or "", token=token, client_id=client_id, config=config)
    forks.track(engine)
    return engine


def _local_relay_credentials(url: str, room: str, user: str | None) -> LocalCredentials | None:
    """This user's local relay (``%livewidgets connect`` without a URL) admits tokens
    only: mint one (and its renewal) from the secret in its runtime file, as
    ``livewidgets.local_relay.credentials`` does; None for any other relay."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    return credentials(url, room, user or None)


def connect(
    url: str | Sequence[str],
    room: str,
    user: str | None = None,
    token: str | None = None,
    *,
    client_id: str | None = None,
    wait: bool = True,
    timeout: float = 10.0,
    **options: Any,
) -> Session:
    """Join ``room`` on the relay at ``url``; blocks until joined when ``wait``.

    ``url`` may list several relays that serve the same rooms (one Redis store): after
    a failed or lost connection the next attempt goes to the next relay.

    ``options`` are :class:`EngineConfig` fields (backoff, max_attempts, heartbeat_interval,
    heartbeat_timeout, ack_timeout, max_pending, binary, ssl, ...). The token provider
    ``token_refresh=`` (a callable returning a fresh token, or None) renews the token
    before it expires, on the open connection, and after a 4004; ``token_cmd=`` (a
    shell command printing a token, or a :class:`~.tokens.TokenCommand` for another
    timeout) is the same from a command, and gives the first token if ``token`` is
    None (docs/security.md "Renewal").
    """
    deadline = time.monotonic() + timeout
    loop = _LoopThread.loop()
    # The I/O loop is shared by every session of the process: callbacks go elsewhere.
    options.setdefault("callback_thread", True)
    engine = _engine(url, room, user, token, client_id, options)

    async def start() -> None:
        engine.start()
        if wait:
            await engine.wait_joined(max(0.0, deadline - time.monotonic()))

    session = Session(engine, loop)
    started = asyncio.run_coroutine_threadsafe(start(), loop)
    try:
        # The loop's own wait ends at the deadline; this one only guards against a
        # loop that does not run at all.
        started.result(max(0.0, deadline - time.monotonic()) + 0.5)
    except (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError):
        _give_up(session, deadline)
        raise _timed_out(engine, timeout) from None
    except (SessionClosed, JoinRefused):
        _give_up(session, deadline)
        raise
    return session


def _give_up(session: Session, deadline: float) -> None:
    """Stop a session that failed to join, waiting no later than ``deadline``: the
    close goes on in the background, connect() has promised its caller a bound."""
    closing = asyncio.run_coroutine_threadsafe(session._engine.aclose(), session._loop)
    with contextlib.suppress(concurrent.futures.TimeoutError, TimeoutError, SessionClosed):
        closing.result(max(0.0, deadline - time.monotonic()))


def _timed_out(engine: Engine, timeout: float) -> ConnectTimeout:
    """The TimeoutError connect() raises: what the attempts met, if the relay said."""
    refusal = engine.last_refusal
    text = f"could not join room {engine.core.room!r} on {engine.url} within {timeout:g} s"
    if refusal is not None:
        text += f" ({engine.metrics.attempts} attempts; the last: {refusal})"
    elif engine.metrics.attempts:
        text += f" ({engine.metrics.attempts} attempts, no answer)"
    return ConnectTimeout(text, refusal)


async def connect_async(
    url: str | Sequence[str],
    room: str,
    user: str | None = None,
    token: str | None = None,
    *,
    client_id: str | None = None,
    wait: bool = True,
    timeout: float = 10.0,
    **options: Any,
) -> AsyncSession:
    """Asyncio twin of :func:`connect`, on the running loop."""
    engine = _engine(url, room, user, token, client_id, options)
    engine.start()
    session = AsyncSession(engine)
    if wait:
        try:
            await engine.wait_joined(timeout)
        except (TimeoutError, asyncio.TimeoutError):
            await session.close()
            raise _timed_out(engine, timeout) from None
        except (SessionClosed, JoinRefused):
            await session.close()
            raise
    return session


forks.on_fork_in_child(_LoopThread.forget)
