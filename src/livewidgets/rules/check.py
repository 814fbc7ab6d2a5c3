"""Evaluate room rules: may this principal make this write, and what may it read?

Pure functions over a :class:`~.syntax.RuleSet`, the room state (the persistent tree of
:mod:`livewidgets.state.ops`) and an :class:`Actor`; no I/O (docs/rules.md).

**Which rule governs a path.** The most specific pattern that matches it: compared
segment by segment, a literal beats ``*``/``{capture}``, which beats ``**``. A path
no rule matches is governed by nothing: nobody may write it, nobody may read it (deny
by default), except as a container (below).

**Writes.** A write changes some paths: the op's own path, and for ``set``, ``merge``
and ``delete`` every path below it whose value differs before and after. Each
changed path must be allowed by the rule that governs it (``write`` names the
writer, and the data conditions hold for what the op writes there). A mapping that
only contains changed paths (say ``poll/q1/voters`` when a vote adds
``poll/q1/voters/alice``) needs no rule of its own. A batch is checked op by op
against the state the previous ops left: one denial refuses it whole.

**Reads.** A reader sees a path if the rule that governs it lets them read, and
the mappings on the way to it (as containers, with only what they may see).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..state.ops import (
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
)
from ..state.paths import parse_path
from .syntax import CAPTURE, LITERAL, REST, Pattern, Rule, RuleSet, Who

__all__ = [
    "Actor",
    "Denial",
    "allows",
    "check_ops",
    "governing",
    "project",
    "read_guard",
    "view_of_op",
]

# "No value here" (distinct from a stored None), as in state.ops.
MISSING: Final[Any] = object()
_ROLES = ("read", "write", "admin")


@dataclass(frozen=True)
class Actor:
    """Who reads or writes: the user, their role in the room and their groups."""

    user: str
    role: str = "write"
    groups: frozenset[str] = frozenset()

    @classmethod
    def from_claims(cls, user: str, claims: Mapping[str, Any]) -> Actor:
        role = claims.get("role", "admin")
        groups = claims.get("groups", ())
        return cls(user, role if role in _ROLES else "read", frozenset(map(str, groups)))


@dataclass(frozen=True)
class Denial:
    """Why a write is refused: the rule (None: no rule covers the path) and the reason.
    The message names the path and the rule, never another user's data."""

    rule: str | None
    path: str
    reason: str

    @property
    def message(self) -> str:
        by = f"rule {self.rule!r}" if self.rule else "no rule allows it (deny by default)"
        return f"forbidden at `{self.path}`: {self.reason}; {by}"


# --- matching --------------------------------------------------------------------------


def match(pattern: Pattern, segments: tuple[str, ...]) -> dict[str, str] | None:
    """The captures if ``pattern`` matches the path ``segments``, else None."""
    captures: dict[str, str] = {}
    pattern_segments = pattern.segments
    for index, segment in enumerate(pattern_segments):
        if segment.kind == REST:
            return captures
        if index >= len(segments):
            return None
        part = segments[index]
        if segment.kind == LITERAL:
            if part != segment.text:
                return None
        elif segment.kind == CAPTURE:
            captures[segment.text] = part
        # ANY matches any one segment.
    return captures if len(segments) == len(pattern_segments) else None


def _could_match_below(pattern: Pattern, segments: tuple[str, ...]) -> bool:
    """Whether ``pattern`` can match some path strictly below ``segments``."""
    for index, segment in enumerate(pattern.segments):
        if segment.kind == REST:
            return True
        if index >= len(segments):
            return True  # the pattern is longer: it goes on below the path
        if segment.kind == LITERAL and segment.text != segments[index]:
            return False
    return False


def governing(rules: RuleSet, segments: tuple[str, ...]) -> tuple[Rule, dict[str, str]] | None:
    """The rule that governs a path, with its captures (None: no rule matches)."""
    key = ("governing", segments)
    cache = rules.cache
    try:
        return cache[key]  # type: ignore[no-any-return]
    except KeyError:
        pass
    found = None
    for rule in rules.rules:  # most specific first
        captures = match(rule.pattern, segments)
        if captures is not None:
            found = rule, captures
            break
    _remember(cache, key, found)
    return found


def _others_below(rules: RuleSet, segments: tuple[str, ...], rule: Rule | None) -> bool:
    """Whether a rule other than ``rule`` may govern some path below ``segments``."""
    key = ("below", segments, id(rule))  # the rule set holds its rules: ids are stable
    cache = rules.cache
    try:
        return cache[key]  # type: ignore[no-any-return]
    except KeyError:
        pass
    below = any(
        other is not rule and _could_match_below(other.pattern, segments) for other in rules.rules
    )
    _remember(cache, key, below)
    return below


_CACHE_LIMIT = 8192


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()  # bounded; rebuilt from the paths in use
    cache[key] = value


def allows(who: Who, captures: Mapping[str, str], actor: Actor) -> bool:
    if who.anyone:
        return True
    if who.min_role is not None and _ROLES.index(actor.role) >= _ROLES.index(who.min_role):
        return True
    if actor.user in who.users or actor.groups & who.groups:
        return True
    return any(captures.get(name) == actor.user for name in who.captures)


# --- writes ------------------------------------------------------------------------------


def check_ops(
    rules: RuleSet,
    actor: Actor,
    ops: Sequence[Op],
    root: dict[str, Any],
    roots: Sequence[dict[str, Any]] | None = None,
) -> Denial | None:
    """The first denial among ``ops`` applied in order from ``root`` (None: all allowed).

    ``roots``, if the caller applied the ops already: the state after each op. An op
    that cannot apply at all is left to the room, which rejects it with the precise
    error (``invalid_op``, ``type_mismatch``): checking stops there.
    """
    for index, op in enumerate(ops):
        if roots is not None:
            after = roots[index]
        else:
            try:
                after = apply_op(root, op)
            except OpError:
                return None
        segments = parse_path(op.path)
        denial = _check_change(
            rules, actor, op, segments, _get(root, segments), _get(after, segments), None, True
        )
        if denial is not None:
            return denial
        root = after
    return None


def _check_change(
    rules: RuleSet,
    actor: Actor,
    op: Op,
    segments: tuple[str, ...],
    old: Any,
    new: Any,
    covered: Rule | None,
    at_op: bool = False,
) -> Denial | None:
    """Check the change of one path (old -> new), then what changed below it.

    ``covered``: the rule that already allowed the change of an ancestor. A path it
    governs too (through ``**``), or that no rule governs, is part of that change; only
    paths below that other rules govern need checking. At the op's own path
    (``at_op``) the nearest rule at or above it applies, with its data conditions on
    what the op writes.
    """
    if not at_op and (old is new or old == new):
        return None  # unchanged below the op (at its own path, a write is checked)
    path = "/".join(segments)
    found = _nearest(rules, segments) if at_op else governing(rules, segments)
    rule = covered
    if found is not None and found[0] is not covered:
        rule, captures = found
        if not allows(rule.write, captures, actor):
            return Denial(rule.name, path, f"{actor.user or 'anonymous'} may not write here")
        denial = _check_data(rule, actor, op if at_op else None, path, old, new)
        if denial is not None:
            return denial
    if rule is not None and not _others_below(rules, segments, rule):
        return None
    # A path without a rule may change only as the container of paths other rules
    # govern: a mapping before and after (or created, or deleted), not empty.
    if rule is None:
        present = [value for value in (old, new) if value is not MISSING]
        if not any(present) or not all(isinstance(value, dict) for value in present):
            return Denial(None, path, "no rule covers this path")
    # What changed below a mapping (on either side) must be allowed by the rules there.
    old_map = old if isinstance(old, dict) else None
    new_map = new if isinstance(new, dict) else None
    if old_map is None and new_map is None:
        return None
    before, after = old_map or {}, new_map or {}
    for key in before.keys() | after.keys():
        denial = _check_change(
            rules,
            actor,
            op,
            (*segments, key),
            before.get(key, MISSING),
            after.get(key, MISSING),
            rule,
        )
        if denial is not None:
            return denial
    return None


def _nearest(rules: RuleSet, segments: tuple[str, ...]) -> tuple[Rule, dict[str, str]] | None:
    """The rule of the path, else of its nearest ancestor that has one (inherited)."""
    for depth in range(len(segments), 0, -1):
        found = governing(rules, segments[:depth])
        if found is not None:
            return found
    return None


def _check_data(
    rule: Rule, actor: Actor, op: Op | None, path: str, old: Any, new: Any
) -> Denial | None:
    """The rule's data conditions for one changed path. ``op`` is the op when the path
    is its own; below it (a set of an ancestor) the change counts as a set or delete."""
    if not rule.constrains_data:
        return None
    kind = _tag(op) if op is not None else ("delete" if new is MISSING else "set")
    if kind not in rule.ops:
        return Denial(rule.name, path, f"{kind} is not allowed here (only {_list(rule.ops)})")
    if rule.create_only and old is not MISSING:
        return Denial(rule.name, path, "the value may be written only once (create_only)")
    written = _written(op, new)
    if rule.types and written is not MISSING and _type(written) not in rule.types:
        want = _list(rule.types)
        return Denial(rule.name, path, f"the value must be {want}, not {_type(written)}")
    if rule.max_bytes is not None and written is not MISSING:
        size = len(json.dumps(written, separators=(",", ":"), ensure_ascii=False).encode())
        if size > rule.max_bytes:
            return Denial(rule.name, path, f"the value is larger than {rule.max_bytes} bytes")
    if rule.step is not None:
        if not isinstance(op, IncrementOp):
            return Denial(rule.name, path, "a counter with a step changes by increment only")
        if abs(op.by) > rule.step:
            return Denial(rule.name, path, f"increments must be within +/-{rule.step:g}")
    if rule.value_is_user and new is not MISSING and new != actor.user:
        return Denial(rule.name, path, "the value must be the writer's own user name")
    if rule.field_is_user:
        return _check_field(rule, actor, op, path, old, written)
    return None


def _check_field(
    rule: Rule, actor: Actor, op: Op | None, path: str, old: Any, written: Any
) -> Denial | None:
    field = rule.field_is_user
    assert field is not None
    if isinstance(op, RemoveOp):
        items = old if isinstance(old, list) else []
        removed = [item for item in items if isinstance(item, dict) and item.get("id") == op.id]
        if any(item.get(field) != actor.user for item in removed):
            return Denial(rule.name, path, f"only the {field} may remove an item")
        return None
    if isinstance(op, (DeleteOp, IncrementOp, TextOp)) or written is MISSING:
        if isinstance(old, dict) and old.get(field) not in (None, actor.user):
            return Denial(rule.name, path, f"only its {field} may change it")
        return None
    if not isinstance(written, dict) or written.get(field) != actor.user:
        return Denial(rule.name, path, f"`{field}` must be the writer's own user name")
    if isinstance(old, dict) and old.get(field) not in (None, actor.user):
        return Denial(rule.name, path, f"only its {field} may change it")
    return None


def _written(op: Op | None, new: Any) -> Any:
    """What the op writes at its path: a push's item, a text op's inserted text, a
    merge's mapping, else the new value."""
    if isinstance(op, PushOp):
        return op.value
    if isinstance(op, MergeOp):
        return op.value
    if isinstance(op, TextOp):
        return "".join(part for part in op.delta if isinstance(part, str))
    if isinstance(op, (DeleteOp, RemoveOp)):
        return MISSING
    return new


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if math.isfinite(value) and value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "mapping" if isinstance(value, dict) else "?"


def _tag(op: Op) -> str:
    return str(op.__struct_config__.tag)


def _list(items: Iterable[str]) -> str:
    return " or ".join(sorted(items))


def _get(root: Any, segments: tuple[str, ...]) -> Any:
    node = root
    for segment in segments:
        if not isinstance(node, dict) or segment not in node:
            return MISSING
        node = node[segment]
    return node


# --- reads -------------------------------------------------------------------------------


def project(rules: RuleSet, actor: Actor, value: Any, path: str = "") -> Any:
    """What ``actor`` may see of ``value`` (the value at ``path``; the root by default).

    Returns MISSING when nothing of it is visible. The root is always a mapping.
    """
    segments = parse_path(path, allow_root=True)
    seen = _seen_value(rules, actor, segments, value)
    if not segments:
        return seen if seen is not MISSING else {}
    return seen


def _seen_value(rules: RuleSet, actor: Actor, segments: tuple[str, ...], value: Any) -> Any:
    """:func:`_project` of ``value`` at ``segments``, with what it inherits from above."""
    above = _nearest(rules, segments[:-1]) if len(segments) > 1 else None
    rule = above[0] if above else None
    readable = above is not None and allows(above[0].read, above[1], actor)
    return _project(rules, actor, segments, value, rule, readable)


def _project(
    rules: RuleSet,
    actor: Actor,
    segments: tuple[str, ...],
    value: Any,
    parent_rule: Rule | None,
    parent_readable: bool,
) -> Any:
    found = governing(rules, segments) if segments else None
    rule: Rule | None
    if found is not None:
        rule, readable = found[0], allows(found[0].read, found[1], actor)
    else:  # no rule of its own: read as part of the nearest ruled ancestor
        rule, readable = parent_rule, parent_readable
    if not isinstance(value, dict) or not _others_below(rules, segments, rule):
        return value if readable else MISSING
    seen = {}
    for key, child in value.items():
        child_seen = _project(rules, actor, (*segments, key), child, rule, readable)
        if child_seen is not MISSING:
            seen[key] = child_seen
    return seen if (seen or readable) else MISSING


def read_guard(rules: RuleSet, op: Op, before: dict[str, Any]) -> tuple[Who, dict[str, str]] | None:
    """When every reader sees ``op`` whole or not at all: who may read it (the rule's
    ``read`` and captures), the same for every reader, so a fan-out asks it once per
    op and then only :func:`allows` per reader. None: ask :func:`view_of_op` per
    reader (the op spans rules, deletes, or creates mappings above its path)."""
    if isinstance(op, DeleteOp):
        return None
    segments = parse_path(op.path)
    found = _nearest(rules, segments)
    if found is None or _others_below(rules, segments, found[0]):
        return None
    if len(segments) > 1 and _get(before, segments[:-1]) is MISSING:
        return None  # it creates mappings above it, which some readers may see
    return found[0].read, found[1]


def view_of_op(
    rules: RuleSet, actor: Actor, op: Op, before: dict[str, Any], after: dict[str, Any]
) -> list[Op]:
    """The ops ``actor`` receives for ``op`` (room state ``before`` -> ``after``), so
    that their copy stays :func:`project` of the room: the op itself when they may see
    all it changed, nothing when they see no change, else a ``set`` of what they may
    see at its path, or a ``delete`` of the highest path that disappears from view."""
    segments = parse_path(op.path)
    return _view(rules, actor, op, segments, before, after) or _created(
        rules, actor, segments, before, after
    )


def _view(
    rules: RuleSet,
    actor: Actor,
    op: Op,
    segments: tuple[str, ...],
    before: dict[str, Any],
    after: dict[str, Any],
) -> list[Op]:
    found = _nearest(rules, segments)
    if found is not None and not _others_below(rules, segments, found[0]):
        if not allows(found[0].read, found[1], actor):
            return []
        if isinstance(op, DeleteOp):
            return [DeleteOp(_vanishing(rules, actor, segments, after))]
        return [op]
    seen_before = _seen(rules, actor, segments, before)
    seen_after = _seen(rules, actor, segments, after)
    if seen_after is MISSING:
        if seen_before is MISSING:
            return []
        return [DeleteOp(_vanishing(rules, actor, segments, after))]
    if seen_before is not MISSING and seen_before == seen_after:
        return []
    whole_before = _get(before, segments)
    if seen_before == whole_before and seen_after == _get(after, segments):
        return [op]  # all it changed is visible: the op itself (keeps text OT working)
    return [SetOp(op.path, value=seen_after)]


def _created(
    rules: RuleSet,
    actor: Actor,
    segments: tuple[str, ...],
    before: dict[str, Any],
    after: dict[str, Any],
) -> list[Op]:
    """A write creates the mappings above its path that were missing: the reader sees
    the highest one they may read, even when the write itself is hidden from them."""
    for depth in range(1, len(segments)):
        top = segments[:depth]
        if _get(before, top) is MISSING:
            seen = _seen(rules, actor, top, after)
            return [] if seen is MISSING else [SetOp("/".join(top), value=seen)]
    return []


def _vanishing(rules: RuleSet, actor: Actor, segments: tuple[str, ...], after: Any) -> str:
    """The highest path that leaves the reader's view with ``segments``: mappings that
    held only what just went out of view go too."""
    top = segments
    while len(top) > 1 and _seen(rules, actor, top[:-1], after) is MISSING:
        top = top[:-1]
    return "/".join(top)


def _seen(rules: RuleSet, actor: Actor, segments: tuple[str, ...], root: Any) -> Any:
    value = _get(root, segments)
    return MISSING if value is MISSING else _seen_value(rules, actor, segments, value)
