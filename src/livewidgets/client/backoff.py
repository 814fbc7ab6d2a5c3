"""Reconnect delays: capped exponential backoff with full jitter (pure).

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads a crowd
of clients that lost the same relay, so they do not all come back in one burst.
The random source is injected so tests and simulations are deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Policy for the delays between reconnect attempts, in seconds."""

    initial: float = 0.1
    factor: float = 2.0
    cap: float = 10.0
    # Never wait less than this, so a flapping relay is not hammered.
    minimum: float = 0.01

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Endless delays: attempt n waits uniform(minimum, min(cap, initial * factor**n))."""
        rng = rng or random.Random()
        ceiling = self.initial
        while True:
            yield rng.uniform(self.minimum, max(self.minimum, min(self.cap, ceiling)))
            ceiling *= self.factor
