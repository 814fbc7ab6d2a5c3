"""When to renew a connection's token, and where a renewal stands (sans-I/O).

The relay states how long the connection's token still holds, relative to when it
sent the message (``welcome.limits.expires_in``, then ``authed.expires_in``): no
clock is shared between the machines, so none can be skewed. :class:`Renewal` turns
that into a deadline on the client's monotonic clock and decides when to ask the
application for a fresh token (docs/security.md "Renewal"):

* **first ask** at ``max(fraction * lifetime, lifetime - margin)`` after the
  statement: 80 % of the lifetime, but no earlier than 30 s before expiry (defaults).
  A 5 s token is renewed after 4 s, a 60 s one after 48 s, a 2 h one 30 s before
  it expires. A provider slower than that leaves (a command that takes 0.5 s, for a
  token of 2 s) is asked earlier from its second time on: twice its last duration
  before expiry, but never before half the lifetime;
* **asking again** when the application had no new token (None, the same one, an
  error) or the relay refused the one it gave: after ``retry`` seconds (5 s), or
  half the time left if that is sooner, while at least ``min_retry`` seconds (0.25 s)
  remain; after that the relay closes with 4004 and the reconnect path asks again.

:class:`~livewidgets.client.protocol.ClientProtocol` owns one and does the talking
(``RenewToken``, ``auth``, ``authed``); nothing here knows about messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Renewal", "RenewalConfig", "first_renewal"]


@dataclass(frozen=True)
class RenewalConfig:
    """When to renew (seconds; see the module docstring)."""

    fraction: float = 0.8
    margin: float = 30.0
    retry: float = 5.0
    min_retry: float = 0.25


def first_renewal(lifetime: float, config: RenewalConfig) -> float:
    """Seconds after the relay stated ``lifetime`` at which to ask for a new token."""
    return max(config.fraction * lifetime, lifetime - config.margin)


class Renewal:
    """One session's token renewal: a schedule, and the token on its way.

    ``due`` is when to ask the application next (None: not now); at most one ask
    is out at a time, and at most one offered token awaits the relay's answer.
    """

    def __init__(self, config: RenewalConfig | None = None) -> None:
        self.config = config or RenewalConfig()
        # Monotonic time at which the current connection's token expires (None: never,
        # or no connection).
        self.expires: float | None = None
        # When to ask the application for a token next (None: no ask planned).
        self.due: float | None = None
        # An ask is out (RenewToken went out, no token_renewed() yet).
        self.asking = False
        # The token sent in ``auth``, awaiting ``authed`` or an error.
        self.offered: str | None = None
        # When the ask that is out went out, and how long the last answer took.
        self._asked_at: float | None = None
        self.latency = 0.0

    def stated(self, expires_in: float | None, now: float) -> None:
        """The relay says the token holds ``expires_in`` more seconds (None: forever)."""
        self.offered = None
        if expires_in is None or not math.isfinite(expires_in) or expires_in < 0:
            self.expires = self.due = None
            return
        self.expires = now + expires_in
        after = first_renewal(expires_in, self.config)
        # Leave a slow provider (and the relay's answer) the time it took last time,
        # twice over; but renewing more often than every half lifetime buys nothing.
        after = max(min(after, expires_in - 2 * self.latency), expires_in / 2)
        self.due = now + after

    def ask(self, now: float) -> bool:
        """Whether to ask the application for a token now (then an ask is out)."""
        if self.due is None or now < self.due or self.asking or self.offered is not None:
            return False
        self.due, self.asking, self._asked_at = None, True, now
        return True

    def answered(self, token: str | None, current: str | None, now: float) -> str | None:
        """The application's answer: the token to offer the relay, or None (nothing
        new: ask again later, while there is time)."""
        self.asking = False
        if self._asked_at is not None:
            self.latency, self._asked_at = max(0.0, now - self._asked_at), None
        if self.expires is None:
            return None  # the connection ended meanwhile
        if not token or token == current:
            self._again(now)
            return None
        self.offered = token
        return token

    def refused(self, now: float) -> None:
        """The relay refused the offered token: the old one holds; ask again later."""
        if self.offered is None:
            return
        self.offered = None
        self._again(now)

    def accepted(self, expires_in: float | None, now: float) -> str | None:
        """The relay took the offered token (``authed``): returns it (None if none was
        offered), and plans the next renewal from the lifetime it now has."""
        token = self.offered
        if token is not None:  # else an answer to nothing we sent: nothing changes
            self.stated(expires_in, now)
        return token

    def stop(self) -> None:
        """The connection ended: its deadline and any offered token with it (an ask
        that is out stays out; its answer is dropped)."""
        self.expires = self.due = None
        self.offered = None

    def _again(self, now: float) -> None:
        expires = self.expires
        if expires is None:
            return
        delay = min(self.config.retry, (expires - now) / 2)
        self.due = now + delay if delay >= self.config.min_retry else None
