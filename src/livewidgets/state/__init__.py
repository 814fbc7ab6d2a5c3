"""Pure shared-state model: paths, operations, per-path clocks and text OT."""

from . import text
from .clock import PathClock
from .ops import (
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
from .paths import InvalidPath, is_related, is_within, join_path, parse_path

__all__ = [
    "DeleteOp",
    "IncrementOp",
    "InvalidPath",
    "MergeOp",
    "Op",
    "OpError",
    "PathClock",
    "PushOp",
    "RemoveOp",
    "SetOp",
    "TextOp",
    "apply_op",
    "apply_ops",
    "check_value",
    "get_path",
    "is_related",
    "is_within",
    "join_path",
    "parse_path",
    "text",
    "touched_paths",
]
