"""Error codes and WebSocket close codes of the livewidgets protocol.

Every code here is documented in docs/protocol.md ("Errors" and "Close codes").
Error codes travel in `reject` and `error` messages; close codes end a connection.
"""

from __future__ import annotations

import enum

__all__ = ["CloseCode", "ErrorCode"]


class ErrorCode(str, enum.Enum):
    """Why a frame or an operation was refused (docs/protocol.md, "Errors")."""

    # The frame could not be parsed as JSON / msgpack at all.
    BAD_FRAME = "bad_frame"
    # The frame parsed, but its `type` is not a message this side accepts.
    UNKNOWN_TYPE = "unknown_type"
    # A field is missing, has the wrong type, or is out of range.
    INVALID_MESSAGE = "invalid_message"
    # A path is empty, has empty segments, or is too long / too deep.
    INVALID_PATH = "invalid_path"
    # An operation is malformed (unknown op, bad value, bad text delta, too deep value).
    INVALID_OP = "invalid_op"
    # The operation does not fit the current value (e.g. increment on a string).
    TYPE_MISMATCH = "type_mismatch"
    # An `if_version` precondition failed: the path changed after that version.
    CONFLICT = "conflict"
    # An op, leave or presence for a room this connection has not joined.
    NOT_JOINED = "not_joined"
    # A message arrived before `hello`, or `hello` twice.
    HELLO_REQUIRED = "hello_required"
    # The client speaks a protocol version this relay does not.
    PROTOCOL_VERSION = "protocol_version"
    # A frame or value is larger than the relay's limits.
    TOO_LARGE = "too_large"
    # A limit (rooms per connection, connections per room) was reached.
    LIMIT_EXCEEDED = "limit_exceeded"
    # Too many messages too fast (token bucket empty).
    RATE_LIMITED = "rate_limited"
    # Authentication / authorization (see docs/security.md).
    AUTH_REQUIRED = "auth_required"
    AUTH_INVALID = "auth_invalid"
    AUTH_EXPIRED = "auth_expired"
    # The token, or the link it belongs to, was revoked by an admin.
    AUTH_REVOKED = "auth_revoked"
    FORBIDDEN = "forbidden"
    # A ``history`` query asked for a version the room no longer keeps (or never had).
    OUT_OF_HISTORY = "out_of_history"
    # The relay failed internally (e.g. its store); the op was not applied.
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes used by the relay (docs/protocol.md, "Close codes")."""

    NORMAL = 1000
    GOING_AWAY = 1001  # relay shutting down; clients reconnect
    PROTOCOL_ERROR = 1002
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  # frame larger than max_frame_size (sent by websockets)
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # the relay's rules changed: reconnect for a fresh view
    # 4000-4999: application codes.
    HELLO_REQUIRED = 4000  # first frame was not a valid hello
    PROTOCOL_VERSION = 4001  # unsupported protocol version
    AUTH_INVALID = 4003  # missing / bad token, or role does not allow it
    AUTH_EXPIRED = 4004  # token expired mid-session: refresh it, then reconnect
    ORIGIN_FORBIDDEN = 4005
    REVOKED = 4006  # the token or its link was revoked: final, like 4003
    RATE_LIMITED = 4008  # sustained flooding after rate_limited errors
    SLOW_CONSUMER = 4009  # send buffer overflowed: reconnect and resume by delta
    REPLACED = 4010  # same client_id connected again elsewhere
    KICKED = 4011  # removed by an admin
    TOO_MANY_ERRORS = 4012  # too many invalid frames within 10 s


# Closes after which a client should not reconnect on its own.
FINAL_CLOSE_CODES = frozenset(
    {
        CloseCode.NORMAL,
        CloseCode.PROTOCOL_VERSION,
        CloseCode.AUTH_INVALID,
        CloseCode.AUTH_EXPIRED,
        CloseCode.ORIGIN_FORBIDDEN,
        CloseCode.REVOKED,
        CloseCode.REPLACED,
        CloseCode.KICKED,
    }
)
__all__ += ["FINAL_CLOSE_CODES"]
