"""Prebuilt frames are byte for byte what websockets would send."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from livewidgets.relay.framing import data_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("binary", [False, True])
def test_data_frame_matches_websockets(size: int, binary: bool) -> None:
    """Every length encoding (7-bit, 16-bit, 64-bit) and both opcodes."""
    payload = b"x" * size
    expected = Frame(Opcode.BINARY if binary else Opcode.TEXT, payload).serialize(mask=False)
    assert data_frame(payload, binary=binary) == expected
