"""A tiny in-memory network for undo tests: the real client core (RoomSync) and the
real relay sequencer (RoomCore), messages delivered in a controlled order, no sockets."""

from __future__ import annotations

from collections import deque
from typing import Any

from livewidgets.client.core import Acked, Event, Failed, RoomSync, Send
from livewidgets.protocol import AckMessage, Batch, Broadcast, Joined, OpMessage, Reject, Snapshot
from livewidgets.relay.room import Accepted, RoomCore, RoomRecord

ROOM = "r"


class Net:
    """Clients joined to one RoomCore; ``deliver()`` runs the queues in FIFO order."""

    def __init__(self, names: list[str], state: dict[str, Any] | None = None) -> None:
        self.relay = RoomCore(RoomRecord(ROOM, snapshot_state=dict(state or {})))
        self.clients: dict[str, RoomSync] = {}
        # Client -> relay and relay -> client queues (each FIFO, like TCP).
        self.up: dict[str, deque[Any]] = {}
        self.down: dict[str, deque[Any]] = {}
        # handle -> ("acked", version) or ("failed", Failed)
        self.outcomes: dict[Any, Any] = {}
        for name in names:
            sync = RoomSync(ROOM, name)
            self.clients[name] = sync
            self.up[name], self.down[name] = deque(), deque()
            sync.connection_opened()
            sync.receive(Snapshot(room=ROOM, version=self.relay.version, state=self.relay.state))
            self._events(
                name, sync.receive(Joined(room=ROOM, version=self.relay.version, mode="snapshot"))
            )

    def _events(self, name: str, events: list[Event] | None) -> list[Event]:
        for event in events or []:
            if isinstance(event, Send):
                self.up[name].append(event.message)
            elif isinstance(event, Acked):
                for handle in event.handles:
                    self.outcomes[handle] = ("acked", event.version)
            elif isinstance(event, Failed):
                for handle in event.handles:
                    self.outcomes[handle] = ("failed", event)
        return events or []

    def submit(
        self, name: str, *ops: Any, batch: bool = False, handle: Any = None, now: float = 0.0
    ) -> None:
        self._events(
            name, self.clients[name].submit(list(ops), batch=batch, handle=handle, now=now)
        )

    def undo(
        self,
        name: str,
        path: str | None = None,
        handle: Any = None,
        redo: bool = False,
        now: float = 0.0,
    ) -> bool:
        events = self.clients[name].undo(path, handle=handle, now=now, redo=redo)
        self._events(name, events)
        return events is not None

    def step_up(self, name: str) -> bool:
        """The relay handles one message from ``name``."""
        if not self.up[name]:
            return False
        message = self.up[name].popleft()
        ops = message.ops if isinstance(message, Batch) else [message.op]
        assert isinstance(message, (Batch, OpMessage))
        outcome = self.relay.submit(name, message.client_seq, message.base_version, ops)
        if isinstance(outcome, Accepted):
            entry = outcome.entry
            for other in self.clients:
                if other == name:
                    self.down[other].append(
                        AckMessage(room=ROOM, client_seq=entry.client_seq, version=entry.version)
                    )
                else:
                    self.down[other].append(
                        Broadcast(
                            room=ROOM,
                            version=entry.version,
                            origin=name,
                            client_seq=entry.client_seq,
                            ops=list(entry.ops),
                        )
                    )
        else:
            r: Any = outcome
            self.down[name].append(
                Reject(
                    room=ROOM,
                    client_seq=message.client_seq,
                    code=r.code.value,
                    message=r.message,
                    path=r.path,
                    current=r.current,
                    current_version=r.current_version,
                )
            )
        return True

    def step_down(self, name: str) -> bool:
        if not self.down[name]:
            return False
        self._events(name, self.clients[name].receive(self.down[name].popleft()))
        return True

    def deliver(self) -> None:
        """Everything in flight, until quiet."""
        moved = True
        while moved:
            moved = False
            for name in self.clients:
                while self.step_up(name):
                    moved = True
                while self.step_down(name):
                    moved = True

    def quiet(self) -> bool:
        return not any(self.up.values()) and not any(self.down.values())
