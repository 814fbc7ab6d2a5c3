"""The floor: the least a Python broadcast relay on ``websockets`` can do.

Each connection belongs to the room named by its URL path; every frame it sends is
forwarded, as is, to every *other* connection of that room with
``websockets.broadcast`` (frame bytes built once per message, written without
awaiting any receiver). No validation, ordering, acks, storage, presence or
backpressure: whatever livewidgets costs above this is the price of its guarantees.

Run: ``python -m bench.floor [--host 127.0.0.1] [--port 0]``; prints
``floor listening on ws://HOST:PORT`` once ready and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import defaultdict

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["main", "run"]

_rooms: defaultdict[str, set[ServerConnection]] = defaultdict(set)


async def _handle(ws: ServerConnection) -> None:
    name = ws.request.path if ws.request is not None else "/"
    room = _rooms[name]
    room.add(ws)
    try:
        async for message in ws:
            # ``others`` is rebuilt per frame: joins and leaves take effect at once.
            broadcast([peer for peer in room if peer is not ws], message)
    except ConnectionClosed:
        pass
    finally:
        room.discard(ws)
        if not room:
            _rooms.pop(name, None)


async def run(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Same transport settings as the livewidgets relay: no compression, 1 MiB frames.
    async with serve(_handle, host, port, compression=None, max_size=2**20) as server:
        bound = next(iter(server.sockets)).getsockname()
        print(f"floor listening on ws://{host}:{bound[1]}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
