"""A deterministic in-memory network of one RoomCore relay and N RoomSync clients.

Each connection is a pair of FIFO queues (TCP keeps order within a connection);
the scheduler picks at random which queue delivers next (delays and reordering
between connections), and can cut connections (both directions lose what is in
flight), keep a client offline for a while (partition), and make clients resend
(ack timeouts → duplicates the relay must dedupe). Same seed, same run.

With ``crashes=True`` the relay behaves like the single-relay runner (relay.runner):
an accepted op is broadcast to the other members at once, and its author's ack waits
for the commit, which the scheduler performs later (the relay takes no other message
meanwhile: one round at a time). The scheduler may crash the relay instead: the
uncommitted op is lost although members saw it, every connection drops, and the
room reloads from the committed log in a new epoch (relay.lineage).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from livewidgets.client.core import Acked, Failed, RoomSync, Send
from livewidgets.protocol import (
    AckMessage,
    Batch,
    Broadcast,
    Join,
    Joined,
    OpMessage,
    Reject,
    Snapshot,
)
from livewidgets.relay.room import Accepted, Duplicate, LogEntry, RoomCore, RoomRecord
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


@dataclass
class Connection:
    client: SimClient
    to_relay: deque[Any] = field(default_factory=deque)
    to_client: deque[Any] = field(default_factory=deque)
    joined: bool = False


@dataclass
class SimClient:
    name: str
    core: RoomSync
    conn: Connection | None = None
    offline_until: int = 0
    # handle id -> "acked" / "failed"
    outcomes: dict[int, str] = field(default_factory=dict)
    # handle id -> (client_seq it was submitted under), for the log checks
    issued: list[int] = field(default_factory=list)


class Simulation:
    def __init__(
        self,
        seed: int,
        clients: int = 5,
        *,
        window: int = 40,
        max_delta: int = 25,
        crashes: bool = False,
    ):
        self.rng = random.Random(seed)
        self.window = window
        self.relay = RoomCore(RoomRecord(ROOM), window=window)
        self.max_delta = max_delta
        self.log: list[LogEntry] = []  # every committed LogEntry, in order
        # Early fan-out with commits the scheduler decides, and relay crashes.
        self.crashes = crashes
        # The accepted entry being committed, and its author's connection and ack.
        self.committing: tuple[LogEntry, Connection, AckMessage] | None = None
        self.crash_count = 0
        self.clients = [SimClient(f"c{i}", RoomSync(ROOM, f"c{i}")) for i in range(clients)]
        self.now = 0
        self._handle = 0
        # handle id -> (client name, seq) filled when we can see the pending op
        self.handle_seq: dict[int, tuple[str, int]] = {}

    # --- client side ----------------------------------------------------------------

    def connect(self, client: SimClient) -> None:
        client.conn = Connection(client)
        self._client_events(client, client.core.connection_opened())

    def disconnect(self, client: SimClient) -> None:
        if client.conn is not None:
            client.conn = None  # in-flight frames in both directions are lost
            self._client_events(client, client.core.connection_lost())

    def _client_events(self, client: SimClient, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, Send) and client.conn is not None:
                client.conn.to_relay.append(event.message)
            elif isinstance(event, Acked):
                for handle in event.handles:
                    client.outcomes[handle] = "acked"
            elif isinstance(event, Failed):
                for handle in event.handles:
                    client.outcomes[handle] = "failed"
            elif type(event).__name__ == "Resync":
                self.disconnect(client)

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

    def client_writes(self, client: SimClient) -> None:
        ops = self.random_op(client)
        if self.rng.random() < 0.1:
            ops = ops + self.random_op_on_top(client, ops)
        batch = len(ops) > 1
        self._handle += 1
        handle = self._handle
        try:
            events = client.core.submit(ops, batch=batch, handle=handle, now=self.now)
        except ValueError:
            return  # does not apply locally (e.g. type mismatch): the caller is told at once
        client.issued.append(handle)
        self.handle_seq[handle] = (client.name, client.core.pending[-1].seq)
        self._client_events(client, events)

    def random_op_on_top(self, client: SimClient, ops: list[Op]) -> list[Op]:
        try:
            apply_ops(client.core.visible, ops)
        except ValueError:
            return []
        return [IncrementOp(path="n", by=1)]

    # --- relay side -----------------------------------------------------------------

    def relay_receive(self, conn: Connection, message: Any) -> None:
        client = conn.client
        if isinstance(message, Join):
            catch_up = self.relay.catch_up(
                message.since,
                epoch=message.epoch,
                client_id=client.name,
                max_delta=self.max_delta,
            )
            if catch_up.mode == "snapshot":
                assert catch_up.state is not None
                conn.to_client.append(
                    Snapshot(
                        room=ROOM,
                        version=catch_up.version,
                        state=catch_up.state,
                        last_seq=catch_up.last_seq,
                    )
                )
            for entry in catch_up.entries:
                conn.to_client.append(self._broadcast(entry))
            conn.to_client.append(
                Joined(ROOM, catch_up.version, catch_up.mode, epoch=self.relay.lineage.epoch)
            )
            conn.joined = True
            return
        assert isinstance(message, (OpMessage, Batch))
        ops = [message.op] if isinstance(message, OpMessage) else message.ops
        outcome = self.relay.submit(client.name, message.client_seq, message.base_version, ops)
        if isinstance(outcome, Accepted):
            ack = AckMessage(
                room=ROOM, client_seq=message.client_seq, version=outcome.entry.version
            )
            frame = self._broadcast(outcome.entry)
            for other in self.clients:
                if other.conn is not None and other.conn is not conn and other.conn.joined:
                    other.conn.to_client.append(frame)
            if self.crashes:
                self.committing = (outcome.entry, conn, ack)
            else:
                self.log.append(outcome.entry)
                conn.to_client.append(ack)
        elif isinstance(outcome, Duplicate):
            conn.to_client.append(
                AckMessage(
                    room=ROOM,
                    client_seq=message.client_seq,
                    version=outcome.version,
                    duplicate=True,
                )
            )
        else:
            conn.to_client.append(
                Reject(
                    room=ROOM,
                    client_seq=message.client_seq,
                    code=outcome.code.value,
                    message=outcome.message,
                    path=outcome.path,
                    current=outcome.current,
                    current_version=outcome.current_version,
                )
            )

    @staticmethod
    def _broadcast(entry: Any) -> Broadcast:
        return Broadcast(
            room=ROOM,
            version=entry.version,
            origin=entry.client_id,
            client_seq=entry.client_seq,
            ops=list(entry.ops),
        )

    def commit(self) -> None:
        """The round's commit returns: the entry is durable, its author hears of it."""
        assert self.committing is not None
        entry, conn, ack = self.committing
        self.committing = None
        self.log.append(entry)
        if conn.client.conn is conn:
            conn.to_client.append(ack)

    def crash(self) -> None:
        """The relay dies mid-commit: reload the room from the committed log."""
        self.committing = None
        self.crash_count += 1
        for client in self.clients:
            self.disconnect(client)
            client.offline_until = self.now + self.rng.randrange(0, 20)
        head = self.log[-1].version if self.log else 0
        lineage = self.relay.lineage.successor(head)
        record = RoomRecord(ROOM, log=list(self.log), lineage=lineage)
        self.relay = RoomCore(record, window=self.window)

    # --- scheduler ------------------------------------------------------------------

    def step(self, faults: bool = True) -> bool:
        """Do one random thing; returns False when nothing was left to deliver."""
        self.now += 1
        rng = self.rng
        if self.committing is not None and (not faults or rng.random() < 0.3):
            if faults and rng.random() < 0.15:
                self.crash()
            else:
                self.commit()
            return True
        # The relay takes the next message only after the round's commit.
        queues = [
            (c, q)
            for c in self.clients
            if c.conn is not None
            for q in (c.conn.to_relay, c.conn.to_client)
            if q and (self.committing is None or q is c.conn.to_client)
        ]
        roll = rng.random()
        if faults and roll < 0.02:
            client = rng.choice(self.clients)
            self.disconnect(client)
            client.offline_until = self.now + rng.randrange(0, 60)
            return True
        if faults and roll < 0.05:
            client = rng.choice(self.clients)
            self._client_events(client, client.core.tick(self.now, ack_timeout=20))
            return True
        if faults and roll < 0.35:
            self.client_writes(rng.choice(self.clients))
            return True
        for client in self.clients:
            if client.conn is None and client.offline_until <= self.now:
                self.connect(client)
                return True
        if not queues:
            return self.committing is not None
        client, queue = rng.choice(queues)
        assert client.conn is not None
        message = queue.popleft()
        if queue is client.conn.to_relay:
            self.relay_receive(client.conn, message)
        else:
            self._client_events(client, client.core.receive(message, self.now))
        return True

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()
        # Quiescence: heal the network and deliver until nothing moves.
        for client in self.clients:
            client.offline_until = 0
        for _ in range(200_000):
            if not self.step(faults=False):
                if all(not c.core.pending for c in self.clients):
                    return
                for client in self.clients:  # nudge stuck resends
                    self._client_events(client, client.core.tick(self.now + 10**6, 0))
        raise AssertionError("no quiescence within the step bound")
