"""Plain HTTP on the relay's port: ``GET /healthz`` and ``GET /metrics``.

Also under the relay's base URL (a JupyterHub service's ``/services/NAME/healthz``).
Served from websockets' ``process_request`` hook, before any WebSocket handshake,
so load balancers and Prometheus need no second port. Every request first passes
the policy's request check (Host and Origin allowlists: 403); then any other
request without ``Upgrade: websocket`` gets 404, and upgrades pass the relay's
admission check (connection limits: 429 or 503 with ``Retry-After`` and the reason
and limit in the body) before the handshake.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .metrics import CONTENT_TYPE_LATEST, RelayMetrics
from .policy import Denied, Policy

__all__ = ["HttpEndpoints"]


class HttpEndpoints:
    """The ``process_request`` hook of one relay."""

    def __init__(
        self,
        health: Callable[[], dict[str, Any]],
        metrics: RelayMetrics,
        policy: Policy,
        admit: Callable[[ServerConnection, Request], Denied | None] | None = None,
        *,
        base_url: str = "/",
    ) -> None:
        # Returns the /healthz body; "status" other than "ok" answers 503.
        self._health = health
        self._metrics = metrics
        self._policy = policy
        # The relay's admission check for upgrades (capacity, connections per address).
        self._admit = admit
        # Also served under this prefix (a JupyterHub service's /services/NAME/).
        self._prefix = "/" + base_url.strip("/") if base_url.strip("/") else ""

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        denied = self._policy.check_request(request)
        if denied is not None:
            return _refuse(connection, denied)
        path = request.path.partition("?")[0]
        if self._prefix and path.startswith(self._prefix + "/"):
            path = path[len(self._prefix) :]
        if path == "/healthz":
            return self._healthz(connection)
        if path == "/metrics":
            return _respond(connection, HTTPStatus.OK, self._metrics.render(), CONTENT_TYPE_LATEST)
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found: try /healthz or /metrics\n")
        denied = self._admit(connection, request) if self._admit is not None else None
        return _refuse(connection, denied) if denied is not None else None

    def _healthz(self, connection: ServerConnection) -> Response:
        body = self._health()
        status = HTTPStatus.OK if body.get("status") == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
        return _respond(connection, status, json.dumps(body).encode(), "application/json")


def _refuse(connection: ServerConnection, denied: Denied) -> Response:
    """The refusal as HTTP: its status (403 unless it says), its message as the body,
    ``code: message`` so clients can tell the reason; ``Retry-After`` for limits that
    free up (429, 503)."""
    status = HTTPStatus(denied.status or HTTPStatus.FORBIDDEN)
    response = connection.respond(status, f"{denied.code.value}: {denied.message}\n")
    if status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE):
        response.headers["Retry-After"] = "1"
    return response


def _respond(
    connection: ServerConnection, status: HTTPStatus, body: bytes, content_type: str
) -> Response:
    response = connection.respond(status, body.decode())
    # respond() says text/plain; Headers is a multidict, so delete before setting.
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    return response
