"""The engine's tunables and application callbacks, and the :class:`ClientProtocol`
they configure."""

from __future__ import annotations

import logging
import random
import secrets
import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.typing import Subprotocol

from ..protocol import JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL
from .backoff import Backoff
from .presence import LocalPresence
from .protocol import ClientProtocol, ProtocolConfig

__all__ = ["EngineConfig"]

log = logging.getLogger("livewidgets.client")


@dataclass
class EngineConfig:
    """Tunables of one engine (all times in seconds)."""

    backoff: Backoff = field(default_factory=Backoff)
    # Give up after this many failed attempts in a row (None: never).
    max_attempts: int | None = None
    open_timeout: float = 10.0
    # Heartbeat: a ping every interval; no pong within timeout = dead peer.
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 5.0
    # Resend in-flight ops whose ack is this late (the relay deduplicates).
    ack_timeout: float = 10.0
    # Writes waiting for the relay (unsent, paced, or unacknowledged) at most.
    max_pending: int = 10_000
    # A write from a thread other than the engine's loop that finds max_pending writes
    # waiting blocks until one is acknowledged, for at most this many seconds, then
    # raises QueueFull (0: raise at once). On the loop thread it never blocks.
    queue_full_timeout: float = 10.0
    # Largest frame accepted FROM the relay: snapshots of big rooms exceed the 1 MiB the
    # relay accepts from clients, so this is much larger (ops we send are checked
    # against the relay's own limit from its welcome).
    max_frame_size: int = 64 << 20
    binary: bool = False
    # The token provider: returns a fresh token, or None if there is none. Called
    # shortly before the relay-stated expiry, off the event loop, to renew the token on
    # the open connection (docs/security.md "Renewal"), and when the relay ends the
    # session on its token (4004, 4003): then None gives up. A command's output works
    # too: livewidgets.client.tokens.TokenCommand, or connect(..., token_cmd=...).
    token_refresh: Callable[[], str | None] | None = None
    # Check that the relay is the one we mean: called with our hello.nonce and its
    # welcome.proof; False ends the connection (retried with backoff). Set for the
    # local relay, whose secret the client knows (livewidgets.local_relay.credentials).
    verify_relay: Callable[[str, str | None], bool] | None = None
    # Presence: at most this many updates per second (the latest always goes out),
    # and "idle" after this many seconds without local activity.
    presence_rate: float = 20.0
    idle_after: float = 60.0
    # False: join as a listener (dashboards, bots, a projected view): receive everything,
    # stay off the others' presence lists until update_presence() is first called.
    announce: bool = True
    name: str | None = None
    color: str | None = None
    # TLS for wss:// URLs: an ssl.SSLContext, or ``cafile`` to trust a private CA.
    # Certificates are always verified unless you pass a context that does not.
    ssl: Any = None
    cafile: str | None = None
    rng: random.Random | None = None
    # Run subscribe/on callbacks and change listeners in order on a thread of the
    # session's own, off the I/O loop (livewidgets.connect sets it; client.callbacks).
    callback_thread: bool = False

    def relay_proven(self, nonce: str, proof: str | None) -> bool:
        """Whether the relay's welcome.proof answers our hello.nonce (verify_relay)."""
        verify = self.verify_relay
        return verify is not None and verify(nonce, proof)

    def subprotocols(self) -> list[Subprotocol]:
        """What to offer the relay, in order of preference."""
        if self.binary:
            return [Subprotocol(MSGPACK_SUBPROTOCOL), Subprotocol(JSON_SUBPROTOCOL)]
        return [Subprotocol(JSON_SUBPROTOCOL)]

    def ssl_for(self, url: str) -> Any:
        """The ``ssl`` argument for connecting to ``url``."""
        if self.ssl is not None or not url.startswith("wss:"):
            return self.ssl
        if self.cafile is not None:
            return ssl_module.create_default_context(cafile=self.cafile)
        return True  # websockets' default context: verified against the system's CAs

    def new_protocol(
        self, urls: list[str], room: str, *, user: str, token: str | None, client_id: str
    ) -> ClientProtocol:
        """A protocol for one room with these tunables (its backoff draws from ``rng``)."""
        presence = LocalPresence(
            user,
            name=self.name,
            color=self.color,
            idle_after=self.idle_after,
            rate=self.presence_rate,
        )
        return ClientProtocol(
            urls,
            [room],
            client_id=client_id,
            user=user,
            token=token,
            presence=presence,
            delays=lambda: self.backoff.delays(self.rng),
            config=ProtocolConfig(
                max_attempts=self.max_attempts,
                open_timeout=self.open_timeout,
                heartbeat_interval=self.heartbeat_interval,
                heartbeat_timeout=self.heartbeat_timeout,
                ack_timeout=self.ack_timeout,
                can_refresh=self.token_refresh is not None,
                verify=self.verify_relay is not None,
                announce=self.announce,
            ),
            nonces=lambda: secrets.token_urlsafe(24),
            max_pending=self.max_pending,
        )
