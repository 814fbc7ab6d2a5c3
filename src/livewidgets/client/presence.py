"""This client's presence: who I am, whether I am active, where my cursors are.

Presence is ephemeral (never logged by the relay): a dict per connection and room,
replaced as a whole on every update. Updates are throttled to ``rate`` per second;
the latest value always gets through (trailing edge). After ``idle_after`` seconds
without local activity the status turns "idle" (y-protocols' awareness renews
local state periodically; here the relay's heartbeat removes dead peers instead).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LocalPresence", "color_for"]


def color_for(user: str) -> str:
    """A stable colour for ``user``, readable on light and dark backgrounds."""
    digest = hashlib.sha1(user.encode("utf-8"), usedforsecurity=False).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    return f"hsl({hue}, 70%, 45%)"


class LocalPresence:
    """Fields this client publishes, plus the throttle and idle bookkeeping (pure)."""

    def __init__(
        self,
        user: str,
        *,
        name: str | None = None,
        color: str | None = None,
        idle_after: float = 60.0,
        rate: float = 20.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        now = clock()
        self.fields: dict[str, Any] = {
            "user": user,
            "name": name or user,
            "color": color or color_for(user),
            "joined_at": now,
            "status": "active",
        }
        self.idle_after = idle_after
        self.min_interval = 1.0 / rate if rate > 0 else 0.0
        self.last_activity = now
        self.last_sent = float("-inf")

    def update(self, fields: dict[str, Any]) -> None:
        """Merge fields (a None value removes the key); counts as activity."""
        for key, value in fields.items():
            if value is None:
                self.fields.pop(key, None)
            else:
                self.fields[key] = value
        self.touch()

    def touch(self) -> bool:
        """Note local activity; True if this turned the status back to active."""
        self.last_activity = self._clock()
        if self.fields.get("status") == "idle":
            self.fields["status"] = "active"
            return True
        return False

    def check_idle(self) -> bool:
        """True if the quiet time just passed and the status turned idle."""
        quiet = self._clock() - self.last_activity
        if self.fields.get("status") == "active" and quiet >= self.idle_after:
            self.fields["status"] = "idle"
            return True
        return False

    def delay(self) -> float:
        """Seconds to wait before the next send is allowed (0: send now)."""
        return max(0.0, self.last_sent + self.min_interval - self._clock())

    def snapshot(self) -> dict[str, Any]:
        """The state to publish now (stamps ``last_seen``)."""
        now = self._clock()
        self.last_sent = now
        return {**self.fields, "last_seen": now}
