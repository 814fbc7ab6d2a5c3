"""Bad input: every refused frame gets its documented code and changes nothing."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from livewidgets.protocol import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    PROTOCOL_VERSION,
    AckMessage,
    Error,
    Hello,
    IncrementOp,
    Join,
    Leave,
    PresenceMessage,
    Reject,
    SetOp,
    Welcome,
)
from livewidgets.relay import Relay

from ..conftest import RelayFactory
from .helpers import MS, RawClient, snapshot_in

OP = '"type":"op","room":"r","client_seq":1,"base_version":0'

# (frame, error code, ref) for a JSON connection that joined "r".
JSON_CASES: list[tuple[str | bytes, str, str | None]] = [
    ("{not json", "bad_frame", None),
    ("[1, 2]", "invalid_message", None),
    ('{"type": "frobnicate"}', "unknown_type", None),
    ('{"type": "op", "room": "r"}', "invalid_message", "op"),
    (
        '{"type":"op","room":"r","client_seq":"1","base_version":0,"op":{"op":"set","path":"a"}}',
        "invalid_message",
        "op",
    ),
    ('{"type":"join","room":"bad room!"}', "invalid_message", "join"),
    ('{"type":"leave","room":"r","extra":1}', "invalid_message", "leave"),
    ("{" + OP + ',"op":{"op":"set","path":"a//b","value":1}}', "invalid_path", "op"),
    ("{" + OP + ',"op":{"op":"set","path":"","value":1}}', "invalid_path", "op"),
    ("{" + OP + ',"op":{"op":"explode","path":"a"}}', "invalid_op", "op"),
    ("{" + OP + ',"op":{"op":"increment","path":"a","by":"x"}}', "invalid_op", "op"),
    (
        "{" + OP + ',"op":{"op":"set","path":"a","value":' + "[" * 80 + "]" * 80 + "}}",
        "invalid_op",
        "op",
    ),
    (b'{"type":"hello","protocol":1}', "bad_frame", None),  # binary frame on JSON
]


async def joined_client(relay: Relay, **options: Any) -> RawClient:
    client = await RawClient.connect(relay.url, **options)
    await client.join("r")
    return client


async def assert_still_works(client: RawClient, relay: Relay, seq: int = 1) -> None:
    """The connection still serves ops, and the refused frames left the room untouched."""
    await client.op("r", seq, IncrementOp("ok"))
    ack = await client.ack()
    assert ack == AckMessage("r", seq, 1)
    async with await RawClient.connect(relay.url) as fresh:
        before, _ = await fresh.join("r")
        assert snapshot_in(before).state == {"ok": 1}


@pytest.mark.parametrize(("frame", "code", "ref"), JSON_CASES)
async def test_invalid_json_frames(
    relay: Relay, frame: str | bytes, code: str, ref: str | None
) -> None:
    """Each malformed frame is answered with its error code; the connection keeps working."""
    client = await joined_client(relay)
    await client.ws.send(frame)
    error = await client.expect(Error)
    assert (error.code, error.ref) == (code, ref)
    assert "Traceback" not in error.message
    await assert_still_works(client, relay)
    assert relay.metrics.value("livewidgets_errors_total", code=code) == 1
    await client.close()


@pytest.mark.parametrize(
    ("frame", "code", "ref"),
    [
        (b"\xc1", "bad_frame", None),
        (b"\x93\x01\x02\x03", "invalid_message", None),
        (msgspec.msgpack.encode({"type": "nope"}), "unknown_type", None),
        (
            msgspec.msgpack.encode(
                {
                    "type": "op",
                    "room": "r",
                    "client_seq": 1,
                    "base_version": 0,
                    "op": {"op": "set", "path": "a", "value": float("nan")},
                }
            ),
            "invalid_op",
            "op",
        ),
        ('{"type": "leave", "room": "r"}', "bad_frame", None),  # text frame on msgpack
    ],
)
async def test_invalid_msgpack_frames(
    relay: Relay, frame: str | bytes, code: str, ref: str | None
) -> None:
    """Msgpack garbage and text frames on a msgpack connection are refused precisely."""
    client = await joined_client(relay, subprotocol=MSGPACK_SUBPROTOCOL)
    await client.ws.send(frame)
    error = await client.expect(Error)
    assert (error.code, error.ref) == (code, ref)
    await assert_still_works(client, relay)
    await client.close()


async def test_op_that_does_not_apply_is_rejected(relay: Relay) -> None:
    """An op that does not fit the state is rejected (type_mismatch) and not applied."""
    client = await joined_client(relay)
    await client.op("r", 1, SetOp("s", value="text"))
    await client.ack()
    await client.op("r", 2, IncrementOp("s"))
    reject = await client.expect(Reject)
    assert (reject.client_seq, reject.code, reject.path) == (2, "type_mismatch", "s")
    await client.op("r", 3, SetOp("base", value=1), base=99)
    assert (await client.expect(Reject)).code == "invalid_message"  # base_version ahead
    async with await RawClient.connect(relay.url) as fresh:
        before, joined = await fresh.join("r")
        assert joined.version == 1 and snapshot_in(before).state == {"s": "text"}
    assert relay.metrics.value("livewidgets_rejects_total", code="type_mismatch") == 1
    await client.close()


@pytest.mark.parametrize("kind", ["op", "presence", "leave"])
async def test_messages_for_a_room_not_joined(relay: Relay, kind: str) -> None:
    """op, presence and leave for a room not joined get not_joined, naming the room."""
    client = await joined_client(relay)
    frames = {
        "op": lambda: client.op("elsewhere", 1, SetOp("k", value=1)),
        "presence": lambda: client.send(PresenceMessage("elsewhere", {"x": 1})),
        "leave": lambda: client.send(Leave("elsewhere")),
    }
    await frames[kind]()
    error = await client.expect(Error)
    assert (error.code, error.ref, error.room) == ("not_joined", kind, "elsewhere")
    await assert_still_works(client, relay)
    await client.close()


async def test_oversize_frame_closes_1009(relay_factory: RelayFactory) -> None:
    """A frame over max_frame_size closes the connection with 1009; a new one works."""
    relay = await relay_factory(max_frame_size=4096)
    client = await joined_client(relay)
    await client.op("r", 1, SetOp("big", value="x" * 5000))
    assert await client.closed() == 1009
    again = await joined_client(relay)
    await assert_still_works(again, relay)
    await again.close()


async def test_many_invalid_frames_close_4012(relay_factory: RelayFactory) -> None:
    """max_invalid_frames bad frames within the window close with 4012, valid ones between
    or not (a client alternating them cannot keep the relay busy forever)."""
    relay = await relay_factory(max_invalid_frames=3)
    client = await joined_client(relay)
    for frame in ["x", '{"type":"presence","room":"r","state":{}}', "x"]:
        await client.ws.send(frame)
    assert [(await client.expect(Error)).code for _ in range(2)] == ["bad_frame"] * 2
    await client.ws.send("x")
    assert (await client.expect(Error)).code == "bad_frame"
    assert await client.closed() == 4012


async def test_first_frame_must_be_hello(relay: Relay) -> None:
    """Anything but hello first (valid or not) gets hello_required and close 4000."""
    for first in [Join("r"), "{garbage"]:
        client = await RawClient.connect(relay.url, hello=False)
        await (client.ws.send(first) if isinstance(first, str) else client.send(first))
        error = await client.expect(Error)
        assert error.code == "hello_required"
        assert await client.closed() == 4000


async def test_hello_timeout_closes_4000(relay_factory: RelayFactory) -> None:
    """A connection that sends nothing is told hello_required and closed with 4000."""
    relay = await relay_factory(hello_timeout=100 * MS)
    client = await RawClient.connect(relay.url, hello=False)
    assert (await client.expect(Error)).code == "hello_required"
    assert await client.closed() == 4000


async def test_wrong_protocol_version_closes_4001(relay: Relay) -> None:
    """hello with an unsupported protocol gets protocol_version and close 4001."""
    client = await RawClient.connect(relay.url, hello=False)
    await client.send(Hello(PROTOCOL_VERSION + 1))
    error = await client.expect(Error)
    assert (error.code, error.ref) == ("protocol_version", "hello")
    assert await client.closed() == 4001


async def test_second_hello_and_second_join_are_refused(relay: Relay) -> None:
    """A second hello (hello_required) or join of a joined room (invalid_message) keeps it open."""
    client = await joined_client(relay)
    await client.send(Hello(PROTOCOL_VERSION))
    assert (await client.expect(Error)).code == "hello_required"
    await client.send(Join("r"))
    error = await client.expect(Error)
    assert (error.code, error.ref, error.room) == ("invalid_message", "join", "r")
    await assert_still_works(client, relay)
    await client.close()


async def test_unexpected_exception_answers_internal(
    relay: Relay, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug while handling a frame is logged with its cause and answered with internal."""

    def broken(*args: Any) -> None:
        raise RuntimeError("policy exploded")

    client = await joined_client(relay)
    monkeypatch.setattr(relay.policy, "on_presence", broken)
    await client.send(PresenceMessage("r", {"x": 1}))
    error = await client.expect(Error)
    assert (error.code, error.ref) == ("internal", "presence")
    assert "policy exploded" not in error.message and "policy exploded" in caplog.text
    await assert_still_works(client, relay)
    await client.close()


async def test_plain_websocket_without_subprotocol_speaks_json(relay: Relay) -> None:
    """A client offering no subprotocol gets the JSON encoding."""
    async with connect(relay.url) as ws:
        await ws.send(msgspec.json.encode(Hello(PROTOCOL_VERSION)).decode())
        welcome = msgspec.json.decode(await ws.recv(), type=Welcome)
        assert welcome.protocol == PROTOCOL_VERSION and ws.subprotocol is None


async def test_subprotocol_negotiation(relay: Relay) -> None:
    """The client's first supported encoding wins; an unsupported one only is refused (400)."""
    offer = [
        Subprotocol("x.unknown"),
        Subprotocol(MSGPACK_SUBPROTOCOL),
        Subprotocol(JSON_SUBPROTOCOL),
    ]
    async with connect(relay.url, subprotocols=offer) as ws:
        assert ws.subprotocol == MSGPACK_SUBPROTOCOL
    with pytest.raises(InvalidStatus) as refused:
        await connect(relay.url, subprotocols=[Subprotocol("x.unknown")])
    assert refused.value.response.status_code == 400
