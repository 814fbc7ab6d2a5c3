"""The examples in docs/protocol.md are real, complete and cover the whole protocol.

How examples are found: every fenced block tagged ``json`` in docs/protocol.md
holds exactly one message. Its direction is named by the closest heading above it,
which must contain "client → relay" (decoded with ``server_codec``, as the relay
would) or "relay → client" (decoded with ``client_codec``). Untagged blocks are
fragments and are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from livewidgets.protocol import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    ClientMessage,
    CloseCode,
    ErrorCode,
    ServerMessage,
    client_codec,
    server_codec,
)
from livewidgets.state.ops import Op

SPEC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TO_RELAY = "client → relay"
TO_CLIENT = "relay → client"

_HEADING = re.compile(r"^#{1,6} +(?P<title>.+)$")
_FENCE = re.compile(r"^```(?P<info>\S*)\s*$")


@dataclass(frozen=True)
class Example:
    line: int
    direction: str | None
    heading: str
    text: str

    def __str__(self) -> str:
        return f"docs/protocol.md:{self.line}"


def _examples() -> list[Example]:
    examples: list[Example] = []
    heading, direction = "", None
    # Lines of the open fenced block, and whether it is a ```json one.
    block: list[str] | None = None
    is_json, start = False, 0
    for number, line in enumerate(SPEC.read_text(encoding="utf-8").splitlines(), 1):
        fence = _FENCE.match(line)
        if block is None and fence:
            block, is_json, start = [], fence["info"] == "json", number
        elif block is not None and fence and not fence["info"]:
            if is_json:
                examples.append(Example(start, direction, heading, "\n".join(block)))
            block = None
        elif block is not None:
            block.append(line)
        elif match := _HEADING.match(line):
            heading = match["title"]
            direction = next((d for d in (TO_RELAY, TO_CLIENT) if d in heading), None)
    assert block is None, f"docs/protocol.md:{start}: unclosed code block"
    return examples


EXAMPLES = _examples()
CLIENT_TYPES = {str(t.__struct_config__.tag) for t in ClientMessage.__args__}
SERVER_TYPES = {str(t.__struct_config__.tag) for t in ServerMessage.__args__}
OP_KINDS = {str(t.__struct_config__.tag) for t in Op.__args__}


def _codec(direction: str | None, subprotocol: str = JSON_SUBPROTOCOL) -> Any:
    return server_codec(subprotocol) if direction == TO_RELAY else client_codec(subprotocol)


def _raw(example: Example) -> dict[str, Any]:
    raw = json.loads(example.text)
    assert isinstance(raw, dict), f"{example}: an example must be one JSON object"
    return raw


def test_spec_has_examples() -> None:
    """The spec has examples for both directions."""
    directions = {e.direction for e in EXAMPLES}
    assert {TO_RELAY, TO_CLIENT} <= directions


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example_has_a_direction(example: Example) -> None:
    """Every json example sits under a heading naming its direction."""
    assert example.direction, f"{example}: heading {example.heading!r} names no direction"


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example_decodes_to_its_type(example: Example) -> None:
    """Every example decodes with its direction's codec into the message its `type` names."""
    raw = _raw(example)
    message = _codec(example.direction).decode(example.text)
    assert message.__struct_config__.tag == raw["type"]
    expected = CLIENT_TYPES if example.direction == TO_RELAY else SERVER_TYPES
    assert raw["type"] in expected


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example_is_canonical_and_round_trips(example: Example) -> None:
    """Re-encoding an example gives the same JSON (defaults left out), in JSON and msgpack."""
    codec = _codec(example.direction)
    message = codec.decode(example.text)
    assert json.loads(codec.encode(message)) == _raw(example)
    assert codec.decode(codec.frame(message)) == message
    binary = _codec(example.direction, MSGPACK_SUBPROTOCOL)
    assert binary.decode(binary.frame(message)) == message


def test_every_client_message_type_has_an_example() -> None:
    """Each client → relay message type has at least one example."""
    seen = {_raw(e)["type"] for e in EXAMPLES if e.direction == TO_RELAY}
    assert seen >= CLIENT_TYPES, f"missing: {sorted(CLIENT_TYPES - seen)}"


def test_every_server_message_type_has_an_example() -> None:
    """Each relay → client message type has at least one example."""
    seen = {_raw(e)["type"] for e in EXAMPLES if e.direction == TO_CLIENT}
    assert seen >= SERVER_TYPES, f"missing: {sorted(SERVER_TYPES - seen)}"


def test_every_op_kind_has_a_message_example() -> None:
    """Each op kind appears in at least one decoded client → relay example."""
    seen: set[str] = set()
    for example in EXAMPLES:
        if example.direction != TO_RELAY:
            continue
        message = server_codec(None).decode(example.text)
        ops = [getattr(message, "op", None), *getattr(message, "ops", [])]
        seen |= {str(op.__struct_config__.tag) for op in ops if op is not None}
    assert seen >= OP_KINDS, f"missing: {sorted(OP_KINDS - seen)}"


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_every_error_code_is_documented(code: ErrorCode) -> None:
    """Each ErrorCode value has a row in the spec's errors table."""
    assert re.search(rf"^\| `{code.value}` \|", SPEC.read_text(encoding="utf-8"), re.M)


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: str(c.value))
def test_every_close_code_is_documented(code: CloseCode) -> None:
    """Each CloseCode value has a row in the spec's close-code table."""
    assert re.search(rf"^\| `{code.value}` \|", SPEC.read_text(encoding="utf-8"), re.M)


def test_abnormal_close_is_documented() -> None:
    """1006 (never sent, only observed) is documented with the close codes."""
    assert re.search(r"^\| `1006` \|", SPEC.read_text(encoding="utf-8"), re.M)


def test_examples_are_single_objects() -> None:
    """Each json block holds exactly one JSON value (one message per block)."""
    for example in EXAMPLES:
        decoder = json.JSONDecoder()
        _, end = decoder.raw_decode(example.text.strip())
        assert end == len(example.text.strip()), f"{example}: more than one value"


def test_msgspec_agrees_the_examples_are_json() -> None:
    """Every example is strict JSON (msgspec's parser, not just Python's lenient one)."""
    for example in EXAMPLES:
        msgspec.json.decode(example.text)
