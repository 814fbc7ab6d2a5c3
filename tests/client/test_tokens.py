"""TokenCommand: a shell command's output as a token provider, with precise failures.
Every case runs a real command (``sys.executable -c``)."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pytest

from livewidgets.client.tokens import TOKEN_CMD_ENV, TokenCommand, command_from_env
from livewidgets.errors import LivewidgetsError, TokenCommandError


def python(code: str) -> str:
    """A shell command running ``code`` with this interpreter."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def test_the_output_stripped_is_the_token() -> None:
    assert TokenCommand(python("print('  eyJ.abc.def  ')"))() == "eyJ.abc.def"


def test_each_call_runs_the_command_again(tmp_path: Path) -> None:
    """A provider, not a cache: every renewal gets what the command prints then."""
    counter = tmp_path / "n"
    code = (
        f"import pathlib; p = pathlib.Path({str(counter)!r}); "
        "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); print(f't{n}')"
    )
    command = TokenCommand(python(code))
    assert [command(), command(), command()] == ["t1", "t2", "t3"]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "import sys; sys.stderr.write('no session for ada\\n'); sys.exit(3)",
            "failed with exit status 3: no session for ada",
        ),
        ("print('   ')", "printed no token"),
        ("print('Bearer eyJ.abc')", "printed 2 words; it must print the token alone"),
        ("print('x' * 5000)", "printed 5000 characters; a token has at most 4096"),
    ],
    ids=["exit-status", "empty", "two-words", "too-long"],
)
def test_failures_say_what_went_wrong(code: str, message: str) -> None:
    command = TokenCommand(python(code))
    with pytest.raises(TokenCommandError, match=message) as caught:
        command()
    assert isinstance(caught.value, LivewidgetsError)
    assert "token command" in str(caught.value)


def test_a_command_that_hangs_is_killed_at_the_timeout() -> None:
    """The command and what it started are killed: the call returns soon after the
    timeout even though a child still held the pipes."""
    child = "[sys.executable, '-c', 'import time; time.sleep(30)']"
    code = f"import subprocess, sys, time; subprocess.Popen({child}); time.sleep(30)"
    started = time.monotonic()
    with pytest.raises(TokenCommandError, match=r"did not finish within 0\.5 s"):
        TokenCommand(python(code), timeout=0.5)()
    assert time.monotonic() - started < 5


def test_a_command_that_does_not_exist_fails_with_the_shells_status() -> None:
    with pytest.raises(TokenCommandError, match="exit status 127"):
        TokenCommand("/nonexistent/livewidgets-token-helper")()


def test_the_environment_names_the_command() -> None:
    assert command_from_env({}) is None
    assert command_from_env({TOKEN_CMD_ENV: "  "}) is None
    assert command_from_env({TOKEN_CMD_ENV: "get-token --room x"}, timeout=3) == TokenCommand(
        "get-token --room x", 3
    )
