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

    def record(
        self, paths: Iterable[str], version: int, undo: list[tuple[Any, ...]] | None = None
    ) -> None:
        """Note that the values at ``paths`` changed at ``version``.

        With ``undo``, append to it what :meth:`rollback` needs to take the change back
        (the sequencer undoes a round that a shared store refused, relay.room).
        """
        for path in paths:
            node = self._root
            if undo is not None:
                undo.append((node, node.own, node.below, node.children))
            node.below = version
            for segment in parse_path(path):
                child = node.children.get(segment)
                if child is None:
                    child = node.children[segment] = _Node()
                    if undo is not None:
                        undo.append((node.children, segment))
                elif undo is not None:
                    undo.append((child, child.own, child.below, child.children))
                node = child
                node.below = version
            node.own = version
            # Everything below was replaced too; its older history no longer matters.
            # (A new dict, not clear(): an undo record may hold the old one.)
            if node.children:
                node.children = {}

    @staticmethod
    def rollback(undo: list[tuple[Any, ...]]) -> None:
        """Take back every :meth:`record` logged in ``undo`` (newest first); empties it."""
        while undo:
            item = undo.pop()
            if len(item) == 2:
                children, segment = item
                del children[segment]
            else:
                node, node.own, node.below, node.children = item

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
