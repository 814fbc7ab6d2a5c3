"""Per-path change versions, for ``if_version`` preconditions.

``PathClock`` answers "did the value at path P change after room version v?"
exactly, in O(depth): every node remembers the last version that replaced it
(``own``) and the last version that changed anything at or below it (``below``).
A value at P changed after v if P's subtree did, or if an ancestor of P was
replaced wholesale after v.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .paths import parse_path

__all__ = ["PathClock"]


class _Node:
    __slots__ = ("below", "children", "own")

    def __init__(self) -> None:
        # Version of the last op that replaced the value at this node (0 = never).
        self.own = 0
        # Version of the last op that changed this node or anything under it.
        self.below = 0
        self.children: dict[str, _Node] = {}


class PathClock:
    """Tracks, for every written path, the room version of its last change."""

    def __init__(self) -> None:
        self._root = _Node()

    def record(self, paths: Iterable[str], version: int) -> None:
        """Note that the values at ``paths`` changed at ``version``."""
        for path in paths:
            node = self._root
            node.below = version
            for segment in parse_path(path):
                node = node.children.setdefault(segment, _Node())
                node.below = version
            node.own = version
            # Everything below was replaced too; its older history no longer matters.
            node.children.clear()

    def changed_at(self, path: str) -> int:
        """The last version that changed the value at ``path`` (0 if never)."""
        node = self._root
        latest = node.own
        for segment in parse_path(path, allow_root=True):
            child = node.children.get(segment)
            if child is None:
                return latest
            node = child
            latest = max(latest, node.own)
        return max(latest, node.below)

    def to_data(self) -> Any:
        """A JSON-able form, stored with snapshots."""
        return _dump(self._root)

    @classmethod
    def from_data(cls, data: Any) -> PathClock:
        clock = cls()
        if data:
            clock._root = _load(data)
        return clock


def _dump(node: _Node) -> list[Any]:
    return [node.own, node.below, {k: _dump(c) for k, c in node.children.items()}]


def _load(data: list[Any]) -> _Node:
    node = _Node()
    node.own, node.below = int(data[0]), int(data[1])
    node.children = {k: _load(c) for k, c in data[2].items()}
    return node
