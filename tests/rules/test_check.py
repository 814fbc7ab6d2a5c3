"""The rules evaluator, h11 style: exact denials for writes, exact views for reads."""

from __future__ import annotations

from typing import Any

from livewidgets.rules import MISSING, Actor, Denial, check_ops, parse_rules, project, view_of_op
from livewidgets.state.ops import (
    DeleteOp,
    IncrementOp,
    MergeOp,
    Op,
    PushOp,
    RemoveOp,
    SetOp,
    TextOp,
    apply_ops,
)

CLASSROOM = parse_rules(
    [
        {"name": "question", "path": "poll/{poll}/question", "read": "anyone", "write": "admin"},
        {
            "name": "vote",
            "path": "poll/{poll}/voters/{user}",
            "read": "anyone",
            "write": "{user} or admin",
            "type": "string",
            "max_bytes": 40,
        },
        {
            "name": "chat",
            "path": "chat/messages",
            "read": "reader",
            "write": "writer",
            "ops": ["push", "remove"],
            "field_is_user": "author",
        },
        {
            "name": "answers",
            "path": "answers/{user}/**",
            "read": "{user} or admin",
            "write": "{user}",
        },
        {"name": "claps", "path": "claps", "read": "anyone", "write": "writer", "step": 1},
        {
            "name": "name",
            "path": "names/{user}",
            "read": "anyone",
            "write": "{user}",
            "create_only": True,
            "value_is_user": True,
        },
        {"name": "staff", "path": "staff/**", "read": "group:teachers", "write": "group:teachers"},
    ]
)
ALICE = Actor("alice")
BOB = Actor("bob")
TEACHER = Actor("teacher", "admin")
GUEST = Actor("guest", "read")
STATE: dict[str, Any] = {
    "poll": {"q1": {"question": "Best?", "voters": {"bob": "tea"}}},
    "chat": {"messages": [{"id": "m1", "author": "bob", "text": "hi"}]},
    "answers": {"alice": {"q1": "42"}, "bob": {"q1": "41"}},
    "claps": 3,
}


def denied(actor: Actor, *ops: Op, state: dict[str, Any] = STATE) -> Denial | None:
    return check_ops(CLASSROOM, actor, ops, state)


def test_allowed_writes_pass() -> None:
    assert denied(ALICE, SetOp("poll/q1/voters/alice", value="coffee")) is None
    assert denied(ALICE, PushOp("chat/messages", value={"id": "m2", "author": "alice"})) is None
    assert denied(ALICE, SetOp("answers/alice/q2", value={"text": "yes"})) is None
    assert denied(ALICE, IncrementOp("claps", by=1), IncrementOp("claps", by=-1)) is None
    assert denied(ALICE, SetOp("names/alice", value="alice")) is None
    assert denied(TEACHER, SetOp("poll/q1/question", value="Worst?")) is None
    assert denied(TEACHER, SetOp("poll/q1/voters/bob", value="coffee")) is None
    assert denied(Actor("t2", "write", frozenset({"teachers"})), SetOp("staff/x", value=1)) is None


def test_the_question_and_other_users_votes_are_protected() -> None:
    assert denied(ALICE, SetOp("poll/q1/question", value="Mine?")) == Denial(
        "question", "poll/q1/question", "alice may not write here"
    )
    assert denied(ALICE, SetOp("poll/q1/voters/bob", value="coffee")) == Denial(
        "vote", "poll/q1/voters/bob", "alice may not write here"
    )
    assert denied(ALICE, DeleteOp("poll/q1/voters/bob")) == Denial(
        "vote", "poll/q1/voters/bob", "alice may not write here"
    )


def test_writing_an_ancestor_checks_every_path_it_changes() -> None:
    # Replacing the whole poll would change bob's vote and the question.
    denial = denied(ALICE, SetOp("poll", value={}))
    assert denial is not None and denial.rule in ("question", "vote")
    assert denied(ALICE, SetOp("poll/q1/voters", value={"bob": "tea", "alice": "x"})) is None
    assert denied(ALICE, SetOp("poll/q1/voters", value={"alice": "x"})) == Denial(
        "vote", "poll/q1/voters/bob", "alice may not write here"
    )
    assert denied(ALICE, MergeOp("poll/q1/voters", {"alice": "x"})) is None
    assert denied(TEACHER, DeleteOp("poll/q1")) is None  # the admin may clear a poll


def test_paths_without_a_rule_are_denied() -> None:
    assert denied(TEACHER, SetOp("elsewhere", value=1)) == Denial(
        None, "elsewhere", "no rule covers this path"
    )
    assert denied(TEACHER, SetOp("poll/q1/extra", value=1)) == Denial(
        None, "poll/q1/extra", "no rule covers this path"
    )


def test_data_conditions() -> None:
    assert denied(ALICE, SetOp("poll/q1/voters/alice", value=7)) == Denial(
        "vote", "poll/q1/voters/alice", "the value must be string, not integer"
    )
    assert denied(ALICE, SetOp("poll/q1/voters/alice", value="x" * 50)) == Denial(
        "vote", "poll/q1/voters/alice", "the value is larger than 40 bytes"
    )
    assert denied(ALICE, IncrementOp("claps", by=5)) == Denial(
        "claps", "claps", "increments must be within +/-1"
    )
    assert denied(ALICE, SetOp("claps", value=100)) == Denial(
        "claps", "claps", "a counter with a step changes by increment only"
    )
    assert denied(ALICE, SetOp("names/alice", value="bob")) == Denial(
        "name", "names/alice", "the value must be the writer's own user name"
    )
    named = {"names": {"alice": "alice"}}
    assert denied(ALICE, SetOp("names/alice", value="alice"), state=named) == Denial(
        "name", "names/alice", "the value may be written only once (create_only)"
    )


def test_chat_is_append_only_with_the_author_as_writer() -> None:
    assert denied(ALICE, PushOp("chat/messages", value={"id": "m2", "author": "bob"})) == Denial(
        "chat", "chat/messages", "`author` must be the writer's own user name"
    )
    assert denied(ALICE, RemoveOp("chat/messages", id="m1")) == Denial(
        "chat", "chat/messages", "only the author may remove an item"
    )
    assert denied(BOB, RemoveOp("chat/messages", id="m1")) is None
    assert denied(BOB, SetOp("chat/messages", value=[])) == Denial(
        "chat", "chat/messages", "set is not allowed here (only push or remove)"
    )


def test_a_batch_is_refused_whole_and_checked_against_its_own_progress() -> None:
    batch = [SetOp("poll/q1/voters/alice", value="x"), SetOp("poll/q1/question", value="?")]
    assert denied(ALICE, *batch) == Denial(
        "question", "poll/q1/question", "alice may not write here"
    )
    # The second op sees the first: create_only refuses writing names/alice twice.
    twice = [SetOp("names/alice", value="alice"), SetOp("names/alice", value="alice")]
    assert denied(ALICE, *twice) == Denial(
        "name", "names/alice", "the value may be written only once (create_only)"
    )


def test_a_read_only_user_writes_nothing_a_role_rule_guards() -> None:
    assert denied(GUEST, PushOp("chat/messages", value={"id": "g", "author": "guest"})) == Denial(
        "chat", "chat/messages", "guest may not write here"
    )


def test_projection_hides_private_answers() -> None:
    alice_view = project(CLASSROOM, ALICE, STATE)
    assert alice_view == {
        "poll": {"q1": {"question": "Best?", "voters": {"bob": "tea"}}},
        "chat": {"messages": [{"id": "m1", "author": "bob", "text": "hi"}]},
        "answers": {"alice": {"q1": "42"}},
        "claps": 3,
    }
    assert project(CLASSROOM, TEACHER, STATE) == STATE
    assert project(CLASSROOM, ALICE, STATE["answers"], "answers/bob") is MISSING
    assert project(parse_rules([]), ALICE, STATE) == {}  # deny by default


def test_views_of_ops() -> None:
    def view(actor: Actor, op: Op, state: dict[str, Any] = STATE) -> list[Op]:
        return view_of_op(CLASSROOM, actor, op, state, apply_ops(state, [op]))

    own = SetOp("answers/alice/q2", value="7")
    assert view(ALICE, own) == [own]
    assert view(BOB, own) == []
    assert view(TEACHER, own) == [own]
    vote = SetOp("poll/q1/voters/alice", value="x")
    assert view(BOB, vote) == [vote]
    # A set above private paths reaches each reader as what they may see of it.
    reset = SetOp("answers", value={"alice": {"q1": "0"}, "bob": {"q1": "1"}})
    assert view(ALICE, reset) == [SetOp("answers", value={"alice": {"q1": "0"}})]
    assert view(TEACHER, reset) == [reset]
    # Deleting the last thing a reader sees under a hidden mapping deletes the mapping.
    assert view(BOB, DeleteOp("answers/bob")) == [DeleteOp("answers")]
    assert view(BOB, DeleteOp("answers/alice")) == []
    text = TextOp("answers/alice/q1", delta=[2, "!"])
    assert view(ALICE, text) == [text]
    assert view(BOB, text) == []
