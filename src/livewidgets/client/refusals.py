"""Why a connection attempt failed, and whether waiting can fix it (pure decisions).

Every way a handshake can fail becomes one :class:`Refusal`: an HTTP answer instead
of the upgrade (the relay's 403/400/429/503 carry ``code: message`` bodies,
relay.http), the relay's error frame and close right after hello (a per-user cap,
a bad token, another protocol version), a TLS failure, nothing listening, no answer
in time. :class:`~livewidgets.client.protocol.ClientProtocol` decides with it: a
permanent refusal ends the session at once (``connect()`` raises it), a transient
one is retried with backoff and named in the status events, so a user who waits
knows what for.
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass

from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI

from ..errors import ConnectionRefused, limit_named_in
from ..protocol.codes import FINAL_CLOSE_CODES, CloseCode

__all__ = ["Refusal", "from_exception", "from_http", "from_relay"]

# HTTP answers that a later attempt may not get: rate and capacity limits, a relay
# restarting behind its proxy, a proxy that timed out.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_STATUS_REASONS = {
    400: "bad_request",
    401: "auth_invalid",
    403: "forbidden",
    404: "not_found",
    429: "limit_exceeded",
    503: "unavailable",
}
# "limit_exceeded: too many anonymous connections ..." (relay.http's bodies).
_CODED = re.compile(r"^([a-z][a-z_]{2,40}): (.+)$", re.DOTALL)
# The close that follows each hello refusal (docs/protocol.md "Errors"), for when the
# connection dropped before its close frame arrived (1006): the error alone decides.
_CLOSE_AFTER = {
    "auth_required": CloseCode.AUTH_INVALID,
    "auth_invalid": CloseCode.AUTH_INVALID,
    "auth_expired": CloseCode.AUTH_EXPIRED,
    "auth_revoked": CloseCode.REVOKED,
    "protocol_version": CloseCode.PROTOCOL_VERSION,
    "hello_required": CloseCode.HELLO_REQUIRED,
    "limit_exceeded": CloseCode.POLICY_VIOLATION,
}
_ABNORMAL = 1006


@dataclass(frozen=True)
class Refusal:
    """One failed attempt: ``reason`` (a relay error code or what failed), the
    message to show, and whether another attempt may succeed."""

    reason: str
    message: str
    transient: bool
    status: int | None = None
    close_code: int | None = None

    @property
    def limit(self) -> int | None:
        return limit_named_in(self.message)

    def error(self, url: str) -> ConnectionRefused:
        return ConnectionRefused(
            self.reason,
            self.message,
            url=url,
            transient=self.transient,
            limit=self.limit,
            status=self.status,
            close_code=self.close_code,
        )


def from_http(status: int, body: bytes | bytearray | None) -> Refusal:
    """The relay (or a proxy before it) answered the upgrade with ``status``."""
    text = bytes(body or b"").decode("utf-8", "replace").strip()[:500]
    coded = _CODED.match(text)
    if coded:
        reason, message = coded.group(1), coded.group(2)
    else:
        reason = _STATUS_REASONS.get(status, "http_error")
        message = text or f"HTTP {status} instead of a WebSocket handshake"
    if status == 400 and "subprotocol" in message:
        reason = "bad_subprotocol"  # the relay speaks none of the encodings we offered
    transient = status in _TRANSIENT_STATUS
    return Refusal(reason, message, transient, status=status)


def from_relay(code: str, message: str, close_code: int | None) -> Refusal:
    """The relay answered hello with an error, then closed with ``close_code``: the
    close code decides, as docs/protocol.md "Close codes" says (a final one is
    permanent; the others, a 1008 for a connection cap among them, are retried)."""
    if close_code is None or close_code == _ABNORMAL:
        close_code = _CLOSE_AFTER.get(code, close_code)
    transient = close_code not in FINAL_CLOSE_CODES
    return Refusal(code, message, transient, close_code=close_code)


def from_exception(exc: BaseException, url: str) -> Refusal:
    """An exception from opening the WebSocket (websockets' connect)."""
    if isinstance(exc, InvalidStatus):
        return from_http(exc.response.status_code, exc.response.body)
    if isinstance(exc, ssl.SSLError):  # before OSError, which it is
        # A certificate we do not trust, a host name it does not name, a server that
        # does not speak TLS: none of these change by retrying.
        detail = getattr(exc, "verify_message", None)
        what = "certificate verify failed" if detail else getattr(exc, "reason", None) or exc
        text = f"TLS handshake failed: {what}" + (f": {detail}" if detail else "")
        return Refusal("tls", text, transient=False)
    if isinstance(exc, InvalidURI):
        return Refusal("bad_url", str(exc), transient=False)
    if isinstance(exc, InvalidMessage):
        # The peer hung up mid-handshake (a relay going down, a proxy resetting).
        return Refusal("bad_handshake", f"{exc}: {exc.__cause__ or ''}".strip(": "), True)
    if isinstance(exc, InvalidHandshake):
        # It answered, but not as a livewidgets relay would (no upgrade, another
        # subprotocol): retrying will not change what it is.
        return Refusal("bad_handshake", f"{url} is not a livewidgets relay: {exc}", False)
    if isinstance(exc, TimeoutError):
        return Refusal("timeout", f"no handshake with {url} in time", transient=True)
    if isinstance(exc, ConnectionRefusedError):
        return Refusal("unreachable", f"nothing listens at {url} (connection refused)", True)
    if isinstance(exc, socket.gaierror):
        return Refusal("unreachable", f"cannot resolve the host of {url}: {exc}", True)
    if isinstance(exc, OSError):
        return Refusal("unreachable", f"cannot reach {url}: {exc}", transient=True)
    return Refusal("bad_handshake", f"{type(exc).__name__}: {exc}", transient=True)
