"""Rebasing operations over concurrent ones (shared by the relay and the client).

Only text ops need transforming: every other op keeps its meaning when replayed
after concurrent ops (set: last in room order wins; increment: commutes; ...).
A text op whose string was replaced or deleted by a concurrent non-text op has
lost its target; that is a conflict, never a silent guess.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import text as text_ot
from .ops import Op, TextOp, touched_paths
from .paths import is_related

__all__ = ["TextReplaced", "transform_ops"]


class TextReplaced(Exception):
    """A concurrent op replaced the string a text op was editing."""

    def __init__(self, path: str) -> None:
        super().__init__(f"the text at `{path}` was replaced by a concurrent change")
        self.path = path


def transform_ops(ops: Sequence[Op], concurrent: Sequence[Op]) -> tuple[list[Op], list[Op]]:
    """Rewrite ``ops`` (made without seeing ``concurrent``) to apply after ``concurrent``.

    Both sequences start from the same state. Returns ``(ops', concurrent')`` where
    ``concurrent'`` is ``concurrent`` as seen after ``ops`` (what a client chains
    into its next pending op). Ties between inserts at the same index put ``ops``'
    text first, the same rule on the relay and every client.
    Raises :class:`TextReplaced` when a text op cannot be rebased.
    """
    # Concurrent ops seen from after each of ``ops`` (the "other" half of transform).
    others = list(concurrent)
    result: list[Op] = []
    for op in ops:
        if isinstance(op, TextOp):
            op, others = _transform_text(op, others)
        else:
            # A replaced string hides concurrent edits to it from the ops after this one.
            others = [o for o in others if not _overwritten_by(o, op)]
        result.append(op)
    return result, others


def _overwritten_by(other: Op, op: Op) -> bool:
    return isinstance(other, TextOp) and any(is_related(other.path, p) for p in touched_paths(op))


def _transform_text(op: TextOp, others: list[Op]) -> tuple[TextOp, list[Op]]:
    delta = op.delta
    moved: list[Op] = []
    for other in others:
        if isinstance(other, TextOp) and other.path == op.path:
            delta, other_delta = text_ot.transform(delta, other.delta)
            moved.append(TextOp(path=other.path, delta=other_delta, if_version=other.if_version))
            continue
        if any(is_related(op.path, p) for p in touched_paths(other)):
            raise TextReplaced(op.path)
        moved.append(other)
    return TextOp(path=op.path, delta=delta, if_version=op.if_version), moved
