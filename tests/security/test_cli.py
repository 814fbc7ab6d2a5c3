"""The command line's security options: ``livewidgets token`` and ``livewidgets relay``
with and without a secret (docs/security.md "Running a relay securely")."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from livewidgets.auth import Role, issue_token, load_secret, verify_token
from livewidgets.cli import main
from livewidgets.protocol import Error

from ..relay.helpers import TIMEOUT
from .helpers import SECRET, assert_serves, hello


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "relay.secret"
    path.write_bytes(SECRET.hex().encode() + b"\n")  # 64 printable bytes, newline stripped
    path.chmod(0o600)
    return path


def test_token_round_trips(secret_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`livewidgets token` prints a token that verify_token accepts with the same claims."""
    argv = ["token", "--room", "class-101/*", "--user", "ada", "--role", "read"]
    assert main([*argv, "--ttl", "15m", "--secret-file", str(secret_file)]) == 0
    printed = capsys.readouterr().out.strip()
    secret = load_secret(str(secret_file))
    assert secret is not None
    claims = verify_token(secret, printed)
    assert (claims.user, claims.room, claims.role) == ("ada", "class-101/*", Role.READ)
    assert claims.admits("class-101/poll") and not claims.admits("class-102/poll")
    with pytest.raises(ValueError, match="invalid token"):
        verify_token(b"x" * 32, printed)


def test_token_needs_a_long_enough_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No secret, or one shorter than 32 bytes: status 2 and a message, no token."""
    monkeypatch.delenv("LIVEWIDGETS_SECRET", raising=False)
    assert main(["token", "--room", "r", "--user", "u"]) == 2
    assert "no secret" in capsys.readouterr().err
    short = tmp_path / "short"
    short.write_text("hunter2")
    assert main(["token", "--room", "r", "--user", "u", "--secret-file", str(short)]) == 2
    assert "at least 32 bytes" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", ""])
def test_public_relay_without_secret_is_refused(
    host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Binding a non-loopback address without a secret exits 1 with the reason."""
    monkeypatch.delenv("LIVEWIDGETS_SECRET", raising=False)
    assert main(["relay", "--host", host, "--port", "0", "--store", "memory://"]) == 1
    err = capsys.readouterr().err
    assert "refusing to serve" in err and "without a secret" in err


@contextlib.asynccontextmanager
async def relay_process(*args: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """Run ``livewidgets relay --port 0 ...``; yield its URL; SIGTERM it by pid after."""
    env = {k: v for k, v in os.environ.items() if k != "LIVEWIDGETS_SECRET"}
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "livewidgets.cli", "relay", "--port", "0"],
        *["--store", "memory://", "--log-level", "warning", *args],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 4 * TIMEOUT)
        match = re.search(rb"listening on (wss?://\S+)", line)
        assert match, f"unexpected first line {line!r}"
        yield match[1].decode(), process
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGTERM)  # this process only, by its pid
        await asyncio.wait_for(process.wait(), 4 * TIMEOUT)


async def test_insecure_relay_starts_and_warns() -> None:
    """--insecure on 0.0.0.0 starts (clients connect without a token) and warns loudly."""
    async with relay_process("--host", "0.0.0.0", "--insecure") as (url, process):
        port = url.rsplit(":", 1)[1]
        await assert_serves(f"ws://127.0.0.1:{port}")
    assert process.stderr is not None
    err = (await process.stderr.read()).decode()
    assert "no secret, no tokens checked (INSECURE)" in err
    assert process.returncode == 0  # SIGTERM is a clean, graceful stop


async def test_relay_with_secret_file_tls_and_origins(secret_file: Path, tmp_path: Path) -> None:
    """--secret-file refuses tokenless clients; TLS and --allow-origin work in a real process."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)
    async with relay_process(
        *["--secret-file", str(secret_file), "--allow-origin", "https://hub.example.org"],
        *["--certfile", str(certfile), "--keyfile", str(keyfile)],
    ) as (url, _):
        assert url.startswith("wss://")
        client, answer = await hello(url, None, ssl=client_ssl)
        assert isinstance(answer, Error) and answer.code == "auth_required"
        assert await client.closed() == 4003
        secret = load_secret(str(secret_file))
        assert secret is not None
        await assert_serves(url, issue_token(secret, user="ada", room="*"), ssl=client_ssl)
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, ssl=client_ssl, origin=Origin("https://evil.example"))
        assert refused.value.response.status_code == 403
