"""What-if patches for the relay under test: measure a suggested change before making it.

``python -m bench --lw-experiment NAME ...`` starts every livewidgets relay with
these patches applied (bench.lwrelay ``--experiment``). They exist only to put a
number on a proposal in docs/benchmarks.md before it is made for real.

Experiments:

``gc-log``
    Changes nothing; prints, when the relay stops, how many cyclic garbage
    collections ran per generation and the longest pause of each (stderr), to see
    whether collector pauses explain latency tails.

``backlog``
    Listens with a backlog of 4,096 (the kernel caps it at net.core.somaxconn)
    instead of asyncio's default 100, to see whether a connect storm's tail (bench.many)
    is connections waiting for the SYN to be sent again after a full accept queue.
"""

from __future__ import annotations

import atexit
import gc
import sys
import time
from collections.abc import Callable

__all__ = ["EXPERIMENTS", "apply"]


def _gc_log() -> None:
    # Wall time and this thread's CPU time per collection (CPU time leaves out the
    # moments the VM or other processes took the core away).
    pauses: dict[int, list[tuple[float, float]]] = {0: [], 1: [], 2: []}
    started = [0.0, 0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter(), time.thread_time()]
        else:
            wall = time.perf_counter() - started[0]
            cpu = time.thread_time() - started[1]
            pauses[info["generation"]].append((wall, cpu))

    def report() -> None:
        for gen, times in pauses.items():
            walls = [w for w, _ in times] or [0.0]
            cpus = [c for _, c in times] or [0.0]
            print(
                f"gc generation {gen}: {len(times)} collections, longest {max(walls) * 1e3:.2f}"
                f" ms wall / {max(cpus) * 1e3:.2f} ms CPU, total {sum(cpus) * 1e3:.1f} ms CPU",
                file=sys.stderr,
            )

    gc.callbacks.append(callback)
    atexit.register(report)


def _backlog() -> None:
    import functools

    from livewidgets.relay import server

    server.serve = functools.partial(server.serve, backlog=4096)  # type: ignore[attr-defined]


EXPERIMENTS: dict[str, Callable[[], None]] = {
    "gc-log": _gc_log,
    "backlog": _backlog,
}


def apply(names: list[str]) -> None:
    for name in names:
        EXPERIMENTS[name]()
