"""Model-based property test of the rules evaluator (hypothesis).

Random rule sets x random op sequences x several users. The model below is written
from docs/rules.md independently of livewidgets.rules.check, by brute force over every
path of the state: an op is applied exactly when the model allows it, and each
reader's copy, kept up to date with :func:`view_of_op`, always equals the model's
projection of the whole state for that reader. The same ops also go through a real
RoomHub (the relay's room): its acks and rejects agree, and each reader's copy built
from the broadcasts it receives equals the projection too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from livewidgets.protocol import AckMessage, Broadcast, Reject
from livewidgets.relay.hub import JoinRoom, RoomHub, Submit
from livewidgets.relay.room import RoomCore, RoomRecord
from livewidgets.relay.room_rules import DefaultRules, RoomRules
from livewidgets.rules import Actor, RulesError, check_ops, parse_rules, view_of_op
from livewidgets.state.ops import (
    DeleteOp,
    IncrementOp,
    MergeOp,
    Op,
    OpError,
    PushOp,
    SetOp,
    apply_ops,
)

SEGMENTS = ["a", "b", "u1", "u2"]


@dataclass(eq=False)
class Peer:
    """A room member as the hub sees it (relay.hub.Member, with an actor)."""

    client_id: str
    user: str
    actor: Actor


ACTORS = [
    Actor("u1", "write"),
    Actor("u2", "write", frozenset({"g"})),
    Actor("t", "admin"),
    Actor("r", "read"),
]
GONE = object()


# --- the model ---------------------------------------------------------------------------


def m_match(pattern: str, path: tuple[str, ...]) -> dict[str, str] | None:
    regex, names = "", []
    for part in pattern.split("/"):
        if part == "**":
            regex += "(/[^/]+)*"
        elif part == "*":
            regex += "/[^/]+"
        elif part.startswith("{"):
            names.append(part[1:-1])
            regex += "/([^/]+)"
        else:
            regex += "/" + re.escape(part)
    found = re.fullmatch(regex, "/" + "/".join(path))
    if found is None:
        return None
    return dict(zip(names, found.groups()[: len(names)], strict=True))


def m_rank(pattern: str) -> tuple[int, ...]:
    parts = pattern.split("/")
    ranks = [0 if p == "**" else 1 if p == "*" or p.startswith("{") else 2 for p in parts]
    return (*ranks, 0 if parts[-1] == "**" else 3)


def m_governing(rules: list[dict[str, Any]], path: tuple[str, ...]) -> Any:
    matches = [(m_rank(r["path"]), r, m_match(r["path"], path)) for r in rules]
    matches = [m for m in matches if m[2] is not None]
    if not matches:
        return None
    _, rule, captures = max(matches, key=lambda m: m[0])
    return rule, captures


def m_nearest(rules: list[dict[str, Any]], path: tuple[str, ...]) -> Any:
    for depth in range(len(path), 0, -1):
        found = m_governing(rules, path[:depth])
        if found is not None:
            return found
    return None


def m_allows(text: str, actor: Actor, captures: dict[str, str]) -> bool:
    order = ["read", "write", "admin"]
    for term in text.split(" or "):
        if term == "anyone":
            return True
        if term in ("reader", "writer", "admin"):
            needed = {"reader": "read", "writer": "write", "admin": "admin"}[term]
            if order.index(actor.role) >= order.index(needed):
                return True
        if term.startswith("user:") and term[5:] == actor.user:
            return True
        if term.startswith("group:") and term[6:] in actor.groups:
            return True
        if term.startswith("{") and captures.get(term[1:-1]) == actor.user:
            return True
    return False


def m_get(root: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(root, dict) or part not in root:
            return GONE
        root = root[part]
    return root


def m_data_ok(rule: dict[str, Any], actor: Actor, op: Op | None, old: Any, new: Any) -> bool:
    if rule.get("create_only") and old is not GONE:
        return False
    if "step" in rule:
        return isinstance(op, IncrementOp) and abs(op.by) <= rule["step"]
    written = op.value if isinstance(op, (PushOp, MergeOp)) else new
    if isinstance(op, DeleteOp):
        written = GONE
    if "type" in rule and written is not GONE:
        kinds = {dict: "mapping", list: "list", str: "string", int: "integer"}
        kind = kinds[type(written)]
        if kind not in rule["type"]:
            return False
    return not (rule.get("value_is_user") and new is not GONE and new != actor.user)


def m_allowed(rules: list[dict[str, Any]], actor: Actor, op: Op, before: Any, after: Any) -> bool:
    top = tuple(op.path.split("/"))

    def paths(node: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        out = [path]
        if isinstance(node, dict):
            for key, child in node.items():
                out += paths(child, (*path, key))
        return out

    changed = {top}
    for node in (m_get(before, top), m_get(after, top)):
        if node is not GONE:
            changed |= {p for p in paths(node, top) if m_get(before, p) != m_get(after, p)}
    for path in sorted(changed, key=len):
        at_op = path == top
        own = m_nearest(rules, path) if at_op else m_governing(rules, path)
        # The rule that allowed the change just above (within the op's change).
        cover = None
        for depth in range(len(top), len(path)):
            above = m_nearest(rules, path[:depth]) if depth == len(top) else None
            found = above if depth == len(top) else m_governing(rules, path[:depth])
            if found is not None:
                cover = found[0]
        old, new = m_get(before, path), m_get(after, path)
        if own is not None and own[0] is not cover:
            rule, captures = own
            if not m_allows(rule["write"], actor, captures):
                return False
            if not m_data_ok(rule, actor, op if at_op else None, old, new):
                return False
        elif own is None and cover is None:
            maps = [v for v in (old, new) if v is not GONE]
            if not maps or not all(isinstance(v, dict) for v in maps) or not any(maps):
                return False
    return True


def m_project(rules: list[dict[str, Any]], actor: Actor, node: Any) -> Any:
    def visit(path: tuple[str, ...], value: Any, inherited: bool) -> Any:
        own = m_governing(rules, path) if path else None
        readable = m_allows(own[0]["read"], actor, own[1]) if own else inherited
        if isinstance(value, dict):
            kids = {}
            for key, child in value.items():
                seen = visit((*path, key), child, readable)
                if seen is not GONE:
                    kids[key] = seen
            return kids if (kids or readable) else GONE
        return value if readable else GONE

    seen = visit((), node, False)
    return {} if seen is GONE else seen


# --- generators ----------------------------------------------------------------------------

segment = st.sampled_from(SEGMENTS)
path = st.lists(segment, min_size=1, max_size=3).map("/".join)


@st.composite
def rule(draw: st.DrawFn, index: int) -> dict[str, Any]:
    parts = draw(st.lists(st.sampled_from([*SEGMENTS, "*", "{x}"]), min_size=1, max_size=3))
    if parts.count("{x}") > 1:
        parts = [p if p != "{x}" else "*" for p in parts]
    if draw(st.booleans()):
        parts.append("**")
    terms = ["anyone", "nobody", "reader", "writer", "admin", "user:u1", "group:g"]
    if "{x}" in parts:
        terms.append("{x}")
    who = st.lists(st.sampled_from(terms), min_size=1, max_size=2).map(" or ".join)
    data: dict[str, Any] = {
        "name": f"r{index}",
        "path": "/".join(parts),
        "read": draw(who),
        "write": draw(who),
    }
    extra = draw(st.sampled_from(["", "create_only", "type", "step", "value_is_user"]))
    if extra == "create_only":
        data["create_only"] = True
    elif extra == "type":
        data["type"] = draw(st.sampled_from([["integer"], ["mapping"], ["integer", "list"]]))
    elif extra == "step":
        data["step"] = 1
    elif extra == "value_is_user":
        data["value_is_user"] = True
    return data


value = st.recursive(
    st.integers(-2, 2) | st.sampled_from(["u1", "u2"]),
    lambda inner: st.dictionaries(segment, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def op(draw: st.DrawFn) -> Op:
    at = draw(path)
    kind = draw(st.sampled_from(["set", "set", "delete", "increment", "merge", "push"]))
    if kind == "set":
        return SetOp(at, value=draw(value))
    if kind == "delete":
        return DeleteOp(at)
    if kind == "increment":
        return IncrementOp(at, by=draw(st.sampled_from([1, -1, 2])))
    if kind == "merge":
        return MergeOp(at, value=draw(st.dictionaries(segment, value, min_size=1, max_size=2)))
    return PushOp(at, value=draw(st.integers(0, 3)))


@st.composite
def rule_set(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 5))
    return [draw(rule(index)) for index in range(count)]


@settings(
    max_examples=int(os.environ.get("RULES_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    rules_data=rule_set(),
    steps=st.lists(st.tuples(st.sampled_from(ACTORS), op()), min_size=1, max_size=25),
)
def test_rules_agree_with_the_model(
    rules_data: list[dict[str, Any]], steps: list[tuple[Actor, Op]]
) -> None:
    try:
        rules = parse_rules(rules_data)
    except RulesError:
        assume(False)
        return
    state: dict[str, Any] = {}
    views: dict[str, dict[str, Any]] = {actor.user: {} for actor in ACTORS}
    # The same through a relay's room: writers submit, readers (same users, other
    # connections) keep the broadcasts they receive.
    hub = RoomHub[Peer](RoomCore(RoomRecord("r"), rules=RoomRules(DefaultRules(rules))))
    writers = {a.user: Peer(f"w-{a.user}", a.user, a) for a in ACTORS}
    readers = {a.user: Peer(f"r-{a.user}", a.user, a) for a in ACTORS}
    received: dict[str, dict[str, Any]] = {user: {} for user in readers}
    for peer in [*writers.values(), *readers.values()]:
        hub.handle(JoinRoom(peer, None))
    seqs = dict.fromkeys(writers, 0)
    for actor, operation in steps:
        try:
            after = apply_ops(state, [operation])
        except OpError:
            continue  # the room rejects it before any rule is asked
        allowed = check_ops(rules, actor, [operation], state) is None
        assert allowed == m_allowed(rules_data, actor, operation, state, after), (
            actor,
            operation,
            state,
        )
        seqs[actor.user] += 1
        sends = hub.handle(
            Submit(writers[actor.user], seqs[actor.user], hub.core.version, (operation,))
        )
        replies = [s.message for s in sends if writers[actor.user] in s.to]
        assert isinstance(replies[0], AckMessage if allowed else Reject), replies
        for user, peer in readers.items():
            for send in sends:
                if peer in send.to and isinstance(send.message, Broadcast):
                    received[user] = apply_ops(received[user], send.message.ops)
        if not allowed:
            continue
        for reader in ACTORS:
            ops = view_of_op(rules, reader, operation, state, after)
            views[reader.user] = apply_ops(views[reader.user], ops)
        state = after
        event(f"{sum(1 for r in rules.rules)} rules")
        for reader in ACTORS:
            projected = m_project(rules_data, reader, state)
            assert views[reader.user] == projected, (reader, ops)
            assert received[reader.user] == projected, (reader, "through the room")
