"""A deterministic simulation of the real client and relay objects on a fake network.

Clients are :class:`ClientProtocol` objects (each with its RoomSync); relays are one
:class:`RelayProtocol` per connection, one :class:`RoomHub` per relay, and a tiny
runner that does what the asyncio runners do with the hub's sends:

* a relay on its own store (relay.runner_local + relay.pipeline): each round goes
  through the real :class:`PipelineCore`: a round's sends go out at once, but those
  marked ``after_commit`` (and whatever follows them for the same member) wait for
  the round's group commit, which the scheduler ends later; while one commit is in
  flight, later rounds gather for the next one. A crash loses
  what was not committed although members saw it; the restarted relay loads the
  committed log in a new epoch (relay.lineage).
* two relays on one shared store (relay.runner_shared): a round first catches up
  from the store if a newer head was reported, is committed before any of it is
  delivered, and a refused (conflicting) append is redone (RoomHub.redo).

Each connection is a pair of FIFO queues (TCP keeps order within a connection);
the scheduler, driven by one ``random.Random(seed)`` and a fake clock, picks which
queue delivers next and when rounds and commits run, and executes the clients'
actions (dials, reconnect delays, pings, token refreshes, proof checks). Relay
frames cross as encoded bytes (the real fan-out encodes them), client frames are
encoded and decoded by the codecs too. Faults are seeded: cuts, dead peers found by
the heartbeat, partitions, ack-timeout resends, slow consumers (4009), token expiry
(4004, then a refresh), relay crashes mid-commit and restarts, failover, admin
resets and kicks (4011, then a new session), hellos held past the hello timeout
(4000), and reader credits (a connection stops reading while its commands wait).
Same seed, same run.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livewidgets.auth import relay_proof, verify_relay_proof
from livewidgets.client.backoff import Backoff
from livewidgets.client.core import Acked, Failed, RoomSync
from livewidgets.client.presence import LocalPresence
from livewidgets.client.protocol import (
    Abort,
    AuthExpiredEvent,
    ClientProtocol,
    Connect,
    GaveUp,
    NeedToken,
    Ping,
    ProtocolConfig,
    ReconnectAfter,
    Refused,
    RefusedConnection,
    SendMessages,
    State,
    VerifyProof,
)
from livewidgets.client.protocol import Close as ClientClose
from livewidgets.protocol import PROTOCOL_VERSION, CloseCode, ErrorCode, Hello, Welcome
from livewidgets.protocol.codec import client_codec, server_codec
from livewidgets.protocol.messages import Batch, OpMessage, Snapshot
from livewidgets.relay.fanout import Framed, commands_done, deliver
from livewidgets.relay.hub import Command, Delivery, JoinRoom, RoomHub, Submit
from livewidgets.relay.lineage import Lineage
from livewidgets.relay.pipeline import (
    CommandsDone,
    Deliver,
    PipelineAction,
    PipelineCore,
    StartCommit,
)
from livewidgets.relay.policy import AllowAll, Denied, Principal
from livewidgets.relay.room import LogEntry, RoomCore, RoomRecord
from livewidgets.relay.session import (
    Close,
    ExpireAt,
    Kick,
    Put,
    Register,
    RelayProtocol,
    Reply,
)
from livewidgets.relay.session import State as RelayState
from livewidgets.state import text as text_ot
from livewidgets.state.ops import (
    DeleteOp,
    IncrementOp,
    MergeOp,
    Op,
    PushOp,
    RemoveOp,
    SetOp,
    TextOp,
    apply_ops,
    get_path,
)

ROOM = "sim"
PATHS = ["a", "a/x", "a/y", "b", "list", "n", "t"]
ALPHABET = ["a", "b", "é", "e\u0301", "👍", "漢", " "]
SECRET = b"sim-relay-secret"
# The relay's codec (encodes its frames, decodes the clients') and the client's.
RELAY_CODEC = server_codec(None)
CLIENT_CODEC = client_codec(None)
# Seconds of fake time per scheduler step.
DT = 0.01
# The clients' timers, scaled to the fake clock (a step is 10 ms).
CONFIG = ProtocolConfig(
    open_timeout=1.0,
    heartbeat_interval=1.0,
    heartbeat_timeout=0.5,
    ack_timeout=1.0,
    can_refresh=True,
)
BACKOFF = Backoff(initial=0.05, factor=2.0, cap=1.0)
# The relay's hello_timeout (server.py), scaled like the clients' timers.
HELLO_TIMEOUT = 0.5
# Reader credits per connection with Faults(inflight=True) (server.py max_inflight).
MAX_INFLIGHT = 2


@dataclass(frozen=True)
class CloseFrame:
    """The relay's close frame: the client learns the code, the connection ends."""

    code: int


@dataclass(frozen=True)
class Faults:
    """Which fault kinds a run schedules (cuts, dead peers, partitions and resends
    always happen; these add to them)."""

    crashes: bool = False
    expiry: bool = False
    slow: bool = False
    verify: bool = False
    # Admins reset the room and kick members (4011: the kicked user comes back with a
    # new session, as a person reopening the notebook would).
    admin: bool = False
    # A client's first frames are held past the relay's hello timeout (4000).
    hello_stall: bool = False
    # Few reader credits: a connection stops reading while its commands wait for rounds.
    inflight: bool = False


# --- the relay side ------------------------------------------------------------------


@dataclass(eq=False)
class RelayConn:
    """The relay's end of one connection: a hub member (fanout.Peer) and its protocol."""

    relay: SimRelay
    link: Link
    protocol: RelayProtocol[Any] = field(init=False)
    client_id: str = ""
    user: str = ""
    closing: bool = False
    codec: Any = RELAY_CODEC
    # Reader credits (connection._put / command_done): commands put and not yet done,
    # and the actions of the frame being read once a Put waits for a credit (no
    # further frame is read meanwhile).
    inflight: int = 0
    stalled: list[Any] = field(default_factory=list)

    def enqueue_frames(self, frames: list[Framed]) -> None:
        """connection.enqueue_frames: a round's frames onto an idle connection go out in
        one write; behind unread ones, more than ``send_queue_limit`` close it with 4009
        (the link's queue stands for the socket's buffer and the relay's queue)."""
        if self.closing:
            return
        queue = self.link.to_client
        if queue and len(queue) + len(frames) > self.relay.sim.send_queue_limit:
            self.relay.sim.counts["slow_consumer_close"] += 1
            self.close(CloseCode.SLOW_CONSUMER, flush=False)
            return
        queue.extend(payload for payload, _ in frames)

    def reply(self, message: Any) -> None:
        self.enqueue_frames([(RELAY_CODEC.encode(message), b"")])

    def command_done(self) -> None:
        self.inflight -= 1
        assert self.inflight >= 0, "a reader credit was returned twice"

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        if self.closing:
            return
        self.closing = True
        self.protocol.close()
        if not flush:
            self.link.to_client.clear()
        self.link.to_client.append(CloseFrame(code))


class SimPolicy(AllowAll):
    """AllowAll, with tokens that expire at a time the simulation drew."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def on_hello(self, hello: Hello, request: Any) -> Principal | Denied:
        expires = self.sim.token_expiry.get(hello.token or "")
        if expires is not None and expires <= self.sim.now:
            return Denied(ErrorCode.AUTH_EXPIRED, "token expired", CloseCode.AUTH_EXPIRED)
        return Principal(user=hello.user, claims={"token": hello.token})

    def expires_at(self, principal: Principal) -> float | None:
        return self.sim.token_expiry.get(principal.claims.get("token") or "")


class SimStore:
    """The durable log: one relay's own, or shared by several (one epoch then)."""

    def __init__(self, shared: bool) -> None:
        self.shared = shared
        self.log: list[LogEntry] = []
        self.lineage: Lineage | None = Lineage.first() if shared else None

    def load(self, window: int) -> RoomCore:
        """runner_base._load: a new epoch per load, unless the store is shared."""
        if not self.shared:
            head = self.log[-1].version if self.log else 0
            self.lineage = self.lineage.successor(head) if self.lineage else Lineage.first()
        record = RoomRecord(ROOM, log=list(self.log), lineage=self.lineage)
        return RoomCore(record, window=window)

    def append(self, entries: list[LogEntry]) -> bool:
        """The conditional append: refused unless the entries continue the log."""
        if entries[0].version != len(self.log) + 1:
            return False
        self.log.extend(entries)
        return True


class SimRelay:
    """One relay process: its connections' protocols, its room hub and runner."""

    def __init__(self, sim: Simulation, name: str, store: SimStore) -> None:
        self.sim = sim
        self.name = name
        self.url = f"ws://{name}"
        self.store = store
        self.up = True
        # Incremented by each crash: timers of an earlier life do nothing.
        self.life = 0
        self.hub: RoomHub[Any] = self._new_hub()
        self.inbox: list[Command[Any]] = []
        self.registry: dict[str, RelayConn] = {}
        self.links: list[Link] = []
        self.policy = SimPolicy(sim)
        # Local store: the real group-commit logic, and the entries of the commit in
        # flight (the scheduler decides when it returns).
        self.pipeline: PipelineCore[RelayConn] = PipelineCore()
        self.writing: list[LogEntry] | None = None
        # Connections whose reader waits for a credit (RelayConn.stalled); a dict, so
        # the scheduler sees them in a fixed order (same seed, same run).
        self.stalled: dict[RelayConn, None] = {}
        # Shared store: a newer head was reported (catch up before the next round).
        self.behind = False
        self._ids = itertools.count()

    def _new_hub(self) -> RoomHub[Any]:
        return RoomHub(self.store.load(self.sim.window), max_delta=self.sim.max_delta)

    def welcome(self, client_id: str, connection_id: str, nonce: str | None) -> Welcome:
        proof = relay_proof(SECRET, nonce) if nonce else None
        return Welcome(PROTOCOL_VERSION, client_id, connection_id, self.name, {}, proof)

    def accept(self, link: Link) -> RelayConn:
        conn = RelayConn(self, link)
        conn.protocol = RelayProtocol(
            conn,
            self.policy,
            connection_id=f"{self.name}-{next(self._ids)}",
            welcome=self.welcome,
            max_invalid_frames=10,
        )
        self.links.append(link)
        self.execute(conn, conn.protocol.connect(link.client.name))
        self.sim.later(HELLO_TIMEOUT, lambda life=self.life: self._hello_due(conn, life))
        return conn

    def _hello_due(self, conn: RelayConn, life: int) -> None:
        """connection._handshake: no frame within hello_timeout closes with 4000."""
        if life != self.life or conn.link.relay_done:
            return
        if conn.protocol.state is RelayState.AWAITING_HELLO:
            self.sim.counts["hello_timeout"] += 1
            self.execute(conn, conn.protocol.hello_timeout())

    # --- the connection shell (relay.connection) -------------------------------------

    def receive(self, conn: RelayConn, frame: bytes | str) -> None:
        message = RELAY_CODEC.decode(frame)
        if isinstance(message, (OpMessage, Batch)):
            result = conn.protocol.submit(message, self.sim.now)
            actions = [Put(ROOM, result)] if isinstance(result, Submit) else result
        else:
            actions = conn.protocol.receive(message, self.sim.now)
        self.execute(conn, actions)

    def execute(self, conn: RelayConn, actions: list[Any]) -> None:
        for index, action in enumerate(actions):
            if isinstance(action, Reply):
                conn.reply(action.message)
            elif isinstance(action, Put):
                limit = self.sim.max_inflight
                if action.wait and conn.closing:
                    continue  # connection._put: a closing connection's commands are dropped
                if action.wait and limit is not None and conn.inflight >= limit:
                    # connection._put waits for a credit: the rest of this frame's
                    # actions, and the next frames, wait with it (resume_reading).
                    self.sim.counts["inflight_wait"] += 1
                    conn.stalled = actions[index:]
                    self.stalled[conn] = None
                    return
                conn.inflight += 1
                self.inbox.append(action.command)
            elif isinstance(action, Close):
                conn.close(action.code, action.reason, flush=action.flush)
            elif isinstance(action, Register):
                self._register(conn, action)
            elif isinstance(action, ExpireAt):
                self.sim.at(action.deadline, lambda life=self.life: self._expire(conn, life))
            elif isinstance(action, Kick):
                self._kick(conn, action)
            else:  # e.g. PauseReading: AllowAll never slows anyone down
                raise AssertionError(f"the sim does not carry out {action!r}")

    def resume_reading(self, conn: RelayConn) -> None:
        """A credit came back (or the connection closes): the stalled frame goes on."""
        actions, conn.stalled = conn.stalled, []
        self.stalled.pop(conn, None)
        self.execute(conn, actions)

    def _kick(self, conn: RelayConn, action: Kick) -> None:
        """server.kick: close the member's connection with 4011, else answer absent."""
        target = self.registry.get(action.client_id)
        if target is None or action.room not in target.protocol.rooms:
            self.sim.counts["kick_absent"] += 1
            conn.reply(action.absent)
            return
        self.sim.counts["kick"] += 1
        target.close(CloseCode.KICKED, "removed by an admin", flush=False)

    def _register(self, conn: RelayConn, action: Register) -> None:
        conn.client_id, conn.user = action.client_id, action.user
        old = self.registry.get(action.client_id)
        if old is not None and old is not conn and not old.link.relay_done:
            self.sim.counts["replaced"] += 1
            old.close(CloseCode.REPLACED, "replaced")
        self.registry[action.client_id] = conn

    def _expire(self, conn: RelayConn, life: int) -> None:
        if life == self.life and not conn.link.relay_done:
            actions = conn.protocol.expire()
            if actions:
                self.sim.counts["token_expired"] += 1
            self.execute(conn, actions)

    def lost(self, conn: RelayConn) -> None:
        """The socket is gone: leave the rooms (their LeaveRoom goes to the inbox)."""
        if self.registry.get(conn.client_id) is conn:
            del self.registry[conn.client_id]
        conn.closing = True
        conn.stalled = []  # the reader waiting for a credit ends with the socket
        self.stalled.pop(conn, None)
        self.execute(conn, conn.protocol.connection_lost())

    # --- the runner -------------------------------------------------------------------

    def run_round(self, count: int) -> None:
        batch, self.inbox = self.inbox[:count], self.inbox[count:]
        if self.store.shared:
            self._shared_round(batch)
        else:
            self._local_round(batch)

    def _local_round(self, batch: list[Command[Any]]) -> None:
        """runner_local._round: the hub's sends and entries go to the pipeline core."""
        hub = self.hub
        sends = [send for command in batch for send in hub.handle(command)]
        if hub.presence_waiting:
            sends.extend(hub.flush_presence())
        self._pipeline_do(self.pipeline.add(sends, hub.take_unsaved(), batch))

    @property
    def committing(self) -> bool:
        return self.pipeline.committing

    def commit(self) -> None:
        """The group commit returns: the entries are durable, their waiting sends go out."""
        entries, self.writing = self.writing, None
        assert entries is not None
        assert self.store.append(entries), "a local store's append cannot conflict"
        self._pipeline_do(self.pipeline.commit_done())

    def _pipeline_do(self, actions: list[PipelineAction[RelayConn]]) -> None:
        """pipeline.CommitPipeline._do, with the commit left to the scheduler."""
        for action in actions:
            if isinstance(action, Deliver):
                deliver(action.sends, action.encoded)
            elif isinstance(action, CommandsDone):
                commands_done(action.commands)
            elif isinstance(action, StartCommit):
                self.writing = action.entries
            else:
                raise AssertionError(f"a sim commit never fails: {action}")

    def _shared_round(self, batch: list[Command[Any]]) -> None:
        """runner_shared._process: catch up, handle, commit (redo on conflict), deliver."""
        hub = self.hub
        if self.behind or any(_ahead(command, hub.core.version) for command in batch):
            self.catch_up()
        hub.core.begin_round()
        groups: list[list[Delivery[Any]]] = []
        for index, command in enumerate(batch):
            if hub.has_unsaved and isinstance(command, JoinRoom):
                self.inbox[:0] = batch[index:]
                batch = batch[:index]
                break
            groups.append(hub.handle(command))
        before: list[Delivery[Any]] = []
        entries = hub.take_unsaved()
        while entries and not self.store.append(entries):
            self.sim.counts["store_conflict"] += 1
            remote = self.store.log[entries[0].version - 1 :]
            before += hub.redo(batch, groups, remote)
            entries = hub.take_unsaved()
        hub.core.end_round()
        if entries:
            self.sim.head_reported(self)
            if self.sim.crash_now(self):
                return  # committed, and the relay died before anyone heard of it
        sends = before + [send for group in groups for send in group]
        if hub.presence_waiting:
            sends.extend(hub.flush_presence())
        deliver(sends)
        commands_done(batch)

    def catch_up(self) -> None:
        """Apply and broadcast what other relays committed (runner_shared._catch_up)."""
        self.behind = False
        deliver(self.hub.apply_remote(self.store.log[self.hub.core.version :]))

    # --- crash and restart --------------------------------------------------------------

    def crash(self) -> None:
        """The process dies: every connection drops, uncommitted entries are lost."""
        self.up = False
        self.life += 1
        self.inbox, self.pipeline, self.writing = [], PipelineCore(), None
        self.stalled.clear()
        self.registry.clear()
        for link in self.links:
            link.relay_done = True
            self.sim.cut(link, relay_notice=None)
        self.links = []

    def restart(self) -> None:
        self.up = True
        self.behind = False
        self.hub = self._new_hub()

    @property
    def busy(self) -> bool:
        return bool(self.inbox or not self.pipeline.idle or self.stalled)


def _ahead(command: Command[Any], version: int) -> bool:
    if isinstance(command, Submit):
        return command.base_version > version
    if isinstance(command, JoinRoom):
        return command.since is not None and command.since > version
    return False


# --- connections and clients ---------------------------------------------------------


@dataclass(eq=False)
class Link:
    """One connection: two FIFO queues of frames."""

    client: SimClient
    relay: SimRelay
    conn: RelayConn = field(init=False)
    to_relay: deque[bytes | str] = field(default_factory=deque)
    to_client: deque[Any] = field(default_factory=deque)
    # Nothing crosses a dead peer's connection, and nobody is told.
    silent: bool = False
    # Whether each side has learned that the connection ended.
    client_done: bool = False
    relay_done: bool = False
    # The relay reads nothing from this connection until then (a stalled hello).
    hold_until: float = 0.0

    @property
    def alive(self) -> bool:
        return not (self.client_done or self.relay_done or self.silent)


@dataclass(eq=False)
class SimClient:
    name: str
    protocol: ClientProtocol
    link: Link | None = None
    # handle -> "acked" / "failed"
    outcomes: dict[int, str] = field(default_factory=dict)
    issued: list[int] = field(default_factory=list)
    # Unreachable (partitioned) until then; its frames are read slowly until then.
    offline_until: float = 0.0
    slow_until: float = 0.0
    last_relay: str | None = None

    @property
    def core(self) -> RoomSync:
        return self.protocol.rooms[ROOM]


class Simulation:
    def __init__(
        self,
        seed: int,
        clients: int = 5,
        *,
        window: int = 40,
        max_delta: int = 25,
        crashes: bool = False,
        faults: Faults | None = None,
        relays: int = 1,
        send_queue_limit: int = 64,
    ) -> None:
        self.rng = random.Random(seed)
        self.faults = faults or Faults(crashes=crashes)
        self.window = window
        self.max_delta = max_delta
        # As the relay's config: a catch-up fits in the send queue (server.py).
        assert max_delta <= send_queue_limit // 2
        self.send_queue_limit = send_queue_limit
        self.max_inflight = MAX_INFLIGHT if self.faults.inflight else None
        self.now = 0.0
        self.counts: Counter[str] = Counter()
        self.token_expiry: dict[str, float] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._tokens = itertools.count()
        self.healing = False
        shared = relays > 1
        self.store = SimStore(shared)
        if shared:
            self.relays = [SimRelay(self, f"relay{i}", self.store) for i in range(relays)]
        else:
            self.relays = [SimRelay(self, "relay0", self.store)]
        self.by_url = {relay.url: relay for relay in self.relays}
        self.clients = [self._new_client(f"c{i}") for i in range(clients)]
        # Clients that stopped for good (kicked); a new session took each one's place.
        self.retired: list[SimClient] = []
        self._handle = 0
        # handle -> (client name, client_seq) of the write, for the log checks.
        self.handle_seq: dict[int, tuple[str, int]] = {}
        for client in self.clients:
            self._client_do(client, client.protocol.connect(self.now))

    @property
    def log(self) -> list[LogEntry]:
        return self.store.log

    @property
    def relay(self) -> RoomCore:
        """The first relay's room (every relay's once the run is quiet)."""
        return self.relays[0].hub.core

    def _new_client(self, name: str) -> SimClient:
        rng = self.rng
        urls = [relay.url for relay in self.relays]
        rng.shuffle(urls)
        verify = self.faults.verify and rng.random() < 0.5
        config = ProtocolConfig(**{**vars(CONFIG), "verify": verify})
        seed = rng.random()
        protocol = ClientProtocol(
            urls,
            [ROOM],
            client_id=name,
            user=name,
            token=self._token(),
            presence=LocalPresence(name, clock=lambda: self.now),
            delays=lambda: BACKOFF.delays(random.Random(seed)),
            config=config,
            nonces=lambda: f"{rng.getrandbits(96):024x}",
            max_pending=100_000,
        )
        return SimClient(name, protocol)

    def _token(self) -> str:
        token = f"t{next(self._tokens)}"
        if self.faults.expiry and not self.healing and self.rng.random() < 0.7:
            self.token_expiry[token] = self.now + self.rng.uniform(0.5, 3.0)
        return token

    # --- timers -----------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._order), action))

    def later(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self.now + delay, action)

    def _fire_due(self) -> None:
        while self._timers and self._timers[0][0] <= self.now:
            heapq.heappop(self._timers)[2]()
        for client in self.clients:
            deadline = client.protocol.next_deadline()
            if deadline is not None and deadline <= self.now:
                self._client_do(client, client.protocol.tick(self.now))

    def _next_time(self) -> float | None:
        times = [c.protocol.next_deadline() for c in self.clients]
        if self._timers:
            times.append(self._timers[0][0])
        return min((t for t in times if t is not None), default=None)

    # --- the client shell (client.engine) -------------------------------------------

    def _client_do(self, client: SimClient, actions: list[Any]) -> None:
        """Carry out a client's actions, in order."""
        for action in actions:
            handler = _CLIENT_ACTIONS.get(type(action))
            if handler is not None:
                handler(self, client, action)
        self._client_events(client, actions)

    def _client_events(self, client: SimClient, events: list[Any]) -> None:
        """Room events (subclasses follow them too)."""
        for event in events:
            if isinstance(event, Acked):
                for handle in event.handles:
                    client.outcomes[handle] = "acked"
            elif isinstance(event, Failed):
                for handle in event.handles:
                    client.outcomes[handle] = "failed"

    def _do_connect(self, client: SimClient, action: Connect) -> None:
        self.later(self.rng.uniform(0.0, 0.05), lambda: self._dial(client, action.url))

    def _dial(self, client: SimClient, url: str) -> None:
        relay = self.by_url[url]
        if not relay.up or client.offline_until > self.now:
            self.counts["connect_failed"] += 1
            self._client_do(client, client.protocol.connect_failed(self.now))
            return
        if client.last_relay is not None and client.last_relay != relay.name:
            self.counts["failover"] += 1
        client.last_relay = relay.name
        link = Link(client, relay)
        if self.faults.hello_stall and not self.healing and self.rng.random() < 0.2:
            self.counts["hello_stall"] += 1
            link.hold_until = self.now + self.rng.uniform(0.3, 1.5)
        link.conn = relay.accept(link)
        client.link = link
        self._client_do(client, client.protocol.opened(self.now))

    def _do_send(self, client: SimClient, action: SendMessages) -> None:
        self.counts["resend"] += action.resends
        link = client.link
        if link is not None and not link.client_done:
            link.to_relay.extend(CLIENT_CODEC.frame(message) for message in action.messages)

    def _do_close(self, client: SimClient, action: ClientClose | Abort) -> None:
        link = client.link
        if link is None:
            return
        if isinstance(action, Abort):
            self.counts[f"abort_{action.reason.value}"] += 1
            self.cut(link, relay_notice=self.rng.uniform(0.0, 0.5))
        else:
            self.cut(link, code=action.code, relay_notice=0.0)

    def _do_ping(self, client: SimClient, action: Ping) -> None:
        link = client.link
        if link is not None and link.alive:
            self.later(self.rng.uniform(0.01, 0.2), lambda: self._pong(client, link))

    def _pong(self, client: SimClient, link: Link) -> None:
        if client.link is link and link.alive:
            self._client_do(client, client.protocol.pong(self.now))

    def _do_reconnect(self, client: SimClient, action: ReconnectAfter) -> None:
        self.counts["reconnect"] += 1
        self.later(action.delay, lambda: self._client_do(client, client.protocol.connect(self.now)))

    def _do_need_token(self, client: SimClient, action: NeedToken) -> None:
        self.counts["token_refresh"] += 1
        self.later(
            self.rng.uniform(0.0, 0.3),
            lambda: self._client_do(
                client, client.protocol.token_refreshed(self._token(), self.now)
            ),
        )

    def _do_verify(self, client: SimClient, action: VerifyProof) -> None:
        link = client.link
        ok = verify_relay_proof(SECRET, action.nonce, action.proof)
        self.counts["proof_checked" if ok else "proof_failed"] += 1

        def answer() -> None:
            if client.link is link and client.protocol.state is State.VERIFYING:
                self._client_do(client, client.protocol.proof_checked(ok, self.now))

        self.later(self.rng.uniform(0.0, 0.05), answer)

    def _do_refused(self, client: SimClient, action: RefusedConnection) -> None:
        """A refused attempt: retried (counted) unless the refusal is final."""
        self.counts["refused_connection"] += 1
        if action.final:
            self._do_stop(client, action)

    def _do_stop(self, client: SimClient, action: Any) -> None:
        raise AssertionError(f"{client.name} stopped for good: {action!r}")

    # --- connections --------------------------------------------------------------------

    def cut(
        self,
        link: Link,
        *,
        code: int | None = None,
        relay_notice: float | None = 0.0,
        client_notice: float = 0.0,
    ) -> None:
        """End a connection: frames in flight are lost; the client learns of it after
        ``client_notice`` s (with ``code``), the relay after ``relay_notice`` s (None:
        it died)."""
        link.to_relay.clear()
        link.to_client.clear()
        link.silent = True
        if relay_notice is not None:
            self.later(relay_notice, lambda: self._relay_lost(link))
        self.later(client_notice, lambda: self._client_lost(link, code, by_peer=False))

    def _client_lost(self, link: Link, code: int | None, *, by_peer: bool) -> None:
        if link.client_done:
            return
        link.client_done = True
        client = link.client
        if client.link is link:
            client.link = None
        self._client_do(client, client.protocol.closed(code, self.now, by_peer=by_peer))
        if code == CloseCode.KICKED and client.protocol.state is State.CLOSED:
            self._rejoin(client)

    def _rejoin(self, client: SimClient) -> None:
        """A kicked client stopped for good (4011 is final): its unresolved writes fail
        (the session closed, as Engine._finish does) and a new session of the same
        person takes its place (a new client_id: the old one's seqs are used)."""
        self.counts["kicked_rejoin"] += 1
        for handle in client.issued:
            client.outcomes.setdefault(handle, "failed")
        self.retired.append(client)
        fresh = self._new_client(f"{client.name}k{self.counts['kicked_rejoin']}")
        self.clients[self.clients.index(client)] = fresh
        self._client_do(fresh, fresh.protocol.connect(self.now))

    def _relay_lost(self, link: Link) -> None:
        if link.relay_done:
            return
        link.relay_done = True
        relay = link.relay
        if link in relay.links:
            relay.links.remove(link)
        relay.lost(link.conn)

    def _to_relay(self, link: Link) -> None:
        link.relay.receive(link.conn, link.to_relay.popleft())

    def _to_client(self, link: Link) -> None:
        frame = link.to_client.popleft()
        if isinstance(frame, CloseFrame):
            self.counts[f"close_{frame.code}"] += 1
            link.silent = True
            self._relay_lost(link)
            self._client_lost(link, frame.code, by_peer=True)
            return
        message = CLIENT_CODEC.decode(frame if CLIENT_CODEC.binary else frame.decode())
        if isinstance(message, Snapshot):
            self.counts["snapshot"] += 1
        client = link.client
        self._client_do(client, client.protocol.receive(message, self.now))

    # --- writes -------------------------------------------------------------------------

    def submit(self, client: SimClient, ops: list[Op], *, batch: bool = False) -> int | None:
        """Submit ``ops`` as ``client``; its handle (None: it did not apply locally)."""
        self._handle += 1
        handle = self._handle
        try:
            actions = client.protocol.submit(ROOM, ops, self.now, batch=batch, handle=handle)
        except ValueError:
            return None  # does not apply locally (e.g. type mismatch): the caller is told
        client.issued.append(handle)
        self.handle_seq[handle] = (client.name, client.core.pending[-1].seq)
        self._client_do(client, actions)
        return handle

    def client_writes(self, client: SimClient) -> None:
        ops = self.random_op(client)
        if self.rng.random() < 0.1:
            ops = ops + self.random_op_on_top(client, ops)
        self.submit(client, ops, batch=len(ops) > 1)

    def random_op(self, client: SimClient) -> list[Op]:
        rng = self.rng
        path = rng.choice(PATHS)
        kind = rng.random()
        visible = client.core.visible
        if path == "t" or kind < 0.25:
            text = get_path(visible, "t", "")
            if not isinstance(text, str):
                return [SetOp(path="t", value="")]
            return [self._text_edit(text)]
        if kind < 0.4:
            return [IncrementOp(path="n", by=rng.choice([1, 2, -1]))]
        if kind < 0.5:
            return [PushOp(path="list", value={"id": f"{client.name}-{rng.randrange(5)}"})]
        if kind < 0.55:
            return [RemoveOp(path="list", id=f"c{rng.randrange(5)}-{rng.randrange(5)}")]
        if kind < 0.65:
            return [MergeOp(path="a", value={rng.choice("xyz"): rng.randrange(10)})]
        if kind < 0.7:
            return [DeleteOp(path=rng.choice(["a/x", "b", "list"]))]
        if kind < 0.8:
            return [
                SetOp(
                    path=rng.choice(["a/y", "b"]),
                    value=rng.randrange(100),
                    if_version=client.core.version if rng.random() < 0.3 else None,
                )
            ]
        return [SetOp(path=rng.choice(["a/x", "b"]), value=rng.randrange(100))]

    def _text_edit(self, text: str) -> TextOp:
        rng = self.rng
        length = text_ot.utf16_len(text)
        # Pick boundaries on whole code points so edits never split an emoji.
        points = [text_ot.to_utf16(text, i) for i in range(len(text) + 1)]
        start = rng.choice(points)
        ends = [p for p in points if start <= p <= start + 4]
        end = rng.choice(ends) if rng.random() < 0.4 else start
        insert = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 3)))
        if end == start and not insert:
            insert = rng.choice(ALPHABET)
        return TextOp(path="t", delta=text_ot.edit(length, start, end - start, insert))

    def random_op_on_top(self, client: SimClient, ops: list[Op]) -> list[Op]:
        try:
            apply_ops(client.core.visible, ops)
        except ValueError:
            return []
        return [IncrementOp(path="n", by=1)]

    # --- faults -------------------------------------------------------------------------

    def head_reported(self, writer: SimRelay) -> None:
        """The shared store's pub/sub tells the other relays of a new head, a bit later."""
        for relay in self.relays:
            if relay is not writer:
                report = lambda r=relay, life=relay.life: self._behind(r, life)  # noqa: E731
                self.later(self.rng.uniform(0.0, 0.3), report)

    def _behind(self, relay: SimRelay, life: int) -> None:
        if relay.up and relay.life == life:
            relay.behind = True

    def crash_now(self, relay: SimRelay) -> bool:
        """Whether ``relay`` dies right after committing a round (before delivering it)."""
        if not self.faults.crashes or self.healing or self.rng.random() >= 0.03:
            return False
        self.crash(relay)
        return True

    def crash(self, relay: SimRelay) -> None:
        self.counts["crash"] += 1
        if relay.committing:
            self.counts["crash_mid_commit"] += 1
        relay.crash()
        self.later(self.rng.uniform(0.1, 1.5), lambda: self._restart(relay))

    def _restart(self, relay: SimRelay) -> None:
        self.counts["restart"] += 1
        relay.restart()

    def _client_link(self) -> tuple[SimClient, Link | None]:
        client = self.rng.choice(self.clients)
        return client, client.link

    def fault(self) -> bool:
        """Maybe inject one fault or a write; whether something happened."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            self.client_writes(rng.choice(self.clients))
            return True
        roll -= 0.3
        client, link = self._client_link()
        if roll < 0.01 and link is not None and link.alive:
            self.counts["cut"] += 1
            self.cut(link, relay_notice=rng.uniform(0.0, 0.5), client_notice=rng.uniform(0, 0.1))
        elif roll < 0.015 and link is not None and link.alive:
            self.counts["dead_peer"] += 1
            link.silent = True  # nobody is told: the heartbeats find out
            self.later(rng.uniform(0.5, 2.0), lambda: self._relay_lost(link))
        elif roll < 0.02:
            self.counts["partition"] += 1
            client.offline_until = self.now + rng.uniform(0.2, 2.0)
            if link is not None and link.alive:
                self.cut(link, relay_notice=rng.uniform(0.0, 0.5))
        elif roll < 0.025 and self.faults.slow:
            self.counts["slow"] += 1
            client.slow_until = self.now + rng.uniform(0.3, 1.5)
        elif roll < 0.03 and self.faults.crashes:
            busy = [r for r in self.relays if r.up and r.committing]
            up = [r for r in self.relays if r.up]
            if busy or (up and rng.random() < 0.2):
                self.crash(rng.choice(busy or up))
        elif roll < 0.035 and self.faults.admin and client.protocol.state is State.CONNECTED:
            if rng.random() < 0.5:
                self.counts["admin_reset"] += 1
                self._client_do(client, client.protocol.admin(ROOM, "reset"))
            else:
                self.counts["admin_kick"] += 1
                target = rng.choice(self.clients).name
                self._client_do(client, client.protocol.admin(ROOM, "kick", target))
        else:
            return False
        return True

    # --- scheduler ----------------------------------------------------------------------

    def _work(self) -> list[Callable[[], None]]:
        """What could happen next: deliveries, rounds, commits, catch-ups."""
        work: list[Callable[[], None]] = []
        for client in self.clients:
            link = client.link
            if link is None or link.silent:
                continue
            if link.to_relay and not link.conn.stalled and link.hold_until <= self.now:
                work.append(lambda link=link: self._to_relay(link))
            if link.to_client and client.slow_until <= self.now:
                work.append(lambda link=link: self._to_client(link))
        for relay in self.relays:
            if not relay.up:
                continue
            if relay.inbox:
                work.append(lambda r=relay: r.run_round(self.rng.randint(1, len(r.inbox))))
            if relay.committing:
                work.append(relay.commit)
            if relay.behind and not relay.inbox:
                work.append(relay.catch_up)
            limit = self.max_inflight
            for conn in relay.stalled:
                if conn.closing or limit is None or conn.inflight < limit:
                    work.append(lambda r=relay, c=conn: r.resume_reading(c))
        return work

    def step(self, faults: bool = True) -> bool:
        """Do one random thing; returns False when nothing was left to do."""
        self.now += DT
        self._fire_due()
        if faults and self.fault():
            return True
        work = self._work()
        if not work:
            return False
        self.rng.choice(work)()
        return True

    def quiet(self, ignore: frozenset[str] = frozenset()) -> bool:
        """Nothing in flight, every relay up and caught up, every client joined with
        nothing pending."""
        for relay in self.relays:
            if not relay.up or relay.busy or relay.hub.core.version != len(self.store.log):
                return False
        for client in self.clients:
            if client.name in ignore:
                continue
            link = client.link
            if link is None or link.to_relay or link.to_client or not link.alive:
                return False
            if client.protocol.state is not State.CONNECTED or client.core.pending:
                return False
        return True

    def heal(self) -> None:
        """End the faults: no partitions, slowness, dead peers or expiring tokens."""
        self.healing = True
        for client in self.clients:
            client.offline_until = client.slow_until = 0.0
            if client.link is not None:
                client.link.hold_until = 0.0
            if client.link is not None and client.link.silent and not client.link.client_done:
                self.cut(client.link)
        self.token_expiry.clear()

    def settle(self, ignore: frozenset[str] = frozenset(), bound: int = 200_000) -> None:
        """Run without faults until quiet (other relays learn of new heads meanwhile)."""
        for _ in range(bound):
            if self.quiet(ignore):
                return
            if not self.step(faults=False):
                for relay in self.relays:
                    if relay.up and relay.hub.core.version != len(self.store.log):
                        relay.behind = True
                upcoming = self._next_time()
                if upcoming is not None:
                    self.now = max(self.now, upcoming - DT)
        raise AssertionError("no quiescence within the step bound")

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()
        self.heal()
        self.settle()


_CLIENT_ACTIONS: dict[type, Callable[[Simulation, SimClient, Any], None]] = {
    Connect: Simulation._do_connect,
    SendMessages: Simulation._do_send,
    ClientClose: Simulation._do_close,
    Abort: Simulation._do_close,
    Ping: Simulation._do_ping,
    ReconnectAfter: Simulation._do_reconnect,
    NeedToken: Simulation._do_need_token,
    VerifyProof: Simulation._do_verify,
    GaveUp: Simulation._do_stop,
    AuthExpiredEvent: Simulation._do_stop,
    Refused: Simulation._do_stop,
    RefusedConnection: Simulation._do_refused,
}
