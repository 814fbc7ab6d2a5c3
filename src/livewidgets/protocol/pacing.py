"""The token bucket both ends of a connection share (docs/protocol.md "Pacing").

The relay advertises its rates in ``welcome.limits``; the client paces its sends
to them with this bucket and the relay meters what it reads with the same one, so
a client that follows the advertised rates is never slowed, let alone refused.
Pure: time (monotonic seconds) is passed in.
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket"]

_INF = math.inf


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full.

    The balance may go negative (:meth:`charge`): a batch larger than the burst is
    still admitted, and the debt is paid off by waiting before the next send.
    """

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def balance(self, now: float) -> float:
        """The tokens at ``now`` (refilled, capped at the burst)."""
        return min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)

    def rested(self, now: float) -> bool:
        """True when the bucket would be full at ``now`` (nothing to remember)."""
        return self.rate == _INF or self.balance(now) >= self.burst

    def charge(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens, going into debt if short; the seconds until the
        balance is back to zero (0.0: not in debt). The relay's hot path: a few
        arithmetic operations, no allocation."""
        rate = self.rate
        if rate == _INF:
            return 0.0
        tokens = self.tokens + (now - self.updated) * rate
        if tokens > self.burst:
            tokens = self.burst
        tokens -= cost
        self.tokens = tokens
        self.updated = now
        return 0.0 if tokens >= 0.0 else -tokens / rate

    def ready_at(self, cost: float = 1.0) -> float:
        """The earliest time a send of ``cost`` may go (see :meth:`admit`)."""
        if self.rate == _INF:
            return -_INF
        need = min(cost, self.burst) - self.tokens
        return self.updated if need <= 0 else self.updated + need / self.rate

    def admit(self, now: float, cost: float = 1.0) -> bool:
        """Charge ``cost`` if the balance covers it (or the whole burst, for a batch
        larger than the burst: it then leaves a debt); else change nothing."""
        if now < self.ready_at(cost):
            return False
        self.charge(now, cost)
        return True
