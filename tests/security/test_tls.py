"""TLS with a throwaway CA (trustme): wss:// for clients, https:// for /healthz, and
certificate verification that never silently downgrades (docs/security.md "TLS")."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect

from livewidgets.client import connect_async
from livewidgets.errors import ConnectionRefused
from livewidgets.relay import Relay
from livewidgets.relay.security import SecurityPolicy

from ..client.helpers import FAST, TIMEOUT, Recorder, eventually
from ..conftest import RelayFactory
from .helpers import SECRET, assert_serves, token


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    yield str(path)


@pytest.fixture
async def tls_relay(ca: trustme.CA, relay_factory: RelayFactory) -> Relay:
    """A relay with tokens, serving wss:// with a certificate from the throwaway CA."""
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ssl)
    return await relay_factory(policy=SecurityPolicy(SECRET), ssl=server_ssl)


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_sessions_sync_over_wss(tls_relay: Relay, ca: trustme.CA, cafile: str) -> None:
    """A session with cafile= and one with ssl= (trusting the CA) sync over wss://."""
    assert tls_relay.url.startswith("wss://127.0.0.1:")
    options: dict[str, Any] = {**FAST, "timeout": TIMEOUT}
    one = await connect_async(tls_relay.url, "r", token=token(), cafile=cafile, **options)
    two = await connect_async(
        tls_relay.url, "r", token=token(user="grace"), ssl=trusting(ca), **options
    )
    try:
        await one.set("greeting", "hello over TLS")
        await eventually(lambda: two.get("greeting") == "hello over TLS", what="synced")
        await two.increment("n")
        await eventually(lambda: one.get("n") == 1, what="synced back")
    finally:
        await one.close()
        await two.close()


async def test_client_without_the_ca_fails_verification(tls_relay: Relay, tmp_path: Path) -> None:
    """Without the CA: certificate error, no downgrade, and the relay never sees a hello."""
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    options: dict[str, Any] = {**FAST, "timeout": TIMEOUT, "wait": False, "max_attempts": 2}
    for trust in ({"cafile": str(other_ca)}, {"ssl": ssl.create_default_context()}):
        session = await connect_async(tls_relay.url, "r", token=token(), **trust, **options)
        events = Recorder(session)
        try:
            await eventually(
                lambda s=session: s.connection_state == "closed",  # type: ignore[misc]
                what="gave up",
            )
            # A certificate we do not trust stays untrusted: refused once, not retried.
            [error] = [e["error"] for e in events.of("error")]
            assert isinstance(error, ConnectionRefused) and error.reason == "tls"
            assert "certificate verify failed" in str(error) and not error.transient
            assert events.count("connected") == 0
            assert session.metrics["attempts"] == 1
            assert tls_relay.health()["connections"] == 0
        finally:
            await session.close()
    # A plain ws:// client cannot talk to the TLS port either.
    plain = tls_relay.url.replace("wss://", "ws://")
    with pytest.raises(Exception):  # noqa: B017 - any handshake failure will do
        await asyncio.wait_for(connect(plain, open_timeout=TIMEOUT / 5), TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(tls_relay.url)  # websockets' default: verify against system CAs


async def test_wrong_hostname_fails_verification(
    ca: trustme.CA, relay_factory: RelayFactory
) -> None:
    """A certificate for another name is refused even though the CA is trusted."""
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("relay.example.org").configure_cert(server_ssl)
    relay = await relay_factory(ssl=server_ssl)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|match"):
        await connect(relay.url, ssl=trusting(ca))


async def test_healthz_over_https(tls_relay: Relay, ca: trustme.CA) -> None:
    """/healthz answers over https:// (and not over plain http://)."""
    port = tls_relay.port

    def get(url: str, context: ssl.SSLContext | None) -> tuple[int, dict[str, Any]]:
        with urllib.request.urlopen(url, context=context, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())

    status, body = await asyncio.to_thread(get, f"https://127.0.0.1:{port}/healthz", trusting(ca))
    assert status == 200 and body["status"] == "ok"
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz", None)
    await assert_serves(tls_relay.url, token(), ssl=trusting(ca))


async def test_wss_with_system_trusted_certificate(
    tls_relay: Relay, cafile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wss:// session verifies against the system's CAs by default (here SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", cafile)  # what the system trusts, for this test
    options: dict[str, Any] = {**FAST, "timeout": TIMEOUT / 5}
    session = await connect_async(tls_relay.url, "r", token=token(), **options)
    try:
        await session.set("ok", True)
    finally:
        await session.close()
