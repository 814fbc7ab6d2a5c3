"""Who is on the other end: the client's address, through trusted proxies only.

Behind a reverse proxy (the JupyterHub proxy, a load balancer) every connection comes
from the proxy's address, so per-address limits would count a whole class as one
client. With ``--trust-proxy CIDR`` the relay believes the proxy's ``Forwarded``
(RFC 7239) or ``X-Forwarded-For`` header, and only when the TCP peer itself is inside
a trusted network: anyone else could write any header. The client is the rightmost
hop that is not a trusted proxy (hops to its left were written by the client or by
proxies we do not know, so they prove nothing). Pure: no sockets, only ``ipaddress``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Protocol

__all__ = ["ProxyTrust", "forwarded_for", "parse_host"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Headers(Protocol):
    def get_all(self, key: str) -> list[str]: ...


class ProxyTrust:
    """The networks whose forwarding headers the relay believes (empty: none)."""

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        # strict=False: "10.0.0.1/8" means the network 10.0.0.0/8, as proxies' docs write it.
        self.networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs
        )

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: _Address) -> bool:
        return any(address in network for network in self.networks)

    def client_address(self, peer: str | None, headers: _Headers | None) -> str | None:
        """The client's address: ``peer`` (the TCP peer), unless ``peer`` is a trusted
        proxy that says whom it forwards for."""
        if peer is None or not self.networks or headers is None:
            return peer
        current = parse_host(peer)
        if current is None or not self.trusts(current):
            return peer  # not our proxy: its headers are the client's own words
        # Forwarded is the standard; a proxy that sends it means it (X-Forwarded-For
        # may be a copy the client sent, passed through).
        hops = forwarded_for(headers.get_all("Forwarded"))
        if hops is None:
            hops = [h.strip() for v in headers.get_all("X-Forwarded-For") for h in v.split(",")]
        for hop in reversed(hops):
            address = parse_host(hop)
            if address is None:
                # "unknown", an obfuscated name or garbage: the hop that wrote it is the
                # last one we can name, so the connection counts as that proxy's.
                break
            current = address
            if not self.trusts(address):
                break
        return current.compressed


def forwarded_for(values: Sequence[str]) -> list[str] | None:
    """The ``for=`` values of ``Forwarded`` header lines, in order (None: no header).

    ``for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`` gives
    ``["192.0.2.60", "[2001:db8::17]:4711"]``; an element without ``for`` gives "".
    """
    if not values:
        return None
    hops: list[str] = []
    for value in values:
        for element in _split_quoted(value, ","):
            hop = ""
            for pair in _split_quoted(element, ";"):
                key, _, raw = pair.partition("=")
                if key.strip().lower() == "for":
                    hop = raw.strip().strip('"')
            hops.append(hop)
    return hops


def parse_host(text: str) -> _Address | None:
    """An IP address from ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80`` (None if not one)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port; bare IPv6 has several colons
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _split_quoted(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes (quoted values may hold it)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
