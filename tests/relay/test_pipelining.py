"""A client may send its join, and more, right after its hello without waiting for the
welcome (docs/protocol.md "Connection lifecycle"): the relay handles a connection's
frames in order, and drops them with the connection when the hello is refused."""

from __future__ import annotations

import secrets

from livewidgets.auth import issue_token
from livewidgets.protocol import (
    PROTOCOL_VERSION,
    AckMessage,
    Broadcast,
    Error,
    Hello,
    IncrementOp,
    Join,
    OpMessage,
    PresenceUpdate,
    Welcome,
)
from livewidgets.protocol.messages import Joined
from livewidgets.relay import Relay
from livewidgets.relay.security import SecurityPolicy

from ..conftest import RelayFactory
from .helpers import RawClient


async def test_a_join_and_an_op_sent_with_the_hello_are_handled_in_order(relay: Relay) -> None:
    """hello, join and op in one burst: welcome, the catch-up, joined, then the ack;
    the others hear of the join before the op."""
    peer = await RawClient.connect(relay.url, user="peer")
    await peer.join("r", presence={})
    eager = await RawClient.connect(relay.url, hello=False)
    for message in (
        Hello(PROTOCOL_VERSION, user="eager"),
        Join("r", presence={"cursor": 1}),
        OpMessage("r", 1, 0, IncrementOp("n")),
    ):
        await eager.send(message)
    eager.welcome = await eager.expect(Welcome)
    _, joined = await eager.recv_until(Joined)
    assert joined.presence == {peer.client_id: {"user": "peer"}}
    assert await eager.expect(AckMessage) == AckMessage("r", 1, 1)
    update = await peer.expect(PresenceUpdate)
    assert update.states == {eager.client_id: {"cursor": 1, "user": "eager"}}
    broadcast = await peer.expect(Broadcast)
    assert (broadcast.version, broadcast.origin) == (1, eager.client_id)


async def test_a_join_sent_with_a_refused_hello_goes_with_the_connection(
    relay_factory: RelayFactory,
) -> None:
    """A hello with a bad token closes the connection; the join behind it never counts."""
    secret = secrets.token_bytes(32)
    relay = await relay_factory(policy=SecurityPolicy(secret))
    peer = await RawClient.connect(relay.url, hello=False)
    await peer.send(Hello(PROTOCOL_VERSION, token=issue_token(secret, user="peer", room="r")))
    peer.welcome = await peer.expect(Welcome)
    await peer.join("r", presence={})
    forged = issue_token(secrets.token_bytes(32), user="mallory", room="r")
    intruder = await RawClient.connect(relay.url, hello=False)
    await intruder.send(Hello(PROTOCOL_VERSION, user="mallory", token=forged))
    await intruder.send(Join("r", presence={}))
    error = await intruder.expect(Error)
    assert error.code == "auth_invalid"
    await intruder.ws.wait_closed()
    assert intruder.ws.close_code == 4003
    # mallory's connection is closed and peer's later op is handled: a join that
    # counted would have made mallory a second member by now.
    await peer.op("r", 1, IncrementOp("n"))
    assert await peer.expect(AckMessage) == AckMessage("r", 1, 1)
    room = relay.rooms["r"]
    assert room.hub is not None and len(room.hub.members) == 1
