"""Tests for livewidgets.protocol.codec: round trips and precise errors, JSON and msgpack."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from livewidgets.protocol import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    SUBPROTOCOLS,
    AckMessage,
    Admin,
    Auth,
    Authed,
    Batch,
    Broadcast,
    ClientMessage,
    Error,
    ErrorCode,
    FrameError,
    Hello,
    History,
    HistoryEntry,
    HistoryReply,
    Join,
    Joined,
    Leave,
    OpMessage,
    PresenceMessage,
    PresenceUpdate,
    Reject,
    Revoked,
    ServerMessage,
    Snapshot,
    Welcome,
    client_codec,
    server_codec,
)
from livewidgets.state.ops import (
    MAX_VALUE_DEPTH,
    DeleteOp,
    IncrementOp,
    MergeOp,
    PushOp,
    RemoveOp,
    SetOp,
    TextOp,
)
from livewidgets.state.paths import MAX_PATH_LENGTH

# No example database: keeps the shared work tree free of .hypothesis/ churn.
FAST = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

ALL_OPS = [
    SetOp(path="a/b", value={"x": [1, 2.5, None, True, "s"]}),
    SetOp(path="a", value=3, if_version=7),
    MergeOp(path="m", value={"k": 1, "l": {"deep": []}}),
    PushOp(path="list", value={"id": "i1", "text": "hi"}),
    RemoveOp(path="list", id="i1"),
    RemoveOp(path="list", id=42),
    IncrementOp(path="n", by=2),
    IncrementOp(path="n", by=-0.5),
    DeleteOp(path="gone"),
    TextOp(path="doc", delta=[3, "😀 é", -2, 1]),
]

CLIENT_MESSAGES: list[Any] = [
    Hello(protocol=1),
    Hello(protocol=1, client_id="c-1", user="ada", token="t.k.n"),
    Join(room="r"),
    Join(room="lab/r-1", since=12, presence={"name": "ada"}, epoch="Zm9yaw-1"),
    Leave(room="r"),
    *[OpMessage(room="r", client_seq=i + 1, base_version=i, op=op) for i, op in enumerate(ALL_OPS)],
    Batch(room="r", client_seq=99, base_version=5, ops=ALL_OPS),
    PresenceMessage(room="r", state={"cursor": {"anchor": 1, "head": 4}}),
    Admin(room="r", action="reset"),
    Admin(room="r", action="kick", client_id="c-2"),
    Admin(room="r", action="revoke", link="Zm9yaw_-1"),
    Admin(room="r", action="revoke", token_id="aGVsbG8tdG9rZW4"),
    Auth(token="t.k.n2"),
    History(room="r", id=1),
    History(room="r", id=2, path="poll/q1", user="ada", limit=20, before=90),
    History(room="r", id=3, at=42),
]

SERVER_MESSAGES: list[Any] = [
    Welcome(protocol=1, client_id="c-1", connection_id="x1", server="livewidgets/0"),
    Welcome(protocol=1, client_id="c-1", connection_id="x1", server="s", limits={"a": 1}),
    Snapshot(room="r", version=0, state={}),
    Snapshot(room="r", version=9, state={"a": {"b": [1, "two", 3.0]}}, last_seq=4),
    Broadcast(room="r", version=4, origin="c-2", client_seq=3, ops=ALL_OPS),
    Joined(room="r", version=4, mode="delta", epoch="Zm9yaw-1"),
    Joined(room="r", version=4, mode="snapshot", presence={"c-2": {"user": "grace"}}),
    AckMessage(room="r", client_seq=3, version=4),
    AckMessage(room="r", client_seq=3, version=4, duplicate=True),
    Reject(room="r", client_seq=3, code="type_mismatch", message="no", path="a"),
    Reject(
        room="r",
        client_seq=3,
        code="conflict",
        message="changed",
        path="a",
        current={"v": 1},
        current_version=8,
    ),
    PresenceUpdate(room="r", states={"c-2": {"user": "grace"}}),
    PresenceUpdate(room="r", states={"c-2": None, "c-3": {"user": "ada"}}),
    Error(code="bad_frame", message="nope"),
    HistoryReply(
        room="r",
        id=2,
        entries=[
            HistoryEntry(version=7, client_id="c-1", ops=ALL_OPS[:2], user="ada", time=1.5),
            HistoryEntry(version=9, client_id="@relay", ops=[DeleteOp(path="a")]),
        ],
        more=True,
        since=3,
        head=12,
    ),
    HistoryReply(room="r", id=3, since=3, head=12, at=5, state={"a": 1}),
    HistoryReply(room="r", id=4, error="out_of_history", message="gone"),
    Error(code="not_joined", message="join first", ref="presence", room="r"),
    Revoked(room="r", link="Zm9yaw_-1", closed=3),
    Revoked(room="r", token_id="aGVsbG8tdG9rZW4"),
    Authed(),
    Authed(expires_in=299.25),
]


def _tag(message: Any) -> str:
    return str(message.__struct_config__.tag)


def _tags(union: Any) -> set[str]:
    return {str(t.__struct_config__.tag) for t in union.__args__}


def _op_frame(op: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "op", "room": "r", "client_seq": 1, "base_version": 0, "op": op, **fields}


def _fails(codec: Any, frame: bytes | str) -> FrameError:
    with pytest.raises(FrameError) as info:
        codec.decode(frame)
    return info.value


def _json(obj: Any) -> str:
    return json.dumps(obj)


def _msgpack(obj: Any) -> bytes:
    return msgspec.msgpack.encode(obj)


JSON_SERVER = server_codec(JSON_SUBPROTOCOL)
MSGPACK_SERVER = server_codec(MSGPACK_SUBPROTOCOL)
JSON_CLIENT = client_codec(JSON_SUBPROTOCOL)
MSGPACK_CLIENT = client_codec(MSGPACK_SUBPROTOCOL)


# --- round trips ---------------------------------------------------------------------------------


def test_samples_cover_every_message_type() -> None:
    """The round-trip samples include every client and relay message type."""
    assert {_tag(m) for m in CLIENT_MESSAGES} == _tags(ClientMessage)
    assert {_tag(m) for m in SERVER_MESSAGES} == _tags(ServerMessage)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=repr)
def test_client_messages_round_trip(subprotocol: str, message: Any) -> None:
    """Every client message survives encode → relay decode, in both encodings."""
    assert server_codec(subprotocol).decode(client_codec(subprotocol).frame(message)) == message


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=repr)
def test_server_messages_round_trip(subprotocol: str, message: Any) -> None:
    """Every relay message survives encode → client decode, in both encodings."""
    assert client_codec(subprotocol).decode(server_codec(subprotocol).frame(message)) == message


def test_frame_kind_follows_the_subprotocol() -> None:
    """JSON frames are str (text frames), msgpack frames are bytes (binary frames)."""
    assert isinstance(JSON_SERVER.frame(Leave(room="r")), str)
    assert isinstance(MSGPACK_SERVER.frame(Leave(room="r")), bytes)
    assert not JSON_SERVER.binary and MSGPACK_SERVER.binary


def test_no_subprotocol_means_json() -> None:
    """A connection without a negotiated subprotocol speaks JSON."""
    assert server_codec(None).subprotocol == JSON_SUBPROTOCOL
    assert client_codec(None).subprotocol == JSON_SUBPROTOCOL


def test_defaults_are_left_out_on_the_wire() -> None:
    """Fields equal to their default are omitted (canonical, compact frames)."""
    assert json.loads(JSON_CLIENT.encode(AckMessage(room="r", client_seq=1, version=2))) == {
        "type": "ack",
        "room": "r",
        "client_seq": 1,
        "version": 2,
    }


# --- errors: frame level -------------------------------------------------------------------------


@pytest.mark.parametrize("frame", ["{", "", "nul", '{"type": "hello",}', '{"type": "leave"'])
def test_malformed_json_is_bad_frame(frame: str) -> None:
    """Text that is not JSON is refused with bad_frame."""
    assert _fails(JSON_SERVER, frame).code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("frame", [b"\xc1", b"", b"\x81\xa4type"])
def test_malformed_msgpack_is_bad_frame(frame: bytes) -> None:
    """Bytes that are not msgpack are refused with bad_frame."""
    assert _fails(MSGPACK_SERVER, frame).code is ErrorCode.BAD_FRAME


def test_text_frame_on_msgpack_codec_is_bad_frame() -> None:
    """A text frame on a msgpack connection is refused with bad_frame."""
    error = _fails(MSGPACK_SERVER, _json({"type": "leave", "room": "r"}))
    assert error.code is ErrorCode.BAD_FRAME
    assert "text frame" in error.message


def test_binary_frame_on_json_codec_is_bad_frame() -> None:
    """A binary frame on a JSON connection is refused with bad_frame, even if it is JSON."""
    error = _fails(JSON_SERVER, _json({"type": "leave", "room": "r"}).encode())
    assert error.code is ErrorCode.BAD_FRAME
    assert "binary frame" in error.message


@pytest.mark.parametrize("frame", ["[]", "1", '"hello"', "{}", '{"type": 1}', "null"])
def test_frame_without_a_type_is_invalid_message(frame: str) -> None:
    """A frame that is not an object with a string `type` is invalid_message."""
    assert _fails(JSON_SERVER, frame).code is ErrorCode.INVALID_MESSAGE


def test_unknown_type() -> None:
    """An unknown `type` is unknown_type, without a ref."""
    error = _fails(JSON_SERVER, _json({"type": "frobnicate", "room": "r"}))
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.ref is None


def test_relay_messages_are_unknown_to_the_relay() -> None:
    """A relay→client type sent to the relay is unknown_type (and vice versa)."""
    welcome = JSON_CLIENT.encode(SERVER_MESSAGES[0]).decode()
    assert _fails(JSON_SERVER, welcome).code is ErrorCode.UNKNOWN_TYPE
    assert _fails(JSON_CLIENT, _json({"type": "join", "room": "r"})).code is ErrorCode.UNKNOWN_TYPE


# --- errors: fields ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "hello", "protocol": "1"},
        {"type": "hello"},
        {"type": "hello", "protocol": 1, "extra": True},
        {"type": "hello", "protocol": 1, "client_id": "has space"},
        {"type": "hello", "protocol": 1, "user": "u" * 257},
        {"type": "join", "room": ""},
        {"type": "join", "room": "r", "since": -1},
        {"type": "join", "room": "bad room"},
        {"type": "join", "room": "r" * 129},
        {"type": "presence", "room": "r", "state": [1]},
        _op_frame({"op": "delete", "path": "a"}, client_seq=0),
        _op_frame({"op": "delete", "path": "a"}, base_version="3"),
        {"type": "op", "room": "r", "client_seq": 1, "base_version": 0},
    ],
    ids=repr,
)
def test_wrong_fields_are_invalid_message(frame: dict[str, Any]) -> None:
    """Missing, unknown, mistyped or out-of-range fields are invalid_message with a ref."""
    error = _fails(JSON_SERVER, _json(frame))
    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.ref == frame["type"]


@pytest.mark.parametrize(
    "frame",
    [
        {
            "type": "broadcast",
            "room": "r",
            "version": 2**63,
            "origin": "o",
            "client_seq": 1,
            "ops": [],
        },
        {"type": "broadcast", "room": "r", "version": 1, "origin": "o", "client_seq": 0, "ops": []},
        {"type": "ack", "room": "r", "client_seq": 1, "version": -1},
        {"type": "snapshot", "room": "r", "version": 2**64 - 1, "state": {}},
        {"type": "joined", "room": "r", "version": 2**63, "mode": "delta"},
        {"type": "reject", "room": "r", "client_seq": 2**63, "code": "c", "message": "m"},
    ],
    ids=repr,
)
def test_relay_counters_out_of_int64_are_refused(frame: dict[str, Any]) -> None:
    """A relay's versions and seqs fit int64 like the client's own: a hostile relay
    cannot take a client past the last version it could ever send back."""
    for codec, encoded in (
        (JSON_CLIENT, _json(frame)),
        (MSGPACK_CLIENT, msgspec.msgpack.encode(frame)),
    ):
        assert _fails(codec, encoded).code is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize(
    "path", ["", "a//b", "/a", "a/", "a/\x01", "\n", "x" * (MAX_PATH_LENGTH + 1)], ids=repr
)
def test_invalid_path_in_op(path: str) -> None:
    """A bad op path is invalid_path (in an op and in a batch)."""
    op = {"op": "set", "path": path, "value": 1}
    assert _fails(JSON_SERVER, _json(_op_frame(op))).code is ErrorCode.INVALID_PATH
    batch = {"type": "batch", "room": "r", "client_seq": 1, "base_version": 0}
    frame = {**batch, "ops": [{"op": "delete", "path": "ok"}, op]}
    assert _fails(JSON_SERVER, _json(frame)).code is ErrorCode.INVALID_PATH


def test_longest_path_is_accepted() -> None:
    """A path of exactly MAX_PATH_LENGTH characters decodes."""
    path = "a" * MAX_PATH_LENGTH
    message = JSON_SERVER.decode(_json(_op_frame({"op": "delete", "path": path})))
    assert message.op == DeleteOp(path=path)


@pytest.mark.parametrize(
    "op",
    [
        {"op": "frobnicate", "path": "a"},
        {"path": "a", "value": 1},
        {"op": "increment", "path": "a", "by": "1"},
        {"op": "increment", "path": "a", "by": True},
        {"op": "merge", "path": "a", "value": [1]},
        {"op": "remove", "path": "a", "id": 1.5},
        {"op": "text", "path": "a", "delta": [1.5]},
        {"op": "text", "path": "a", "delta": "abc"},
        {"op": "set", "path": "a", "value": 1, "if_version": -1},
        {"op": "delete", "path": "a", "value": 1},
    ],
    ids=repr,
)
def test_invalid_op(op: dict[str, Any]) -> None:
    """A malformed op is invalid_op, with the message type as ref."""
    error = _fails(JSON_SERVER, _json(_op_frame(op)))
    assert error.code is ErrorCode.INVALID_OP
    assert error.ref == "op"


def test_too_deep_value_in_json_is_invalid_op() -> None:
    """A value nested deeper than MAX_VALUE_DEPTH is invalid_op; exactly the limit is fine."""
    ok: Any = 1
    for _ in range(MAX_VALUE_DEPTH):
        ok = [ok]
    assert JSON_SERVER.decode(_json(_op_frame({"op": "set", "path": "a", "value": ok})))
    frame = _json(_op_frame({"op": "push", "path": "a", "value": [ok]}))
    assert _fails(JSON_SERVER, frame).code is ErrorCode.INVALID_OP


def test_batch_values_are_checked() -> None:
    """Every op of a batch has its value checked, not only the first."""
    deep: Any = 0
    for _ in range(MAX_VALUE_DEPTH + 1):
        deep = {"k": deep}
    ops = [{"op": "delete", "path": "a"}, {"op": "set", "path": "b", "value": deep}]
    frame = {"type": "batch", "room": "r", "client_seq": 1, "base_version": 0, "ops": ops}
    error = _fails(MSGPACK_SERVER, _msgpack(frame))
    assert (error.code, error.ref) == (ErrorCode.INVALID_OP, "batch")


# --- msgpack-only values -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=repr)
def test_non_finite_floats_in_msgpack_are_invalid_op(bad: float) -> None:
    """NaN and infinities (which msgpack can carry) are invalid_op, also when nested."""
    for value in (bad, [1, bad], {"a": {"b": bad}}):
        frame = _msgpack(_op_frame({"op": "set", "path": "a", "value": value}))
        assert _fails(MSGPACK_SERVER, frame).code is ErrorCode.INVALID_OP
    frame = _msgpack(_op_frame({"op": "push", "path": "a", "value": {"x": bad}}))
    assert _fails(MSGPACK_SERVER, frame).code is ErrorCode.INVALID_OP


@pytest.mark.parametrize("value", [{1: "x"}, {"a": {2: 3}}, [{None: 1}], {b"k": 1}], ids=repr)
def test_non_str_keys_in_msgpack_are_invalid_op(value: Any) -> None:
    """Mappings with non-string keys (which msgpack can carry) are invalid_op."""
    frame = _msgpack(_op_frame({"op": "set", "path": "a", "value": value}))
    assert _fails(MSGPACK_SERVER, frame).code is ErrorCode.INVALID_OP


def test_bytes_value_in_msgpack_is_invalid_op() -> None:
    """msgpack bin values are not JSON data: invalid_op."""
    frame = _msgpack(_op_frame({"op": "set", "path": "a", "value": b"raw"}))
    assert _fails(MSGPACK_SERVER, frame).code is ErrorCode.INVALID_OP


def test_too_deep_value_in_msgpack_is_invalid_op() -> None:
    """Deep nesting in msgpack is invalid_op, not a crash, even far past the limit."""
    for depth in (MAX_VALUE_DEPTH + 1, 500):
        value: Any = "leaf"
        for _ in range(depth):
            value = [value]
        frame = _msgpack(_op_frame({"op": "set", "path": "a", "value": value}))
        assert _fails(MSGPACK_SERVER, frame).code is ErrorCode.INVALID_OP


def test_very_deep_frame_is_refused_not_crashed() -> None:
    """Nesting far deeper than the decoders' recursion limit gives a FrameError."""
    deep = "[" * 100_000 + "]" * 100_000
    head = '{"type": "op", "room": "r", "client_seq": 1, "base_version": 0, '
    frame = head + '"op": {"op": "set", "path": "a", "value": ' + deep + "}}"
    assert _fails(JSON_SERVER, frame).code in {ErrorCode.BAD_FRAME, ErrorCode.INVALID_OP}
    packed = b"\x91" * 100_000 + b"\xc0"  # 100 000 nested one-item arrays around nil
    assert _fails(MSGPACK_SERVER, packed).code in {ErrorCode.BAD_FRAME, ErrorCode.INVALID_MESSAGE}


# --- fuzz: only FrameError ever escapes ----------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["hello", "join", "op", "batch", "set", "text", "a/b", "", "//"])
)
_KEYS = st.sampled_from(
    [
        "type",
        "op",
        "ops",
        "path",
        "value",
        "room",
        "client_seq",
        "base_version",
        "delta",
        "by",
        "id",
        "state",
        "since",
        "protocol",
        "if_version",
        "presence",
    ]
) | st.text(max_size=4)


def _json_ish(keys: Any) -> Any:
    return st.recursive(
        _SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=20,
    )


_TYPED = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(_tags(ClientMessage) | _tags(ServerMessage)))},
    optional={
        "room": st.text(max_size=5) | st.integers(min_value=-(2**63), max_value=2**64 - 1),
        "client_seq": st.integers(min_value=-2, max_value=3),
        "base_version": st.integers(min_value=-2, max_value=3),
        "protocol": st.integers(min_value=0, max_value=2),
        "op": st.fixed_dictionaries(
            {
                "op": st.sampled_from(
                    ["set", "merge", "push", "remove", "increment", "delete", "text", "nope"]
                ),
                "path": st.text(max_size=6),
            },
            optional={
                "value": _json_ish(_KEYS),
                "by": _SCALARS,
                "delta": _json_ish(_KEYS),
                "id": _SCALARS,
                "if_version": _SCALARS,
            },
        ),
        "state": _json_ish(_KEYS),
    },
)


def _only_frame_errors(codec: Any, frame: bytes | str) -> None:
    try:
        codec.decode(frame)
    except FrameError as exc:
        assert isinstance(exc.code, ErrorCode)


@FAST
@given(st.binary(max_size=64))
# A map keyed by an ext value: msgspec < 0.22 raised TypeError for it (found by --lowest).
@example(b"\x82\x00\x00\xd4\x00\x00\x00")
def test_arbitrary_bytes_raise_only_frame_error(frame: bytes) -> None:
    """Any bytes fed to any codec decode or raise FrameError, nothing else."""
    for codec in (MSGPACK_SERVER, MSGPACK_CLIENT, JSON_SERVER):
        _only_frame_errors(codec, frame)


@FAST
@given(st.text(max_size=64))
def test_arbitrary_text_raises_only_frame_error(frame: str) -> None:
    """Any text fed to any codec decodes or raises FrameError, nothing else."""
    for codec in (JSON_SERVER, JSON_CLIENT, MSGPACK_SERVER):
        _only_frame_errors(codec, frame)


@FAST
@given(_json_ish(_KEYS) | _TYPED)
def test_arbitrary_objects_raise_only_frame_error(obj: Any) -> None:
    """Arbitrary JSON-ish objects (NaN, odd keys, near-messages) raise only FrameError."""
    _only_frame_errors(MSGPACK_SERVER, _msgpack(obj))
    _only_frame_errors(MSGPACK_CLIENT, _msgpack(obj))
    try:
        text = json.dumps(obj)  # NaN/Infinity become non-JSON tokens: still must not crash
    except (TypeError, ValueError):
        return
    _only_frame_errors(JSON_SERVER, text)
    _only_frame_errors(JSON_CLIENT, text)


@FAST
@given(_TYPED)
def test_decoded_messages_reencode_identically(obj: Any) -> None:
    """Whatever the JSON codec accepts, it re-encodes into a frame that decodes equal."""
    try:
        text = json.dumps(obj, allow_nan=False)
    except ValueError:
        return
    for codec in (JSON_SERVER, JSON_CLIENT):
        try:
            message = codec.decode(text)
        except FrameError:
            continue
        assert codec.decode(codec.frame(message)) == message
