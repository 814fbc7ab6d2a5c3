"""Limits: origins, frame size, rooms and connections, rate limits, and what a flooding
or oversized client can do to the others (docs/security.md "Limits")."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from livewidgets.client import connect_async
from livewidgets.protocol import (
    AckMessage,
    Error,
    Hello,
    IncrementOp,
    Join,
    Leave,
    OpMessage,
    PresenceMessage,
    PresenceUpdate,
    Reject,
    SetOp,
    Welcome,
)
from livewidgets.protocol.codes import CloseCode, ErrorCode
from livewidgets.relay import Relay
from livewidgets.relay.policy import Denied, Principal, Slow
from livewidgets.relay.security import Limits, SecurityPolicy

from ..client.helpers import FAST
from ..conftest import RelayFactory
from ..relay.helpers import TIMEOUT, RawClient
from .helpers import SECRET, ack_for, admitted, assert_serves, hello, token


async def test_origin_allowlist(secure_relay_factory: object) -> None:
    """Origins outside the allowlist get HTTP 403; allowed and absent Origins pass."""
    relay: Relay = await secure_relay_factory(  # type: ignore[operator]
        allow_origins=("https://hub.example.org", "http://localhost:*")
    )
    for origin in ("https://evil.example", "https://hub.example.org.evil.example", "null"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(relay.url, origin=Origin(origin))
        assert refused.value.response.status_code == 403
    for origin in ("https://hub.example.org", "http://localhost:8888"):
        await assert_serves(relay.url, token(), origin=Origin(origin))
    await assert_serves(relay.url, token())  # no Origin header


async def http_status(relay: Relay, path: str, host: str, origin: str | None = None) -> int:
    """Status of a plain GET sent with exactly this Host (and Origin) header."""
    reader, writer = await asyncio.open_connection(relay.host, relay.port)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    status_line = await asyncio.wait_for(reader.readline(), TIMEOUT)
    writer.close()
    return int(status_line.split()[1])


async def test_host_allowlist_refuses_dns_rebinding(secure_relay_factory: object) -> None:
    """With a Host allowlist, a page whose DNS name was rebound to the relay's address
    (its own name as Host) gets 403 for /metrics, /healthz and the handshake alike."""
    relay: Relay = await secure_relay_factory(  # type: ignore[operator]
        allow_hosts=("127.0.0.1:*", "localhost:*"), allow_origins=("http://localhost:*",)
    )
    port = relay.port
    for path in ("/metrics", "/healthz", "/"):
        assert await http_status(relay, path, f"rebound.evil.example:{port}") == 403
        assert await http_status(relay, path, "") == 403
    assert await http_status(relay, "/healthz", f"127.0.0.1:{port}") == 200
    assert await http_status(relay, "/metrics", f"localhost:{port}") == 200
    # A foreign page reading /metrics cross-origin sends its Origin: refused too.
    origin = "https://evil.example"
    assert await http_status(relay, "/metrics", f"127.0.0.1:{port}", origin) == 403
    await assert_serves(relay.url, token())  # kernels: Host 127.0.0.1:port, no Origin


async def test_unknown_subprotocol_is_refused_at_handshake(secure_relay: Relay) -> None:
    """Offering only unknown encodings fails the handshake; the relay keeps serving."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(secure_relay.url, subprotocols=[Subprotocol("livewidgets.v0.pickle")])
    assert refused.value.response.status_code == 400
    await assert_serves(secure_relay.url, token())


async def test_oversize_frame_closes_1009(secure_relay: Relay) -> None:
    """A frame over max_frame_size is never read: close 1009, nothing applied."""
    client = await admitted(secure_relay.url, token())
    await client.join("big")
    huge = "x" * (secure_relay.max_frame_size + 1)
    await client.send(OpMessage("big", 1, 0, SetOp("blob", value=huge)))
    assert await client.closed() == 1009
    assert await assert_serves(secure_relay.url, token(), room="big") == 1  # version 0 before


async def test_rooms_per_connection_limit(secure_relay_factory: object) -> None:
    """Joining more rooms than allowed on one connection is limit_exceeded; leaving frees one."""
    relay: Relay = await secure_relay_factory(  # type: ignore[operator]
        limits=Limits(max_rooms_per_connection=3)
    )
    client = await admitted(relay.url, token())
    for room in ("a", "b", "c"):
        await client.join(room)
    await client.send(Join("d"))
    error = await client.expect(Error)
    assert (error.code, error.ref, error.room) == ("limit_exceeded", "join", "d")
    assert "d" not in relay.rooms
    await client.send(Leave("a"))
    _, joined = await client.join("d")
    assert joined.room == "d"
    await assert_serves(relay.url, token())


async def test_connections_per_ip_limit(relay_factory: RelayFactory) -> None:
    """Anonymous connections beyond the per-address limit: HTTP 429 before any
    WebSocket, its body naming the reason and the limit; a closed one frees a slot."""
    relay = await relay_factory(
        policy=SecurityPolicy(None, limits=Limits(max_connections_per_ip=3))
    )
    clients = [await admitted(relay.url) for _ in range(3)]
    with pytest.raises(InvalidStatus) as refused:
        await connect(relay.url)
    response = refused.value.response
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert response.body == (
        b"limit_exceeded: too many anonymous connections from 127.0.0.1 (limit 3)\n"
    )
    await clients.pop().close()
    # The slot is released when the relay sees the close: a new connection may race it.
    for _ in range(50):
        try:
            client = await admitted(relay.url)
            break
        except InvalidStatus as exc:
            assert exc.response.status_code == 429
            await asyncio.sleep(0.01)  # the relay's side of the close, not a result
    else:
        pytest.fail("the per-address slot was never released")
    await client.close()
    for c in clients:
        await c.close()


async def test_authenticated_connections_count_per_user_not_per_address(
    secure_relay_factory: object,
) -> None:
    """With tokens, a connection counts for its user once its hello is accepted: five
    users behind one address pass a per-address limit of 2; a user's third connection
    is refused at hello with limit_exceeded and close 1008, naming the limit."""
    relay: Relay = await secure_relay_factory(  # type: ignore[operator]
        limits=Limits(max_connections_per_ip=2, max_connections_per_user=2)
    )
    crowd = [await admitted(relay.url, token(user=f"s{i}")) for i in range(5)]
    crowd.append(await admitted(relay.url, token(user="s0")))
    extra, answer = await hello(relay.url, token(user="s0"))
    assert isinstance(answer, Error)
    assert (answer.code, answer.message) == (
        "limit_exceeded",
        "too many connections for user 's0' (limit 2)",
    )
    assert await extra.closed() == 1008
    assert extra.ws.close_reason == "limit_exceeded: too many connections for user 's0' (limit 2)"
    await crowd.pop().close()
    for _ in range(50):  # the relay sees the close a moment later
        client, answer = await hello(relay.url, token(user="s0"))
        if isinstance(answer, Welcome):
            break
        await client.closed()
    else:
        pytest.fail("the user's slot was never released")
    await client.close()
    for c in crowd:
        await c.close()


async def test_connections_per_room_limit(secure_relay_factory: object) -> None:
    """A full room refuses the next join with limit_exceeded; other rooms are unaffected."""
    relay: Relay = await secure_relay_factory(  # type: ignore[operator]
        limits=Limits(max_connections_per_room=2)
    )
    members = [await admitted(relay.url, token()) for _ in range(2)]
    for member in members:
        await member.join("seminar")
    late = await admitted(relay.url, token())
    await late.send(Join("seminar"))
    error = await late.expect(Error)
    assert (error.code, error.room) == ("limit_exceeded", "seminar")
    _, joined = await late.join("other")  # the connection itself is fine
    assert joined.room == "other"
    await members[0].op("seminar", 1, IncrementOp("n"))
    assert (await ack_for(members[0], "seminar", 1)).version == 1


async def flood(
    client: RawClient, room: str, count: int, *, until_closed: bool = False
) -> tuple[dict[str, int], int | None, float]:
    """Send ``count`` ops as fast as the socket takes them, ignoring the advertised rate,
    while reading replies until every op has its answer (or, ``until_closed``, until the
    connection closes): (replies by kind, close code or None, seconds to the last ack)."""
    replies: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    started = last_ack = loop.time()

    async def read() -> None:
        nonlocal last_ack
        answered = 0
        with contextlib.suppress(ConnectionClosed):
            while until_closed or answered < count:
                message = await client.recv(timeout=60 * TIMEOUT)
                key = type(message).__name__ + ":" + str(getattr(message, "code", ""))
                replies[key] = replies.get(key, 0) + 1
                if isinstance(message, (AckMessage, Reject)):
                    answered += 1
                    last_ack = loop.time()

    reader = asyncio.create_task(read())
    frames = [
        client.codec.frame(OpMessage(room, i, 0, IncrementOp("n"))) for i in range(1, count + 1)
    ]
    with contextlib.suppress(ConnectionClosed):
        for frame in frames:
            await client.ws.send(frame)  # blocks while the relay is not reading us
    await asyncio.wait_for(reader, 60 * TIMEOUT)
    return replies, client.ws.close_code, last_ack - started


async def calm_latencies(client: RawClient, room: str, first_seq: int, count: int) -> list[float]:
    """Op -> ack seconds of ``count`` ops sent one at a time, 10 ms apart."""
    loop = asyncio.get_running_loop()
    latencies = []
    for seq in range(first_seq, first_seq + count):
        sent = loop.time()
        await client.op(room, seq, IncrementOp("calm"))
        await ack_for(client, room, seq)
        latencies.append(loop.time() - sent)
        await asyncio.sleep(0.01)  # pacing this writer, not waiting for a result
    return latencies


def p99(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]


async def test_op_flood_is_held_to_the_rate_and_loses_nothing(secure_relay: Relay) -> None:
    """A client ignoring the advertised rate is slowed to it (the relay reads it later):
    every op is acked, none refused, and a calm writer's acks stay prompt meanwhile."""
    limits = Limits()
    calm = await admitted(secure_relay.url, token(user="calm"))
    await calm.join("room")
    quiet = await calm_latencies(calm, "room", 1, 100)
    flooder = await admitted(secure_relay.url, token(user="flood"))
    await flooder.join("room")
    count = 1000
    flooding = asyncio.create_task(flood(flooder, "room", count))
    busy = await calm_latencies(calm, "room", 101, 100)
    replies, code, elapsed = await flooding
    assert code is None  # still open: slowed, not closed
    assert replies.get("AckMessage:") == count, replies  # every op, none refused
    assert set(replies) <= {"AckMessage:", "PresenceUpdate:", "Broadcast:"}
    # Held to the rate: what came after the burst took at least its time at the rate.
    floor = (count - limits.ops_burst) / limits.ops_per_second
    held = (count - limits.ops_burst) / elapsed
    print(f"\nflood: {count} ops in {elapsed:.2f} s ({held:.0f}/s after the burst; {floor:.2f} s")
    print(f"calm p99: {1000 * p99(quiet):.1f} ms quiet, {1000 * p99(busy):.1f} ms under the flood")
    assert elapsed >= 0.8 * floor
    assert held <= 1.2 * limits.ops_per_second
    assert p99(busy) < 0.5  # generous: measured ~10 ms on a shared 2-core machine
    versions = await assert_serves(secure_relay.url, token(), room="room")
    assert versions == count + 200 + 1  # every op applied exactly once


async def test_a_connection_that_never_paces_itself_is_closed(
    secure_relay_factory: object,
) -> None:
    """Over the rate for every frame for max_throttled_seconds: rate_limited, then 4008;
    the same user's next connection starts afresh (no strikes carried over)."""
    limits = Limits(
        ops_per_second=50, ops_burst=10, user_ops_per_second=50, max_throttled_seconds=0.5
    )
    relay: Relay = await secure_relay_factory(limits=limits)  # type: ignore[operator]
    client = await admitted(relay.url, token())
    await client.join("room")
    replies, code, _ = await flood(client, "room", 500, until_closed=True)
    assert code == 4008, f"still open after {replies}"
    assert replies["Reject:rate_limited"] == 1  # the op that found it over the limit
    # Slowed for 0.5 s first: the burst and ~25 more got through.
    assert 10 < replies["AckMessage:"] < 10 + 50 * 5
    await assert_serves(relay.url, token(), room="room")


async def test_presence_flood_is_slowed_not_refused(secure_relay_factory: object) -> None:
    """Presence beyond its bucket is read later (none refused); peers get the latest."""
    relay: Relay = await secure_relay_factory(  # type: ignore[operator]
        limits=Limits(presence_per_second=50, presence_burst=5)
    )
    peer = await admitted(relay.url, token(user="peer"))
    await peer.join("room")
    chatty = await admitted(relay.url, token(user="chatty"))
    await chatty.join("room", presence={})  # announced (opt-in); not rate-counted
    await peer.expect(PresenceUpdate)  # chatty joined
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(55):
        await chatty.send(PresenceMessage("room", {"cursor": i}))
    # Coalesced (latest wins), in order, ending with the last one sent.
    cursors: list[int] = []
    while not cursors or cursors[-1] != 54:
        cursors.append((await peer.expect(PresenceUpdate)).states[chatty.client_id]["cursor"])
    elapsed = loop.time() - started
    assert cursors == sorted(set(cursors))
    assert elapsed >= 0.8 * (55 - 5) / 50  # held to the rate
    await chatty.op("room", 1, IncrementOp("n"))
    await ack_for(chatty, "room", 1)  # no error came before it: nothing was refused


async def test_big_presence_does_not_disconnect_the_room(secure_relay: Relay) -> None:
    """Oversized presence is refused (too_large); the other members stay connected."""
    member = await admitted(secure_relay.url, token(user="member"))
    await member.join("room")
    reader = await admitted(secure_relay.url, token(role="read", user="r"))
    await reader.join("room", presence={})
    await member.expect(PresenceUpdate)  # the reader's join was processed
    envelope = len('{"type":"presence","room":"room","state":{"x":""}}')
    await reader.send(
        PresenceMessage("room", {"x": "A" * (secure_relay.max_frame_size - envelope)})
    )
    await member.op("room", 1, IncrementOp("n"))
    await ack_for(member, "room", 1)  # ConnectionClosed (1009) before the fix
    while not isinstance(answer := await reader.recv(), Error):
        pass  # the member's broadcast may come first
    assert answer.code == "too_large"
    _, joined = await (await admitted(secure_relay.url, token())).join("room")
    assert joined.room == "room"


async def test_relay_without_policy_limits(relay_factory: RelayFactory) -> None:
    """SecurityPolicy without a secret still enforces the limits (loopback default)."""
    relay = await relay_factory(
        policy=SecurityPolicy(None, limits=Limits(max_rooms_per_connection=1))
    )
    client = await admitted(relay.url)
    await client.join("one")
    await client.send(Join("two"))
    assert (await client.expect(Error)).code == "limit_exceeded"


async def test_many_presences_keep_the_room_joinable(secure_relay: Relay) -> None:
    """70 members with the largest allowed presence: a newcomer's session still joins."""
    big = {"x": "A" * (16 * 1024 - 16)}
    crowd = []
    for i in range(70):  # 70 readers: well under every limit
        reader = token(role="read", user=f"reader{i}")
        client = await admitted(secure_relay.url, reader, max_size=None)  # joined grows
        await client.join("room", presence=big)
        crowd.append(client)
    # The joined frame is over 1 MiB: the reference client accepts it (a raw websockets
    # client with the default 1 MiB max_size would be closed with 1009).
    options: dict[str, Any] = {**FAST, "timeout": TIMEOUT}
    newcomer = await connect_async(secure_relay.url, "room", token=token(), **options)
    try:
        assert len(newcomer.presence) == 70
    finally:
        await newcomer.close()


async def test_reconnecting_does_not_reset_the_rate_limit(secure_relay_factory: object) -> None:
    """One user flooding, reconnecting after each round, still gets at most its rate
    (the user's bucket outlives connections), and every op is acked."""
    limits = Limits(ops_per_second=20, ops_burst=20, user_ops_per_second=20, user_ops_burst=20)
    relay: Relay = await secure_relay_factory(limits=limits)  # type: ignore[operator]
    flooder = token(user="flooder")
    loop = asyncio.get_running_loop()
    started, acked = loop.time(), 0
    for _ in range(4):
        client = await admitted(relay.url, flooder)
        await client.join("room")
        for seq in range(1, 21):
            await client.op("room", seq, IncrementOp("n"))
        for seq in range(1, 21):
            await ack_for(client, "room", seq)
            acked += 1
        await client.close()
    elapsed = loop.time() - started
    assert acked == 80
    assert acked <= limits.user_ops_burst + limits.user_ops_per_second * elapsed + 2, elapsed


async def test_invalid_frame_flood_is_closed(secure_relay: Relay) -> None:
    """A client alternating invalid and pointless frames is eventually closed."""
    client = await admitted(secure_relay.url, token())
    bad = '{"type":"op","room":"room","client_seq":1,"base_version":0,"op":{"op":"nope"}}'
    good = client.codec.frame(Leave("never-joined"))
    received = 0

    async def read() -> None:
        nonlocal received
        with contextlib.suppress(ConnectionClosed):
            while True:
                await client.recv(timeout=TIMEOUT)
                received += 1

    reader = asyncio.create_task(read())
    with contextlib.suppress(ConnectionClosed):
        for i in range(5000):
            await client.ws.send(bad if i % 2 else good)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(reader), TIMEOUT / 5)
    reader.cancel()
    assert client.ws.close_code in {4008, 4012}, f"still open after {received} error replies"


async def test_an_impostor_cannot_spend_my_rate_limit(relay_factory: RelayFactory) -> None:
    """Without a secret, claiming another user's name does not slow or close them."""
    limits = Limits(ops_per_second=1, ops_burst=5, user_ops_per_second=1, user_ops_burst=5)
    relay = await relay_factory(policy=SecurityPolicy(None, limits=limits))
    ada = await admitted(relay.url, user="ada")
    await ada.join("room")
    impostor = await admitted(relay.url, user="ada")
    await impostor.join("room")
    for seq in range(1, 21):  # 5 at once, then one a second: held back for 15 s
        await impostor.op("room", seq, IncrementOp("n"))
    await ack_for(impostor, "room", 5)
    await ada.op("room", 1, SetOp("mine", value=1))
    ack = await ack_for(ada, "room", 1, timeout=TIMEOUT / 5)  # not behind the impostor
    assert not ack.duplicate


def test_rate_state_of_gone_users_is_forgotten() -> None:
    """Buckets outlive a user's connections only until they are full again: closing
    thousands of connections leaves no per-user state behind (checked in bounded
    steps, so mass disconnects stay linear)."""
    limits = Limits(ops_per_second=1e6, ops_burst=10)
    policy = SecurityPolicy(None, limits=limits)
    principals = []
    for n in range(2000):
        granted = policy.on_hello(Hello(protocol=1, user=f"u{n}"), None)
        assert not isinstance(granted, Denied)
        assert policy.on_write(granted, "room", [IncrementOp("n")], time.monotonic()) is None
        principals.append(granted)
    time.sleep(0.01)  # 10 tokens at a million per second: full again
    for principal in principals:
        policy.on_close(principal, "127.0.0.1")
    assert policy.remembered_users() == 0
    extra = policy.on_hello(Hello(protocol=1, user="late"), None)
    assert not isinstance(extra, Denied)
    policy.on_write(extra, "room", [IncrementOp("n")], time.monotonic())
    time.sleep(0.01)
    policy.on_close(extra, None)
    assert policy.remembered_users() == 0


def test_welcome_advertises_the_rates() -> None:
    """welcome.limits carries the rates; an unlimited one is left out."""
    assert SecurityPolicy(None).rates() == {
        "ops_per_second": 200.0,
        "ops_burst": 400.0,
        "user_ops_per_second": 200.0,
        "user_ops_burst": 400.0,
        "presence_per_second": 40.0,
        "presence_burst": 80.0,
    }
    unlimited = Limits(ops_per_second=float("inf"), ops_burst=float("inf"))
    assert "ops_per_second" not in SecurityPolicy(None, limits=unlimited).rates()


def test_the_policy_slows_before_it_refuses() -> None:
    """Over the rate: Slow(until the debt is paid); a batch costs its ops; only a
    connection over it on every frame for max_throttled_seconds is refused with 4008,
    and one frame within the rate starts the count afresh."""
    limits = Limits(ops_per_second=10, ops_burst=2, max_throttled_seconds=1.0)
    policy = SecurityPolicy(None, limits=limits)
    ann = policy.on_hello(Hello(protocol=1, user="ann"), None)
    assert not isinstance(ann, Denied)
    one, three = [IncrementOp("n")], [IncrementOp("n")] * 3
    assert policy.on_write(ann, "r", one, 0.0) is None
    assert policy.on_write(ann, "r", one, 0.0) is None
    assert policy.on_write(ann, "r", one, 0.0) == Slow(pytest.approx(0.1))
    assert policy.on_write(ann, "r", three, 0.1) == Slow(pytest.approx(0.4))
    assert policy.on_write(ann, "r", one, 0.4) == Slow(pytest.approx(0.5))
    assert policy.on_write(ann, "r", one, 0.6) is None  # within the rate: count afresh
    ten = [IncrementOp("n")] * 10
    for now in (0.6, 1.0, 1.6):  # each batch deeper in debt: slowed on every frame
        assert isinstance(policy.on_write(ann, "r", ten, now), Slow)
    refused = policy.on_write(ann, "r", ten, 1.7)
    assert isinstance(refused, Denied)
    assert (refused.code, refused.close) == (ErrorCode.RATE_LIMITED, CloseCode.RATE_LIMITED)


def test_connection_counts_move_from_the_address_to_the_user() -> None:
    """The policy's accounting, step by step: a connection counts for its address
    until its hello is accepted with a token, then for its user; a refused one, and
    one that closes, release exactly what they held. Without a secret the address
    keeps counting (the user is only a claim)."""
    policy = SecurityPolicy(
        SECRET, limits=Limits(max_connections_per_ip=2, max_connections_per_user=1)
    )

    def hello_as(user: str) -> Any:
        return policy.on_hello(Hello(1, token=token(user=user)), None)

    assert policy.on_connect("10.0.0.1") is None  # connection 1
    assert policy.on_connect("10.0.0.1") is None  # connection 2 (stays anonymous)
    full = policy.check_connect("10.0.0.1")
    assert full is not None and (full.status, full.code) == (429, ErrorCode.LIMIT_EXCEEDED)
    assert full.message == "too many anonymous connections from 10.0.0.1 (limit 2)"
    ada = hello_as("ada")
    assert policy.on_admit(ada, "10.0.0.1") is None  # 1 now counts for ada, not the address
    assert policy.check_connect("10.0.0.1") is None
    assert policy.on_connect("10.0.0.1") is None  # connection 3, ada again
    second = policy.on_admit(hello_as("ada"), "10.0.0.1")
    assert second is not None and second.close == CloseCode.POLICY_VIOLATION
    assert second.message == "too many connections for user 'ada' (limit 1)"
    assert policy.check_connect("10.0.0.1") is not None  # 2 and 3 hold the address
    policy.on_close(None, "10.0.0.1")  # 3, refused: its address slot
    policy.on_close(ada, "10.0.0.1")  # 1: ada's slot, not the address's
    assert policy.on_connect("10.0.0.1") is None  # connection 4, ada: room for her again
    assert policy.on_admit(hello_as("ada"), "10.0.0.1") is None
    assert policy.check_connect("10.0.0.1") is None  # only 2 counts for the address
    anonymous = SecurityPolicy(None, limits=Limits(max_connections_per_ip=1))
    assert anonymous.on_connect("10.0.0.2") is None
    claimed = anonymous.on_hello(Hello(1, user="ada"), None)
    assert isinstance(claimed, Principal) and anonymous.on_admit(claimed, "10.0.0.2") is None
    assert anonymous.check_connect("10.0.0.2") is not None  # still counted per address


def test_renewal_keeps_the_user_count_and_link_holders_count_per_address() -> None:
    """A renewed token is the same connection: closing it releases its user's slot (a
    leak would lock the user out after 32 renewals-then-closes). A share link's
    holders choose their identity, so they stay counted per address."""
    from livewidgets.auth import issue_link_token

    policy = SecurityPolicy(
        SECRET, limits=Limits(max_connections_per_ip=1, max_connections_per_user=1)
    )
    assert policy.on_connect("10.0.0.1") is None
    ada = policy.on_hello(Hello(1, token=token(user="ada")), None)
    assert isinstance(ada, Principal) and policy.on_admit(ada, "10.0.0.1") is None
    renewed = policy.on_renew(ada, token(user="ada"), [])
    assert isinstance(renewed, Principal) and renewed is not ada
    policy.on_close(renewed, "10.0.0.1")
    assert policy.on_connect("10.0.0.1") is None
    again = policy.on_hello(Hello(1, token=token(user="ada")), None)
    assert isinstance(again, Principal) and policy.on_admit(again, "10.0.0.1") is None
    link, _ = issue_link_token(SECRET, room="r")
    assert policy.on_connect("10.0.0.2") is None
    holder = policy.on_hello(Hello(1, token=link, user="guest"), None)
    assert isinstance(holder, Principal) and policy.on_admit(holder, "10.0.0.2") is None
    assert policy.check_connect("10.0.0.2") is not None  # still the address's
