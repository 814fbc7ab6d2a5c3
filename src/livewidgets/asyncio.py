"""Asyncio-native API: ``session = await livewidgets.asyncio.connect(url, room, user)``."""

from .client.session import AsyncSession
from .client.session import connect_async as connect

__all__ = ["AsyncSession", "connect"]
