"""Finding the relay from a kernel on a JupyterHub (docs/deploy.md "JupyterHub").

A Hub single-user server gives its kernels its environment: ``$JUPYTERHUB_API_TOKEN``
(the server's token, which the relay run as a Hub service accepts) and the Hub's
public address. The relay is the Hub service ``livewidgets`` (``$LIVEWIDGETS_HUB_SERVICE``
names another), reached through the Hub's proxy at ``/services/livewidgets/``, over
``wss`` where the Hub is served over https.

The public address comes from ``$JUPYTERHUB_PUBLIC_HUB_URL`` or
``$JUPYTERHUB_PUBLIC_URL``, which the Hub sets when ``c.JupyterHub.public_url`` is
configured. Without it a kernel cannot know where the proxy listens: set
``public_url`` (recommended by JupyterHub anyway) or ``$LIVEWIDGETS_URL`` in
``c.Spawner.environment``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["HubService", "hub_service"]

DEFAULT_SERVICE = "livewidgets"


@dataclass(frozen=True, slots=True)
class HubService:
    """Where and how this kernel reaches the relay behind its Hub."""

    url: str
    token: str
    service: str


def hub_service(env: Mapping[str, str]) -> HubService | None:
    """The Hub's livewidgets service as this kernel's environment describes it; None
    outside a Hub, or when the environment does not say where the Hub's proxy is."""
    token = env.get("JUPYTERHUB_API_TOKEN", "")
    public = env.get("JUPYTERHUB_PUBLIC_HUB_URL") or env.get("JUPYTERHUB_PUBLIC_URL") or ""
    if not token or not public:
        return None
    parts = urllib.parse.urlsplit(public)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    service = env.get("LIVEWIDGETS_HUB_SERVICE") or DEFAULT_SERVICE
    base = env.get("JUPYTERHUB_BASE_URL") or "/"
    path = "/" + "/".join(p for p in (*base.split("/"), "services", service) if p) + "/"
    scheme = "wss" if parts.scheme == "https" else "ws"
    return HubService(urllib.parse.urlunsplit((scheme, parts.netloc, path, "", "")), token, service)
