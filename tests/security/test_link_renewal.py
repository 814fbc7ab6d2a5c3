"""Renewing a link holder's token (without sockets): the holder stays the same person,
another link or a personal token is refused, and a revoked link is not renewed."""

from __future__ import annotations

import time

from livewidgets.auth import issue_link_token, issue_token, verify_token
from livewidgets.protocol.codes import ErrorCode
from livewidgets.protocol.messages import PROTOCOL_VERSION, Hello
from livewidgets.relay.policy import Denied, Principal
from livewidgets.relay.revocation import Revocation, RevokeKind
from livewidgets.relay.security import SecurityPolicy

from .helpers import SECRET


def holder(policy: SecurityPolicy, token: str) -> Principal:
    hello = Hello(PROTOCOL_VERSION, client_id="kernel-1", user="ana", token=token)
    granted = policy.on_hello(hello, None)
    assert isinstance(granted, Principal)
    return granted


def test_a_link_holder_renews_as_the_same_person() -> None:
    policy = SecurityPolicy(SECRET)
    token, link = issue_link_token(SECRET, room="class", role="write", ttl=60)
    ana = holder(policy, token)
    fresh, _ = issue_link_token(SECRET, room="class", role="write", ttl=600, link_id=link)
    renewed = policy.on_renew(ana, fresh, ["class"])
    assert isinstance(renewed, Principal)
    assert (renewed.user, renewed.client_id) == (ana.user, ana.client_id)
    assert renewed.claims["owner"] == ana.claims["owner"]  # her own rate buckets
    assert renewed.claims["expires_at"] == verify_token(SECRET, fresh).expires_at


def test_another_link_or_a_personal_token_is_not_hers() -> None:
    policy = SecurityPolicy(SECRET)
    token, _ = issue_link_token(SECRET, room="class", ttl=60)
    ana = holder(policy, token)
    other, _ = issue_link_token(SECRET, room="class", ttl=600)
    personal = issue_token(SECRET, user=ana.user.split(" ")[0], room="class")
    for fresh in (other, personal):
        refused = policy.on_renew(ana, fresh, ["class"])
        assert isinstance(refused, Denied) and refused.code is ErrorCode.FORBIDDEN
        assert "another user needs a connection of their own" in refused.message


def test_a_revoked_link_is_not_renewed() -> None:
    policy = SecurityPolicy(SECRET)
    token, link = issue_link_token(SECRET, room="class", ttl=60)
    ana = holder(policy, token)
    policy.add_revoked([Revocation(RevokeKind.LINK, link, "*", time.time())])
    fresh, _ = issue_link_token(SECRET, room="class", ttl=600, link_id=link)
    refused = policy.on_renew(ana, fresh, ["class"])
    assert isinstance(refused, Denied) and refused.code is ErrorCode.AUTH_REVOKED
