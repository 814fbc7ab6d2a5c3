"""WebSocket data frames built once and written to many sockets.

A relay → client frame is not masked (RFC 6455 §5.1) and the relay negotiates no
extension, so a message's wire bytes are the same for every receiver. Fan-out
builds them once per message and codec (:func:`data_frame`) and a connection
whose socket keeps up writes them as they are, a whole round's frames in one
``transport.write`` (livewidgets.wsio.write_frames, from relay.connection).
``websockets`` would build and serialize a ``Frame`` per receiver; the bytes are
identical (tests/relay/test_framing.py).
"""

from __future__ import annotations

import struct

__all__ = ["data_frame"]

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82


def data_frame(payload: bytes, *, binary: bool) -> bytes:
    """One unfragmented, unmasked text or binary frame carrying ``payload``."""
    first = _FIN_BINARY if binary else _FIN_TEXT
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload
