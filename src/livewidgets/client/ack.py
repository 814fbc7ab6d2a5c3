"""``Ack``: the handle every write returns; usable from threads and from asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Generator
from typing import Any

from ..errors import ConflictError, OpRejected

__all__ = ["Ack"]


class Ack:
    """Resolves with the room version that applied the write, or fails with OpRejected.

    ``ack.result(timeout)`` blocks (threads); ``await ack`` works on any event loop.
    """

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: concurrent.futures.Future[int] = concurrent.futures.Future()

    def done(self) -> bool:
        return self._future.done()

    @property
    def version(self) -> int | None:
        """The version once acknowledged; None while pending or if rejected."""
        if not self._future.done() or self._future.exception() is not None:
            return None
        return self._future.result()

    def result(self, timeout: float | None = None) -> int:
        """Wait for the relay; return the version or raise OpRejected / TimeoutError."""
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no acknowledgement within {timeout} s") from None

    def exception(self) -> BaseException | None:
        return self._future.exception(0) if self._future.done() else None

    def __await__(self) -> Generator[Any, None, int]:
        return asyncio.wrap_future(self._future).__await__()

    def add_done_callback(self, callback: Any) -> None:
        self._future.add_done_callback(lambda _: callback(self))

    # --- settled by the engine (like concurrent.futures.Future.set_result) ----------

    def resolve(self, version: int) -> None:
        """Settle as applied at ``version``; for the engine, not for users. Idempotent:
        the first outcome wins."""
        if not self._future.done():
            self._future.set_result(version)

    def fail(self, error: BaseException) -> None:
        """Settle as refused with ``error``; for the engine, not for users. Idempotent."""
        if not self._future.done():
            self._future.set_exception(error)

    def __repr__(self) -> str:
        if not self._future.done():
            return "<Ack pending>"
        error = self._future.exception()
        return f"<Ack failed {error}>" if error else f"<Ack version={self._future.result()}>"


def rejection(code: str, message: str, **details: Any) -> OpRejected:
    """The exception for a refused op (a ConflictError for conflicts)."""
    kind = ConflictError if code == "conflict" else OpRejected
    return kind(code, message, **details)
