"""A fault-injecting TCP proxy for reconnect tests (asyncio, 127.0.0.1, port 0).

Clients connect to :attr:`Proxy.url`; every connection is piped to the target
(a real relay). Faults, all callable from the proxy's event loop:

* :meth:`cut` - abort every current connection with a TCP RST on both sides (no
  WebSocket close frame): what a dropped Wi-Fi or a killed NAT entry looks like;
* :meth:`stall` / :meth:`resume` - stop forwarding bytes in both directions while
  keeping the sockets open (a silent, half-open peer); bytes read meanwhile are
  held and delivered in order on resume. New connections stall too;
* :meth:`refuse` - accept new connections and reset them at once, so reconnect
  attempts fail (current connections are left alone: ``cut()`` them too);
* ``delay`` - seconds to hold each chunk before forwarding it (order is kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

__all__ = ["Proxy"]

_CHUNK = 65536


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN (SO_LINGER 0), discarding anything unsent."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client side, the target side and the two pumps."""

    client: asyncio.StreamWriter
    target: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        for pump in self.pumps:
            pump.cancel()
        _reset(self.client)
        _reset(self.target)


class Proxy:
    """``async with Proxy(host, port) as proxy:`` then connect to ``proxy.url``."""

    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        # Seconds each chunk waits before it is forwarded (0: forward at once).
        self.delay = delay
        # Connections accepted (including refused ones) and currently piped.
        self.accepted = 0
        self.links: set[_Link] = set()
        self._refusing = False
        # Set while bytes may flow; cleared by stall().
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Stop listening and reset every connection."""
        if self._server is None:
            return
        self._server.close()
        self._flowing.set()
        self.cut()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- faults ---------------------------------------------------------------------

    def cut(self) -> int:
        """Reset every current connection (RST both ways); returns how many."""
        links, self.links = self.links, set()
        for link in links:
            link.reset()
        return len(links)

    def stall(self) -> None:
        """Stop forwarding bytes, both ways, on every connection (sockets stay open)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, starting with the bytes held during the stall."""
        self._flowing.set()

    def refuse(self, refusing: bool = True) -> None:
        """While True, new connections are accepted and reset at once."""
        self._refusing = refusing

    # --- plumbing -------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            _reset(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._pipe(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            _reset(writer)
            return
        link = _Link(writer, target_writer)
        self.links.add(link)
        link.pumps = [
            asyncio.create_task(self._pump(reader, target_writer)),
            asyncio.create_task(self._pump(target_reader, writer)),
        ]
        # When either direction ends (EOF, reset, cut), tear the whole link down.
        _, pending = await asyncio.wait(link.pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*link.pumps, return_exceptions=True)
        if link in self.links:
            self.links.discard(link)
            link.client.transport.abort()
            link.target.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(_CHUNK):
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._flowing.wait()
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            return
