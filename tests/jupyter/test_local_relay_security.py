"""The local relay is private by default: a secret in a 0600 runtime file, tokens minted
by this user's kernels, browser pages of other sites refused at the handshake.

Everything runs against real relay processes on 127.0.0.1 started by
``local_relay.ensure_relay()`` in a temp runtime dir (stopped by pid afterwards), with
raw ``websockets`` clients where the point is what a stranger can do.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin, Subprotocol

import livewidgets
from livewidgets import local_relay
from livewidgets.auth import Role, issue_token, relay_proof, verify_token
from livewidgets.client import Session
from livewidgets.errors import JoinRefused, OpRejected, SessionClosed
from livewidgets.jupyter import extension
from livewidgets.protocol import JSON_SUBPROTOCOL, PROTOCOL_VERSION, Error, Hello, Welcome
from livewidgets.protocol.codec import client_codec, server_codec
from livewidgets.relay.security import SecurityPolicy

Wait = Callable[..., Any]

FAST: dict[str, Any] = {"heartbeat_interval": 0.5, "heartbeat_timeout": 1.0}
_server = server_codec(JSON_SUBPROTOCOL)  # encodes client messages
_client = client_codec(JSON_SUBPROTOCOL)  # decodes the relay's


@pytest.fixture
def relay(runtime_env: dict[str, str], timeout: float) -> Iterator[local_relay.RelayInfo]:
    """This test's local relay (runtime and data dirs in tmp), stopped at the end."""
    info = local_relay.ensure_relay(timeout=3 * timeout)
    yield info
    extension.disconnect()
    stopped = local_relay.stop_relay()
    assert stopped is None or stopped.pid == info.pid


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    """Sessions a test opens itself; closed at the end."""
    opened: list[Session] = []
    yield opened
    for session in opened:
        session.close()


def _raw(url: str, origin: str | None = None) -> ClientConnection:
    """A bare WebSocket to the relay, as any program (or page) on this machine opens it."""
    return ws_connect(
        url,
        origin=Origin(origin) if origin is not None else None,
        subprotocols=[Subprotocol(JSON_SUBPROTOCOL)],
        open_timeout=5,
    )


def _hello(ws: ClientConnection, token: str | None = None) -> Any:
    """Send hello (with ``token``), return the relay's answer, decoded."""
    ws.send(_server.frame(Hello(PROTOCOL_VERSION, user="mallory", token=token)))
    return _client.decode(ws.recv(timeout=5))


def _closed_code(ws: ClientConnection) -> int | None:
    """Wait until the relay closes ``ws``; its close code."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            break
        except Exception:
            break
    return ws.close_code


def _mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- the runtime file ----------------------------------------------------------------------


def test_runtime_file_is_private_and_holds_the_secret(
    runtime_env: dict[str, str], timeout: float
) -> None:
    """The runtime dir (even one that existed with mode 0755) ends at 0700; the runtime
    file, log, lock and room database are 0600; the file holds a fresh secret long
    enough for HS256, which is neither on the relay's command line nor in reprs."""
    runtime = Path(runtime_env["LIVEWIDGETS_RUNTIME_DIR"])
    runtime.mkdir(mode=0o755)
    os.chmod(runtime, 0o755)
    info = local_relay.ensure_relay(timeout=3 * timeout)
    try:
        assert _mode(runtime) == 0o700
        path = local_relay.runtime_file()
        assert _mode(path) == 0o600
        assert os.stat(path).st_uid == os.geteuid()
        secret = json.loads(path.read_text())["secret"]
        assert secret == info.secret and len(secret.encode()) >= 32
        for name in ("livewidgets-relay.log", "livewidgets-relay.lock"):
            assert _mode(runtime / name) == 0o600, name
        db = Path(info.store.removeprefix("sqlite:///"))
        assert _mode(db) == 0o600
        cmdline = Path(f"/proc/{info.pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline
        assert b"--allow-origin" in cmdline
        assert secret not in repr(info) and secret not in extension._relay_status()
        assert "tokens required" in extension._relay_status()
    finally:
        local_relay.stop_relay()
    # The next relay gets a secret of its own.
    again = local_relay.ensure_relay(timeout=3 * timeout)
    try:
        assert again.secret and again.secret != info.secret
    finally:
        local_relay.stop_relay()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root (chown)")
def test_runtime_dir_of_another_user_is_refused(runtime_env: dict[str, str]) -> None:
    """A runtime dir owned by someone else (who could swap the file) is not used."""
    runtime = Path(runtime_env["LIVEWIDGETS_RUNTIME_DIR"])
    runtime.mkdir(mode=0o700)
    os.chown(runtime, 65534, 65534)
    with pytest.raises(local_relay.LocalRelayError, match="belongs to another user"):
        local_relay.ensure_relay()


def test_relay_without_a_secret_is_replaced(runtime_env: dict[str, str], timeout: float) -> None:
    """A relay recorded without a secret (an older livewidgets started it; it admits
    anyone) is stopped and replaced by one with a secret."""
    data = Path(runtime_env["LIVEWIDGETS_DATA_DIR"])
    data.mkdir(parents=True)
    log = data / "old-relay.log"
    with open(log, "wb") as out:
        old = subprocess.Popen(
            [
                *(sys.executable, "-m", "livewidgets.cli", "relay", "--port", "0"),
                *("--store", "memory://"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "LIVEWIDGETS_SECRET": ""},
        )
    try:
        deadline = time.monotonic() + 3 * timeout
        while not (found := local_relay._LISTENING.search(log.read_text())):
            assert old.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        url = found.group(1)
        runtime = local_relay.runtime_dir()
        (runtime / local_relay.RUNTIME_FILE).write_text(json.dumps({"url": url, "pid": old.pid}))
        assert local_relay.is_alive(local_relay.RelayInfo.from_json({"url": url, "pid": old.pid}))
        info = local_relay.ensure_relay(timeout=3 * timeout)
        try:
            assert info.pid != old.pid and info.secret
            assert old.wait(timeout) is not None  # the old one was stopped
        finally:
            local_relay.stop_relay()
    finally:
        if old.poll() is None:
            old.kill()
        old.wait()


# --- strangers: no token, foreign pages ----------------------------------------------------


def test_client_without_a_token_is_refused(relay: local_relay.RelayInfo) -> None:
    """Any program that can reach 127.0.0.1 but has no token: auth_required, close 4003
    (docs/security.md); a token signed with another secret: auth_invalid, 4003."""
    with _raw(relay.url) as ws:
        answer = _hello(ws)
        assert isinstance(answer, Error) and answer.code == "auth_required"
        assert _closed_code(ws) == 4003
    forged = issue_token(b"x" * 32, user="mallory", room="*", role=Role.ADMIN)
    with _raw(relay.url) as ws:
        answer = _hello(ws, forged)
        assert isinstance(answer, Error) and answer.code == "auth_invalid"
        assert _closed_code(ws) == 4003


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "https://evil.example:8888", "http://localhost.evil.example", "null"],
)
def test_foreign_origin_is_refused_at_the_handshake(
    relay: local_relay.RelayInfo, origin: str
) -> None:
    """A page of another site (or a sandboxed one, Origin: null) gets HTTP 403: it never
    gets a WebSocket, let alone a room."""
    with pytest.raises(InvalidStatus) as refused:
        _raw(relay.url, origin)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:8888", "http://127.0.0.1:8888", "http://[::1]:8888", "http://localhost"],
)
def test_local_origin_passes_the_handshake_but_still_needs_a_token(
    relay: local_relay.RelayInfo, origin: str
) -> None:
    """Pages of this machine (JupyterLab on localhost, any port) pass the Origin check;
    without a token they are still refused at hello, with one they are welcome."""
    with _raw(relay.url, origin) as ws:
        answer = _hello(ws)
        assert isinstance(answer, Error) and answer.code == "auth_required"
    token = local_relay.issue_local_token(relay, user="lab", room="r", role="read", ttl=60)
    with _raw(relay.url, origin) as ws:
        assert isinstance(_hello(ws, token), Welcome)


def _http_status(url: str, path: str, host: str) -> int:
    """Status of a plain GET to the relay with exactly this Host header."""
    address, port = url.removeprefix("ws://").rsplit(":", 1)
    with socket.create_connection((address, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return int(sock.makefile("rb").readline().split()[1])


def test_dns_rebinding_pages_cannot_read_health_or_metrics(relay: local_relay.RelayInfo) -> None:
    """A page whose DNS name was rebound to 127.0.0.1 is same-origin with itself, so its
    browser would let it read plain GETs: the relay answers only Hosts of this machine."""
    port = relay.url.rsplit(":", 1)[1]
    for path in ("/healthz", "/metrics"):
        assert _http_status(relay.url, path, f"rebound.evil.example:{port}") == 403
        assert _http_status(relay.url, path, f"127.0.0.1:{port}") == 200
        assert _http_status(relay.url, path, f"localhost:{port}") == 200


# --- this user's kernels and sessions ----------------------------------------------------


def test_kernel_session_uses_a_token_for_its_user_and_room(
    relay: local_relay.RelayInfo, room: str
) -> None:
    """connect() without URL: a token of this relay's secret for the kernel's user and
    room only (the relay stamps its user), renewable; the session syncs."""
    session = extension.connect(room=room, user="alice", **FAST)
    token = session._engine.token
    assert token is not None
    claims = verify_token(relay.secret.encode(), token)
    assert (claims.user, claims.room, claims.role) == ("alice", room, Role.ADMIN)
    assert claims.expires_at - time.time() == pytest.approx(local_relay.TOKEN_TTL, abs=5)
    assert session._engine.config.token_refresh is not None
    # Not expired and the same relay: a fresh token would not help, so none is made.
    assert session._engine.config.token_refresh() is None
    session.set("x", 1).result(5)
    assert "local relay" in extension.status()


def test_plain_connect_to_the_local_relay_url_mints_a_token(
    relay: local_relay.RelayInfo, room: str, sessions: list[Session], wait_until: Wait
) -> None:
    """``lw.connect(relay_url(), room, "grace")`` (the examples' simulated peers) works:
    the client finds this user's local relay in the runtime file and signs a token for
    grace; she appears as grace and her writes reach the kernel's session."""
    kernel = extension.connect(room=room, user="alice", **FAST)
    grace = livewidgets.connect(extension.relay_url(), room, "grace", timeout=10, **FAST)
    sessions.append(grace)
    grace.set("from/grace", 1).result(5)
    wait_until(lambda: kernel.get("from/grace") == 1, message="grace's write in alice's session")
    wait_until(
        lambda: kernel.presence.get(grace.client_id, {}).get("user") == "grace",
        message="grace in presence as grace",
    )


def test_token_is_renewed_when_it_expires(
    relay: local_relay.RelayInfo,
    room: str,
    monkeypatch: pytest.MonkeyPatch,
    sessions: list[Session],
    wait_until: Wait,
) -> None:
    """With 2 s tokens, the kernel's session mints a new token before each expiry and
    renews it on the open connection (docs/security.md "Renewal"), several times over:
    no 4004, no reconnect, and it keeps syncing."""
    monkeypatch.setattr(local_relay, "TOKEN_TTL", 2.0)
    kernel = extension.connect(room=room, user="alice", **FAST)
    peer = livewidgets.connect(relay.url, room, "bob", timeout=10, **FAST)
    sessions.append(peer)
    first = kernel._engine.token
    closes: list[dict[str, Any]] = []
    kernel.on("disconnected", closes.append)
    deadline = time.monotonic() + 7
    n = 0
    while time.monotonic() < deadline:
        n += 1
        kernel.set("n", n)
        wait_until(lambda n=n: peer.get("n") == n, message=f"n={n} at the peer")
        time.sleep(0.2)
    assert kernel._engine.token != first
    assert verify_token(relay.secret.encode(), kernel._engine.token or "").user == "alice"
    assert kernel.metrics["token_renewals"] >= 2
    assert closes == [] and kernel.metrics["attempts"] == 1


def test_share_link_carries_a_room_scoped_token_of_the_local_relay(
    relay: local_relay.RelayInfo,
    room: str,
    monkeypatch: pytest.MonkeyPatch,
    sessions: list[Session],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`%livewidgets share-link --role write` on the local relay needs no secret from the
    user: the printed line joins this room as a writer (until the TTL), and nothing else."""
    monkeypatch.delenv("LIVEWIDGETS_SECRET", raising=False)
    extension.connect(room=room, user="alice", **FAST)
    extension.livewidgets_magic("share-link --role write --ttl 10m --user guest")
    text = capsys.readouterr().out
    token = text.rsplit("token: ", 1)[1].strip()
    assert f"%livewidgets connect {relay.url} --room {room} --token {token}" in text
    claims = verify_token(relay.secret.encode(), token)
    assert (claims.user, claims.room, claims.role) == ("guest", room, Role.WRITE)
    assert claims.expires_at - time.time() == pytest.approx(600, abs=5)
    guest = livewidgets.connect(relay.url, room, "guest", token, timeout=10, **FAST)
    sessions.append(guest)
    guest.set("from/guest", 1).result(5)
    with pytest.raises(JoinRefused):
        sessions.append(livewidgets.connect(relay.url, f"{room}-other", "guest", token, **FAST))
    # A read link is read-only.
    reader_token = extension.share_link("read", ttl="10m").rsplit("token: ", 1)[1].strip()
    reader = livewidgets.connect(relay.url, room, "r", reader_token, timeout=10, **FAST)
    sessions.append(reader)
    with pytest.raises(OpRejected) as refused:
        reader.set("from/reader", 1).result(5)
    assert refused.value.code == "forbidden"


def test_a_local_relay_link_makes_each_holder_somebody_and_can_be_revoked(
    relay: local_relay.RelayInfo,
    room: str,
    monkeypatch: pytest.MonkeyPatch,
    sessions: list[Session],
    capsys: pytest.CaptureFixture[str],
    wait_until: Wait,
) -> None:
    """`%livewidgets share-link` (a link) on the zero-config local relay: two people with
    it are two people; `%livewidgets revoke --link ID` closes them (4006) and only them."""
    monkeypatch.delenv("LIVEWIDGETS_SECRET", raising=False)
    kernel = extension.connect(room=room, user="alice", **FAST)
    extension.livewidgets_magic("share-link --role write --ttl 10m")
    text = capsys.readouterr().out
    token = text.rsplit("token: ", 1)[1].strip()
    link_id = verify_token(relay.secret.encode(), token).link_id
    assert link_id is not None and f"%livewidgets revoke --link {link_id}" in text
    people = [
        livewidgets.connect(relay.url, room, name, token, timeout=10, **FAST)
        for name in ("ada", "grace")
    ]
    sessions.extend(people)
    wait_until(
        lambda: (
            {p.get("user") for p in kernel.presence.values()} == {"ada (guest)", "grace (guest)"}
        ),
        message="two guests in presence",
    )
    closes: list[dict[str, Any]] = []
    people[0].on("disconnected", closes.append)
    extension.livewidgets_magic(f"revoke --link {link_id}")
    assert capsys.readouterr().out.strip() == (
        f"livewidgets: revoked link {link_id}; closed 2 connection(s) on this relay"
    )
    wait_until(lambda: all(p.connection_state == "closed" for p in people), message="both closed")
    assert [close.get("code") for close in closes] == [4006]
    kernel.set("still", "here").result(5)
    with pytest.raises((JoinRefused, SessionClosed, TimeoutError)):
        sessions.append(livewidgets.connect(relay.url, room, "eve", token, timeout=5, **FAST))


def test_explicit_relay_url_keeps_its_own_token(
    relay: local_relay.RelayInfo,
    room: str,
    thread_relay: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a local relay running, `$LIVEWIDGETS_URL` + `$LIVEWIDGETS_TOKEN` for another
    relay (one with its own secret) are used as before; share-link signs with that
    relay's secret ($LIVEWIDGETS_SECRET), not the local one."""
    secret = b"k" * 40
    other = thread_relay(policy=SecurityPolicy(secret))
    try:
        token = issue_token(secret, user="ada", room=room, role=Role.WRITE)
        monkeypatch.setenv("LIVEWIDGETS_URL", other.url)
        monkeypatch.setenv("LIVEWIDGETS_TOKEN", token)
        monkeypatch.setenv("LIVEWIDGETS_SECRET", secret.decode())
        extension.livewidgets_magic(f"connect --room {room} --user ada")
        assert f"on {other.url} ($LIVEWIDGETS_URL)" in capsys.readouterr().out
        session = livewidgets.session()
        assert session._engine.token == token
        session.set("x", 1).result(5)
        link = extension.share_link("read", ttl="5m")
        assert other.url in link
        verify_token(secret, link.rsplit("token: ", 1)[1].strip())
    finally:
        extension.disconnect()


# --- the relay proves itself ------------------------------------------------------------


def test_welcome_proves_the_local_relay_holds_its_secret(relay: local_relay.RelayInfo) -> None:
    """A hello with a nonce gets welcome.proof: HMAC of the nonce under the relay's
    secret, which the kernel's check accepts and another secret's does not."""
    local = local_relay.credentials(relay.url, "proof-room", "alice")
    assert local is not None
    nonce = "n" * 32
    with _raw(relay.url) as ws:
        ws.send(_server.frame(Hello(PROTOCOL_VERSION, token=local.token, nonce=nonce)))
        welcome = _client.decode(ws.recv(timeout=5))
    assert isinstance(welcome, Welcome) and welcome.proof
    assert welcome.proof == relay_proof(relay.secret.encode(), nonce)
    assert local.verify_relay(nonce, welcome.proof)
    assert not local.verify_relay("m" * 32, welcome.proof)
    assert not local.verify_relay(nonce, relay_proof(b"x" * 32, nonce))


def test_a_process_on_a_dead_relays_port_gets_no_session(
    relay: local_relay.RelayInfo,
    room: str,
    tmp_path: Path,
    timeout: float,
    sessions: list[Session],
    wait_until: Wait,
) -> None:
    """The local relay dies (kill -9: its runtime file stays) and another process takes
    its port: here a relay without the secret, which would welcome anyone. The kernel
    still mints a token from the runtime file, but the impostor cannot answer the
    hello's nonce: the client reports relay_unverified, never joins, and retries."""
    os.kill(relay.pid, signal.SIGKILL)  # the relay this test's fixture started
    port = urlsplit(relay.url).port
    assert port is not None
    impostor = _start_impostor(port, tmp_path / "impostor.log", timeout)
    try:
        errors: list[dict[str, Any]] = []
        session = livewidgets.connect(relay.url, room, "alice", wait=False, **FAST)
        sessions.append(session)
        session.on("error", errors.append)
        wait_until(
            lambda: [e for e in errors if e.get("code") == "relay_unverified"],
            message="the client refuses the impostor",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
        joins = re.findall(r"^livewidgets_joins_total\S* (\S+)$", metrics, re.M)
        assert sum(float(v) for v in joins) == 0  # nothing was shared with it
    finally:
        impostor.kill()  # the impostor this test started, by its pid
        impostor.wait(timeout=10)
        assert impostor.stdout is not None
        impostor.stdout.close()


def _start_impostor(port: int, log: Path, timeout: float) -> subprocess.Popen[bytes]:
    """``livewidgets relay`` without a secret on ``port`` (retried while the port frees)."""
    deadline = time.monotonic() + 3 * timeout
    while True:
        with log.open("ab") as err:
            process = subprocess.Popen(
                [
                    *[sys.executable, "-m", "livewidgets.cli", "relay", "--port", str(port)],
                    *["--store", "memory://", "--log-level", "warning"],
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                env={k: v for k, v in os.environ.items() if k != "LIVEWIDGETS_SECRET"},
            )
        assert process.stdout is not None
        line = process.stdout.readline()
        if b"listening on" in line:
            return process
        process.wait(timeout=10)
        process.stdout.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"the impostor could not bind port {port}: {line!r}")
        time.sleep(0.1)
