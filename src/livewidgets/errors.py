"""The exceptions livewidgets raises to its users.

::

    LivewidgetsError
     ├── OpRejected          the relay refused an op (``code`` from protocol.ErrorCode)
     │    └── ConflictError  an ``if_version`` precondition failed
     ├── QueueFull           too many writes waiting for the relay
     ├── JoinRefused         the relay refused to let the session into the room
     ├── SessionClosed       the session was closed (or gave up reconnecting)
     │    └── ConnectionRefused  the relay (or the way to it) refused the connection
     ├── ConnectTimeout      connect(timeout=...) ran out (also a TimeoutError); says
     │                       why the attempts failed, if the relay said
     ├── AuthExpired         the token expired; refresh it to continue
     └── TokenCommandError   a token command (--token-cmd) failed

Invalid local input (a bad path, a value that cannot be shared, an op that does
not fit the current value) raises ``ValueError`` subclasses at once:
``state.InvalidPath`` and ``state.OpError``.
"""

from __future__ import annotations

import re
from typing import Any

_LIMIT = re.compile(r"\(limit (\d+)")

__all__ = [
    "AuthExpired",
    "ConflictError",
    "ConnectTimeout",
    "ConnectionRefused",
    "JoinRefused",
    "LivewidgetsError",
    "OpRejected",
    "QueueFull",
    "SessionClosed",
    "TokenCommandError",
]


class LivewidgetsError(Exception):
    """Base class of every livewidgets error."""


class OpRejected(LivewidgetsError):
    """The relay refused an operation; it was rolled back locally."""

    def __init__(
        self,
        code: str,
        message: str,
        path: str | None = None,
        current: Any = None,
        current_version: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.path = path
        # For conflicts: the value at path now, and the version that last changed it.
        self.current = current
        self.current_version = current_version


class ConflictError(OpRejected):
    """An ``if_version`` precondition failed: someone changed the path first."""


class QueueFull(LivewidgetsError):
    """Too many writes are waiting for the relay; this one was not queued."""


class JoinRefused(LivewidgetsError):
    """The relay refused to let this session into the room (``code``: forbidden,
    limit_exceeded for a full room, ...; ``limit``: the limit it names, if any)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.limit = limit_named_in(message)


class SessionClosed(LivewidgetsError):
    """The session is closed: it no longer sends or receives."""


class ConnectionRefused(SessionClosed):
    """The connection was refused during its handshake, for ``reason``.

    ``reason`` is the relay's error code where it gave one (``limit_exceeded``,
    ``forbidden``, ``auth_invalid``, ``protocol_version``, ...), else what failed:
    ``tls``, ``unreachable``, ``timeout``, ``bad_handshake``, ``unavailable``,
    ``http_error``. ``limit`` is the number the refusal names (a connection cap),
    ``status`` the HTTP status, ``close_code`` the WebSocket close code. A
    ``transient`` refusal (a cap that frees up, 503, no answer) is retried with
    backoff and reported in status events; connect() raises a permanent one at once
    (the session is closed, hence a SessionClosed).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        url: str = "",
        transient: bool = False,
        limit: int | None = None,
        status: int | None = None,
        close_code: int | None = None,
    ) -> None:
        how = [reason]
        if status is not None:
            how.append(f"HTTP {status}")
        if close_code is not None:
            how.append(f"close {close_code}")
        # The relay (or a proxy) said no, or the attempt failed on the way (TLS, DNS).
        by_peer = status is not None or close_code is not None
        where = f"{url or 'the relay'} refused the connection" if by_peer else "cannot connect"
        if url and not by_peer:
            where += f" to {url}"
        super().__init__(f"{where}: {message} ({', '.join(how)})")
        self.reason = reason
        self.message = message
        self.url = url
        self.transient = transient
        self.limit = limit
        self.status = status
        self.close_code = close_code


class ConnectTimeout(LivewidgetsError, TimeoutError):
    """connect(timeout=...) did not join in time; ``refusal``: the last refusal the
    attempts met (None: the relay said nothing, e.g. none answered)."""

    def __init__(self, message: str, refusal: ConnectionRefused | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal


def limit_named_in(message: str) -> int | None:
    """The number in a relay message's ``(limit N ...)``, as the reference relay
    words every cap it enforces (None if the message names none)."""
    match = _LIMIT.search(message)
    return int(match.group(1)) if match else None


class AuthExpired(LivewidgetsError):
    """The relay closed the connection because the token expired."""


class TokenCommandError(LivewidgetsError, RuntimeError):
    """A token command (``--token-cmd``, ``$LIVEWIDGETS_TOKEN_CMD``) failed: it did
    not start, timed out, exited non-zero, or printed something that is not a token."""
