"""The kernel-side sync engine: sans-I/O core plus asyncio and threaded facades."""

from ..errors import (
    AuthExpired,
    ConflictError,
    JoinRefused,
    LivewidgetsError,
    OpRejected,
    QueueFull,
    SessionClosed,
    TokenCommandError,
)
from .ack import Ack
from .backoff import Backoff
from .core import Priority, RoomSync
from .engine import EngineConfig
from .session import AsyncSession, Session, SessionAPI, connect, connect_async
from .tokens import TokenCommand

__all__ = [
    "Ack",
    "AsyncSession",
    "AuthExpired",
    "Backoff",
    "ConflictError",
    "EngineConfig",
    "JoinRefused",
    "LivewidgetsError",
    "OpRejected",
    "Priority",
    "QueueFull",
    "RoomSync",
    "Session",
    "SessionAPI",
    "SessionClosed",
    "TokenCommand",
    "TokenCommandError",
    "connect",
    "connect_async",
]
