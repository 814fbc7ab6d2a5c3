"""`%livewidgets share-link`: a capability token for the kernel's room."""

from __future__ import annotations

import pytest

from livewidgets.auth import Role, verify_token
from livewidgets.jupyter import extension

SECRET = "s" * 40


def test_share_link_needs_the_relays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a secret there is nothing to sign: a clear error, no token."""
    monkeypatch.delenv("LIVEWIDGETS_SECRET", raising=False)
    with pytest.raises(RuntimeError, match="needs the relay's secret"):
        extension.share_link("read", room="class-1")


def test_share_link_prints_a_verifiable_token_for_the_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The printed token admits exactly that room with that role, until the TTL."""
    monkeypatch.setenv("LIVEWIDGETS_SECRET", SECRET)
    text = extension.share_link("read", room="class-1", ttl="30m", user="students")
    token = text.rsplit("token: ", 1)[1].strip()
    claims = verify_token(SECRET.encode(), token)
    assert (claims.room, claims.role, claims.user) == ("class-1", Role.READ, "students")
    assert f"--room class-1 --token {token}" in text
