"""Settings for a process whose job is to run a relay (``livewidgets relay``).

Kept out of :class:`~livewidgets.relay.Relay` itself: they change the whole
process, which is fine for the relay's own process but not for a notebook kernel
or a test run that embeds a relay.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_garbage_collector"]

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
