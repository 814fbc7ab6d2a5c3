"""Tests for livewidgets.state.ops: the laws of each operation, atomicity, purity, sharing."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livewidgets.state.ops import (
    MAX_VALUE_DEPTH,
    DeleteOp,
    IncrementOp,
    MergeOp,
    Op,
    OpError,
    PushOp,
    RemoveOp,
    SetOp,
    TextOp,
    apply_op,
    apply_ops,
    check_value,
    get_path,
    touched_paths,
)
from livewidgets.state.paths import MAX_PATH_DEPTH, is_related

# No example database: keeps the shared work tree free of .hypothesis/ churn.
FAST = settings(max_examples=150, deadline=None, database=None)

# A tiny key alphabet so generated ops collide with each other and with the root.
KEYS = st.sampled_from(["a", "b", "c"])
PATHS = st.lists(KEYS, min_size=1, max_size=3).map("/".join)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-1000, max_value=1000)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
    | st.text(max_size=3)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
ROOTS = st.dictionaries(KEYS, VALUES, max_size=3)
IDS = st.sampled_from(["x", "y", 1])
ITEMS = st.fixed_dictionaries({"id": IDS, "n": st.integers(0, 9)})
VERSIONS = st.none() | st.integers(0, 5)

OPS: st.SearchStrategy[Op] = st.one_of(
    st.builds(SetOp, path=PATHS, value=VALUES, if_version=VERSIONS),
    st.builds(MergeOp, path=PATHS, value=st.dictionaries(KEYS, VALUES, max_size=3)),
    st.builds(PushOp, path=PATHS, value=ITEMS | VALUES),
    st.builds(RemoveOp, path=PATHS, id=IDS),
    st.builds(IncrementOp, path=PATHS, by=st.integers(-5, 5) | st.floats(-5, 5)),
    st.builds(DeleteOp, path=PATHS),
    st.builds(
        TextOp, path=PATHS, delta=st.lists(st.integers(-3, 3) | st.text(max_size=2), max_size=3)
    ),
)


def _try_apply(root: dict[str, Any], ops: list[Op]) -> dict[str, Any] | OpError:
    try:
        return apply_ops(root, ops)
    except OpError as exc:
        return exc


# --- increment -----------------------------------------------------------------------------------


@FAST
@given(
    start=st.none() | st.integers(-100, 100),
    amounts=st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=4),
    path=PATHS,
)
def test_increments_commute_and_all_count(start: int | None, amounts: list[int], path: str) -> None:
    """Every order of the same increments gives the same number: start + their sum."""
    root = {} if start is None else apply_op({}, SetOp(path=path, value=start))
    ops: list[Op] = [IncrementOp(path=path, by=n) for n in amounts]
    results = {
        get_path(apply_ops(root, list(order)), path) for order in itertools.permutations(ops)
    }
    assert results == {(start or 0) + sum(amounts)}


def test_increment_keeps_int_and_float_kinds() -> None:
    """int + int stays an int; anything with a float becomes a float."""
    assert apply_op({"n": 2}, IncrementOp(path="n", by=3)) == {"n": 5}
    assert type(apply_op({"n": 2}, IncrementOp(path="n", by=3))["n"]) is int
    assert apply_op({"n": 2}, IncrementOp(path="n", by=0.5)) == {"n": 2.5}
    assert apply_op({}, IncrementOp(path="n")) == {"n": 1}


def test_increment_overflow_is_invalid_op() -> None:
    """A float increment that becomes infinite is invalid_op."""
    with pytest.raises(OpError) as info:
        apply_op({"n": 1.7e308}, IncrementOp(path="n", by=1.7e308))
    assert (info.value.code, info.value.path) == ("invalid_op", "n")


# --- remove --------------------------------------------------------------------------------------


@FAST
@given(items=st.lists(ITEMS | SCALARS, max_size=6), target=IDS, path=PATHS)
def test_remove_is_idempotent(items: list[Any], target: Any, path: str) -> None:
    """Removing an id twice is the same as removing it once, and drops every match."""
    root = apply_op({}, SetOp(path=path, value=items))
    op = RemoveOp(path=path, id=target)
    once = apply_op(root, op)
    assert apply_op(once, op) == once
    expected = [i for i in items if not (isinstance(i, dict) and i.get("id") == target)]
    assert get_path(once, path) == expected


def test_remove_on_missing_path_changes_nothing() -> None:
    """remove on an absent list is a no-op that keeps the root's identity."""
    root = {"a": {"b": 1}}
    assert apply_op(root, RemoveOp(path="zz/list", id="x")) is root
    result = apply_op(root, RemoveOp(path="a/list", id="x"))
    assert result == root
    assert result["a"] is root["a"]


def test_remove_without_match_keeps_the_list() -> None:
    """remove with no matching item keeps the very same list object."""
    items = [{"id": "a"}, 3]
    assert apply_op({"l": items}, RemoveOp(path="l", id="b"))["l"] is items


# --- set -----------------------------------------------------------------------------------------


@FAST
@given(root=ROOTS, path=PATHS, first=VALUES, second=VALUES)
def test_set_is_last_writer_wins(root: dict[str, Any], path: str, first: Any, second: Any) -> None:
    """After set(v1) then set(v2) the path holds v2, and the result equals set(v2) alone."""
    result = _try_apply(root, [SetOp(path=path, value=first), SetOp(path=path, value=second)])
    alone = _try_apply(root, [SetOp(path=path, value=second)])
    if isinstance(alone, OpError):
        assert alone.code == "type_mismatch"
        assert isinstance(result, OpError)
        return
    assert not isinstance(result, OpError)
    assert get_path(result, path) == second
    assert result == alone


def test_set_creates_parents_and_replaces_null() -> None:
    """set creates missing parent mappings, and a null parent counts as missing."""
    assert apply_op({}, SetOp(path="a/b/c", value=1)) == {"a": {"b": {"c": 1}}}
    assert apply_op({"a": None}, SetOp(path="a/b", value=1)) == {"a": {"b": 1}}


# --- merge ---------------------------------------------------------------------------------------


@FAST
@given(
    root=ROOTS,
    path=PATHS,
    left=st.dictionaries(st.sampled_from(["k1", "k2", "k3"]), VALUES, max_size=3),
    right=st.dictionaries(st.sampled_from(["k4", "k5"]), VALUES, max_size=2),
)
def test_merge_of_disjoint_keys_both_survive_in_either_order(
    root: dict[str, Any], path: str, left: dict[str, Any], right: dict[str, Any]
) -> None:
    """Two merges with disjoint keys commute and keep every key of both."""
    one = _try_apply(root, [MergeOp(path=path, value=left), MergeOp(path=path, value=right)])
    two = _try_apply(root, [MergeOp(path=path, value=right), MergeOp(path=path, value=left)])
    if isinstance(one, OpError):
        assert isinstance(two, OpError) and one.code == two.code == "type_mismatch"
        return
    assert one == two
    merged = get_path(one, path)
    before = get_path(root, path)
    assert merged == {**(before or {}), **left, **right}


def test_merge_same_key_last_wins() -> None:
    """Merges on the same key: the later one wins."""
    root = apply_ops({}, [MergeOp(path="m", value={"k": 1}), MergeOp(path="m", value={"k": 2})])
    assert root == {"m": {"k": 2}}


def test_merge_is_shallow() -> None:
    """merge replaces nested mappings wholesale; it does not merge them recursively."""
    root = {"m": {"k": {"x": 1, "y": 2}}}
    assert apply_op(root, MergeOp(path="m", value={"k": {"x": 3}})) == {"m": {"k": {"x": 3}}}


# --- push ----------------------------------------------------------------------------------------


@FAST
@given(existing=st.none() | st.lists(VALUES, max_size=3), first=VALUES, second=VALUES, path=PATHS)
def test_push_preserves_order_and_both_items(
    existing: list[Any] | None, first: Any, second: Any, path: str
) -> None:
    """Two pushes append both items, in order, after the items already there."""
    root = apply_op({}, SetOp(path=path, value=existing))
    result = apply_ops(root, [PushOp(path=path, value=first), PushOp(path=path, value=second)])
    assert get_path(result, path) == [*(existing or []), first, second]


def test_push_stores_items_as_sent() -> None:
    """push does not invent ids: the item is stored exactly as sent."""
    assert apply_op({}, PushOp(path="l", value={"text": "hi"})) == {"l": [{"text": "hi"}]}


# --- delete --------------------------------------------------------------------------------------


@FAST
@given(root=ROOTS, path=PATHS, value=VALUES)
def test_delete_then_set_recreates(root: dict[str, Any], path: str, value: Any) -> None:
    """After delete, a set on the same path recreates it with the new value."""
    deleted = _try_apply(root, [DeleteOp(path=path)])
    if isinstance(deleted, OpError):
        assert deleted.code == "type_mismatch"
        return
    assert get_path(deleted, path, default="<absent>") == "<absent>"
    assert get_path(apply_op(deleted, SetOp(path=path, value=value)), path) == value


def test_delete_of_absent_path_changes_nothing() -> None:
    """Deleting something that is not there changes nothing and shares the untouched subtree."""
    root = {"a": {"b": 1}}
    assert apply_op(root, DeleteOp(path="x/y/z")) is root
    result = apply_op(root, DeleteOp(path="a/zz"))
    assert result == root
    assert result["a"] is root["a"]


def test_delete_never_creates_parents() -> None:
    """delete below a missing key does not create the key."""
    assert apply_op({}, DeleteOp(path="a/b")) == {}


# --- text ----------------------------------------------------------------------------------------


def test_text_applies_delta_and_missing_counts_as_empty() -> None:
    """text edits the string at path; a missing or null string counts as ""."""
    assert apply_op({"t": "hello"}, TextOp(path="t", delta=[5, " world"])) == {"t": "hello world"}
    assert apply_op({}, TextOp(path="t", delta=["hi"])) == {"t": "hi"}
    assert apply_op({"t": None}, TextOp(path="t", delta=["hi"])) == {"t": "hi"}


def test_text_delta_that_does_not_fit_is_invalid_op() -> None:
    """A delta whose base length differs from the string is invalid_op."""
    with pytest.raises(OpError) as info:
        apply_op({"t": "hello"}, TextOp(path="t", delta=[3, "x"]))
    assert (info.value.code, info.value.path) == ("invalid_op", "t")


# --- batches, purity, sharing --------------------------------------------------------------------


@FAST
@given(root=ROOTS, ops=st.lists(OPS, max_size=4), position=st.integers(0, 4))
def test_batch_is_all_or_nothing(root: dict[str, Any], ops: list[Op], position: int) -> None:
    """A batch with a failing op raises and leaves the root the same object, unchanged."""
    snapshot = copy.deepcopy(root)
    failing = [SetOp(path="zz", value="text"), IncrementOp(path="zz", by=1)]
    batch = ops[:position] + failing + ops[position:]
    before = root
    with pytest.raises(OpError):
        root = apply_ops(root, batch)
    assert root is before
    assert root == snapshot


@FAST
@given(root=ROOTS, ops=st.lists(OPS, min_size=1, max_size=4))
def test_apply_never_mutates_its_input(root: dict[str, Any], ops: list[Op]) -> None:
    """apply_ops never changes the root or the ops it is given, whether it succeeds or not."""
    root_before, ops_before = copy.deepcopy(root), copy.deepcopy(ops)
    _try_apply(root, ops)
    assert root == root_before
    assert ops == ops_before


def _assert_shared_outside(old: Any, new: Any, segments: list[str]) -> None:
    """Every subtree of ``old`` off the path to ``segments`` is the same object in ``new``."""
    if not segments or not isinstance(old, dict) or not isinstance(new, dict):
        return
    head, rest = segments[0], segments[1:]
    for key, value in old.items():
        if key != head:
            assert new[key] is value, f"subtree {key!r} was copied"
    if head in old and head in new:
        _assert_shared_outside(old[head], new[head], rest)


@FAST
@given(root=ROOTS, op=OPS)
def test_unchanged_subtrees_keep_identity(root: dict[str, Any], op: Op) -> None:
    """An op rebuilds only the mappings on its path; every other subtree is shared."""
    result = _try_apply(root, [op])
    if isinstance(result, OpError):
        return
    _assert_shared_outside(root, result, op.path.split("/"))


@FAST
@given(root=ROOTS, ops=st.lists(OPS, max_size=5))
def test_ops_only_change_related_paths(root: dict[str, Any], ops: list[Op]) -> None:
    """After a successful op, every top-level key not related to a touched path is unchanged."""
    result = _try_apply(root, ops)
    if isinstance(result, OpError):
        return
    touched = [p for op in ops for p in touched_paths(op)]
    for key in set(root) | set(result):
        if not any(is_related(key, p) for p in touched):
            assert result.get(key, "<absent>") is root.get(key, "<absent>")


# --- type mismatches -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "op"),
    [
        ({"s": "text"}, IncrementOp(path="s", by=1)),
        ({"s": True}, IncrementOp(path="s", by=1)),
        ({"s": [1]}, IncrementOp(path="s", by=1)),
        ({"m": {"k": 1}}, PushOp(path="m", value=1)),
        ({"m": "text"}, PushOp(path="m", value=1)),
        ({"n": 5}, SetOp(path="n/below", value=1)),
        ({"n": "s"}, DeleteOp(path="n/below")),
        ({"n": [1, 2]}, SetOp(path="n/0", value=1)),
        ({"l": [1]}, MergeOp(path="l", value={"k": 1})),
        ({"l": 3}, MergeOp(path="l", value={"k": 1})),
        ({"x": None}, RemoveOp(path="x", id="a")),
        ({"x": {"id": "a"}}, RemoveOp(path="x", id="a")),
        ({"x": 7}, TextOp(path="x", delta=["a"])),
        ({"a": {"b": 1}}, IncrementOp(path="a/b/c", by=1)),
    ],
    ids=repr,
)
def test_type_mismatch(root: dict[str, Any], op: Op) -> None:
    """An op that does not fit the value it meets is type_mismatch, naming the op's path."""
    with pytest.raises(OpError) as info:
        apply_op(root, op)
    assert info.value.code == "type_mismatch"
    assert info.value.path == op.path


def test_too_deep_path_is_invalid_path() -> None:
    """A path deeper than MAX_PATH_DEPTH is refused with invalid_path when applied."""
    ok = "/".join(["k"] * MAX_PATH_DEPTH)
    assert get_path(apply_op({}, SetOp(path=ok, value=1)), ok) == 1
    with pytest.raises(OpError) as info:
        apply_op({}, SetOp(path=ok + "/k", value=1))
    assert info.value.code == "invalid_path"


# --- helpers -------------------------------------------------------------------------------------


def test_get_path() -> None:
    """get_path reads nested values, the root, and returns the default when absent."""
    root = {"a": {"b": [1]}, "n": None}
    assert get_path(root, "") is root
    assert get_path(root, "a/b") == [1]
    assert get_path(root, "n", default=5) is None
    assert get_path(root, "a/b/0", default="d") == "d"
    assert get_path(root, "zz") is None


def test_touched_paths() -> None:
    """merge touches one path per key (or its own path when empty); others touch their path."""
    assert touched_paths(MergeOp(path="m", value={"x": 1, "y": 2})) == ["m/x", "m/y"]
    assert touched_paths(MergeOp(path="m", value={})) == ["m"]
    assert touched_paths(SetOp(path="a/b", value=1)) == ["a/b"]


def test_check_value_depth_boundary() -> None:
    """A scalar inside MAX_VALUE_DEPTH containers is fine; one more level is invalid_op."""
    value: Any = 1
    for _ in range(MAX_VALUE_DEPTH):
        value = {"k": value}
    check_value(value)
    with pytest.raises(OpError) as info:
        check_value([value])
    assert info.value.code == "invalid_op"


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), {1: "a"}, [b"bytes"], {"a": (1, 2)}, {"a": {1.5}}],
    ids=repr,
)
def test_check_value_refuses_non_json_data(value: Any) -> None:
    """Non-finite numbers, non-str keys and non-JSON types are invalid_op."""
    with pytest.raises(OpError) as info:
        check_value(value)
    assert info.value.code == "invalid_op"


@FAST
@given(VALUES)
def test_check_value_accepts_json_data(value: Any) -> None:
    """Plain JSON data (finite numbers, str keys, shallow) passes check_value."""
    check_value(value)
