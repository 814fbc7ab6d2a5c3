"""Direct writes to a ``websockets`` asyncio connection: the one module past its API.

``Connection.send`` is a coroutine; awaiting it per frame costs a task hop, and the
relay would build the same frame once per receiver. When nothing else is being sent
and the socket keeps up, both I/O shells write instead straight into the transport,
as ``websockets.broadcast`` does:

* the relay writes **prebuilt** frames (relay.framing: relay → client frames are
  unmasked and the relay negotiates no extension, so one message's wire bytes are
  the same for every receiver): :func:`write_frames`;
* a client must mask every frame (RFC 6455 §5.3), so it lets websockets' sans-I/O
  protocol build the frame and flushes it at once: :func:`write_message`.

Both return False, writing nothing, when a direct write is not safe now; the caller
then falls back to ``await ws.send(...)`` (its queue or writer task), which waits for
its turn. A direct write is safe when (:func:`writable`):

* the protocol state is OPEN (nothing may follow a close frame, RFC 6455 §5.5.1);
* no fragmented message is being sent (``send_in_progress``): a frame written
  between two fragments would corrupt the stream (RFC 6455 §5.4);
* the transport's write buffer holds at most ``limit`` bytes: above it the peer is
  not keeping up, and the caller's bounded queue, not the kernel buffer, must grow.

Private attributes relied on (verified with websockets 17.4, the version uv.lock pins for
Python >= 3.11, and with 16.0, the lowest that pyproject.toml allows: ``send_in_progress``
first appears in 16.0, hence ``websockets>=16,<18``; ``scripts/test.sh --lowest`` and
``--latest`` run tests/test_wsio.py at both ends of that range).
tests/test_wsio.py checks each one against a real connection, so an upgrade that
changes them fails a test rather than production:

======================  =========================================  =============
attribute               type                                        used by
======================  =========================================  =============
``ws.protocol``         ``websockets.protocol.Protocol``            state, frames
``ws.protocol.state``   ``websockets.protocol.State``               writable
``ws.send_in_progress`` ``asyncio.Future[None] | None``             writable
``ws.transport``        ``asyncio.Transport``                       write, buffer
``ws.send_data()``      flushes ``protocol.data_to_send()``         write_message
``ws.protocol.close_rcvd``  ``websockets.frames.Close | None``      closed_by_peer
``ws.transport.abort()``  drops the socket without a closing handshake  abort
======================  =========================================  =============

"""

from __future__ import annotations

from websockets.asyncio.connection import Connection
from websockets.protocol import State

__all__ = [
    "DIRECT_WRITE_LIMIT",
    "abort",
    "closed_by_peer",
    "writable",
    "write_frames",
    "write_message",
]

# Below this many bytes waiting in the socket, frames are written at once (no task hop).
DIRECT_WRITE_LIMIT = 64 * 1024


def writable(ws: Connection, limit: int = DIRECT_WRITE_LIMIT) -> bool:
    """Whether frames may go straight into ``ws``'s socket now (see the module doc).

    Call it right before writing, in the event loop's thread, with no ``await`` in
    between: any await lets another task start a send or a close.
    """
    return (
        ws.protocol.state is State.OPEN
        and not ws.send_in_progress
        and ws.transport.get_write_buffer_size() <= limit
    )


def write_frames(
    ws: Connection, frames: bytes | list[bytes], limit: int = DIRECT_WRITE_LIMIT
) -> bool:
    """Server side: write one complete, unmasked frame (relay.framing), or a list of
    them joined, in one ``transport.write``; False, writing nothing, if
    :func:`writable` says no.

    The check is :func:`writable`'s, inlined: this runs once per receiver per op.
    """
    if (
        ws.protocol.state is not State.OPEN
        or ws.send_in_progress
        or ws.transport.get_write_buffer_size() > limit
    ):
        return False
    ws.transport.write(frames if isinstance(frames, bytes) else b"".join(frames))
    return True


def write_message(
    ws: Connection, data: bytes, *, binary: bool, limit: int = DIRECT_WRITE_LIMIT
) -> bool:
    """Either side: send ``data`` (encoded; UTF-8 for a text message) as one frame,
    built by websockets (masked on a client) and flushed at once; False, writing
    nothing, if :func:`writable` says no."""
    if not writable(ws, limit):
        return False
    if binary:
        ws.protocol.send_binary(data)
    else:
        ws.protocol.send_text(data)
    ws.send_data()
    return True


def closed_by_peer(ws: Connection) -> bool:
    """Whether the peer sent a close frame (else the connection was lost or closed by us).

    Call it once the connection is closed (after ``wait_closed``).
    """
    return ws.protocol.close_rcvd is not None


def abort(ws: Connection) -> None:
    """Drop the socket at once, with no closing handshake: for a peer that stopped
    answering (a handshake would wait for it) or after a bug in our own handler."""
    ws.transport.abort()
