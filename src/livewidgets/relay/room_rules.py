"""Which rules a room runs under, and the checks its own rules get (docs/rules.md).

A room's rules live in its state at :data:`RULES_PATH` (``$rules``, a list of rule
tables), so they are ordered, logged, snapshotted and replicated like any write:
every relay of a Redis deployment agrees, a restart keeps them. A room without
them runs under the relay's default rule set (``livewidgets relay --rules FILE``,
reloaded on SIGHUP), or under none: then every member may read and write
everything, as before rules existed.

``$rules`` itself is governed by a built-in rule: every member may read it, only
admins may write it, and what they write must be a valid rule set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..protocol.codes import ErrorCode
from ..rules import RULES_PATH, Actor, RulesError, RuleSet, parse_rules
from ..rules.syntax import Rule, parse_pattern, parse_who
from ..state.ops import Op
from ..state.paths import is_within

__all__ = ["RULES_PATH", "DefaultRules", "RoomRules"]

_BUILTIN = Rule(
    name=RULES_PATH,
    pattern=parse_pattern(f"{RULES_PATH}/**", RULES_PATH),
    read=parse_who("anyone", RULES_PATH, "read", ()),
    write=parse_who("admin", RULES_PATH, "write", ()),
)


class DefaultRules:
    """The relay's rule set for rooms without their own; replaced on SIGHUP."""

    def __init__(self, rules: RuleSet | None = None) -> None:
        self.rules = rules
        # Bumped on every change, so rooms notice without being told one by one.
        self.generation = 0

    def replace(self, rules: RuleSet | None) -> None:
        self.rules = rules
        self.generation += 1


@dataclass(frozen=True)
class _Cached:
    own: Any
    generation: int
    rules: RuleSet | None


class RoomRules:
    """The effective rules of one room, recomputed only when they change."""

    def __init__(self, default: DefaultRules | None = None) -> None:
        self.default = default or DefaultRules()
        self._cached = _Cached(object(), -1, None)

    def effective(self, state: dict[str, Any]) -> RuleSet | None:
        """The rules for ``state`` (None: no rules, everything allowed)."""
        own = state.get(RULES_PATH)
        cached = self._cached
        if cached.own is own and cached.generation == self.default.generation:
            return cached.rules
        rules = self._build(own)
        self._cached = _Cached(own, self.default.generation, rules)
        return rules

    def _build(self, own: Any) -> RuleSet | None:
        if own is not None:
            try:
                base = parse_rules(own)
            except RulesError:
                base = RuleSet()  # checked on write; a damaged value denies everything
        elif self.default.rules is not None:
            base = self.default.rules
        else:
            return None
        return RuleSet(tuple(sorted((*base.rules, _BUILTIN), key=_specificity, reverse=True)))


def _specificity(rule: Rule) -> tuple[int, ...]:
    return rule.pattern.specificity()


def check_rules_write(
    ops: Sequence[Op], actor: Actor | None, new_state: dict[str, Any]
) -> tuple[ErrorCode, str] | None:
    """Writes of ``$rules`` need an admin and must leave a valid rule set (checked
    with or without rules in force: without them nobody else guards ``$rules``)."""
    touched = [op for op in ops if is_within(op.path, RULES_PATH)]
    if not touched:
        return None
    if actor is not None and actor.role != "admin":
        return ErrorCode.FORBIDDEN, "only an admin may change the room's rules"
    value = new_state.get(RULES_PATH)
    if value is None:
        return None
    try:
        parse_rules(value)
    except RulesError as exc:
        return ErrorCode.INVALID_OP, f"invalid rules: {exc}"
    return None
