"""Revoke a share link or a token on a relay (docs/security.md "Revocation").

The admin path behind ``livewidgets revoke`` and ``%livewidgets revoke``: one short
connection that says hello with an admin token, sends ``admin`` ``revoke`` and waits
for ``revoked`` (the relay has recorded it in its store and closed the connections
it denies) or an ``error``. Nothing is joined, so nothing of any room is read.

:func:`revoke` is synchronous and safe to call where an event loop already runs (a
notebook cell): the connection runs on a thread of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl as ssl_module
from typing import TypeVar

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from .protocol import JSON_SUBPROTOCOL, PROTOCOL_VERSION, Admin, Error, Hello, client_codec
from .protocol.messages import Revoked, Welcome

__all__ = ["RevokeError", "revoke", "revoke_async"]

T = TypeVar("T")


class RevokeError(Exception):
    """The relay refused the revocation (``code``: its error code, e.g. ``forbidden``)
    or never answered."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


async def revoke_async(
    url: str,
    room: str,
    token: str,
    *,
    link: str | None = None,
    token_id: str | None = None,
    timeout: float = 10.0,
    ssl: ssl_module.SSLContext | None = None,
) -> Revoked:
    """Revoke ``link`` (a link id) or ``token_id`` (a ``jti``) with an admin ``token``
    that admits ``room``; the relay's ``revoked`` answer. Raises :class:`RevokeError`."""
    if (link is None) == (token_id is None):
        raise ValueError("revoke needs exactly one of link and token_id")
    admin = Admin(room, "revoke", link=link, token_id=token_id)
    try:
        return await asyncio.wait_for(_exchange(url, token, admin, ssl), timeout)
    except asyncio.TimeoutError:
        raise RevokeError("timeout", f"no answer from {url} within {timeout} s") from None
    except ConnectionClosed as exc:
        raise RevokeError("closed", f"the relay closed the connection ({exc})") from None


async def _exchange(
    url: str, token: str, admin: Admin, ssl: ssl_module.SSLContext | None
) -> Revoked:
    codec = client_codec(JSON_SUBPROTOCOL)
    subprotocols = [Subprotocol(JSON_SUBPROTOCOL)]
    connection = (
        connect(url, subprotocols=subprotocols, ssl=ssl)
        if ssl
        else connect(url, subprotocols=subprotocols)
    )
    async with connection as ws:
        await ws.send(codec.frame(Hello(PROTOCOL_VERSION, token=token)))
        _expect(codec.decode(await ws.recv()), Welcome)
        await ws.send(codec.frame(admin))
        return _expect(codec.decode(await ws.recv()), Revoked)


def revoke(
    url: str,
    room: str,
    token: str,
    *,
    link: str | None = None,
    token_id: str | None = None,
    timeout: float = 10.0,
    ssl: ssl_module.SSLContext | None = None,
) -> Revoked:
    """:func:`revoke_async` from synchronous code (a thread of its own, so that it
    also works inside a notebook's running event loop)."""
    coroutine = revoke_async(
        url, room, token, link=link, token_id=token_id, timeout=timeout, ssl=ssl
    )
    with concurrent.futures.ThreadPoolExecutor(1, "livewidgets-revoke") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _expect(message: object, kind: type[T]) -> T:
    if isinstance(message, Error):
        raise RevokeError(message.code, message.message)
    if not isinstance(message, kind):
        raise RevokeError("invalid_message", f"unexpected answer {message!r}")
    return message
