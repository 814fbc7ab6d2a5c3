"""Token providers: where a session gets a fresh token (docs/security.md "Renewal").

A provider is any callable returning a token, or None when there is none
(``EngineConfig.token_refresh``). :class:`TokenCommand` makes one of a shell
command whose standard output is the token, as ``%livewidgets connect --token-cmd``,
``$LIVEWIDGETS_TOKEN_CMD`` and ``livewidgets.connect(..., token_cmd=...)`` use it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import TokenCommandError

__all__ = ["TOKEN_CMD_ENV", "TokenCommand", "TokenCommandError", "command_from_env"]

# The environment variable naming a token command (the extension reads it).
TOKEN_CMD_ENV = "LIVEWIDGETS_TOKEN_CMD"
# What the relay accepts as a token (hello.token, auth.token).
_MAX_TOKEN = 4096
# How much of the command's standard error an error message quotes.
_STDERR_TAIL = 500


@dataclass(frozen=True)
class TokenCommand:
    """A token provider that runs ``command`` in the shell (``/bin/sh -c``, no
    standard input) and returns its standard output, stripped.

    It fails with a :class:`TokenCommandError` that says why: not done within
    ``timeout`` seconds (the command and its children are killed), a non-zero exit
    status (with the end of its standard error), nothing printed, more than one
    word, or more than 4096 characters. The engine reports such a failure as an
    ``error`` event (``during="token_refresh"``) and asks again later.
    """

    command: str
    timeout: float = 10.0

    def __call__(self) -> str:
        try:
            process = subprocess.Popen(
                self.command,
                shell=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                # Its own process group, so that a timeout also kills what it started
                # (which would otherwise hold the pipes open).
                start_new_session=True,
            )
        except OSError as exc:
            raise TokenCommandError(f"token command {self.command!r} did not start: {exc}") from exc
        try:
            out, err = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            raise TokenCommandError(
                f"token command {self.command!r} did not finish within {self.timeout:g} s"
            ) from None
        if process.returncode != 0:
            detail = err.strip()[-_STDERR_TAIL:]
            raise TokenCommandError(
                f"token command {self.command!r} failed with exit status "
                f"{process.returncode}" + (f": {detail}" if detail else "")
            )
        token = out.strip()
        if not token:
            raise TokenCommandError(f"token command {self.command!r} printed no token")
        if len(token.split()) > 1:
            raise TokenCommandError(
                f"token command {self.command!r} printed {len(token.split())} words; "
                "it must print the token alone"
            )
        if len(token) > _MAX_TOKEN:
            raise TokenCommandError(
                f"token command {self.command!r} printed {len(token)} characters; "
                f"a token has at most {_MAX_TOKEN}"
            )
        return token


def command_from_env(
    env: Mapping[str, str] | None = None, *, timeout: float = 10.0
) -> TokenCommand | None:
    """The provider ``$LIVEWIDGETS_TOKEN_CMD`` names (None if unset or blank)."""
    command = (os.environ if env is None else env).get(TOKEN_CMD_ENV, "").strip()
    return TokenCommand(command, timeout) if command else None


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (AttributeError, OSError):  # not POSIX, or already gone
        process.kill()
