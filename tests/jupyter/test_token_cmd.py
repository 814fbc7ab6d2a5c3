"""``%livewidgets connect --token-cmd`` and ``$LIVEWIDGETS_TOKEN_CMD``: a real command
prints the tokens of a relay with a secret; the session takes its first token from
it and renews it on the open connection (docs/security.md "Renewal")."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import livewidgets
from livewidgets.errors import TokenCommandError
from livewidgets.jupyter import extension
from livewidgets.relay.security import SecurityPolicy

SECRET = b"t" * 40

# Issues a token for (user, room) with the secret in argv[1] and a lifetime of
# argv[4] seconds, and counts its runs in the file argv[5].
SCRIPT = """\
import pathlib, sys
from livewidgets.auth import issue_token
secret, user, room, ttl, counter = sys.argv[1:]
runs = pathlib.Path(counter)
runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
print(issue_token(pathlib.Path(secret).read_bytes(), user=user, room=room, ttl=float(ttl)))
"""


@pytest.fixture
def relay(thread_relay: Callable[..., Any]) -> Any:
    return thread_relay(policy=SecurityPolicy(SECRET))


@pytest.fixture
def token_cmd(tmp_path: Path, room: str) -> Callable[..., tuple[str, Path]]:
    """``token_cmd(ttl)``: a shell command printing a fresh token for alice in the
    room, and the file counting its runs."""
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "issue.py").write_text(SCRIPT)

    def make(ttl: float = 3600) -> tuple[str, Path]:
        runs = tmp_path / f"runs-{ttl}"
        argv = [sys.executable, tmp_path / "issue.py", tmp_path / "secret", "alice", room]
        return shlex.join([*map(str, argv), str(ttl), str(runs)]), runs

    return make


@pytest.fixture(autouse=True)
def _disconnect(runtime_env: dict[str, str]) -> Iterator[None]:
    """Nothing touches a real local relay; the kernel's session is closed after."""
    yield
    extension.disconnect()


def test_token_cmd_gives_the_first_token_and_renews_it_in_place(
    relay: Any,
    room: str,
    token_cmd: Callable[..., tuple[str, Path]],
    wait_until: Callable[..., Any],
) -> None:
    """--token-cmd: joined with the command's token; a 10 s token renewed by running it
    again, on the same connection; writes keep landing. (The first renewal, at 80 % of
    the 9-10 s it has, leaves this Python command 1.8 s, enough on a loaded machine.)"""
    command, runs = token_cmd(ttl=10)
    line = f"connect {relay.url} --room {room} --user alice --token-cmd {shlex.quote(command)}"
    extension.livewidgets_magic(line + " --heartbeat 0.5")
    session = livewidgets.session()
    assert runs.read_text() == "x"  # the first token
    wait_until(lambda: session.metrics["token_renewals"] >= 1, 20, message="a renewal")
    session.increment("n").result(5)
    assert session.get("n") == 1
    assert len(runs.read_text()) >= 2
    assert session.metrics["attempts"] == 1 and session.metrics["disconnections"] == 0


def test_the_environment_names_the_token_command(
    relay: Any,
    room: str,
    token_cmd: Callable[..., tuple[str, Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No --token-cmd: $LIVEWIDGETS_TOKEN_CMD gives the token (the relay needs one)."""
    command, runs = token_cmd()
    monkeypatch.setenv("LIVEWIDGETS_TOKEN_CMD", command)
    extension.livewidgets_magic(f"connect {relay.url} --room {room} --user alice")
    assert runs.read_text() == "x"
    assert livewidgets.session().set("k", 1).result(5) >= 1


def test_a_failing_token_cmd_is_a_clear_error(relay: Any, room: str) -> None:
    """The command's exit status and stderr, before any connection is tried."""
    failing = shlex.quote(f"{sys.executable} -c \"import sys; sys.exit('no credentials')\"")
    line = f"connect {relay.url} --room {room} --token-cmd {failing}"
    with pytest.raises(TokenCommandError, match="failed with exit status 1: no credentials"):
        extension.livewidgets_magic(line)
    assert "not connected" in extension.status()
