"""Token renewal in ClientProtocol (sans-I/O): when it asks for a token, the auth /
authed exchange, refusals and retries, exact actions, no sockets."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from livewidgets.client.backoff import Backoff
from livewidgets.client.presence import LocalPresence
from livewidgets.client.protocol import (
    AuthExpiredEvent,
    ClientProtocol,
    NeedToken,
    ProtocolConfig,
    RelayError,
    RenewToken,
    SendMessages,
    State,
    StateChanged,
    Status,
    TokenRenewed,
    VerifyProof,
)
from livewidgets.client.renewal import RenewalConfig, first_renewal
from livewidgets.protocol import (
    PROTOCOL_VERSION,
    Auth,
    Authed,
    CloseCode,
    Error,
    Hello,
    Joined,
    Snapshot,
    Welcome,
)

ROOM = "r"
NONCE = "n" * 24
# Timers other than the renewal's far away, so each tick shows the renewal alone.
QUIET = {"heartbeat_interval": 10_000.0, "ack_timeout": 10_000.0}


def delays() -> Iterator[float]:
    return Backoff(initial=1.0, factor=2.0, cap=8.0).delays(random.Random(7))


def client(can_refresh: bool = True, **config: Any) -> ClientProtocol:
    presence = LocalPresence("u", name="U", color="red", rate=2.0, clock=lambda: 0.0)
    return ClientProtocol(
        ["ws://a"],
        [ROOM],
        client_id="me",
        user="u",
        token="t1",
        presence=presence,
        delays=delays,
        config=ProtocolConfig(can_refresh=can_refresh, **{**QUIET, **config}),
        nonces=lambda: NONCE,
    )


def welcome(expires_in: float | None) -> Welcome:
    limits = {} if expires_in is None else {"expires_in": expires_in}
    return Welcome(PROTOCOL_VERSION, "me", "c1", "relay", limits)


def joined(p: ClientProtocol, expires_in: float | None = 5.0, now: float = 0.0) -> None:
    """Connect, be welcomed with a token that holds ``expires_in`` more seconds, join."""
    p.connect(now)
    p.opened(now)
    p.receive(welcome(expires_in), now)
    p.receive(Snapshot(ROOM, 0, {}), now)
    p.receive(Joined(ROOM, 0, "snapshot"), now)
    assert p.state is State.CONNECTED


def hello_token(p: ClientProtocol, now: float) -> str | None:
    """The token the next connection's hello carries."""
    actions = p.opened(now)
    assert isinstance(actions[0], SendMessages)
    hello = actions[0].messages[0]
    assert isinstance(hello, Hello)
    return hello.token


# --- when --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "renew_after"),
    [(5.0, 4.0), (30.0, 24.0), (60.0, 48.0), (7200.0, 7170.0), (0.0, 0.0)],
)
def test_first_renewal_is_at_80_percent_but_not_before_30_s_to_go(
    lifetime: float, renew_after: float
) -> None:
    """80 % of the lifetime for short tokens; 30 s before expiry for long ones."""
    assert first_renewal(lifetime, RenewalConfig()) == pytest.approx(renew_after)


def test_welcome_expiry_asks_for_a_token_at_80_percent() -> None:
    """A 5 s token welcomed at t=10: the tick before 14 s asks nothing, at 14 s RenewToken."""
    p = client()
    joined(p, 5.0, now=10.0)
    assert p.next_deadline() == pytest.approx(14.0)
    assert p.tick(13.99) == []
    assert p.tick(14.0) == [RenewToken()]
    assert p.tick(14.5) == []  # one ask at a time
    assert p.next_deadline() == pytest.approx(10_010.0)  # the heartbeat's, not ours


def test_new_token_goes_out_as_auth_and_authed_moves_the_deadline() -> None:
    """The provider's token is sent on the open connection; authed makes it the token,
    says so, and plans the next renewal from the new lifetime."""
    p = client()
    joined(p, 5.0)
    assert p.tick(4.0) == [RenewToken()]
    assert p.token_renewed("t2", 4.1) == [SendMessages([Auth("t2")])]
    assert p.token == "t1"  # not before the relay took it
    assert p.receive(Authed(5.0), 4.2) == [TokenRenewed(5.0)]
    assert p.token == "t2" and p.state is State.CONNECTED
    assert p.next_deadline() == pytest.approx(8.2)
    assert p.tick(8.2) == [RenewToken()]


def test_a_reconnect_after_a_renewal_says_hello_with_the_new_token() -> None:
    """The renewed token is the one the next connection uses."""
    p = client()
    joined(p, 5.0)
    p.tick(4.0)
    p.token_renewed("t2", 4.0)
    p.receive(Authed(5.0), 4.0)
    p.closed(1006, 4.5)
    p.connect(6.0)
    assert hello_token(p, 6.0) == "t2"


def test_a_slow_provider_is_asked_earlier_next_time() -> None:
    """A provider that took 0.5 s is asked twice that before the next expiry when 80 %
    leaves less; one that took 1.5 s of a 4 s token: at half the lifetime, no sooner."""
    p = client()
    joined(p, 4.0)
    assert p.tick(3.2) == [RenewToken()]
    p.token_renewed("t2", 3.7)  # 0.5 s in the provider
    p.receive(Authed(4.0), 3.7)
    assert p.next_deadline() == pytest.approx(3.7 + 3.0)  # not 3.7 + 3.2
    assert p.tick(6.7) == [RenewToken()]
    p.token_renewed("t3", 8.2)  # 1.5 s
    p.receive(Authed(4.0), 8.2)
    assert p.next_deadline() == pytest.approx(8.2 + 2.0)


def test_authed_without_expiry_stops_renewing() -> None:
    """A token that never expires needs no more renewals."""
    p = client()
    joined(p, 5.0)
    p.tick(4.0)
    p.token_renewed("t2", 4.0)
    assert p.receive(Authed(), 4.1) == [TokenRenewed(None)]
    assert p.next_deadline() == pytest.approx(10_000.0)


# --- nothing new, refusals ----------------------------------------------------------------


def test_no_new_token_asks_again_while_there_is_time() -> None:
    """None, or the same token, sends nothing and asks again after half the time left
    (at most 5 s), until less than 0.25 s would remain."""
    p = client()
    joined(p, 5.0)  # expires at 5.0
    assert p.tick(4.0) == [RenewToken()]
    assert p.token_renewed(None, 4.0) == []
    assert p.next_deadline() == pytest.approx(4.5)
    assert p.tick(4.5) == [RenewToken()]
    assert p.token_renewed("t1", 4.5) == []  # the token it has is nothing new
    assert p.next_deadline() == pytest.approx(4.75)
    assert p.tick(4.75) == [RenewToken()]
    assert p.token_renewed(None, 4.75) == []
    assert p.next_deadline() == pytest.approx(10_000.0)  # 0.125 s would be too late


def test_a_long_token_retries_every_5_s() -> None:
    """The retry is capped at 5 s when there is plenty of time."""
    p = client()
    joined(p, 7200.0)
    assert p.tick(7170.0) == [RenewToken()]
    assert p.token_renewed(None, 7170.0) == []
    assert p.next_deadline() == pytest.approx(7175.0)


def test_refused_auth_keeps_the_old_token_and_asks_again() -> None:
    """An error about the auth is surfaced; the old token holds; a new ask is planned."""
    p = client()
    joined(p, 5.0)
    p.tick(4.0)
    p.token_renewed("bob-token", 4.0)
    refusal = Error("forbidden", "the new token is for user 'bob'", ref="auth")
    assert p.receive(refusal, 4.2) == [
        RelayError("forbidden", "the new token is for user 'bob'", "auth")
    ]
    assert p.token == "t1" and p.state is State.CONNECTED
    assert p.next_deadline() == pytest.approx(4.6)  # half of the 0.8 s left
    assert p.tick(4.6) == [RenewToken()]
    assert p.token_renewed("t3", 4.6) == [SendMessages([Auth("t3")])]
    assert p.receive(Authed(5.0), 4.7) == [TokenRenewed(5.0)]
    assert p.token == "t3"


def test_an_authed_nobody_asked_for_changes_nothing() -> None:
    """A relay's authed with no auth of ours out: ignored."""
    p = client()
    joined(p, 5.0)
    assert p.receive(Authed(100.0), 1.0) == []
    assert p.token == "t1" and p.next_deadline() == pytest.approx(4.0)


# --- the connection around it ---------------------------------------------------------------


def test_without_a_provider_the_expiry_is_not_acted_on() -> None:
    """No token provider: no renewal; the 4004 ends the session as before."""
    p = client(can_refresh=False)
    joined(p, 5.0)
    assert p.next_deadline() == pytest.approx(10_000.0)
    assert p.tick(4.9) == []
    assert p.closed(CloseCode.AUTH_EXPIRED, 5.0)[-2:] == [
        AuthExpiredEvent(),
        StateChanged(Status.CLOSED),
    ]


def test_an_answer_after_the_connection_ended_is_dropped() -> None:
    """The connection went down while the provider ran: its token is not offered on
    the next connection (that one's welcome plans its own renewal)."""
    p = client()
    joined(p, 5.0)
    p.tick(4.0)
    p.closed(1006, 4.1)
    assert p.state is State.BACKOFF
    assert p.token_renewed("t2", 4.2) == []
    p.connect(5.0)
    assert hello_token(p, 5.0) == "t1"


def test_expiry_while_renewing_falls_back_to_the_4004_path() -> None:
    """The relay closes 4004 before the new token arrived: NeedToken as before, the late
    renewal answer is dropped, and the refreshed token reconnects."""
    p = client()
    joined(p, 5.0)
    p.tick(4.0)
    assert p.closed(CloseCode.AUTH_EXPIRED, 5.0)[-1] == NeedToken(CloseCode.AUTH_EXPIRED)
    assert p.token_renewed("t2", 5.1) == []
    assert p.state is State.REFRESHING
    p.token_refreshed("t3", 5.2)
    p.connect(6.0)
    assert hello_token(p, 6.0) == "t3"


def test_renewal_waits_until_the_relay_proved_itself() -> None:
    """With a relay check, no token goes out before the proof checked out."""
    p = client(verify=True)
    p.connect(0.0)
    p.opened(0.0)
    assert p.receive(welcome(0.0), 0.0) == [VerifyProof(NONCE, None)]
    assert p.state is State.VERIFYING
    assert p.next_deadline() != 0.0
    assert p.tick(1.0) == []
    p.proof_checked(True, 1.0)
    assert p.next_deadline() == 0.0
    assert p.tick(1.0) == [RenewToken()]


def test_a_lifetime_that_is_not_a_number_of_seconds_is_ignored() -> None:
    """welcome.limits values are free numbers: a negative or infinite lifetime plans nothing."""
    for bogus in (-1.0, float("inf"), float("nan")):
        p = client()
        joined(p, bogus)
        assert p.next_deadline() == pytest.approx(10_000.0)
