"""The test proxy itself: it forwards, cuts with RST, stalls, refuses and delays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from .helpers import MS, TIMEOUT
from .proxy import Proxy


@pytest.fixture
async def echo() -> AsyncIterator[asyncio.Server]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server
    server.close()
    await server.wait_closed()


async def open_through(proxy: Proxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def test_forwards_both_ways(echo: asyncio.Server) -> None:
    """Bytes written through the proxy come back from the echo server."""
    async with Proxy("127.0.0.1", port_of(echo)) as proxy:
        reader, writer = await open_through(proxy)
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), TIMEOUT) == b"hello"
        writer.close()


async def test_cut_resets_the_connection(echo: asyncio.Server) -> None:
    """cut() aborts current connections with a reset, not an orderly close."""
    async with Proxy("127.0.0.1", port_of(echo)) as proxy:
        reader, writer = await open_through(proxy)
        writer.write(b"x")
        await asyncio.wait_for(reader.readexactly(1), TIMEOUT)
        assert proxy.cut() == 1
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(TIMEOUT):
                await reader.read(1)
        writer.close()


async def test_stall_holds_bytes_until_resume(echo: asyncio.Server) -> None:
    """While stalled nothing is forwarded; on resume the held bytes arrive in order."""
    async with Proxy("127.0.0.1", port_of(echo)) as proxy:
        reader, writer = await open_through(proxy)
        proxy.stall()
        writer.write(b"abc")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 100 * MS)
        proxy.resume()
        assert await asyncio.wait_for(reader.readexactly(3), TIMEOUT) == b"abc"
        writer.close()


async def test_refuse_resets_new_connections_only(echo: asyncio.Server) -> None:
    """refuse(True) resets new connections; an open one keeps working."""
    async with Proxy("127.0.0.1", port_of(echo)) as proxy:
        reader, writer = await open_through(proxy)
        proxy.refuse(True)
        refused_reader, refused_writer = await open_through(proxy)
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(TIMEOUT):
                await refused_reader.read(1)
        writer.write(b"ok")
        assert await asyncio.wait_for(reader.readexactly(2), TIMEOUT) == b"ok"
        proxy.refuse(False)
        reader2, writer2 = await open_through(proxy)
        writer2.write(b"again")
        assert await asyncio.wait_for(reader2.readexactly(5), TIMEOUT) == b"again"
        for w in (writer, writer2, refused_writer):
            w.close()


async def test_delay_holds_each_chunk(echo: asyncio.Server) -> None:
    """With a per-chunk delay, a round trip takes at least two delays."""
    async with Proxy("127.0.0.1", port_of(echo), delay=50 * MS) as proxy:
        reader, writer = await open_through(proxy)
        loop = asyncio.get_running_loop()
        started = loop.time()
        writer.write(b"d")
        await asyncio.wait_for(reader.readexactly(1), TIMEOUT)
        assert loop.time() - started >= 2 * 50 * MS * 0.9
        writer.close()
