"""Prometheus metrics of one relay (served at ``GET /metrics``).

Each relay has its own :class:`CollectorRegistry`, so several relays in one
process (tests, embedded use) never share or double-register counters. Rates
(ops/s, bytes/s) are left to Prometheus: ``rate(livewidgets_ops_accepted_total[1m])``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ..protocol.messages import AckMessage, Error, Joined, Reject

__all__ = ["CONTENT_TYPE_LATEST", "RelayMetrics"]

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class _ByteCounters(Collector):
    """Bytes received and sent, as two Prometheus counters built when scraped."""

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0

    def collect(self) -> Iterable[Metric]:
        received = CounterMetricFamily(
            "livewidgets_received_bytes",
            "Payload size of frames received (bytes; characters for text frames)",
            value=self.received,
        )
        sent = CounterMetricFamily(
            "livewidgets_sent_bytes", "Payload bytes of frames sent", value=self.sent
        )
        return [received, sent]


class RelayMetrics:
    """The relay's counters and gauges; ``render()`` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "livewidgets_connections", "Open client connections (after hello)", registry=r
        )
        self.rooms = Gauge("livewidgets_rooms", "Rooms loaded in memory", registry=r)
        self.ops_accepted = Counter(
            "livewidgets_ops_accepted",
            "Accepted ops and batches (one per room version)",
            registry=r,
        )
        self.duplicates = Counter(
            "livewidgets_duplicate_ops",
            "Resent ops acknowledged again (not re-applied)",
            registry=r,
        )
        self.rejects = Counter(
            "livewidgets_rejects", "Ops refused, by error code", ["code"], registry=r
        )
        self.errors = Counter(
            "livewidgets_errors", "Error messages sent, by error code", ["code"], registry=r
        )
        self.joins = Counter(
            "livewidgets_joins", "Joins by catch-up mode (delta = resumed)", ["mode"], registry=r
        )
        # Counted per frame on the hot path: plain ints, read at scrape time (a
        # prometheus Counter takes a lock on every inc).
        self.bytes = _ByteCounters()
        r.register(self.bytes)
        self.slow_consumer_closes = Counter(
            "livewidgets_slow_consumer_closes",
            "Connections closed because their send queue overflowed",
            registry=r,
        )
        self.store_conflicts = Counter(
            "livewidgets_store_conflicts",
            "Appends a shared store refused because another relay appended first "
            "(the round was redone after its entries)",
            registry=r,
        )
        self.remote_entries = Counter(
            "livewidgets_remote_entries",
            "Entries other relays committed, applied and broadcast here (shared store)",
            registry=r,
        )
        self.commit_seconds = Histogram(
            "livewidgets_commit_seconds", "Store append latency of one group commit", registry=r
        )
        self.commit_entries = Histogram(
            "livewidgets_commit_entries",
            "Entries persisted per group commit",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )

    def observe_messages(self, messages: Iterable[Any]) -> None:
        """Count the outcomes a room delivered (acks, rejects, joins)."""
        accepted = duplicates = 0
        for message in messages:
            if isinstance(message, AckMessage):
                if message.duplicate:
                    duplicates += 1
                else:
                    accepted += 1
            elif isinstance(message, Reject):
                self.rejects.labels(message.code).inc()
            elif isinstance(message, Joined):
                self.joins.labels(message.mode).inc()
            elif isinstance(message, Error):
                self.errors.labels(message.code).inc()
        # One locked increment per round, not per op.
        if accepted:
            self.ops_accepted.inc(accepted)
        if duplicates:
            self.duplicates.inc(duplicates)

    def value(self, name: str, **labels: str) -> float:
        """Current value of one sample (0 if absent), e.g. ``value("livewidgets_rooms")``."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
