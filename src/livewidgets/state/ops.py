"""Operations on the shared state tree and their pure, persistent application.

The state is a JSON-like tree (dicts, lists, str, int, float, bool, None) treated
as immutable: :func:`apply_ops` returns a new root that shares every untouched
subtree with the old one (path copying). That makes a batch atomic for free
(discard the new root on error), rebase cheap (replay pending ops over the
confirmed root) and change detection exact (an unchanged subtree keeps its identity).

Semantics (docs/protocol.md "Operations"):

=========  =====================================================================
set        replace the value at path, creating missing parent mappings
merge      shallow-merge a mapping's keys into the mapping at path
push       append an item to the list at path (dict items carry an ``id``)
remove     drop list items whose ``id`` equals the given id (idempotent)
increment  add a number to the number at path (missing counts as 0)
delete     remove the key at path (missing is fine)
text       apply a text delta to the string at path (missing counts as "")
=========  =====================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta

from . import text as text_ot
from .paths import MAX_PATH_DEPTH, MAX_PATH_LENGTH, PATH_PATTERN, join_path, parse_path

__all__ = [
    "MAX_STATE_DEPTH",
    "MAX_VALUE_DEPTH",
    "DeleteOp",
    "IncrementOp",
    "MergeOp",
    "Op",
    "OpError",
    "PushOp",
    "RemoveOp",
    "SetOp",
    "TextOp",
    "apply_op",
    "apply_ops",
    "check_value",
    "get_path",
    "touched_paths",
]

MAX_VALUE_DEPTH = 64
# A state nests op values (<= MAX_VALUE_DEPTH) below paths (<= MAX_PATH_DEPTH segments).
MAX_STATE_DEPTH = MAX_VALUE_DEPTH + MAX_PATH_DEPTH
# Integers must fit msgpack's int64 (every codec must be able to carry every value).
MIN_INT, MAX_INT = -(2**63), 2**63 - 1


class OpError(ValueError):
    """An operation that cannot apply; ``code`` is a protocol ErrorCode value."""

    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        # One of "invalid_op", "invalid_path", "type_mismatch" (see protocol.codes.ErrorCode).
        self.code = code
        # The op's path, for the reject message.
        self.path = path


# The wire schema checks path syntax while decoding; depth is checked on apply.
PathStr = Annotated[str, Meta(min_length=1, max_length=MAX_PATH_LENGTH, pattern=PATH_PATTERN)]


class _OpBase(
    msgspec.Struct, tag_field="op", forbid_unknown_fields=True, frozen=True, omit_defaults=True
):
    path: PathStr
    # Precondition: refuse (conflict) if the value at path changed after this room version.
    if_version: Annotated[int, Meta(ge=0, le=MAX_INT)] | None = None


class SetOp(_OpBase, tag="set", frozen=True):
    value: Any = None


class MergeOp(_OpBase, tag="merge", frozen=True):
    value: dict[str, Any] = {}


class PushOp(_OpBase, tag="push", frozen=True):
    value: Any = None


class RemoveOp(_OpBase, tag="remove", frozen=True):
    id: Annotated[str, Meta(max_length=256)] | Annotated[int, Meta(ge=MIN_INT, le=MAX_INT)] = ""


class IncrementOp(_OpBase, tag="increment", frozen=True):
    by: int | float = 1


class DeleteOp(_OpBase, tag="delete", frozen=True):
    pass


class TextOp(_OpBase, tag="text", frozen=True):
    delta: list[int | str] = []


Op: TypeAlias = SetOp | MergeOp | PushOp | RemoveOp | IncrementOp | DeleteOp | TextOp
OpKind = Literal["set", "merge", "push", "remove", "increment", "delete", "text"]

# Sentinel for "no value here" (distinct from a stored None).
_MISSING: Final[Any] = object()


def get_path(root: Any, path: str, default: Any = None) -> Any:
    """The value at ``path`` (``""`` is the root), or ``default`` when absent."""
    node = root
    for segment in parse_path(path, allow_root=True):
        if not isinstance(node, dict) or segment not in node:
            return default
        node = node[segment]
    return node


def check_value(value: Any, *, depth: int = 0, max_depth: int = MAX_VALUE_DEPTH) -> None:
    """Check that ``value`` is plain JSON data (str keys, finite numbers, bounded depth).

    ``max_depth`` is MAX_VALUE_DEPTH for an op's value; a whole room state may nest a
    value that deep below a path that deep (MAX_STATE_DEPTH).
    """
    if depth > max_depth:
        raise OpError("invalid_op", f"value is nested deeper than {max_depth} levels")
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise OpError("invalid_op", "integers must fit in 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OpError("invalid_op", "value contains a non-finite number (NaN or infinity)")
        return
    if isinstance(value, list):
        for item in value:
            check_value(item, depth=depth + 1, max_depth=max_depth)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise OpError("invalid_op", "mapping keys must be strings")
            check_value(item, depth=depth + 1, max_depth=max_depth)
        return
    raise OpError("invalid_op", f"values of type {type(value).__name__} cannot be shared")


def touched_paths(op: Op) -> list[str]:
    """The paths whose value ``op`` replaces or edits (merge touches one per key)."""
    if isinstance(op, MergeOp):
        return [join_path(op.path, key) for key in op.value] or [op.path]
    return [op.path]


def apply_ops(root: dict[str, Any], ops: Iterable[Op]) -> dict[str, Any]:
    """Apply ``ops`` in order; all or nothing (an :class:`OpError` leaves ``root`` as it was)."""
    for op in ops:
        root = apply_op(root, op)
    return root


def apply_op(root: dict[str, Any], op: Op) -> dict[str, Any]:
    """Return the new root after ``op``; raise :class:`OpError` if it cannot apply."""
    try:
        segments = parse_path(op.path)
        if isinstance(op, MergeOp):
            # Each key becomes a path of its own (clocks, subscriptions): same rules.
            for key in op.value:
                if "/" in key:
                    raise ValueError(f"merge key {key[:64]!r} contains '/'")
                parse_path(join_path(op.path, key) if key else op.path + "/")
    except ValueError as exc:
        raise OpError("invalid_path", str(exc), getattr(op, "path", None)) from None
    result = _update(root, segments, 0, _OP_FUNCTIONS[type(op)](op))
    return result if isinstance(result, dict) else {}


def _update(node: Any, segments: Sequence[str], index: int, change: Callable[[Any], Any]) -> Any:
    """Path-copying update: rebuild only the mappings on the way to the changed value."""
    if index == len(segments):
        return change(node)
    absent = node is _MISSING or node is None
    if not absent and not isinstance(node, dict):
        where = "/".join(segments[:index]) or "the root"
        raise OpError(
            "type_mismatch",
            f"`{where}` holds a {_kind(node)}, not a mapping",
            "/".join(segments),
        )
    base: dict[str, Any] = {} if absent else node
    key = segments[index]
    old_child = base.get(key, _MISSING)
    new_child = _update(old_child, segments, index + 1, change)
    if new_child is old_child:
        return node  # nothing changed below (e.g. removing something absent): keep identity
    copy = dict(base)
    if new_child is _MISSING:
        del copy[key]
    else:
        copy[key] = new_child
    return copy


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _mismatch(op: Op, current: Any, wanted: str) -> OpError:
    return OpError(
        "type_mismatch",
        f"{op.__struct_config__.tag} needs a {wanted} at `{op.path}`, found a {_kind(current)}",
        op.path,
    )


def _set(op: Any) -> Callable[[Any], Any]:
    return lambda current: op.value


def _delete(op: Any) -> Callable[[Any], Any]:
    return lambda current: _MISSING


def _merge(op: Any) -> Callable[[Any], Any]:
    def change(current: Any) -> Any:
        if current is _MISSING or current is None:
            return dict(op.value)
        if not isinstance(current, dict):
            raise _mismatch(op, current, "mapping")
        return {**current, **op.value}

    return change


def _push(op: Any) -> Callable[[Any], Any]:
    def change(current: Any) -> Any:
        if current is _MISSING or current is None:
            return [op.value]
        if not isinstance(current, list):
            raise _mismatch(op, current, "list")
        return [*current, op.value]

    return change


def _remove(op: Any) -> Callable[[Any], Any]:
    def change(current: Any) -> Any:
        if current is _MISSING:
            return _MISSING
        if not isinstance(current, list):
            raise _mismatch(op, current, "list")
        kept = [
            item for item in current if not (isinstance(item, dict) and item.get("id") == op.id)
        ]
        return current if len(kept) == len(current) else kept

    return change


def _increment(op: Any) -> Callable[[Any], Any]:
    def change(current: Any) -> Any:
        if current is _MISSING or current is None:
            current = 0
        if isinstance(current, bool) or not isinstance(current, (int, float)):
            raise _mismatch(op, current, "number")
        result = current + op.by
        try:
            check_value(result)
        except OpError:
            raise OpError("invalid_op", f"increment at `{op.path}` overflows", op.path) from None
        return result

    return change


def _text(op: Any) -> Callable[[Any], Any]:
    def change(current: Any) -> Any:
        if current is _MISSING or current is None:
            current = ""
        if not isinstance(current, str):
            raise _mismatch(op, current, "string")
        try:
            return text_ot.apply(current, op.delta)
        except text_ot.TextOpError as exc:
            raise OpError("invalid_op", f"text delta at `{op.path}`: {exc}", op.path) from None

    return change


_OP_FUNCTIONS: dict[type, Callable[[Any], Callable[[Any], Any]]] = {
    SetOp: _set,
    MergeOp: _merge,
    PushOp: _push,
    RemoveOp: _remove,
    IncrementOp: _increment,
    DeleteOp: _delete,
    TextOp: _text,
}
