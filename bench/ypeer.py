"""The nearest peer: pycrdt-websocket's ``WebsocketServer`` (the server behind
JupyterLab real-time collaboration) served over ``websockets``.

Rooms are named by the URL path, as in pycrdt-websocket. ``auto_clean_rooms`` is
off so a room's document outlives its last client (what the join-time scenario
needs; JupyterLab keeps rooms while a document is open).

Without a store (the default, system ``pycrdt``) the document lives in memory only,
like livewidgets' ``memory://`` store.

``--ystore sqlite`` (system ``pycrdt-sqlite``) gives every room a
``pycrdt.store.SQLiteYStore`` on ``ystore.db`` in the working directory, as
JupyterLab (jupyter-collaboration) does. What that store guarantees, read from
pycrdt-websocket 0.16.5 / pycrdt-store 0.1.5:

* **Write-behind, not write-ahead.** ``YRoom._broadcast_updates`` takes each
  update of the room's document (a client's update is applied to the document in
  ``YRoom.serve`` first) and, in this order, starts one task per client to send it
  (the writer included: its *echo*) and then one task ``ystore.write(update)``.
  Nothing waits for the write: an update is broadcast, and echoed to its writer,
  before it is in the store, usually before the write has even started. A client
  has no way to learn that its update is durable. livewidgets commits an op to its
  SQLite store (fsync per group commit) *before* it acks or broadcasts it: an
  acknowledged op survives a crash.
* **One transaction per update, no group commit.** ``SQLiteYStore.write`` runs under
  a per-store lock and commits each update on its own (SQLite defaults:
  rollback journal, ``synchronous=FULL``, so a commit is on disk when it returns),
  plus a checkpoint (whole document) every 100 updates. Under load the writes fall
  behind the broadcasts; the backlog is a set of pending tasks in memory, unbounded.
* **A failed write is dropped.** sqlite_anyio's exception handler, which
  ``SQLiteYStore`` installs, logs the error ("SQLite exception"), rolls back and
  swallows it: the update stays broadcast but is not in the store, and nobody is told.
* **The backlog is lost on stop or crash.** The write tasks belong to the room's
  task group: stopping the room (``WebsocketServer.delete_room``, ``auto_clean_rooms``,
  server shutdown) cancels the ones not yet committed, as does a crash. Echoed and
  broadcast updates can be lost.
* **Loading is the application's job.** ``YRoom`` only writes to its store; nothing
  in pycrdt-websocket reads it back. This server loads a room's document from the
  store when the room is created (``SQLiteYStore.apply_updates``: latest checkpoint
  plus the updates after it, into a room created ``ready=False`` and made ready
  afterwards), as jupyter-collaboration does.

With a store, a room is also unloaded once its last client has left and the store
has caught up with every update of its document (``auto_clean_rooms`` minus the
cancelled backlog), so a later client loads it from the store: the join scenario's
"room loaded from store", like the livewidgets relay, which unloads idle rooms.
``GET /healthz`` answers ``{"rooms": N, "pending_writes": W, "committed": C,
"store_errors": E}`` (rooms loaded; updates of their documents not yet written to
the store; updates committed to the store since the server started; failed writes,
which pycrdt-store logs and drops).

Run: ``python -m bench.ypeer [--host 127.0.0.1] [--port 0] [--ystore sqlite]``;
prints ``pycrdt-websocket listening on ws://HOST:PORT`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = ["WebsocketsChannel", "main", "run", "sqlite_ystore_class"]

# How long a room with a store may take to write its backlog before it is unloaded.
DRAIN_TIMEOUT_S = 600.0


class WebsocketsChannel:
    """A pycrdt ``Channel`` over a ``websockets`` connection (server or client side)."""

    def __init__(self, ws: ServerConnection, path: str) -> None:
        self._ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> WebsocketsChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration() from None

    async def send(self, message: bytes) -> None:
        # A closed peer: the room drops the channel when its serve() returns.
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(message)

    async def recv(self) -> bytes:
        message = await self._ws.recv()
        return message if isinstance(message, bytes) else message.encode()


def sqlite_ystore_class(db_path: str) -> type[Any]:
    """A ``SQLiteYStore`` subclass on ``db_path`` (the documented way to configure it)
    that counts its finished writes (the bench's only addition; it changes nothing)."""
    from pycrdt.store import SQLiteYStore

    class BenchSQLiteYStore(SQLiteYStore):
        # Finished writes: of this room's store, and of every store of the server. A
        # failed write finishes too: sqlite_anyio logs "SQLite exception" and swallows
        # the error (see _ErrorCounter).
        written = 0
        finished = 0

        async def write(self, data: bytes) -> None:
            try:
                await super().write(data)
            finally:
                self.written += 1
                BenchSQLiteYStore.finished += 1

    BenchSQLiteYStore.db_path = db_path
    return BenchSQLiteYStore


class _ErrorCounter(logging.Handler):
    """Counts the store errors that sqlite_anyio logs and swallows (the bench reports them)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("SQLite exception"):
            self.count += 1


class _Rooms:
    """Room creation (serialised), loading from and unloading to the store."""

    def __init__(
        self,
        yserver: Any,
        ystore_class: type[Any] | None,
        log: logging.Logger,
        stopping: asyncio.Event,
    ) -> None:
        self.yserver = yserver
        self.ystore_class = ystore_class
        self.log = log
        self.stopping = stopping
        # WebsocketServer.get_room races when two clients open a new room at once (both
        # try to start it; the second fails with "YRoom already running" and its
        # connection dies). Creating rooms one at a time here works around it.
        self.creating = asyncio.Lock()
        # Per room with a store: updates of its document seen (written = ystore.written).
        self.observed: dict[str, list[int]] = {}
        # Connections per room, from before the room is opened until after they left
        # (room.clients misses a client between opening the room and serving it).
        self.users: dict[str, int] = {}
        # Rooms whose last client left, waiting for their store to catch up.
        self.draining: set[str] = set()

    async def open(self, name: str) -> Any:
        async with self.creating:
            if self.ystore_class is not None and name not in self.yserver.rooms:
                await self._load(name)
            # Returns at once once the room is started.
            return await self.yserver.get_room(name)

    async def _load(self, name: str) -> None:
        from pycrdt.store import YDocNotFound
        from pycrdt.websocket import YRoom

        assert self.ystore_class is not None
        ystore = self.ystore_class(path=name, log=self.log)
        # Not ready: the room does not observe (broadcast, store) its document yet.
        room = YRoom(ready=False, ystore=ystore, log=self.log)
        self.yserver.rooms[name] = room
        await self.yserver.start_room(room)
        # The room starts its store (in its own task group); then read the document.
        await asyncio.wait_for(ystore.started.wait(), 30)
        with contextlib.suppress(YDocNotFound):
            await asyncio.wait_for(ystore.apply_updates(room.ydoc), 120)
        count = self.observed[name] = [0]

        def seen(_event: Any) -> None:
            count[0] += 1

        room.ydoc.observe(seen)
        room.ready = True
        await asyncio.wait_for(room.ydoc_observed.wait(), 30)

    def pending_writes(self, name: str) -> int:
        room = self.yserver.rooms.get(name)
        if room is None or room.ystore is None or name not in self.observed:
            return 0
        return self.observed[name][0] - int(room.ystore.written)

    def idle(self, name: str) -> bool:
        return self.users.get(name, 0) == 0

    async def serve(self, ws: ServerConnection, name: str) -> None:
        self.users[name] = self.users.get(name, 0) + 1
        try:
            await self.open(name)
            await self.yserver.serve(WebsocketsChannel(ws, name))
        finally:
            self.users[name] -= 1
            if self.idle(name):
                del self.users[name]
        await self.left(name)

    async def left(self, name: str) -> None:
        """A client left ``name``: unload it if it is empty and its store caught up."""
        room = self.yserver.rooms.get(name)
        if self.ystore_class is None or room is None or not self.idle(name):
            return
        if name in self.draining:
            return
        self.draining.add(name)
        try:
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while self.idle(name) and not self.stopping.is_set():
                if self.pending_writes(name) <= 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
        finally:
            self.draining.discard(name)
        if self.stopping.is_set():
            return  # shutting down: the room's pending writes are cancelled with it
        async with self.creating:
            if not self.idle(name) or self.yserver.rooms.get(name) is not room:
                return
            if self.pending_writes(name) > 0:
                self.log.error("room %s: store still behind after %s s", name, DRAIN_TIMEOUT_S)
                return
            await room.ystore.stop()
            await self.yserver.delete_room(name=name)
            self.observed.pop(name, None)


async def run(host: str, port: int, ystore: str | None = None) -> None:
    from pycrdt.websocket import WebsocketServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log = logging.getLogger("bench.ypeer")
    log.setLevel(logging.ERROR)
    store_errors = _ErrorCounter()
    log.addHandler(store_errors)
    log.addHandler(logging.StreamHandler())  # errors still reach the server's stderr
    ystore_class = None
    if ystore == "sqlite":
        ystore_class = sqlite_ystore_class(os.path.join(os.getcwd(), "ystore.db"))
    async with WebsocketServer(auto_clean_rooms=False, log=log) as yserver:
        rooms = _Rooms(yserver, ystore_class, log, stop)

        def health(connection: ServerConnection, request: Request) -> Response | None:
            if request.path != "/healthz":
                return None
            body = json.dumps(
                {
                    "rooms": len(yserver.rooms),
                    "pending_writes": sum(rooms.pending_writes(n) for n in list(yserver.rooms)),
                    "committed": (ystore_class.finished if ystore_class else 0)
                    - store_errors.count,
                    "store_errors": store_errors.count,
                }
            ).encode()
            headers = Headers([("Content-Type", "application/json")])
            headers["Content-Length"] = str(len(body))
            return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)

        async def handle(ws: ServerConnection) -> None:
            await rooms.serve(ws, ws.request.path if ws.request is not None else "/")

        async with serve(
            handle, host, port, compression=None, max_size=2**24, process_request=health
        ) as server:
            bound = next(iter(server.sockets)).getsockname()
            print(f"pycrdt-websocket listening on ws://{host}:{bound[1]}", flush=True)
            await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--ystore",
        choices=["none", "sqlite"],
        default="none",
        help="per-room YStore: none (in-memory documents) or sqlite (ystore.db in the cwd)",
    )
    args = parser.parse_args()
    asyncio.run(run(args.host, args.port, None if args.ystore == "none" else args.ystore))


if __name__ == "__main__":
    main()
