"""The relay server: asyncio + websockets around the pure room core.

Layout (each piece is small and has one job):

* :class:`Relay` (here) - configuration, lifecycle (start/stop), the room table and
  the client_id registry;
* :mod:`.connection` - one WebSocket: hello, frame dispatch, bounded send queue;
* :mod:`.runner` - one task per room: ordering, commit, fan-out, snapshots (one
  runner kind for a store of this relay's own, one for a shared store);
* :mod:`.hub` / :mod:`.room` - pure routing and sequencing;
* :mod:`.http` - ``/healthz`` and ``/metrics`` on the same port;
* :mod:`.policy` - the auth/limits seam; :mod:`.store` - durability.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import NegotiationError
from websockets.http11 import Request
from websockets.typing import Subprotocol

from .. import __version__
from ..protocol.codec import JSON_SUBPROTOCOL, SUBPROTOCOLS, Codec, server_codec
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.messages import (
    MAX_BATCH_OPS,
    PROTOCOL_VERSION,
    ClientMessage,
    History,
    HistoryReply,
    Welcome,
)
from ..rules import Actor, RuleSet
from ..state.ops import MAX_VALUE_DEPTH
from ..state.paths import MAX_PATH_DEPTH, MAX_PATH_LENGTH
from .addresses import ProxyTrust
from .connection import Connection, ConnectionConfig
from .history import HistoryHorizon, answer, state_at
from .http import HttpEndpoints
from .metrics import RelayMetrics
from .policy import AllowAll, Denied, Policy, RemoteAuthority
from .process import fd_capacity
from .revocation import Revocation
from .revoker import Revoker
from .room import DEFAULT_MAX_STATE_BYTES
from .room_rules import DefaultRules, RoomRules
from .runner import RoomRunner, RoomSettings, room_runner
from .store import Store, StoreError, open_store

__all__ = ["SERVER_NAME", "Relay"]

SERVER_NAME = f"livewidgets/{__version__}"


def _select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """The client's first supported encoding; none offered means JSON (docs/protocol.md).

    websockets' default would refuse a client that offers no subprotocol.
    """
    for subprotocol in offered:
        if subprotocol in SUBPROTOCOLS:
            return subprotocol
    if offered:
        raise NegotiationError(
            f"unsupported subprotocol; expected one of {', '.join(SUBPROTOCOLS)}"
        )
    return None


# Pending connections the kernel queues before the relay accepts them.
LISTEN_BACKLOG = 16384


class Relay:
    """A livewidgets relay on ``host:port`` (port 0 picks a free one).

    Use ``async with Relay(...) as relay:`` or ``await relay.start()`` then
    ``await relay.stop()``. ``store`` is a URL (``memory://``,
    ``sqlite:///rooms.db``, ``redis://host:6379/0``; the relay opens and closes it)
    or a :class:`Store` instance (the caller keeps ownership and closes it). Relays
    on one Redis may serve the same rooms (docs/protocol.md "Scale-out").

    Limits: ``max_frame_size`` bytes per incoming frame (larger: close 1009);
    ``send_queue_limit`` frames / ``send_queue_bytes`` bytes queued per connection
    (overflow: close 4009); ``max_inflight`` unprocessed room commands per
    connection (more: stop reading it); ``max_invalid_frames`` invalid frames in a
    row (then close 4012); ``hello_timeout`` seconds to send hello (else 4000).
    ``max_state_bytes`` bounds each room's JSON-encoded state (an op that would grow
    it past that is rejected with ``too_large``); default: 8 MiB
    (``room.DEFAULT_MAX_STATE_BYTES``), or half ``send_queue_bytes`` if that is less,
    so a joiner's snapshot fits its send queue.
    ``ping_interval``/``ping_timeout`` detect dead peers; ``snapshot_every`` ops
    between snapshots (bounds load and join time); ``presence_interval`` seconds
    at least between two presence messages of a room (changes in between are
    coalesced into one; 0 sends each change at once).

    ``trust_proxies``: CIDRs of reverse proxies whose ``Forwarded`` /
    ``X-Forwarded-For`` header names the client (relay.addresses; none by default:
    the TCP peer is the client). ``max_connections``: the most connections at once,
    beyond which upgrades get 503 (default: what the process's file-descriptor limit
    leaves room for, relay.process.fd_capacity).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        store: str | Store = "memory://",
        max_frame_size: int = 2**20,
        send_queue_limit: int = 1024,
        send_queue_bytes: int = 16 * 2**20,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        snapshot_every: int = 1000,
        presence_interval: float = 0.05,
        hello_timeout: float = 10.0,
        max_invalid_frames: int = 16,
        max_inflight: int = 256,
        max_state_bytes: int | None = None,
        close_timeout: float = 10.0,
        trust_proxies: Sequence[str] = (),
        max_connections: int | None = None,
        policy: Policy | None = None,
        ssl: ssl_module.SSLContext | None = None,
        logger: logging.Logger | None = None,
        rules: RuleSet | None = None,
        history: HistoryHorizon | None = None,
        base_url: str = "/",
    ) -> None:
        self.host = host
        # The path prefix the relay is served under (a JupyterHub service's
        # /services/NAME/): /healthz and /metrics are answered there too.
        self.base_url = base_url
        # How much history the store keeps behind its snapshots (docs/history.md);
        # only for a store the relay opens from a URL.
        self.history = history
        # Rules for rooms without their own (docs/rules.md); reload_rules replaces them.
        self._rules = DefaultRules(rules)
        self._requested_port = port
        self._store_arg = store
        self.max_frame_size = max_frame_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.snapshot_every = snapshot_every
        self.presence_interval = presence_interval
        # Catch-ups longer than this are served as a snapshot: a delta must fit the send queue.
        self.max_delta = max(1, min(1000, send_queue_limit // 2))
        if max_state_bytes is None:
            # A snapshot must fit the send queue too, with room for the frames around it.
            max_state_bytes = min(DEFAULT_MAX_STATE_BYTES, send_queue_bytes // 2)
        if max_state_bytes < 1:
            raise ValueError(f"max_state_bytes must be positive, not {max_state_bytes}")
        if not 0 <= presence_interval < float("inf"):
            raise ValueError(f"presence_interval must be >= 0 seconds, not {presence_interval}")
        self.max_state_bytes = max_state_bytes
        self._connection_config = ConnectionConfig(
            hello_timeout=hello_timeout,
            send_queue_limit=send_queue_limit,
            send_queue_bytes=send_queue_bytes,
            max_invalid_frames=max_invalid_frames,
            max_inflight=max_inflight,
            close_timeout=close_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
        self._policy: Policy = policy if policy is not None else AllowAll()
        self._proxies = ProxyTrust(trust_proxies)
        self.max_connections = max_connections if max_connections is not None else fd_capacity()
        # With a TLS context the relay serves wss:// (and https:// for /healthz).
        self._ssl = ssl
        self._logger = logger or logging.getLogger("livewidgets.relay")
        self._metrics = RelayMetrics()
        # One codec per subprotocol, shared by all connections (fan-out encodes once per codec).
        self._codecs: dict[str, Codec[ClientMessage]] = {
            sp: server_codec(sp) for sp in SUBPROTOCOLS
        }
        self._store: Store | None = None
        self._owns_store = isinstance(store, str)
        self._server: Server | None = None
        self._rooms: dict[str, RoomRunner[Connection]] = {}
        # client_id -> its current connection (a newer one replaces an older one).
        self._clients: dict[str, Connection] = {}
        self._connections: set[Connection] = set()
        # The denylist of revoked links and tokens, kept equal to the store's.
        self._revoker = Revoker(self._policy, lambda: self._connections, self._logger)
        self._stopping = False
        self._stop_task: asyncio.Task[None] | None = None
        # A remote authority's periodic recheck of the tokens in use (relay.hub_auth).
        self._recheck_task: asyncio.Task[None] | None = None
        self._started_at = 0.0

    # --- public API ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (after start)."""
        if self._server is None:
            raise RuntimeError("the relay is not started")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        """``ws://host:port`` (``wss://`` with TLS) for clients (after start)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{host}:{self.port}"

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the relay is not started")
        return self._store

    @property
    def store_description(self) -> str:
        arg = self._store_arg
        return arg if isinstance(arg, str) else type(arg).__name__

    @property
    def rules(self) -> RuleSet | None:
        """The rule set of rooms without their own (None: no rules)."""
        return self._rules.rules

    def reload_rules(self, rules: RuleSet | None) -> None:
        """Replace the default rules (``livewidgets relay`` does on SIGHUP). New ops
        are checked under them at once; every connection is closed with 1012 so that
        its client reconnects and gets the room as it may see it now."""
        self._rules.replace(rules)
        for connection in list(self._connections):
            connection.close(CloseCode.SERVICE_RESTART, "the relay's rules changed")

    @property
    def metrics(self) -> RelayMetrics:
        return self._metrics

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def rooms(self) -> Mapping[str, RoomRunner[Connection]]:
        """Loaded rooms by name (read-only view)."""
        return types.MappingProxyType(self._rooms)

    @property
    def connection_config(self) -> ConnectionConfig:
        return self._connection_config

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the store and start listening."""
        if self._server is not None:
            raise RuntimeError("the relay is already started")
        if isinstance(self._store_arg, str):
            # Opening SQLite may create/migrate the file: keep it off the event loop.
            self._store = await asyncio.to_thread(open_store, self._store_arg, history=self.history)
        else:
            self._store = self._store_arg
        try:
            # Revocations are in force before the first hello (relay.revoker).
            await self._revoker.start(self._store)
            self._server = await self._listen()
            if isinstance(self._policy, RemoteAuthority):
                self._recheck_task = asyncio.create_task(self._recheck(self._policy))
        except BaseException:
            await self._revoker.stop()
            if self._owns_store:  # e.g. the port is taken: do not leak the open store
                await self._store.close()
            raise
        self._started_at = time.monotonic()
        self._logger.info("relay listening on %s (store: %s)", self.url, self.store_description)

    async def stop(self) -> None:
        """Graceful stop: refuse new connections, finish in-flight commits and their
        acks, close clients with 1001, then close the store (if the relay opened it)."""
        if self._server is None:
            return
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._shutdown(self._server))
        await asyncio.shield(self._stop_task)

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` body."""
        return {
            "status": "stopping" if self._stopping else "ok",
            "server": SERVER_NAME,
            "connections": len(self._connections),
            "rooms": len(self._rooms),
            "uptime_s": round(time.monotonic() - self._started_at, 3),
        }

    # --- RelayContext (used by connections) ------------------------------------------

    def welcome(self, client_id: str, connection_id: str, nonce: str | None = None) -> Welcome:
        limits: dict[str, int | float] = {
            "max_frame_size": self.max_frame_size,
            "max_batch_ops": MAX_BATCH_OPS,
            "max_path_length": MAX_PATH_LENGTH,
            "max_path_depth": MAX_PATH_DEPTH,
            "max_value_depth": MAX_VALUE_DEPTH,
            "send_queue_limit": self._connection_config.send_queue_limit,
            "max_inflight": self._connection_config.max_inflight,
            "max_delta": self.max_delta,
            "max_state_bytes": self.max_state_bytes,
        }
        # The rates a client paces itself to (docs/protocol.md "Pacing").
        limits.update(self.policy.rates())
        proof = self.policy.prove(nonce) if nonce else None
        return Welcome(PROTOCOL_VERSION, client_id, connection_id, SERVER_NAME, limits, proof)

    def client_address(self, ws: ServerConnection) -> str | None:
        """The client's IP address: the TCP peer's, or through a trusted proxy the one
        it forwards for (relay.addresses). Only while the handshake headers are kept."""
        return self._address(ws, ws.request)

    def _address(self, ws: ServerConnection, request: Request | None) -> str | None:
        try:
            peer = ws.remote_address
        except OSError:
            return None
        address = str(peer[0]) if isinstance(peer, tuple) and peer else None
        if not self._proxies or request is None:
            return address
        return self._proxies.client_address(address, request.headers)

    def _admit(self, ws: ServerConnection, request: Request) -> Denied | None:
        """Before the handshake: the relay's capacity, then the policy's per-address
        limit, so a refusal is an HTTP answer that says why (429/503, relay.http)."""
        limit = self.max_connections
        if limit is not None and len(self._connections) >= limit:
            return Denied(
                ErrorCode.LIMIT_EXCEEDED,
                f"the relay is at capacity (limit {limit} connections at once); try again "
                "later, or raise its file descriptor limit (ulimit -n)",
                status=503,
            )
        return self._policy.check_connect(self._address(ws, request))

    def room(self, name: str) -> RoomRunner[Connection]:
        runner = self._rooms.get(name)
        if runner is None:
            settings = RoomSettings(
                snapshot_every=self.snapshot_every,
                max_delta=self.max_delta,
                presence_interval=self.presence_interval,
                max_state_bytes=self.max_state_bytes,
                rules=self._rules,
            )
            runner = room_runner(
                name,
                self.store,
                settings,
                metrics=self._metrics,
                on_exit=self._room_exited,
                logger=self._logger,
            )
            self._rooms[name] = runner
            self._metrics.rooms.inc()
            runner.start()
        return runner

    def register(self, connection: Connection) -> None:
        old = self._clients.get(connection.client_id)
        if old is not None and old is not connection:
            old.close(CloseCode.REPLACED, "replaced by a newer connection", flush=False)
        self._clients[connection.client_id] = connection

    def kick(self, client_id: str, room: str) -> bool:
        """Disconnect ``client_id`` if it is in ``room`` (close 4011); False if not found."""
        connection = self._clients.get(client_id)
        if connection is None or room not in connection.rooms:
            return False
        connection.close(CloseCode.KICKED, "removed by an admin", flush=False)
        return True

    async def read_history(self, query: History, actor: Actor) -> HistoryReply:
        """Answer a ``history`` query from the store (docs/history.md), as ``actor``
        may read it under the room's rules in force. The work (replaying the kept
        history under rules, or up to ``at``) runs on a worker thread."""
        runner = self._rooms.get(query.room)
        hub = runner.hub if runner is not None else None
        try:
            record = await self.store.read_history(query.room)
        except StoreError as exc:
            self._logger.error("room %r: reading its history failed: %s", query.room, exc)
            detail = "the history could not be read; see the relay log"
            return HistoryReply(query.room, query.id, error="internal", message=detail)
        if hub is not None:
            rules = hub.core.rules_in_force
            return await asyncio.to_thread(answer, record, query, actor, rules)
        # The room is still loading: its rules are those of its stored state.
        default = self._rules

        def answer_loading() -> HistoryReply:
            rules = RoomRules(default).effective(state_at(record, record.head))
            return answer(record, query, actor, rules)

        return await asyncio.to_thread(answer_loading)

    async def revoke(self, revocation: Revocation) -> int:
        """Record ``revocation`` in the store and close this relay's connections it
        denies (4006); other relays of a shared store close theirs as they hear of it."""
        return await self._revoker.revoke(self.store, revocation)

    def unregister(self, connection: Connection) -> None:
        if self._clients.get(connection.client_id) is connection:
            del self._clients[connection.client_id]

    # --- internals -------------------------------------------------------------------

    async def _listen(self) -> Server:
        server: Server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            subprotocols=[Subprotocol(sp) for sp in SUBPROTOCOLS],
            select_subprotocol=_select_subprotocol,
            process_request=HttpEndpoints(
                self.health, self._metrics, self._policy, self._admit, base_url=self.base_url
            ),
            # Compression would re-compress every broadcast per receiver, undoing encode-once.
            compression=None,
            max_size=self.max_frame_size,
            # Connections run their own heartbeat (see Connection._heartbeat).
            ping_interval=None,
            close_timeout=self._connection_config.close_timeout,
            ssl=self._ssl,
            # A class connecting at once: asyncio's default accept queue (100) overflows
            # and the kernel drops SYNs, which clients resend after 1, 3, 7, 15 s. The
            # kernel caps it at net.core.somaxconn (docs/deploy.md).
            backlog=min(self.max_connections or LISTEN_BACKLOG, LISTEN_BACKLOG),
        )
        return server

    async def _handle(self, ws: ServerConnection) -> None:
        codec = self._codecs[ws.subprotocol or JSON_SUBPROTOCOL]
        connection = Connection(ws, self, codec)
        self._connections.add(connection)
        self._metrics.connections.inc()
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            self._metrics.connections.dec()

    def _room_exited(self, runner: RoomRunner[Connection]) -> None:
        if self._rooms.get(runner.name) is runner:
            del self._rooms[runner.name]
            self._metrics.rooms.dec()

    async def _recheck(self, authority: RemoteAuthority) -> None:
        """Every ``recheck_interval``: the authority asks again about the tokens in use;
        connections whose token it dropped are closed (4006) by a revoker sweep."""
        while True:
            await asyncio.sleep(authority.recheck_interval)
            try:
                changed = await authority.recheck()
            except Exception as exc:  # the next round tries again
                self._logger.warning("rechecking tokens failed: %s", exc)
                continue
            if changed:
                closed = self._revoker.sweep()
                self._logger.info("closed %d connection(s) whose token is no longer valid", closed)

    async def _shutdown(self, server: Server) -> None:
        self._stopping = True
        # Stop listening; handshakes in progress get 503. Open connections stay for now.
        server.close(close_connections=False)
        # Commit what the rooms accepted and queue its acks and broadcasts.
        await asyncio.gather(*(runner.stop() for runner in list(self._rooms.values())))
        # Flush each send queue, then close with 1001: clients reconnect and resume.
        for connection in list(self._connections):
            connection.close(CloseCode.GOING_AWAY, "relay shutting down")
        closed = asyncio.ensure_future(server.wait_closed())
        # A peer that stopped reading would hold its flush (and us) forever: cut it off.
        await asyncio.wait({closed}, timeout=2 * self._connection_config.close_timeout)
        for connection in list(self._connections):
            connection.abort()
        await closed
        if self._recheck_task is not None:
            self._recheck_task.cancel()
        await self._revoker.stop()
        if self._owns_store and self._store is not None:
            await self._store.close()
        self._logger.info("relay stopped")
