"""Connection and sync metrics of one session (``Session.metrics``)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Metrics"]


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


_COUNTERS = (
    "attempts",
    "successes",
    "failures",
    "disconnections",
    "messages_sent",
    "messages_received",
    "bytes_sent",
    "bytes_received",
    "retries",
    "rejects",
    "send_failures",
    "decode_errors",
    "heartbeat_timeouts",
    "token_renewals",
    "callback_errors",
    "last_callback_error",
)


@dataclass
class Metrics:
    """Counters kept by the engine; read them through :meth:`as_dict`."""

    attempts: int = 0
    successes: int = 0
    failures: int = 0
    disconnections: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retries: int = 0
    rejects: int = 0
    send_failures: int = 0
    decode_errors: int = 0
    heartbeat_timeouts: int = 0
    # Tokens renewed on an open connection (auth / authed, no reconnect).
    token_renewals: int = 0
    # User callbacks (subscribe, on, change listeners) that raised; the last one's error.
    callback_errors: int = 0
    last_callback_error: str | None = None
    # Round trips (ping/pong and op/ack), seconds; a bounded window of recent samples.
    rtt_samples: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    connected_since: float | None = None
    connected_total: float = 0.0
    created_at: float = field(default_factory=time.monotonic)

    def sent(self, frame: bytes | str) -> None:
        self.messages_sent += 1
        self.bytes_sent += len(frame)

    def received(self, frame: bytes | str) -> None:
        self.messages_received += 1
        self.bytes_received += len(frame)

    def went_up(self, now: float) -> None:
        self.successes += 1
        self.connected_since = now

    def went_down(self, now: float) -> None:
        if self.connected_since is not None:
            self.connected_total += now - self.connected_since
            self.connected_since = None
            self.disconnections += 1

    def as_dict(self, **extra: Any) -> dict[str, Any]:
        """A plain snapshot: counters, RTT avg/p50/p99 in ms, uptime in s, plus ``extra``."""
        now = time.monotonic()
        samples = list(self.rtt_samples)
        rtt: dict[str, float | None] = {"rtt_avg_ms": None, "rtt_p50_ms": None, "rtt_p99_ms": None}
        if samples:
            rtt = {
                "rtt_avg_ms": 1000 * sum(samples) / len(samples),
                "rtt_p50_ms": 1000 * _percentile(samples, 0.50),
                "rtt_p99_ms": 1000 * _percentile(samples, 0.99),
            }
        up = now - self.connected_since if self.connected_since is not None else 0.0
        counters = {name: getattr(self, name) for name in _COUNTERS}
        return {
            **counters,
            **rtt,
            "uptime_s": up,
            "connected_total_s": self.connected_total + up,
            "age_s": now - self.created_at,
            **extra,
        }
