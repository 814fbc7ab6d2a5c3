"""livewidgets.wsio against a real websockets server and client on 127.0.0.1.

These tests pin the websockets internals wsio relies on: an upgrade that renames
or retypes one of them fails here, not in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.protocol import Protocol, State

from livewidgets import wsio
from livewidgets.relay.framing import data_frame

Pair = tuple[ServerConnection, ClientConnection]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """A connected (server side, client side), both websockets asyncio connections."""
    accepted: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        accepted.set_result(ws)
        await done.wait()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as client:
            yield await accepted, client
            done.set()


@pytest.mark.parametrize("side", [0, 1], ids=["server", "client"])
async def test_private_attributes_exist_with_the_expected_types(pair: Pair, side: int) -> None:
    """protocol, protocol.state, send_in_progress, transport and send_data are as wsio expects."""
    ws = pair[side]
    assert isinstance(ws.protocol, Protocol)
    assert ws.protocol.state is State.OPEN
    assert ws.send_in_progress is None
    assert isinstance(ws.transport, asyncio.Transport)
    assert isinstance(ws.transport.get_write_buffer_size(), int)
    assert callable(ws.send_data)
    assert callable(ws.protocol.send_text) and callable(ws.protocol.send_binary)


async def test_send_in_progress_is_a_future_while_fragments_are_sent(pair: Pair) -> None:
    """During a fragmented send, send_in_progress is a pending Future: not writable."""
    server, client = pair
    started, gate = asyncio.Event(), asyncio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield "a"
        started.set()  # the first fragment is out; the message is not finished
        await gate.wait()
        yield "b"

    sending = asyncio.create_task(server.send(fragments()))
    await started.wait()
    assert isinstance(server.send_in_progress, asyncio.Future)
    assert not wsio.writable(server)
    assert not wsio.write_frames(server, data_frame(b"x", binary=False))
    gate.set()
    await sending
    assert await client.recv() == "ab"
    assert wsio.writable(server)


async def test_prebuilt_frames_reach_the_client(pair: Pair) -> None:
    """write_frames: one frame, then a list of them, arrive as separate messages."""
    server, client = pair
    assert wsio.write_frames(server, data_frame(b"one", binary=False))
    frames = [data_frame(b"two", binary=True), data_frame(b"x" * 70_000, binary=False)]
    assert wsio.write_frames(server, frames)
    assert await client.recv() == "one"
    assert await client.recv() == b"two"
    assert await client.recv() == "x" * 70_000


async def test_write_message_masks_client_frames(pair: Pair) -> None:
    """write_message from the client side: websockets builds (masks) the frame."""
    server, client = pair
    assert wsio.write_message(client, b"hi", binary=False)
    assert wsio.write_message(client, b"\x00\x01", binary=True)
    assert await server.recv() == "hi"
    assert await server.recv() == b"\x00\x01"


async def test_nothing_is_written_after_close(pair: Pair) -> None:
    """Once closing, neither helper writes: the caller falls back to send (which raises)."""
    server, client = pair
    await client.close()
    assert server.protocol.state is not State.OPEN
    assert not wsio.write_frames(server, data_frame(b"late", binary=False))
    assert not wsio.write_message(client, b"late", binary=False)


async def test_a_full_write_buffer_is_not_writable(pair: Pair) -> None:
    """More than ``limit`` bytes buffered: not writable (the caller queues instead)."""
    server, _ = pair
    assert wsio.writable(server, limit=0)
    assert not wsio.write_frames(server, data_frame(b"x", binary=False), limit=-1)


async def test_closed_by_peer_tells_who_sent_the_close_frame(pair: Pair) -> None:
    """After a close handshake the peer started, closed_by_peer is true on this side."""
    server, client = pair
    await server.close(1001, "going away")
    await client.wait_closed()
    assert wsio.closed_by_peer(client)
    assert client.close_code == 1001


async def test_abort_drops_the_socket_without_a_handshake(pair: Pair) -> None:
    """abort: the connection ends at once, and no close frame reached the peer."""
    server, client = pair
    wsio.abort(client)
    await server.wait_closed()
    await client.wait_closed()
    assert not wsio.closed_by_peer(server)
    assert server.close_code == 1006
