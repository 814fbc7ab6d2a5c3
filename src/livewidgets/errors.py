"""The exceptions livewidgets raises to its users.

::

    LivewidgetsError
     ├── OpRejected          the relay refused an op (``code`` from protocol.ErrorCode)
     │    └── ConflictError  an ``if_version`` precondition failed
     ├── QueueFull           too many writes waiting for the relay
     ├── JoinRefused         the relay refused to let the session into the room
     ├── SessionClosed       the session was closed (or gave up reconnecting)
     ├── AuthExpired         the token expired; refresh it to continue
     └── TokenCommandError   a token command (--token-cmd) failed

Invalid local input (a bad path, a value that cannot be shared, an op that does
not fit the current value) raises ``ValueError`` subclasses at once:
``state.InvalidPath`` and ``state.OpError``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthExpired",
    "ConflictError",
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
    """The relay refused to let this session into the room (``code``: forbidden, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SessionClosed(LivewidgetsError):
    """The session is closed: it no longer sends or receives."""


class AuthExpired(LivewidgetsError):
    """The relay closed the connection because the token expired."""


class TokenCommandError(LivewidgetsError, RuntimeError):
    """A token command (``--token-cmd``, ``$LIVEWIDGETS_TOKEN_CMD``) failed: it did
    not start, timed out, exited non-zero, or printed something that is not a token."""
