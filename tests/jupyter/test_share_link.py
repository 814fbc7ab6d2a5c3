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


def test_share_link_makes_a_link_with_an_id_to_revoke_it_by(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without --user, a link token: it names a link (its id printed, with the revoke
    line), not a user, so each holder is somebody of their own."""
    monkeypatch.setenv("LIVEWIDGETS_SECRET", SECRET)
    text = extension.share_link("write", room="class-1", ttl="30m")
    token = text.split("token: ", 1)[1].split()[0]
    claims = verify_token(SECRET.encode(), token)
    assert (claims.user, claims.room, claims.role) == (None, "class-1", Role.WRITE)
    assert claims.link_id is not None
    assert f"link id {claims.link_id}" in text
    assert f"%livewidgets revoke --link {claims.link_id}" in text
    assert f"--room class-1 --token {token} --user <your name>" in text


def test_the_token_command_makes_links_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``livewidgets token --link``: the token on stdout, its link id on stderr."""
    from livewidgets import cli

    monkeypatch.setenv("LIVEWIDGETS_SECRET", SECRET)
    assert cli.main(["token", "--room", "class-1", "--link", "--role", "read"]) == 0
    out, err = capsys.readouterr()
    claims = verify_token(SECRET.encode(), out.strip())
    assert claims.user is None and claims.role is Role.READ
    assert f"link id: {claims.link_id} (livewidgets revoke URL --link {claims.link_id})" in err
    # A personal token may not take a name reserved for link holders.
    assert cli.main(["token", "--room", "r", "--user", "ada (guest)"]) == 2
    assert "reserved for link holders" in capsys.readouterr().err
