"""Tests for livewidgets.state.clock: PathClock answers "last change at path" exactly."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from livewidgets.state.clock import PathClock
from livewidgets.state.ops import (
    DeleteOp,
    IncrementOp,
    MergeOp,
    Op,
    PushOp,
    SetOp,
    TextOp,
    touched_paths,
)
from livewidgets.state.paths import is_related

# No example database: keeps the shared work tree free of .hypothesis/ churn.
FAST = settings(max_examples=200, deadline=None, database=None)

KEYS = st.sampled_from(["a", "b", "c"])
PATHS = st.lists(KEYS, min_size=1, max_size=3).map("/".join)
QUERIES = st.lists(KEYS, max_size=4).map("/".join)  # includes the root ""
OPS: st.SearchStrategy[Op] = st.one_of(
    st.builds(SetOp, path=PATHS, value=st.integers()),
    st.builds(MergeOp, path=PATHS, value=st.dictionaries(KEYS, st.integers(), max_size=3)),
    st.builds(PushOp, path=PATHS, value=st.integers()),
    st.builds(IncrementOp, path=PATHS),
    st.builds(DeleteOp, path=PATHS),
    st.builds(TextOp, path=PATHS, delta=st.just(["x"])),
)
# A history: each entry is one version (an op or a batch of ops).
HISTORIES = st.lists(st.lists(OPS, min_size=1, max_size=3), max_size=12)


def _all_queries() -> list[str]:
    """Every path over the key alphabet one level deeper than any written path, and the root."""
    paths = [""]
    layer = [""]
    for _ in range(4):
        layer = [f"{p}/{k}" if p else k for p in layer for k in "abc"]
        paths += layer
    return paths


QUERY_PATHS = _all_queries()


def _model(history: list[tuple[int, list[str]]], path: str) -> int:
    """Brute force: the highest version whose touched paths include one related to ``path``."""
    return max(
        (version for version, touched in history if any(is_related(t, path) for t in touched)),
        default=0,
    )


def _replay(batches: list[list[Op]]) -> tuple[PathClock, list[tuple[int, list[str]]]]:
    clock = PathClock()
    history: list[tuple[int, list[str]]] = []
    for version, ops in enumerate(batches, 1):
        touched = [p for op in ops for p in touched_paths(op)]
        clock.record(touched, version)
        history.append((version, touched))
    return clock, history


def test_new_clock_reports_zero() -> None:
    """A path never written reports version 0."""
    assert PathClock().changed_at("a/b") == 0
    assert PathClock().changed_at("") == 0


def test_changes_propagate_up_and_down() -> None:
    """A change is seen at the path, its ancestors and its descendants, not its siblings."""
    clock = PathClock()
    clock.record(["a/b"], 3)
    assert clock.changed_at("a/b") == 3
    assert clock.changed_at("a") == 3
    assert clock.changed_at("") == 3
    assert clock.changed_at("a/b/c/d") == 3
    assert clock.changed_at("a/c") == 0
    assert clock.changed_at("ab") == 0


def test_replacing_a_parent_overrides_older_children() -> None:
    """A later write to a parent is the last change for every path below it."""
    clock = PathClock()
    clock.record(["a/b/c"], 1)
    clock.record(["a"], 2)
    clock.record(["a/x"], 3)
    assert clock.changed_at("a/b/c") == 2
    assert clock.changed_at("a/x/y") == 3
    assert clock.changed_at("a") == 3


@FAST
@given(HISTORIES)
def test_changed_at_matches_brute_force_model(batches: list[list[Op]]) -> None:
    """changed_at(p) equals the max version whose touched paths are related to p."""
    clock, history = _replay(batches)
    for path in QUERY_PATHS:
        assert clock.changed_at(path) == _model(history, path), path


@FAST
@given(HISTORIES, QUERIES)
def test_clock_survives_serialization(batches: list[list[Op]], path: str) -> None:
    """to_data/from_data (through JSON, as stored with snapshots) keeps every answer."""
    clock, history = _replay(batches)
    restored = PathClock.from_data(json.loads(json.dumps(clock.to_data())))
    assert restored.changed_at(path) == clock.changed_at(path) == _model(history, path)


@settings(FAST, max_examples=80)
@given(HISTORIES, HISTORIES)
def test_restored_clock_keeps_recording(first: list[list[Op]], second: list[list[Op]]) -> None:
    """A clock restored mid-history and fed the rest answers like one that saw everything."""
    clock, history = _replay(first + second)
    partial, _ = _replay(first)
    restored = PathClock.from_data(partial.to_data())
    for version, ops in enumerate(second, len(first) + 1):
        restored.record([p for op in ops for p in touched_paths(op)], version)
    for path in QUERY_PATHS:
        assert restored.changed_at(path) == clock.changed_at(path) == _model(history, path)


def test_from_empty_data() -> None:
    """from_data(None) (a room without a stored clock) is a fresh clock."""
    assert PathClock.from_data(None).changed_at("a") == 0
