"""The livewidgets wire protocol (sans-I/O): messages, codecs, error and close codes."""

from .codec import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    SUBPROTOCOLS,
    Codec,
    FrameError,
    client_codec,
    server_codec,
)
from .codes import FINAL_CLOSE_CODES, CloseCode, ErrorCode
from .messages import *  # noqa: F403
from .messages import __all__ as _message_names

__all__ = [
    "FINAL_CLOSE_CODES",
    "JSON_SUBPROTOCOL",
    "MSGPACK_SUBPROTOCOL",
    "SUBPROTOCOLS",
    "CloseCode",
    "Codec",
    "ErrorCode",
    "FrameError",
    "client_codec",
    "server_codec",
    *_message_names,
]
