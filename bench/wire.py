"""A lean WebSocket client for load generation (RFC 6455 subset, asyncio Protocol).

Why not the ``websockets`` client: with 2 cores shared by the server under test and
its clients, a client that spends 15 us per frame in Python competes with the server
for CPU and the benchmark ends up measuring the clients. This one parses frame
headers by hand (server frames are unmasked and, for messages this small, never
fragmented) and sends client frames with an all-zero masking key, which RFC 6455
5.3 allows (the key must be present; a zero key leaves the payload unchanged), so
sending costs one ``transport.write``.

Deliberately incomplete: no extensions (compression is never offered), no
fragmented messages, no UTF-8 validation. Pings are answered with pongs so servers'
heartbeats do not close idle connections.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable

__all__ = ["LeanConnection", "WireError", "frame", "open_connection"]

_ZERO_MASK = b"\x00\x00\x00\x00"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10


class WireError(Exception):
    """The handshake failed or the server sent something this client does not speak."""


def frame(payload: bytes, *, text: bool) -> bytes:
    """One complete client frame (FIN, masked with a zero key) carrying ``payload``."""
    return _frame(_OP_TEXT if text else _OP_BINARY, payload)


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + _ZERO_MASK + payload


class LeanConnection(asyncio.Protocol):
    """One client connection. Frames go to ``on_frame`` if set, else to ``recv()``."""

    def __init__(self, host: str, path: str, subprotocol: str | None) -> None:
        self._request = _request(host, path, subprotocol)
        self.subprotocol = subprotocol
        self.transport: asyncio.Transport | None = None
        # Set once the 101 response arrived (or failed).
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Called with each data frame's payload once set; frames before that are queued.
        self.on_frame: Callable[[bytes], None] | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._buf = bytearray()
        self._handshaking = True
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self.frames_in = 0
        # The close code the server sent (1005 if its close frame had none), if it did.
        self.close_code: int | None = None

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if self._handshaking:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            self._handshaking = False
            status = head.split("\r\n", 1)[0]
            if " 101 " not in status + " ":
                self._fail(WireError(f"handshake refused: {status}"))
                return
            if not self.opened.done():
                self.opened.set_result(None)
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- API ----------------------------------------------------------------------

    def send(self, payload: bytes, *, text: bool) -> None:
        assert self.transport is not None
        self.transport.write(_frame(_OP_TEXT if text else _OP_BINARY, payload))

    def send_raw(self, data: bytes) -> None:
        """Write frames built with :func:`frame` (possibly several, concatenated)."""
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the kernel and transport buffers are full (TCP backpressure)."""
        while self._paused and not self.closed.done():
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    async def recv(self, timeout: float) -> bytes:
        """The next queued frame; ConnectionError if the connection closes first."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        if self.closed.done():
            raise ConnectionError("connection closed")
        get = asyncio.ensure_future(self._queue.get())
        done, _ = await asyncio.wait(
            {get, self.closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if get in done:
            return get.result()
        get.cancel()
        if self.closed.done():
            raise ConnectionError("connection closed")
        raise TimeoutError(f"no frame within {timeout} s")

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_frame(_OP_CLOSE, struct.pack("!H", 1000)))
            self.transport.close()

    # --- internals ----------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
            self.opened.exception()  # mark retrieved: a failed open is reported by open_connection
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _parse(self) -> None:
        buf = self._buf
        size = len(buf)
        pos = 0
        on_frame = self.on_frame
        while size - pos >= 2:
            b0 = buf[pos]
            n = buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                (n,) = struct.unpack_from("!Q", buf, pos + 2)
                head = 10
            if buf[pos + 1] & 0x80:
                raise WireError("masked frame from a server")
            end = pos + head + n
            if end > size:
                break
            opcode = b0 & 0x0F
            payload = bytes(buf[pos + head : end])
            pos = end
            if opcode in (_OP_TEXT, _OP_BINARY):
                if not b0 & 0x80:
                    raise WireError("fragmented message (not supported by the lean client)")
                self.frames_in += 1
                if on_frame is not None:
                    on_frame(payload)
                else:
                    self._queue.put_nowait(payload)
            elif opcode == _OP_PING:
                assert self.transport is not None
                self.transport.write(_frame(_OP_PONG, payload))
            elif opcode == _OP_CLOSE:
                assert self.transport is not None
                self.close_code = struct.unpack("!H", payload[:2])[0] if n >= 2 else 1005
                if not self.transport.is_closing():
                    self.transport.write(_frame(_OP_CLOSE, payload[:2]))
                    self.transport.close()
                break
            elif opcode not in (_OP_PONG, _OP_CONT):
                raise WireError(f"unexpected opcode {opcode}")
        if pos:
            del buf[:pos]


def _request(host: str, path: str, subprotocol: str | None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def open_connection(
    url: str, path: str = "/", subprotocol: str | None = None, timeout: float = 10.0
) -> LeanConnection:
    """Connect to ``ws://host:port`` and complete the opening handshake."""
    if not url.startswith("ws://"):
        raise ValueError(f"only ws:// URLs: {url!r}")
    hostport = url[len("ws://") :].rstrip("/")
    host, _, port = hostport.rpartition(":")
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(
            lambda: LeanConnection(hostport, path, subprotocol), host, int(port)
        ),
        timeout,
    )
    await asyncio.wait_for(asyncio.shield(conn.opened), timeout)
    return conn
