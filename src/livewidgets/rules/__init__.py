"""Room rules: who may read and write which paths, and what a write may contain.

:mod:`.syntax` parses a rule set (TOML or Python data) with precise errors;
:mod:`.check` evaluates it, purely, for writes (:func:`check_ops`) and reads
(:func:`project`, :func:`view_of_op`). docs/rules.md is the user's guide.
"""

from .check import (
    MISSING,
    Actor,
    Denial,
    allows,
    check_ops,
    governing,
    project,
    read_guard,
    view_of_op,
)
from .syntax import RULES_PATH, Rule, RulesError, RuleSet, load_rules, parse_rules

__all__ = [
    "MISSING",
    "RULES_PATH",
    "Actor",
    "Denial",
    "Rule",
    "RuleSet",
    "RulesError",
    "allows",
    "check_ops",
    "governing",
    "load_rules",
    "parse_rules",
    "project",
    "read_guard",
    "view_of_op",
]
