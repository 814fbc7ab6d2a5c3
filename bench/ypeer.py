"""The nearest peer: pycrdt-websocket's ``WebsocketServer`` (the server behind
JupyterLab real-time collaboration) served over ``websockets``.

Rooms are named by the URL path, as in pycrdt-websocket. ``auto_clean_rooms`` is
off so a room's document outlives its last client (what the join-time scenario
needs; JupyterLab keeps rooms while a document is open). No YStore: the document
lives in memory only, like livewidgets' ``memory://`` store.

Run: ``python -m bench.ypeer [--host 127.0.0.1] [--port 0]``; prints
``pycrdt-websocket listening on ws://HOST:PORT`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["WebsocketsChannel", "main", "run"]


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


async def run(host: str, port: int) -> None:
    from pycrdt.websocket import WebsocketServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log = logging.getLogger("bench.ypeer")
    log.setLevel(logging.ERROR)
    async with WebsocketServer(auto_clean_rooms=False, log=log) as yserver:
        # WebsocketServer.get_room races when two clients open a new room at once (both
        # try to start it; the second fails with "YRoom already running" and its
        # connection dies). Creating rooms one at a time here works around it.
        creating = asyncio.Lock()

        async def handle(ws: ServerConnection) -> None:
            path = ws.request.path if ws.request is not None else "/"
            async with creating:
                await yserver.get_room(path)  # returns at once once the room is started
            await yserver.serve(WebsocketsChannel(ws, path))

        async with serve(handle, host, port, compression=None, max_size=2**24) as server:
            bound = next(iter(server.sockets)).getsockname()
            print(f"pycrdt-websocket listening on ws://{host}:{bound[1]}", flush=True)
            await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
