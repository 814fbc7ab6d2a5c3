"""Settings for a process whose job is to run a relay (``livewidgets relay``).

Kept out of :class:`~livewidgets.relay.Relay` itself: they change the whole
process, which is fine for the relay's own process but not for a notebook kernel
or a test run that embeds a relay.
"""

from __future__ import annotations

import contextlib
import gc
import resource

__all__ = ["FD_RESERVE", "GC_THRESHOLDS", "fd_capacity", "raise_fd_limit", "tune_garbage_collector"]

# CPython's default (700, 10, 10) runs a young collection every 700 container
# allocations, a middle one every 7,000 and, as the heap grows, full ones that scan
# every live object. A relay allocates a few dozen containers per op, so under load
# one op in ~30 waited for a ~3 ms collection and full ones paused the loop for tens
# of milliseconds (measured: `python -m bench --lw-experiment gc-log`). The relay's
# data is acyclic (messages, ops, immutable state trees): fewer, rarer collections
# reclaim the same memory.
GC_THRESHOLDS = (20_000, 10, 10)


def tune_garbage_collector() -> None:
    """Call once the relay is listening: never scan what start-up created (modules,
    classes, functions: ~26k objects, ~7 ms per full collection) and collect young
    objects every GC_THRESHOLDS[0] allocations instead of 700."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# File descriptors a relay needs besides its connections: the listening sockets, the
# store (SQLite's database, WAL and shm files, or Redis), logs, the event loop's own.
FD_RESERVE = 64


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (each connection is a
    file descriptor; many systems start processes at 1,024, too few for a
    1,000-person lesson) and return the new soft limit (-1: unlimited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        # e.g. macOS refuses RLIM_INFINITY: then keep what we had.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return -1 if soft == resource.RLIM_INFINITY else soft


def fd_capacity() -> int | None:
    """How many connections this process's file-descriptor limit leaves room for
    (None: unlimited). Past it, accept() fails with EMFILE and nobody is told why, so
    the relay refuses connections beyond it with a 503 that says so."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return None
    return max(1, soft - FD_RESERVE)
