"""ClientProtocol (sans-I/O): the connection lifecycle driven by hand, exact actions, no sockets."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from livewidgets.client.backoff import Backoff
from livewidgets.client.core import Acked, Changed, Failed, JoinedRoom, Resync
from livewidgets.client.presence import LocalPresence
from livewidgets.client.protocol import (
    Abort,
    AbortReason,
    Action,
    AuthExpiredEvent,
    ClientProtocol,
    Close,
    Connect,
    ConnectionFailed,
    GaveUp,
    JoinRefusal,
    LocalProtocolError,
    MyPresence,
    NeedToken,
    Ping,
    ProtocolConfig,
    ReconnectAfter,
    Refused,
    RefusedConnection,
    RelayError,
    SendMessages,
    State,
    StateChanged,
    Status,
    VerifyProof,
)
from livewidgets.client.refusals import Refusal, from_http
from livewidgets.protocol import (
    PROTOCOL_VERSION,
    AckMessage,
    Admin,
    Broadcast,
    CloseCode,
    Error,
    Hello,
    Join,
    Joined,
    OpMessage,
    PresenceMessage,
    SetOp,
    Snapshot,
    Welcome,
)
from livewidgets.protocol.pacing import TokenBucket

ROOM = "r"
ME = "me"
NONCE = "n" * 24
SEED = 7


class Clock:
    """The presence's wall clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def delays() -> Iterator[float]:
    return Backoff(initial=1.0, factor=2.0, cap=8.0).delays(random.Random(SEED))


def expected_delays(n: int) -> list[float]:
    sequence = delays()
    return [next(sequence) for _ in range(n)]


def client(
    urls: tuple[str, ...] = ("ws://a",), clock: Clock | None = None, **config: Any
) -> ClientProtocol:
    presence = LocalPresence("u", name="U", color="red", rate=2.0, clock=clock or Clock())
    return ClientProtocol(
        list(urls),
        [ROOM],
        client_id=ME,
        user="u",
        token="t1",
        presence=presence,
        delays=delays,
        config=ProtocolConfig(**config),
        nonces=lambda: NONCE,
    )


def welcome(limits: dict[str, int] | None = None, proof: str | None = None) -> Welcome:
    return Welcome(PROTOCOL_VERSION, ME, "c1", "relay", limits or {}, proof)


def hello(nonce: str | None = None, token: str = "t1") -> Hello:
    return Hello(PROTOCOL_VERSION, ME, "u", token, nonce)


def presence_of(p: ClientProtocol) -> dict[str, Any]:
    return {**p.presence.fields, "last_seen": p.presence._clock()}


def joined(p: ClientProtocol, now: float = 0.0) -> list[Action]:
    """Drive a fresh protocol through connect, open, welcome, snapshot and joined."""
    p.connect(now)
    p.opened(now)
    p.receive(welcome({"max_frame_size": 100}), now)
    p.receive(Snapshot(ROOM, 0, {}), now)
    return p.receive(Joined(ROOM, 0, "snapshot"), now)


def test_handshake_pipelines_the_join_after_the_hello() -> None:
    """Without a relay check, connect dials the URL and the join follows the hello at once."""
    p = client()
    assert p.connect(0.0) == [StateChanged(Status.CONNECTING, {"attempt": 0}), Connect("ws://a")]
    mine = presence_of(p)
    assert p.opened(0.0) == [SendMessages([hello(), Join(ROOM, None, mine)])]
    assert p.state is State.HANDSHAKING
    assert p.receive(welcome(), 0.1) == []
    assert p.state is State.JOINING and p.connection_id == "c1"


def test_handshake_waits_for_the_proof_before_joining() -> None:
    """With a relay check, nothing about the room goes out before the proof checks out."""
    p = client(verify=True)
    p.connect(0.0)
    assert p.opened(0.0) == [SendMessages([hello(NONCE)])]
    assert p.receive(welcome(proof="sig"), 0.1) == [VerifyProof(NONCE, "sig")]
    mine = presence_of(p)
    assert p.proof_checked(True, 0.2) == [SendMessages([Join(ROOM, None, mine)])]
    assert p.state is State.JOINING


def test_a_failed_proof_closes_with_policy_violation() -> None:
    """An impostor relay gets a 1008 close and an error; the attempt is retried."""
    p = client(verify=True)
    p.connect(0.0)
    p.opened(0.0)
    p.receive(welcome(proof="forged"), 0.1)
    assert p.proof_checked(False, 0.2) == [
        RelayError(
            "relay_unverified",
            "ws://a did not prove it is the relay we expect; not syncing with it",
            during="handshake",
        ),
        Close(CloseCode.POLICY_VIOLATION, "relay not verified"),
    ]
    [delay] = expected_delays(1)
    assert p.closed(1008, 0.3) == [
        StateChanged(Status.RECONNECTING, {"attempt": 1, "delay": delay}),
        ReconnectAfter(delay, "ws://a"),
    ]


def test_welcome_then_joined_connects() -> None:
    """Joined completes the connection: the public state says connected, admin flushes."""
    p = client()
    p.connect(0.0)
    p.opened(0.0)
    p.admin(ROOM, "reset")
    p.receive(welcome(), 0.0)
    p.receive(Snapshot(ROOM, 3, {"k": 1}), 0.0)
    assert p.receive(Joined(ROOM, 3, "snapshot"), 0.0) == [
        JoinedRoom(3, "snapshot"),
        StateChanged(Status.CONNECTED, {"version": 3, "mode": "snapshot"}),
        SendMessages([Admin(ROOM, "reset")]),
    ]
    assert p.state is State.CONNECTED and p.attempt == 0


def test_a_bad_first_frame_is_a_protocol_error() -> None:
    """Anything but welcome or error first fails the handshake with 1002, never raises."""
    p = client()
    p.connect(0.0)
    p.opened(0.0)
    [failed, close] = p.receive(Snapshot(ROOM, 0, {}), 0.0)
    assert isinstance(failed, ConnectionFailed) and failed.during == "handshake"
    assert close == Close(CloseCode.PROTOCOL_ERROR, "bad handshake")
    assert p.state is State.CLOSING


def test_no_welcome_in_time_fails_the_handshake() -> None:
    """The relay must welcome us within open_timeout: tick then closes with 1002."""
    p = client(open_timeout=2.0)
    p.connect(0.0)
    p.opened(0.0)
    assert p.next_deadline() == 2.0
    assert p.tick(1.9) == []
    [failed, close] = p.tick(2.0)
    assert isinstance(failed.error, TimeoutError)  # type: ignore[union-attr]
    assert close == Close(CloseCode.PROTOCOL_ERROR, "bad handshake")


def test_reconnect_waits_a_seeded_backoff_and_resets_after_a_join() -> None:
    """Failed attempts wait the backoff's delays; a connection that joined starts it over."""
    p = client()
    p.connect(0.0)
    first, second = expected_delays(2)
    assert p.connect_failed(0.0) == [
        StateChanged(Status.RECONNECTING, {"attempt": 1, "delay": first}),
        ReconnectAfter(first, "ws://a"),
    ]
    assert p.connect(1.0) == [StateChanged(Status.CONNECTING, {"attempt": 1}), Connect("ws://a")]
    assert p.connect_failed(1.0)[1] == ReconnectAfter(second, "ws://a")
    p.connect(2.0)
    p.opened(2.0)
    p.receive(welcome(), 2.0)
    p.receive(Snapshot(ROOM, 0, {}), 2.0)
    p.receive(Joined(ROOM, 0, "snapshot"), 2.0)
    assert p.closed(1006, 3.0) == [
        StateChanged(Status.DISCONNECTED, {"code": 1006}),
        StateChanged(Status.RECONNECTING, {"attempt": 1, "delay": first}),
        ReconnectAfter(first, "ws://a"),
    ]


def test_final_close_codes_stop() -> None:
    """A close the relay means (kicked, replaced, ...) ends the session: no reconnect."""
    p = client()
    joined(p)
    assert p.closed(CloseCode.KICKED, 1.0) == [
        StateChanged(Status.DISCONNECTED, {"code": 4011}),
        StateChanged(Status.CLOSED),
    ]
    assert p.state is State.CLOSED


def test_our_own_normal_close_is_not_the_relays_verdict() -> None:
    """1000 without the relay's close frame counts as abnormal: reconnect."""
    p = client()
    joined(p)
    [_, reconnecting, _] = p.closed(1000, 1.0, by_peer=False)
    assert reconnecting.status is Status.RECONNECTING  # type: ignore[union-attr]


def test_failover_rotates_through_the_urls() -> None:
    """Each retry dials the next relay, round robin."""
    p = client(("ws://a", "ws://b", "ws://c"))
    dialed = []
    for _ in range(4):
        dialed.append(p.connect(0.0)[1])
        p.connect_failed(0.0)
    assert dialed == [Connect("ws://a"), Connect("ws://b"), Connect("ws://c"), Connect("ws://a")]


def test_max_attempts_gives_up() -> None:
    """After max_attempts failures in a row the protocol stops."""
    p = client(max_attempts=2)
    p.connect(0.0)
    p.connect_failed(0.0)
    p.connect(1.0)
    assert p.connect_failed(1.0) == [GaveUp(2), StateChanged(Status.CLOSED)]


def test_auth_close_asks_for_a_token_and_reconnects_with_it() -> None:
    """4004 with a refresher: NeedToken; a new token reconnects and goes in the next hello."""
    p = client(can_refresh=True)
    joined(p)
    assert p.closed(CloseCode.AUTH_EXPIRED, 1.0)[-1] == NeedToken(CloseCode.AUTH_EXPIRED)
    assert p.state is State.REFRESHING
    [delay] = expected_delays(1)
    assert p.token_refreshed("t2", 1.1) == [
        StateChanged(Status.RECONNECTING, {"attempt": 1, "delay": delay}),
        ReconnectAfter(delay, "ws://a"),
    ]
    p.connect(2.0)
    assert p.opened(2.0)[0].messages[0] == hello(token="t2")  # type: ignore[union-attr]


def test_no_new_token_stops_with_auth_expired() -> None:
    """The refresher has nothing new: auth expired, closed."""
    p = client(can_refresh=True)
    joined(p)
    p.closed(CloseCode.AUTH_EXPIRED, 1.0)
    assert p.token_refreshed("t1", 1.1) == [AuthExpiredEvent(), StateChanged(Status.CLOSED)]


def test_http_401_without_refresher_is_final() -> None:
    """A 401 at the HTTP upgrade is an invalid token: without a refresher, stop."""
    p = client()
    p.connect(0.0)
    refused = Refusal("auth_invalid", "HTTP 401 instead of a WebSocket handshake", False, 401)
    assert p.connect_failed(0.0, status=401) == [
        RefusedConnection(refused, final=True),
        StateChanged(Status.CLOSED),
    ]


def test_a_transient_refusal_retries_and_says_why() -> None:
    """A cap reached (the relay's 429): retried with backoff; the reconnecting state
    names the reason, the message and the limit."""
    p = client()
    p.connect(0.0)
    full = from_http(429, b"limit_exceeded: too many anonymous connections from ::1 (limit 3)\n")
    assert (full.reason, full.limit, full.transient) == ("limit_exceeded", 3, True)
    [first] = expected_delays(1)
    assert p.connect_failed(0.0, refusal=full) == [
        RefusedConnection(full, final=False),
        StateChanged(
            Status.RECONNECTING,
            {
                "attempt": 1,
                "delay": first,
                "reason": "limit_exceeded",
                "message": "too many anonymous connections from ::1 (limit 3)",
                "limit": 3,
            },
        ),
        ReconnectAfter(first, "ws://a"),
    ]


def test_a_permanent_refusal_stops_at_once() -> None:
    """An Origin the relay refuses (403) will be refused again: stop, no backoff."""
    p = client()
    p.connect(0.0)
    origin = from_http(403, b"forbidden: origin 'https://evil.example' is not allowed\n")
    assert p.connect_failed(0.0, refusal=origin) == [
        RefusedConnection(origin, final=True),
        StateChanged(Status.CLOSED),
    ]


def test_a_hello_refused_by_the_relay_is_decided_by_its_error_and_close() -> None:
    """The relay answers hello with an error, then closes: a per-user cap (1008) is
    retried with its reason; another protocol version (4001) stops at once."""
    p = client()
    p.connect(0.0)
    p.opened(0.0)
    message = "too many connections for user 'ada' (limit 32)"
    p.receive(Error("limit_exceeded", message, ref="hello"), 0.0)
    [refused, reconnecting, _] = p.closed(1008, 0.1)
    assert refused == RefusedConnection(
        Refusal("limit_exceeded", message, True, close_code=1008), final=False
    )
    assert reconnecting.details["limit"] == 32  # type: ignore[union-attr]
    p.connect(1.0)
    p.opened(1.0)
    p.receive(Error("protocol_version", "protocol 1 is not supported", ref="hello"), 1.0)
    [refused, closed] = p.closed(4001, 1.1)
    assert refused == RefusedConnection(
        Refusal("protocol_version", "protocol 1 is not supported", False, close_code=4001),
        final=True,
    )
    assert closed == StateChanged(Status.CLOSED)


def test_join_refusal_is_typed() -> None:
    """A refused join surfaces the error and a typed refusal."""
    p = client()
    p.connect(0.0)
    p.opened(0.0)
    p.receive(welcome(), 0.0)
    assert p.receive(Error("forbidden", "no", ref="join"), 0.0) == [
        RelayError("forbidden", "no", "join"),
        Refused(JoinRefusal.FORBIDDEN, "no"),
    ]


def test_heartbeat_pings_on_time_and_detects_a_dead_peer() -> None:
    """A ping every interval after the welcome; no pong within the timeout aborts."""
    p = client(heartbeat_interval=5.0, heartbeat_timeout=2.0, ack_timeout=100.0)
    joined(p, 0.0)
    assert p.next_deadline() == 5.0
    assert p.tick(4.9) == []
    assert p.tick(5.0) == [Ping()]
    assert p.next_deadline() == 7.0
    assert p.pong(6.0) == []
    assert p.tick(6.0) == []  # the pong's ack check: nothing in flight
    assert p.next_deadline() == 11.0
    assert p.tick(11.0) == [Ping()]
    assert p.tick(13.0) == [Abort(AbortReason.HEARTBEAT)]
    assert p.next_deadline() is None


def test_late_acks_are_resent_on_tick() -> None:
    """An op whose ack is later than ack_timeout is resent once per timeout, counted."""
    p = client(ack_timeout=3.0, heartbeat_interval=100.0)
    joined(p, 0.0)
    p.submit(ROOM, [SetOp("k", value=1)], 1.0)
    assert p.next_deadline() == 3.0  # the check the join armed
    assert p.tick(3.0) == []
    assert p.next_deadline() == 4.0
    op = OpMessage(ROOM, 1, 0, SetOp("k", value=1))
    assert p.tick(4.1) == [SendMessages([op], resends=1)]
    assert p.receive(AckMessage(ROOM, 1, 1), 4.2) == [Acked([], 1)]


def test_presence_is_throttled_latest_wins() -> None:
    """Presence updates go out at most `rate` per second; the latest one when due."""
    clock = Clock()
    p = client(clock=clock)
    joined(p, 0.0)  # the join carried our presence at 0.0
    assert p.update_presence({"x": 1}, 0.1) == [MyPresence(dict(p.presence.fields))]
    assert p.update_presence({"x": 2}, 0.2) == [MyPresence(dict(p.presence.fields))]
    assert p.next_deadline() == 0.5
    assert p.tick(0.5) == [SendMessages([PresenceMessage(ROOM, presence_of(p))])]
    assert p.presence.fields["x"] == 2


def test_presence_goes_idle_on_a_heartbeat() -> None:
    """Quiet past idle_after: the pong's check turns us idle and publishes it."""
    clock = Clock()
    p = client(clock=clock, heartbeat_interval=5.0)
    joined(p, 0.0)
    p.tick(5.0)
    clock.now += 61.0
    [mine, send] = p.pong(5.1)
    assert mine == MyPresence({**p.presence.fields})
    assert p.presence.fields["status"] == "idle"
    assert send == SendMessages([PresenceMessage(ROOM, presence_of(p))])


def test_an_oversize_op_fails_directly() -> None:
    """An op over the relay's max_frame_size fails with too_large, rolled back; no Reject."""
    p = client()
    joined(p)
    actions = p.submit(ROOM, [SetOp("k", value="x" * 200)], 1.0)
    [sent] = [a for a in actions if isinstance(a, SendMessages)]
    message = sent.messages[0]
    assert not p.fits(message, 250)
    assert p.fits(message, 100)
    [changed, failed] = p.oversized(message, 250, 1.1)
    assert isinstance(changed, Changed) and changed.after == {}
    assert failed == Failed(
        [],
        [SetOp("k", value="x" * 200)],
        "too_large",
        "the op is 250 bytes encoded; the relay accepts at most 100",
    )
    assert p.rooms[ROOM].pending == []


def test_a_divergence_aborts_for_a_resync_and_reconnects_whatever_the_code() -> None:
    """Resync: abort the socket; the next close reconnects even with a final code."""
    p = client()
    joined(p)
    assert p.receive(Broadcast(ROOM, 5, "peer", 1, [SetOp("k", value=1)]), 1.0) == [
        Resync("gap: got version 5 at 0"),
        Abort(AbortReason.RESYNC),
    ]
    assert isinstance(p.closed(CloseCode.KICKED, 1.1)[-1], ReconnectAfter)


def test_close_is_final_and_idempotent() -> None:
    """close(): a normal close frame, disconnected, closed; the socket's end is then ignored."""
    p = client()
    joined(p)
    assert p.close(1.0) == [
        Close(CloseCode.NORMAL, "client closed"),
        StateChanged(Status.DISCONNECTED, {"code": 1000}),
        StateChanged(Status.CLOSED),
    ]
    assert p.close(1.1) == []
    assert p.closed(1000, 1.2) == []


def test_illegal_transitions_raise_at_once() -> None:
    """Local misuse (opened before connect, connect while connected) raises."""
    p = client()
    with pytest.raises(LocalProtocolError, match="opened"):
        p.opened(0.0)
    joined(p)
    with pytest.raises(LocalProtocolError, match="connect"):
        p.connect(1.0)
    with pytest.raises(LocalProtocolError, match="token_refreshed"):
        p.token_refreshed("x", 1.0)


# --- pacing (docs/protocol.md "Pacing") ------------------------------------------------


def test_token_bucket_admits_the_burst_then_one_per_interval() -> None:
    """A full bucket admits its burst; then a send waits 1/rate; a refusal changes nothing."""
    bucket = TokenBucket(rate=2.0, burst=2.0, now=0.0)
    assert bucket.admit(0.0) and bucket.admit(0.0)
    assert not bucket.admit(0.0)
    assert bucket.ready_at() == 0.5
    assert not bucket.admit(0.49)
    assert bucket.admit(0.5)
    assert bucket.ready_at() == 1.0


def test_token_bucket_charges_into_debt_and_says_how_long_to_wait() -> None:
    """charge() always takes (the relay's side): the wait is the debt over the rate."""
    bucket = TokenBucket(rate=10.0, burst=5.0, now=0.0)
    assert bucket.charge(0.0, 5) == 0.0
    assert bucket.charge(0.0, 3) == pytest.approx(0.3)
    assert bucket.charge(0.3) == pytest.approx(0.1)  # paid off at 0.3, one more costs 0.1
    assert bucket.rested(10.0)
    assert TokenBucket(float("inf"), 1.0, 0.0).charge(0.0, 1e9) == 0.0


def test_a_batch_larger_than_the_burst_goes_when_the_bucket_is_full() -> None:
    """A batch costs its ops; one larger than the burst waits for a full bucket, then
    leaves a debt that later sends wait out."""
    bucket = TokenBucket(rate=10.0, burst=4.0, now=0.0)
    assert bucket.admit(0.0, 1)
    assert not bucket.admit(0.0, 8)
    assert bucket.ready_at(8) == pytest.approx(0.1)
    assert bucket.admit(0.1, 8)
    assert bucket.ready_at(1) == pytest.approx(0.6)  # -4 + 10/s: one token at 0.6


def paced(limits: dict[str, int | float]) -> ClientProtocol:
    p = client()
    p.connect(0.0)
    p.opened(0.0)
    p.receive(Welcome(PROTOCOL_VERSION, ME, "c1", "relay", limits), 0.0)
    p.receive(Snapshot(ROOM, 0, {}), 0.0)
    p.receive(Joined(ROOM, 0, "snapshot"), 0.0)
    return p


def sent(actions: list[Action]) -> list[Any]:
    return [m for a in actions if isinstance(a, SendMessages) for m in a.messages]


def op(seq: int, base: int = 0) -> OpMessage:
    return OpMessage(ROOM, seq, base, SetOp(f"k{seq}", value=seq))


def test_ops_beyond_the_advertised_burst_wait_for_tokens() -> None:
    """Burst 2 at 2/s: two ops go at once, the third at t=0.5 (the tick's deadline)."""
    p = paced({"ops_per_second": 2, "ops_burst": 2})
    assert sent(p.submit(ROOM, [SetOp("k1", value=1)], 0.0)) == [op(1)]
    assert sent(p.submit(ROOM, [SetOp("k2", value=2)], 0.0)) == [op(2)]
    assert sent(p.submit(ROOM, [SetOp("k3", value=3)], 0.0)) == []
    assert sent(p.submit(ROOM, [SetOp("k4", value=4)], 0.1)) == []
    assert p.next_deadline() == 0.5
    assert p.tick(0.4) == []
    assert p.tick(0.5) == [SendMessages([op(3)])]
    assert p.next_deadline() == 1.0
    assert p.tick(1.0) == [SendMessages([op(4)])]
    assert p.rooms[ROOM].paced_cost is None


def test_pacing_follows_the_stricter_of_connection_and_user_rates() -> None:
    """Per connection 10/s and per user 1/s: the client paces to 1/s, burst 1."""
    p = paced(
        {"ops_per_second": 10, "ops_burst": 10, "user_ops_per_second": 1, "user_ops_burst": 1}
    )
    assert p.pacer is not None and (p.pacer.rate, p.pacer.burst) == (1, 1)
    assert sent(p.submit(ROOM, [SetOp("k1", value=1)], 0.0)) == [op(1)]
    assert sent(p.submit(ROOM, [SetOp("k2", value=2)], 0.0)) == []
    assert p.next_deadline() == 1.0


def test_no_advertised_rate_means_no_pacing() -> None:
    """A relay that advertises no rate (unlimited) gets every op at once."""
    p = paced({"max_frame_size": 1000})
    assert p.pacer is None
    for seq in range(1, 51):
        assert sent(p.submit(ROOM, [SetOp(f"k{seq}", value=seq)], 0.0)) == [op(seq)]


def test_the_pacer_outlives_a_reconnect() -> None:
    """The relay keeps the user's bucket across connections, so the client keeps its own:
    a reconnect does not buy a fresh burst; held ops go once joined and tokens allow."""
    p = paced({"ops_per_second": 2, "ops_burst": 1})
    pacer = p.pacer
    assert sent(p.submit(ROOM, [SetOp("k1", value=1)], 0.0)) == [op(1)]
    assert sent(p.submit(ROOM, [SetOp("k2", value=2)], 0.0)) == []
    p.closed(1006, 0.1)
    assert p.next_deadline() is None  # offline: no pacing tick (ReconnectAfter waits)
    p.connect(0.2)
    p.opened(0.2)
    p.receive(
        Welcome(PROTOCOL_VERSION, ME, "c2", "relay", {"ops_per_second": 2, "ops_burst": 1}), 0.2
    )
    assert p.pacer is pacer
    p.receive(Snapshot(ROOM, 0, {}, last_seq=0), 0.2)
    actions = p.receive(Joined(ROOM, 0, "snapshot"), 0.3)
    assert sent(actions) == []  # seq 1 (resend) waits too: the bucket is empty until 0.5
    assert p.next_deadline() == 0.5
    assert p.tick(0.5) == [SendMessages([op(1)])]
    assert p.tick(1.0) == [SendMessages([op(2)])]


def test_a_hello_refusal_whose_close_frame_was_lost_is_decided_by_the_error() -> None:
    """The relay's error arrived but its close did not (1006): the error's documented
    close decides, so an expired token still asks for a new one instead of stopping
    (found by the fault simulation, tests/sim)."""
    p = client(can_refresh=True)
    p.connect(0.0)
    p.opened(0.0)
    p.receive(Error("auth_expired", "the token has expired", ref="hello"), 0.0)
    assert p.closed(None, 0.1)[-1] == NeedToken(CloseCode.AUTH_EXPIRED)
    q = client()
    q.connect(0.0)
    q.opened(0.0)
    q.receive(Error("limit_exceeded", "too many connections for user 'a' (limit 2)"), 0.0)
    [refused, reconnecting, _] = q.closed(1006, 0.1)
    assert refused.refusal.transient and refused.refusal.close_code == 1008  # type: ignore[union-attr]
    assert reconnecting.status is Status.RECONNECTING  # type: ignore[union-attr]
