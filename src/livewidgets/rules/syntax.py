"""Room rules as data: parse a rule set (from TOML or Python) into checked objects.

A rule set is a list of rules; each names a path pattern, who may read and write
there, and what a write may contain (docs/rules.md)::

    [[rule]]
    name = "votes"
    path = "poll/{poll}/voters/{user}"
    read = "anyone"
    write = "{user}"            # only the user the last segment names
    type = "string"
    max_bytes = 64

Nothing here evaluates anything: :mod:`.check` does, on these objects. Every mistake
in a rule set is a :class:`RulesError` that names the rule and the field.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "OP_KINDS",
    "RULES_PATH",
    "VALUE_TYPES",
    "Pattern",
    "Rule",
    "RuleSet",
    "RulesError",
    "Who",
    "load_rules",
    "parse_rules",
]

# Where a room keeps its own rules: a key of its state the relay guards (only admins
# write it, with a valid rule set), so they are logged and replicated like any write.
RULES_PATH = "$rules"
OP_KINDS = frozenset({"set", "merge", "push", "remove", "increment", "delete", "text"})
VALUE_TYPES = frozenset({"string", "number", "integer", "boolean", "null", "list", "mapping"})
MAX_RULES = 256
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIELDS = frozenset(
    {
        "name",
        "path",
        "read",
        "write",
        "ops",
        "type",
        "max_bytes",
        "create_only",
        "step",
        "value_is_user",
        "field_is_user",
    }
)


class RulesError(ValueError):
    """A rule set that cannot be used; the message says which rule and field."""


# --- path patterns ---------------------------------------------------------------------

# A segment of a pattern: a literal, "*" (any one segment), "**" (any number of
# segments, also none; last only) or "{name}" (any one segment, captured as name).
LITERAL, ANY, REST, CAPTURE = "literal", "*", "**", "capture"


@dataclass(frozen=True)
class Segment:
    kind: str
    text: str  # the literal, or the capture's name

    @property
    def rank(self) -> int:
        """Specificity (higher wins): a literal beats a wildcard beats ``**``."""
        return {LITERAL: 2, ANY: 1, CAPTURE: 1, REST: 0}[self.kind]


@dataclass(frozen=True)
class Pattern:
    text: str
    segments: tuple[Segment, ...]

    @property
    def captures(self) -> tuple[str, ...]:
        return tuple(s.text for s in self.segments if s.kind == CAPTURE)

    @property
    def shape(self) -> tuple[str, ...]:
        """The pattern with every one-segment wildcard written ``*``."""
        return tuple("*" if s.kind in (ANY, CAPTURE) else s.text for s in self.segments)

    @property
    def open_ended(self) -> bool:
        return bool(self.segments) and self.segments[-1].kind == REST

    def specificity(self) -> tuple[int, ...]:
        """Sort key: compared segment by segment, then longer (more exact) first."""
        ranks = tuple(s.rank for s in self.segments)
        return (*ranks, 3 if not self.open_ended else 0)


def parse_pattern(text: str, rule: str) -> Pattern:
    if not isinstance(text, str) or not text or text.startswith("/") or text.endswith("/"):
        raise RulesError(f"rule {rule!r}: path must be like 'poll/{{poll}}/votes', got {text!r}")
    segments = []
    seen: set[str] = set()
    parts = text.split("/")
    for index, part in enumerate(parts):
        if part == "**":
            if index != len(parts) - 1:
                raise RulesError(f"rule {rule!r}: '**' may only end a path ({text!r})")
            segments.append(Segment(REST, part))
        elif part == "*":
            segments.append(Segment(ANY, part))
        elif part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if not _NAME.match(name):
                raise RulesError(f"rule {rule!r}: capture {part!r} must be a name like {{user}}")
            if name in seen:
                raise RulesError(f"rule {rule!r}: capture {part!r} appears twice in {text!r}")
            seen.add(name)
            segments.append(Segment(CAPTURE, name))
        elif not part or any(c in part for c in "{}*") or any(ord(c) < 0x20 for c in part):
            raise RulesError(f"rule {rule!r}: invalid path segment {part!r} in {text!r}")
        else:
            segments.append(Segment(LITERAL, part))
    return Pattern(text, tuple(segments))


# --- who: principal conditions -----------------------------------------------------------

_ROLE_TERMS = {"reader": "read", "writer": "write", "admin": "admin"}


@dataclass(frozen=True)
class Who:
    """Any of: everyone, a role or higher, a named user, a group member, or the user a
    capture of the path names. ``nobody`` is an empty Who."""

    text: str
    anyone: bool = False
    min_role: str | None = None  # "read" | "write" | "admin"
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    captures: frozenset[str] = frozenset()


def parse_who(text: Any, rule: str, key: str, captures: Sequence[str]) -> Who:
    """``"anyone"``, ``"nobody"``, ``"reader"``/``"writer"``/``"admin"`` (that role or
    higher), ``"user:NAME"``, ``"group:NAME"``, ``"{capture}"``; joined by ``or``."""
    where = f"rule {rule!r}, {key}"
    if not isinstance(text, str) or not text.strip():
        raise RulesError(f"{where}: expected e.g. 'admin or {{user}}', got {text!r}")
    anyone, roles, users, groups, caps = False, [], set(), set(), set()
    for term in (t.strip() for t in text.split(" or ")):
        if term == "anyone":
            anyone = True
        elif term == "nobody":
            pass
        elif term in _ROLE_TERMS:
            roles.append(_ROLE_TERMS[term])
        elif term.startswith("user:") and term[5:]:
            users.add(term[5:])
        elif term.startswith("group:") and term[6:]:
            groups.add(term[6:])
        elif term.startswith("{") and term.endswith("}"):
            if term[1:-1] not in captures:
                raise RulesError(f"{where}: {term} is not a capture of this rule's path")
            caps.add(term[1:-1])
        else:
            raise RulesError(
                f"{where}: unknown term {term!r} (use anyone, nobody, reader, writer, "
                "admin, user:NAME, group:NAME or a {capture} of the path)"
            )
    order = ("read", "write", "admin")
    min_role = min(roles, key=order.index) if roles else None
    return Who(text, anyone, min_role, frozenset(users), frozenset(groups), frozenset(caps))


# --- rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: Pattern
    read: Who
    write: Who
    # Data conditions on writes (None / empty: no condition).
    ops: frozenset[str] = OP_KINDS
    types: frozenset[str] = frozenset()
    max_bytes: int | None = None
    create_only: bool = False
    step: float | None = None
    value_is_user: bool = False
    field_is_user: str | None = None

    @property
    def constrains_data(self) -> bool:
        return bool(
            self.ops != OP_KINDS
            or self.types
            or self.max_bytes is not None
            or self.create_only
            or self.step is not None
            or self.value_is_user
            or self.field_is_user
        )


@dataclass(frozen=True)
class RuleSet:
    """Rules, most specific pattern first (the order :mod:`.check` matches in)."""

    rules: tuple[Rule, ...] = field(default_factory=tuple)
    # Answers of :mod:`.check` for paths seen before (a room's paths repeat): kept on
    # the rule set itself, so looking one up never hashes the rules.
    cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def to_data(self) -> list[dict[str, Any]]:
        """The rules as plain data (what :func:`parse_rules` reads back)."""
        return [_rule_data(rule) for rule in self.rules]


def parse_rules(data: Any) -> RuleSet:
    """A rule set from ``{"rule": [...]}`` (a parsed TOML file) or a list of rule dicts."""
    if isinstance(data, Mapping):
        unknown = set(data) - {"rule"}
        if unknown:
            raise RulesError(f"unknown top-level keys {sorted(unknown)} (rules go in [[rule]])")
        data = data.get("rule", [])
    if not isinstance(data, Sequence) or isinstance(data, (str, bytes)):
        raise RulesError("rules must be a list of tables ([[rule]] in TOML)")
    if len(data) > MAX_RULES:
        raise RulesError(f"at most {MAX_RULES} rules, got {len(data)}")
    rules = [_parse_rule(item, index) for index, item in enumerate(data)]
    names = [rule.name for rule in rules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RulesError(f"rule names must be unique: {duplicates}")
    # "a/{x}" and "a/*" match the same paths: one of them would never apply.
    shapes = [rule.pattern.shape for rule in rules]
    same = sorted({r.pattern.text for r in rules if shapes.count(r.pattern.shape) > 1})
    if same:
        raise RulesError(f"two rules for the same paths: {same}")
    rules.sort(key=lambda rule: rule.pattern.specificity(), reverse=True)
    return RuleSet(tuple(rules))


def _parse_rule(item: Any, index: int) -> Rule:
    if not isinstance(item, Mapping):
        raise RulesError(f"rule #{index + 1} must be a table, got {type(item).__name__}")
    name = item.get("name", item.get("path", f"#{index + 1}"))
    if not isinstance(name, str) or not name:
        raise RulesError(f"rule #{index + 1}: name must be a non-empty string")
    unknown = set(item) - _FIELDS
    if unknown:
        raise RulesError(f"rule {name!r}: unknown fields {sorted(unknown)}")
    if "path" not in item:
        raise RulesError(f"rule {name!r}: path is required")
    pattern = parse_pattern(item["path"], name)
    first = pattern.segments[0]
    if first.kind == LITERAL and first.text.startswith("$"):
        raise RulesError(f"rule {name!r}: paths starting with '$' belong to the relay")
    captures = pattern.captures
    read = parse_who(item.get("read", "nobody"), name, "read", captures)
    write = parse_who(item.get("write", "nobody"), name, "write", captures)
    ops = item.get("ops", sorted(OP_KINDS))
    if isinstance(ops, str):
        ops = [ops]
    if not isinstance(ops, list) or not ops or not set(ops) <= OP_KINDS:
        raise RulesError(f"rule {name!r}, ops: a list of {sorted(OP_KINDS)}, got {ops!r}")
    types = item.get("type", [])
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list) or not set(types) <= VALUE_TYPES:
        raise RulesError(f"rule {name!r}, type: one or more of {sorted(VALUE_TYPES)}")
    max_bytes = item.get("max_bytes")
    if max_bytes is not None and (type(max_bytes) is not int or max_bytes < 0):
        raise RulesError(f"rule {name!r}, max_bytes: a whole number of bytes >= 0")
    step = item.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float))):
        raise RulesError(f"rule {name!r}, step: a number (increments by at most +/- step)")
    if step is not None and step <= 0:
        raise RulesError(f"rule {name!r}, step: must be > 0")
    flags = {key: item.get(key, False) for key in ("create_only", "value_is_user")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise RulesError(f"rule {name!r}, {key}: true or false")
    field_is_user = item.get("field_is_user")
    if field_is_user is not None and (not isinstance(field_is_user, str) or not field_is_user):
        raise RulesError(f"rule {name!r}, field_is_user: the name of a field")
    return Rule(
        name=name,
        pattern=pattern,
        read=read,
        write=write,
        ops=frozenset(ops),
        types=frozenset(types),
        max_bytes=max_bytes,
        create_only=flags["create_only"],
        step=step,
        value_is_user=flags["value_is_user"],
        field_is_user=field_is_user,
    )


def _rule_data(rule: Rule) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": rule.name,
        "path": rule.pattern.text,
        "read": rule.read.text,
        "write": rule.write.text,
    }
    if rule.ops != OP_KINDS:
        data["ops"] = sorted(rule.ops)
    if rule.types:
        data["type"] = sorted(rule.types)
    if rule.max_bytes is not None:
        data["max_bytes"] = rule.max_bytes
    if rule.create_only:
        data["create_only"] = True
    if rule.step is not None:
        data["step"] = rule.step
    if rule.value_is_user:
        data["value_is_user"] = True
    if rule.field_is_user:
        data["field_is_user"] = rule.field_is_user
    return data


def load_rules(path: str | Path) -> RuleSet:
    """A rule set from a TOML file (``[[rule]]`` tables) or a JSON file (``.json``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"cannot read rules file {str(path)!r}: {exc.strerror}") from None
    if path.suffix == ".json":
        try:
            return parse_rules(json.loads(text))
        except json.JSONDecodeError as exc:
            raise RulesError(f"{path}: invalid JSON: {exc}") from None
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(f"{path}: invalid TOML: {exc}") from None
        return parse_rules(data)
    raise RulesError("TOML rules need Python 3.11 or newer; use a .json file")
