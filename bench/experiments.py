"""What-if patches for the relay under test: measure a suggested change before making it.

``python -m bench --lw-experiment write-through ...`` starts every livewidgets relay
with these monkeypatches applied (bench.lwrelay ``--experiment``). They touch
private internals of ``livewidgets.relay`` and exist only to put a number on a
proposal in docs/benchmarks.md; if the internals moved, the patch refuses to apply
(the relay then exits with an error) rather than measuring something else.

Experiments:

``write-through``
    ``Connection.enqueue`` writes the frame straight to the socket (what
    ``websockets.broadcast`` does: ``protocol.send_*`` + ``send_data``) when the
    connection's queue is empty and its transport buffer is below 64 KiB; only a
    congested connection queues and gets its writer task woken. Order is kept: the
    writer task never suspends between taking a frame and writing it.
``no-io-metrics``
    ``bytes_in`` / ``bytes_out`` Prometheus counters become no-ops (their per-frame
    mutex is visible in profiles).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["EXPERIMENTS", "apply"]

_CONGESTED = 64 * 1024


def _write_through() -> None:
    from websockets.protocol import State

    from livewidgets.relay import connection as mod

    cls: Any = mod.Connection
    for name in ("_queue", "_close_code"):
        if name not in cls.enqueue.__code__.co_names:
            raise RuntimeError(f"write-through: Connection.enqueue no longer uses {name}")
    queued = cls.enqueue

    def enqueue(self: Any, data: bytes) -> None:
        ws = self.ws
        if (
            self._close_code is None
            and not self._queue
            and ws.protocol.state is State.OPEN
            and getattr(ws, "send_in_progress", None) is None
            and ws.transport.get_write_buffer_size() <= _CONGESTED
        ):
            if self.codec.binary:
                ws.protocol.send_binary(data)
            else:
                ws.protocol.send_text(data)
            ws.send_data()
            self.relay.metrics.bytes_out.inc(len(data))
            return
        queued(self, data)

    cls.enqueue = enqueue


def _no_io_metrics() -> None:
    from livewidgets.relay import metrics as mod

    original = mod.RelayMetrics.__init__

    class _Null:
        def inc(self, amount: float = 1) -> None:
            pass

    def __init__(self: Any) -> None:
        original(self)
        self.bytes_in = _Null()
        self.bytes_out = _Null()

    mod.RelayMetrics.__init__ = __init__  # type: ignore[method-assign]


EXPERIMENTS: dict[str, Callable[[], None]] = {
    "write-through": _write_through,
    "no-io-metrics": _no_io_metrics,
}


def apply(names: list[str]) -> None:
    for name in names:
        EXPERIMENTS[name]()
