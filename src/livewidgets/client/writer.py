"""Sends one connection's frames in order, the engine's only writer to its socket.

Frames are written straight into the socket while it keeps up (``wsio``: no task
wake-up per op); when it is congested the rest wait in the outbox for a task that
awaits ``ws.send``. Either way each frame is checked against the relay's size limit
first (``refuse``), so an oversized op fails instead of ending the connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .. import wsio
from ..protocol.codec import Codec
from .metrics import Metrics

__all__ = ["Writer"]


class Writer:
    """The outbox of the current connection (loop thread only)."""

    def __init__(self, metrics: Metrics, refuse: Callable[[Any, bytes | str], bool]) -> None:
        self._metrics = metrics
        # refuse(message, encoded): whether not to send it (the engine then failed the op).
        self._refuse = refuse
        self._outbox: deque[Any] = deque()
        self._ready = asyncio.Event()
        # Between taking a frame and having sent it: nobody else may write meanwhile.
        self._writing = False
        self._ws: ClientConnection | None = None
        self._codec: Codec[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def open(self, ws: ClientConnection, codec: Codec[Any]) -> None:
        """Write to ``ws`` from now on. Frames queued for the previous connection are
        stale: the hello and join go first, and pending ops are resent after the joined."""
        self._outbox.clear()
        self._task = asyncio.create_task(self._run(ws, codec))
        self._ws, self._codec = ws, codec

    def close(self) -> None:
        """The connection ended: write nothing more to it."""
        self._ws = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def take(self, frames: list[Any]) -> None:
        """Queue frames after the others; write what the socket takes now."""
        self._outbox.extend(frames)
        self._write_now()
        if self._outbox:
            self._ready.set()

    def _write_now(self) -> None:
        ws, codec = self._ws, self._codec
        if ws is None or codec is None or self._writing:
            return
        # Also keeps this the only writer if a refusal below (which dispatches events)
        # queues more frames and re-enters through the hand-off.
        self._writing = True
        try:
            while self._outbox and wsio.writable(ws):  # checked before popping: nothing lost
                message = self._outbox.popleft()
                data = codec.encode(message)
                if self._refuse(message, data):
                    continue
                wsio.write_message(ws, data, binary=codec.binary)
                self._metrics.sent(data)
        finally:
            self._writing = False

    async def _run(self, ws: ClientConnection, codec: Codec[Any]) -> None:
        """Send the outbox in order while the socket is congested."""
        while True:
            while self._outbox:
                message = self._outbox[0]
                frame = codec.frame(message)
                if self._refuse(message, frame):
                    self._outbox.popleft()
                    continue
                self._writing = True
                try:
                    await ws.send(frame)
                    self._metrics.sent(frame)
                except ConnectionClosed:
                    self._metrics.send_failures += 1
                    return  # the ops stay pending and are resent after reconnect
                finally:
                    self._writing = False
                self._outbox.popleft()
            self._ready.clear()
            await self._ready.wait()
