"""Tests for livewidgets.state.paths: parsing, joining and relating paths."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livewidgets.state.paths import (
    MAX_PATH_DEPTH,
    MAX_PATH_LENGTH,
    PATH_PATTERN,
    InvalidPath,
    is_related,
    is_within,
    join_path,
    parse_path,
)

# No example database: keeps the shared work tree free of .hypothesis/ churn.
FAST = settings(max_examples=200, deadline=None, database=None)

SEGMENTS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/"),
    min_size=1,
    max_size=4,
).filter(lambda s: all(ord(c) >= 0x20 for c in s))
SMALL = st.lists(st.sampled_from(["a", "b", "ab"]), max_size=4)


def test_parse_path_splits_segments() -> None:
    """A path splits on / into its segments; the root only when allowed."""
    assert parse_path("poll/q1/votes") == ("poll", "q1", "votes")
    assert parse_path("single") == ("single",)
    assert parse_path("", allow_root=True) == ()
    assert parse_path("spaces ok/ü/😀") == ("spaces ok", "ü", "😀")


@pytest.mark.parametrize(
    "path",
    ["", "/", "a//b", "/a", "a/", "a/\x00", "tab\there", "x" * (MAX_PATH_LENGTH + 1)],
    ids=repr,
)
def test_parse_path_refuses_bad_paths(path: str) -> None:
    """Empty paths and segments, control characters and over-long paths are InvalidPath."""
    with pytest.raises(InvalidPath):
        parse_path(path)


def test_parse_path_depth_limit() -> None:
    """MAX_PATH_DEPTH segments are fine; one more is InvalidPath."""
    assert len(parse_path("/".join("k" * MAX_PATH_DEPTH))) == MAX_PATH_DEPTH
    with pytest.raises(InvalidPath, match="deeper"):
        parse_path("/".join("k" * (MAX_PATH_DEPTH + 1)))


def test_parse_path_refuses_non_strings() -> None:
    """A non-string path is InvalidPath, not a TypeError."""
    with pytest.raises(InvalidPath):
        parse_path(3)  # type: ignore[arg-type]


def test_invalid_path_is_a_value_error() -> None:
    """InvalidPath is a ValueError, so generic callers can catch it."""
    assert issubclass(InvalidPath, ValueError)


@FAST
@given(st.lists(SEGMENTS, min_size=1, max_size=MAX_PATH_DEPTH))
def test_join_then_parse_round_trips(segments: list[str]) -> None:
    """parse_path(join_path(*segments)) gives the segments back."""
    path = join_path(*segments)
    if len(path) <= MAX_PATH_LENGTH:
        assert parse_path(path) == tuple(segments)


def test_join_path_skips_empty_parts() -> None:
    """join_path ignores empty parts, so joining with the root is the identity."""
    assert join_path("", "a", "", "b/c") == "a/b/c"
    assert join_path("") == ""


@FAST
@given(st.lists(SEGMENTS, min_size=1, max_size=MAX_PATH_DEPTH))
def test_schema_pattern_agrees_with_parse_path(segments: list[str]) -> None:
    """A path parse_path accepts also matches the wire schema's PATH_PATTERN."""
    path = "/".join(segments)
    assert re.search(PATH_PATTERN, path)
    assert parse_path(path) == tuple(segments) or len(path) > MAX_PATH_LENGTH


@pytest.mark.parametrize("path", ["", "a//b", "/a", "a/", "a\x01"], ids=repr)
def test_schema_pattern_refuses_what_parse_path_refuses(path: str) -> None:
    """The wire schema's PATH_PATTERN refuses empty segments and control characters."""
    assert not re.search(PATH_PATTERN, path)


def test_is_within() -> None:
    """is_within is true for the path itself, descendants, and everything under the root."""
    assert is_within("a/b", "a")
    assert is_within("a", "a")
    assert is_within("a", "")
    assert not is_within("ab", "a")
    assert not is_within("a", "a/b")


def test_is_related_needs_whole_segments() -> None:
    """Paths are related only by whole-segment prefixes ("a" and "ab" are not)."""
    assert is_related("a", "a/b/c")
    assert is_related("a/b/c", "a")
    assert not is_related("a", "ab")
    assert not is_related("a/b", "a/c")
    assert is_related("", "anything")


@FAST
@given(SMALL, SMALL)
def test_is_related_is_segment_prefix_either_way(a: list[str], b: list[str]) -> None:
    """is_related(a, b) holds exactly when one segment list is a prefix of the other."""
    pa, pb = "/".join(a), "/".join(b)
    prefix = a[: len(b)] == b or b[: len(a)] == a
    assert is_related(pa, pb) == prefix == is_related(pb, pa)
    assert is_within(pa, pb) == (a[: len(b)] == b)
