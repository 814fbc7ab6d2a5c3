"""Encoding and validating frames (sans-I/O).

Two codecs share one schema: JSON text frames (subprotocol ``livewidgets.v1.json``,
the default) and msgpack binary frames (``livewidgets.v1.msgpack``). Decoding is
typed, so validation happens in the same pass; only when a frame fails does the
codec decode it a second time, untyped, to say precisely what was wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from ..state.ops import MAX_STATE_DEPTH, OpError, check_value
from .codes import ErrorCode
from .messages import (
    MAX_PRESENCE_BYTES,
    Batch,
    Broadcast,
    ClientMessage,
    Join,
    Joined,
    OpMessage,
    PresenceMessage,
    PresenceUpdate,
    Reject,
    ServerMessage,
    Snapshot,
)

_json_size = msgspec.json.Encoder().encode

# Message type -> its free-form (Any-typed) field, other than op values.
_LOOSE_FIELDS: dict[type, str] = {
    Join: "presence",
    Joined: "presence",
    PresenceMessage: "state",
    PresenceUpdate: "states",
    Snapshot: "state",
    Reject: "current",
}

__all__ = [
    "JSON_SUBPROTOCOL",
    "MSGPACK_SUBPROTOCOL",
    "SUBPROTOCOLS",
    "Codec",
    "FrameError",
    "client_codec",
    "server_codec",
]

JSON_SUBPROTOCOL = "livewidgets.v1.json"
MSGPACK_SUBPROTOCOL = "livewidgets.v1.msgpack"
SUBPROTOCOLS = (JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL)

M = TypeVar("M")

# msgspec ends its messages with "... at `$.op.path`" (or "in `$.op.value`").
_AT = re.compile(r"`(?P<where>\$[^`]*)`$")


class FrameError(Exception):
    """A frame the peer sent is unusable; carries the protocol error code."""

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # The message type of the offending frame, when it could be read.
        self.ref = ref


class Codec(Generic[M]):
    """Encode any message; decode frames into the message union ``M`` (or raise FrameError)."""

    def __init__(self, subprotocol: str, inbound: Any, known_types: frozenset[str]) -> None:
        self.subprotocol = subprotocol
        self.binary = subprotocol == MSGPACK_SUBPROTOCOL
        self._known_types = known_types
        # Typed as taking Any: msgspec's JSON decoder takes str as well as bytes, and the
        # frame's kind is checked against the subprotocol before either is called.
        self._decode: Callable[[Any], Any]
        self._decode_any: Callable[[Any], Any]
        if self.binary:
            self._encode = msgspec.msgpack.Encoder().encode
            self._decode = msgspec.msgpack.Decoder(inbound).decode
            self._decode_any = msgspec.msgpack.Decoder().decode
        else:
            self._encode = msgspec.json.Encoder().encode
            self._decode = msgspec.json.Decoder(inbound).decode
            self._decode_any = msgspec.json.Decoder().decode

    def encode(self, message: Any) -> bytes:
        return self._encode(message)

    def frame(self, message: Any) -> bytes | str:
        """Encode for ``websockets`` ``send``: str for a text frame, bytes for binary."""
        data = self._encode(message)
        return data if self.binary else data.decode()

    def decode(self, frame: bytes | str) -> M:
        """Decode and validate one frame; raise :class:`FrameError` on any problem."""
        if isinstance(frame, str) == self.binary:
            kind = "text" if isinstance(frame, str) else "binary"
            raise FrameError(
                ErrorCode.BAD_FRAME, f"{kind} frame on a {self.subprotocol} connection"
            )
        try:
            message: M = self._decode(frame)
        except msgspec.ValidationError as exc:
            raise self._explain(frame, str(exc)) from None
        except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
            raise FrameError(ErrorCode.BAD_FRAME, f"malformed frame: {exc}") from None
        _check_values(message)
        return message

    def _explain(self, frame: bytes | str, detail: str) -> FrameError:
        try:
            raw = self._decode_any(frame)
        except (msgspec.DecodeError, UnicodeError, RecursionError, TypeError) as exc:
            # Typed decoding stops at the first bad field; untyped sees the whole frame.
            # TypeError: msgspec < 0.22 raises it for a map keyed by an ext value (later
            # versions call that a DecodeError); it is the peer's malformed frame either way.
            return FrameError(ErrorCode.BAD_FRAME, f"malformed frame: {exc}")
        kind = raw.get("type") if isinstance(raw, dict) else None
        if not isinstance(kind, str):
            return FrameError(ErrorCode.INVALID_MESSAGE, "frame must be an object with a `type`")
        if kind not in self._known_types:
            return FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}")
        match = _AT.search(detail)
        where = match["where"] if match else ""
        code = ErrorCode.INVALID_MESSAGE
        if where == "$.op" or where.startswith(("$.op.", "$.ops[")):
            code = ErrorCode.INVALID_PATH if where.endswith(".path") else ErrorCode.INVALID_OP
        return FrameError(code, f"{kind}: {detail}", kind)


def _check_values(message: Any) -> None:
    """Values the schema types as Any must still be plain JSON data (msgpack allows more).

    Both directions are checked: a compromised relay must not be able to hand a
    kernel anything but plain data either (docs/security.md).
    """
    loose = _LOOSE_FIELDS.get(type(message))
    if loose is not None:
        value = getattr(message, loose)
        try:
            check_value(value, max_depth=MAX_STATE_DEPTH)
        except OpError as exc:
            raise FrameError(ErrorCode.INVALID_MESSAGE, f"{loose}: {exc}") from None
        if isinstance(message, (PresenceMessage, Join)) and value is not None:
            # The relay fans presence out to everyone (and repeats it in every joined):
            # keep it far below the frame limit so it can never push others over it.
            size = len(_json_size(value))
            if size > MAX_PRESENCE_BYTES:
                raise FrameError(
                    ErrorCode.TOO_LARGE,
                    f"presence is {size} bytes; at most {MAX_PRESENCE_BYTES}",
                    str(message.__struct_config__.tag),
                )
        return
    if isinstance(message, OpMessage):
        ops = [message.op]
    elif isinstance(message, (Batch, Broadcast)):
        ops = list(message.ops)
    else:
        return
    for op in ops:
        try:
            check_value(getattr(op, "value", getattr(op, "by", None)))
        except OpError as exc:
            tag = str(message.__struct_config__.tag)
            raise FrameError(ErrorCode.INVALID_OP, f"{op.path}: {exc}", tag) from None


def _tags(union: Any) -> frozenset[str]:
    return frozenset(str(t.__struct_config__.tag) for t in union.__args__)


_CLIENT_TYPES = _tags(ClientMessage)
_SERVER_TYPES = _tags(ServerMessage)


def server_codec(subprotocol: str | None) -> Codec[ClientMessage]:
    """The relay's codec: decodes what clients send."""
    return Codec(subprotocol or JSON_SUBPROTOCOL, ClientMessage, _CLIENT_TYPES)


def client_codec(subprotocol: str | None) -> Codec[ServerMessage]:
    """A client's codec: decodes (and validates) what the relay sends."""
    return Codec(subprotocol or JSON_SUBPROTOCOL, ServerMessage, _SERVER_TYPES)
