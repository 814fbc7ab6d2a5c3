"""What-if patches for the relay under test: measure a suggested change before making it.

``python -m bench --lw-experiment NAME ...`` starts every livewidgets relay with
these patches applied (bench.lwrelay ``--experiment``). They exist only to put a
number on a proposal in docs/benchmarks.md before it is made for real.

Experiments:

``gc-log``
    Changes nothing; prints, when the relay stops, how many cyclic garbage
    collections ran per generation and the longest pause of each (stderr), to see
    whether collector pauses explain latency tails.
``gc-relaxed``
    ``gc.freeze()`` once the relay listens (objects alive at start-up are never
    scanned again) and a generation-0 threshold of 50,000 allocations instead of
    700 (what long-running Python servers commonly do).
"""

from __future__ import annotations

import atexit
import gc
import sys
import time
from collections.abc import Callable

__all__ = ["EXPERIMENTS", "apply"]


def _gc_log() -> None:
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started[0])

    def report() -> None:
        for gen, times in pauses.items():
            longest = max(times, default=0.0) * 1e3
            total = sum(times) * 1e3
            print(
                f"gc generation {gen}: {len(times)} collections, longest {longest:.2f} ms, "
                f"total {total:.1f} ms",
                file=sys.stderr,
            )

    gc.callbacks.append(callback)
    atexit.register(report)


def _gc_relaxed() -> None:
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


EXPERIMENTS: dict[str, Callable[[], None]] = {
    "gc-log": _gc_log,
    "gc-relaxed": _gc_relaxed,
}


def apply(names: list[str]) -> None:
    for name in names:
        EXPERIMENTS[name]()
