"""Parsing rule sets: what is accepted, and the precise error for each mistake."""

from __future__ import annotations

from typing import Any

import pytest

from livewidgets.rules import RulesError, parse_rules

tomllib = pytest.importorskip("tomllib", reason="TOML needs Python 3.11")

POLL = """
[[rule]]
name = "question"
path = "poll/{poll}/question"
read = "anyone"
write = "admin"

[[rule]]
name = "votes"
path = "poll/{poll}/voters/{user}"
read = "anyone"
write = "{user} or admin"
type = "string"
max_bytes = 64
"""


def test_a_toml_rule_set_parses_most_specific_first() -> None:
    rules = parse_rules(tomllib.loads(POLL + '\n[[rule]]\npath = "**"\nread = "admin"\n'))
    assert [rule.name for rule in rules.rules] == ["question", "votes", "**"]
    votes = rules.rules[1]
    assert votes.write.captures == {"user"} and votes.write.min_role == "admin"
    assert votes.types == {"string"} and votes.max_bytes == 64
    assert votes.pattern.captures == ("poll", "user")


def test_rules_round_trip_through_plain_data() -> None:
    rules = parse_rules(tomllib.loads(POLL))
    assert parse_rules(rules.to_data()) == rules


def test_specificity_literal_beats_capture_beats_rest() -> None:
    rules = parse_rules(
        [
            {"path": "a/**", "read": "anyone"},
            {"path": "a/{x}", "read": "anyone"},
            {"path": "a/b", "read": "anyone"},
            {"path": "{x}/b", "read": "anyone"},
        ]
    )
    assert [rule.pattern.text for rule in rules.rules] == ["a/b", "a/{x}", "a/**", "{x}/b"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("x", "rules must be a list of tables"),
        ({"rules": []}, "unknown top-level keys ['rules']"),
        ([{"read": "anyone"}], "rule '#1': path is required"),
        ([{"path": "a", "wirte": "admin"}], "rule 'a': unknown fields ['wirte']"),
        ([{"path": "/a"}], "path must be like"),
        ([{"path": "a/**/b"}], "'**' may only end a path"),
        ([{"path": "a/{1x}"}], "capture '{1x}' must be a name"),
        ([{"path": "{u}/{u}"}], "capture '{u}' appears twice"),
        ([{"path": "a/b*"}], "invalid path segment 'b*'"),
        ([{"path": "a", "write": "{user}"}], "rule 'a', write: {user} is not a capture"),
        ([{"path": "a", "read": "everyone"}], "unknown term 'everyone'"),
        ([{"path": "a", "read": ""}], "rule 'a', read: expected e.g."),
        ([{"path": "a", "ops": ["set", "append"]}], "rule 'a', ops: a list of"),
        ([{"path": "a", "type": "str"}], "rule 'a', type: one or more of"),
        ([{"path": "a", "max_bytes": -1}], "rule 'a', max_bytes"),
        ([{"path": "a", "step": 0}], "rule 'a', step: must be > 0"),
        ([{"path": "a", "step": True}], "rule 'a', step: a number"),
        ([{"path": "a", "create_only": "yes"}], "rule 'a', create_only: true or false"),
        ([{"path": "a", "field_is_user": ""}], "rule 'a', field_is_user"),
        ([{"path": "a"}, {"path": "b", "name": "a"}], "rule names must be unique: ['a']"),
        ([{"path": "a/{x}"}, {"path": "a/*"}], "two rules for the same paths"),
        ([{"path": "a"}] * 300, "at most 256 rules"),
    ],
)
def test_each_mistake_has_a_precise_error(data: Any, message: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(data)
    assert message in str(caught.value)
