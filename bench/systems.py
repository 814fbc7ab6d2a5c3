"""The systems under test and how a lean load client speaks to each of them.

A *system* is a server plus a wire encoding. The livewidgets relay appears four
times (JSON or msgpack subprotocol x memory or SQLite store); the floor relay once;
pycrdt-websocket twice (in-memory rooms, and rooms with a SQLiteYStore).

:class:`LeanClient` hides the differences behind four calls: ``connect``
(WebSocket + join), ``write`` (one "set key" operation carrying a timestamp),
``on_delivery`` (a callback per delivered write) and the writer-side counters
``acked``/``version``. Every write carries a marker ``@T<19-digit monotonic_ns>``
inside its value; a receiver finds it with ``bytes.find`` in the raw frame, the
same way for JSON, msgpack and Yjs updates, without decoding anything.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from .wire import LeanConnection, open_connection

__all__ = [
    "SYSTEMS",
    "LeanClient",
    "System",
    "marker",
    "parse_marker",
    "system",
]


@dataclass(frozen=True)
class System:
    """One column of the results table."""

    name: str
    # "lw" (livewidgets relay), "floor" or "pycrdt".
    server: str
    # "memory" / "sqlite" for the livewidgets relay; "sqlite" for pycrdt with a
    # SQLiteYStore per room (None: in-memory rooms); None for the floor.
    store: str | None
    # "json", "msgpack" (livewidgets subprotocols), "raw" (floor) or "yjs" (pycrdt).
    codec: str

    @property
    def server_key(self) -> str:
        """Systems with the same key run on the same kind of server process."""
        return f"{self.server}-{self.store}" if self.store else self.server

    @property
    def is_livewidgets(self) -> bool:
        return self.server == "lw"

    @property
    def loads_from_store(self) -> bool:
        """The server unloads an idle room and loads it from its store on the next join
        (livewidgets, either store; pycrdt with a YStore, bench.ypeer). Such a server
        answers ``GET /healthz`` with ``{"rooms": <rooms loaded>, ...}``."""
        return self.is_livewidgets or (self.server == "pycrdt" and self.store is not None)


SYSTEMS: tuple[System, ...] = (
    System("lw-json-mem", "lw", "memory", "json"),
    System("lw-msgpack-mem", "lw", "memory", "msgpack"),
    System("lw-json-sqlite", "lw", "sqlite", "json"),
    System("lw-msgpack-sqlite", "lw", "sqlite", "msgpack"),
    System("floor", "floor", None, "raw"),
    System("pycrdt", "pycrdt", None, "yjs"),
    System("pycrdt-sqlite", "pycrdt", "sqlite", "yjs"),
)


def system(name: str) -> System:
    for s in SYSTEMS:
        if s.name == name:
            return s
    raise KeyError(name)


# --- the timestamp marker -----------------------------------------------------------

# 19 digits after "@T": a bare "@T" can occur by chance inside msgpack or Yjs bytes.
_MARK = re.compile(rb"@T(\d{19})")


def marker(tag: str = "") -> str:
    """The marker to put in a value: ``@T`` + monotonic_ns (+ ``|tag``)."""
    return f"@T{time.monotonic_ns():019d}{tag}"


def parse_marker(payload: bytes) -> int:
    """The send time (monotonic_ns) found in a raw frame, or -1 if none."""
    match = _MARK.search(payload)
    return int(match.group(1)) if match else -1


# --- livewidgets wire messages (the bench's own minimal copy) -------------------------
#
# The bench speaks the documented protocol (docs/protocol.md) itself rather than
# importing livewidgets.protocol, so a client-side change in src cannot change what
# the load generator costs.


class _Head(msgspec.Struct):
    """Just enough of any relay message to route it (unknown fields are skipped)."""

    type: str
    version: int = 0
    client_seq: int = 0


_json_head = msgspec.json.Decoder(_Head).decode
_msgpack_head = msgspec.msgpack.Decoder(_Head).decode


class _JoinReply(msgspec.Struct):
    """What the join needs of snapshot / broadcast / joined / error: a joined's presence
    table (every other member) is skipped, not built, as the bench uses none of it."""

    type: str
    version: int = 0
    state: Any = None


_json_join_reply = msgspec.json.Decoder(_JoinReply).decode
_msgpack_join_reply = msgspec.msgpack.Decoder(_JoinReply).decode
_json_encode = msgspec.json.Encoder().encode
_msgpack_encode = msgspec.msgpack.Encoder().encode
_json_any = msgspec.json.Decoder().decode
_msgpack_any = msgspec.msgpack.Decoder().decode

LW_JSON = "livewidgets.v1.json"
LW_MSGPACK = "livewidgets.v1.msgpack"


class LeanClient:
    """One load-generating connection to any system (see the module docstring)."""

    def __init__(self, sys_: System, conn: LeanConnection, room: str, client_id: str) -> None:
        self.system = sys_
        self.conn = conn
        self.room = room
        self.client_id = client_id
        # Writer side: ops sent, ops acknowledged (livewidgets ack / pycrdt own echo),
        # and the newest room version seen (livewidgets base_version).
        self.seq = 0
        self.acked = 0
        # Writes answered with reject / error instead of ack (should stay 0).
        self.refused = 0
        self.version = 0
        # Reader side: called with (send_ns, recv_ns) for every delivered write.
        self.on_delivery: Callable[[int, int], None] | None = None
        self.deliveries = 0
        self.join_state: Any = None
        self._ack_waiter: asyncio.Future[None] | None = None
        self._ack_target = 0
        self._text = sys_.codec in ("json", "raw")
        self._ydoc: Any = None
        self._ymap: Any = None
        self._yupdates: list[bytes] = []
        self._echo_tag = f"|{client_id}".encode()

    # --- connecting ---------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        sys_: System,
        url: str,
        room: str,
        client_id: str,
        *,
        timeout: float = 30.0,
        presence: dict[str, Any] | None = None,
    ) -> LeanClient:
        """Open the WebSocket and join ``room`` (livewidgets: hello + join; pycrdt: sync).

        ``presence``: livewidgets only, join announced with this state (else a listener).
        """
        if sys_.server == "lw":
            sub = LW_MSGPACK if sys_.codec == "msgpack" else LW_JSON
            conn = await open_connection(url, "/", sub, timeout)
        else:
            conn = await open_connection(url, f"/{room}", None, timeout)
        client = cls(sys_, conn, room, client_id)
        if sys_.server == "lw":
            await client._lw_join(timeout, presence)
        elif sys_.server == "pycrdt":
            await client._y_join(timeout)
        conn.on_frame = client._on_frame
        # Frames that arrived during the join but after its last message.
        while not conn._queue.empty():
            client._on_frame(conn._queue.get_nowait())
        return client

    def _encode(self, message: dict[str, Any]) -> bytes:
        return _json_encode(message) if self._text else _msgpack_encode(message)

    def _decode_any(self, payload: bytes) -> Any:
        return _json_any(payload) if self._text else _msgpack_any(payload)

    async def _lw_join(self, timeout: float, presence: dict[str, Any] | None) -> None:
        conn = self.conn
        # Its own user name: to room rules (bench.rules_cost) each client is a
        # different reader, as in a class.
        hello = {"type": "hello", "protocol": 1, "client_id": self.client_id}
        conn.send(self._encode({**hello, "user": self.client_id}), text=self._text)
        # The join follows the hello at once, as the reference client does when it
        # checks no relay proof (docs/protocol.md "Connection lifecycle").
        join: dict[str, Any] = {"type": "join", "room": self.room}
        if presence is not None:
            join["presence"] = presence
        conn.send(self._encode(join), text=self._text)
        welcome = self._decode_any(await conn.recv(timeout))
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"expected welcome, got {welcome!r}")
        decode = _json_join_reply if self._text else _msgpack_join_reply
        while True:
            payload = await conn.recv(timeout)
            message = decode(payload)
            kind = message.type
            if kind == "snapshot":
                self.join_state = message.state
            elif kind == "broadcast":
                self.version = max(self.version, message.version)
            elif kind == "joined":
                self.version = max(self.version, message.version)
                return
            elif kind == "error":
                raise RuntimeError(f"join refused: {self._decode_any(payload)!r}")

    async def _y_join(self, timeout: float) -> None:
        from pycrdt import (
            Doc,
            Map,
            YMessageType,
            YSyncMessageType,
            create_sync_message,
            handle_sync_message,
        )

        doc = self._ydoc = Doc()
        self._ymap = doc.get("m", type=Map)
        conn = self.conn
        conn.send(create_sync_message(doc), text=False)
        while True:
            message = await conn.recv(timeout)
            if message[0] != YMessageType.SYNC:
                continue  # awareness
            reply = handle_sync_message(message[1:], doc)
            if reply is not None:
                conn.send(reply, text=False)
            if message[1] == YSyncMessageType.SYNC_STEP2:
                self.join_state = self._ymap
                break
        doc.observe(lambda event: self._yupdates.append(event.update))

    # --- writing ------------------------------------------------------------------

    def write_frame(self, key: str, value: Any) -> bytes:
        """The payload of one "set key = value" write (advances seq)."""
        self.seq += 1
        codec = self.system.codec
        if codec == "yjs":
            from pycrdt import create_update_message

            self._ymap[key] = value
            update = self._yupdates.pop()
            self._yupdates.clear()
            return create_update_message(update)
        op = {
            "type": "op",
            "room": self.room,
            "client_seq": self.seq,
            "base_version": self.version,
            "op": {"op": "set", "path": key, "value": value},
        }
        return self._encode(op)

    def write(self, key: str, value: Any) -> None:
        self.conn.send(self.write_frame(key, value), text=self._text)

    def send_payload(self, payload: bytes) -> None:
        """Send a payload made earlier by :meth:`write_frame`."""
        self.conn.send(payload, text=self._text)

    @property
    def unacked(self) -> int:
        return self.seq - self.acked

    async def wait_acked(self, target: int, timeout: float) -> bool:
        """Wait until ``acked >= target`` (livewidgets acks, pycrdt own echoes)."""
        if self.acked >= target:
            return True
        self._ack_target = target
        self._ack_waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._ack_waiter, timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            self._ack_waiter = None
        return True

    @property
    def echo_tag(self) -> str:
        """Put this in a written value so the writer recognises its own echo (pycrdt)."""
        return f"|{self.client_id}"

    # --- receiving ----------------------------------------------------------------

    def _on_frame(self, payload: bytes) -> None:
        server = self.system.server
        if server == "lw":
            head = _json_head(payload) if self._text else _msgpack_head(payload)
            kind = head.type
            if kind == "ack":
                self.acked += 1
                if head.version > self.version:
                    self.version = head.version
                self._check_acks()
                return
            if kind in ("reject", "error"):
                # Refused writes free their window slot too (and are counted).
                self.refused += 1
                self.acked += 1
                self._check_acks()
                return
            if kind != "broadcast":
                return
            if head.version > self.version:
                self.version = head.version
        elif server == "pycrdt":
            if payload[0] != 0:  # awareness
                return
            if self.seq and payload.find(self._echo_tag) >= 0:
                self.acked += 1
                self._check_acks()
                return
        sent = parse_marker(payload)
        if sent < 0:
            return
        self.deliveries += 1
        if self.on_delivery is not None:
            self.on_delivery(sent, time.monotonic_ns())

    def _check_acks(self) -> None:
        waiter = self._ack_waiter
        if waiter is not None and self.acked >= self._ack_target and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        self.conn.close()
