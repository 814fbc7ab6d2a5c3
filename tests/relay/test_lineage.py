"""Epochs (relay.lineage): a delta is served exactly when the client's versions are a
prefix of the room's committed history.

The model: a room's life is a sequence of loads. During each, ops are committed, and
some are only *sent* (early fan-out) before the relay dies mid-commit: clients saw
them, the store never did. Any client may remember (epoch, version, what it saw) at
any moment. At the end, ``continues`` must never accept a client whose view differs
from the committed log (safety), and must accept every view of committed versions
from the last MAX_ANCESTORS epochs (a clean reload costs no snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from livewidgets.relay.lineage import MAX_ANCESTORS, Lineage

# One load of the room: ops committed, then ops sent but lost in a crash (0: a clean
# stop), and which moments clients remember (indices into that load's versions).
LOADS = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 3), st.lists(st.integers(0, 8), max_size=3)),
    min_size=1,
    max_size=MAX_ANCESTORS + 6,
)


@dataclass
class View:
    epoch: str
    load: int  # the load it was seen in
    seen: list[str]  # the op ids the client applied, version 1..len(seen)


def test_first_and_successor() -> None:
    first = Lineage.first()
    second = first.successor(7)
    assert first.ancestors == () and second.ancestors == ((first.epoch, 7),)
    assert first.epoch != second.epoch
    assert second.continues(first.epoch, 7) and not second.continues(first.epoch, 8)
    assert second.continues(second.epoch, 100)
    assert not second.continues(None, 0) and not second.continues("unknown", 0)


@given(LOADS)
def test_deltas_only_for_committed_prefixes(loads: list[tuple[int, int, list[int]]]) -> None:
    committed: list[str] = []
    lineage: Lineage | None = None
    views: list[View] = []
    for number, (commits, lost, moments) in enumerate(loads):
        lineage = lineage.successor(len(committed)) if lineage else Lineage.first()
        # What clients of this load see: the committed log, then new ops; the last
        # ``lost`` of them are sent early and never committed.
        ops = [f"{number}.{i}" for i in range(commits + lost)]
        seen = committed + ops
        for moment in moments:
            views.append(View(lineage.epoch, number, seen[: min(moment, len(seen))]))
        committed += ops[:commits]
    assert lineage is not None
    # The clients resume after the room's next load (a crash always causes one).
    lineage, current = lineage.successor(len(committed)), len(loads)
    for view in views:
        since = len(view.seen)
        prefix = view.seen == committed[:since]
        if lineage.continues(view.epoch, since):
            assert prefix, f"a delta from {view} would fork the client"
        elif prefix and current - view.load <= MAX_ANCESTORS:
            # A view of committed versions is always served by delta while remembered.
            raise AssertionError(f"{view} should resume by delta")
