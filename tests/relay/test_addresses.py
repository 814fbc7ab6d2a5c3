"""The client's address through trusted proxies only (relay.addresses, --trust-proxy)."""

from __future__ import annotations

from websockets.datastructures import Headers

from livewidgets.relay.addresses import ProxyTrust, forwarded_for, parse_host

HUB = ProxyTrust(["10.0.0.0/8", "fd00::/8"])


def headers(*pairs: tuple[str, str]) -> Headers:
    result = Headers()
    for key, value in pairs:
        result[key] = value
    return result


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    """The default: headers are never read, whoever sends them."""
    forged = headers(("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=5.6.7.8"))
    assert ProxyTrust().client_address("10.0.0.5", forged) == "10.0.0.5"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    """X-Forwarded-For / Forwarded from a peer outside the trusted networks is ignored."""
    forged = headers(("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=5.6.7.8"))
    assert HUB.client_address("203.0.113.9", forged) == "203.0.113.9"


def test_x_forwarded_for_rightmost_untrusted_hop() -> None:
    """The client may prepend anything; the rightmost hop not ours is who connected
    to our proxy chain."""
    chain = headers(("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.1.2.3"))
    assert HUB.client_address("10.0.0.5", chain) == "198.51.100.7"
    # Several header lines are one list, in order.
    split = headers(("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.8"))
    assert HUB.client_address("10.0.0.5", split) == "198.51.100.8"


def test_forwarded_is_preferred_and_parsed_per_rfc_7239() -> None:
    """Forwarded wins over X-Forwarded-For; quoted IPv6 with ports, other parameters,
    case-insensitive keys."""
    both = headers(
        ("X-Forwarded-For", "6.6.6.6"),
        ("Forwarded", 'for=6.6.6.6, For="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1'),
    )
    assert HUB.client_address("10.0.0.5", both) == "2001:db8:cafe::17"
    assert forwarded_for(['for=192.0.2.60;proto=http;by=203.0.113.43, for="a,b";x=1']) == [
        "192.0.2.60",
        "a,b",
    ]
    assert forwarded_for([]) is None


def test_all_hops_trusted_or_unnamed() -> None:
    """Only proxies in the chain: the leftmost one is the client. An unknown or
    obfuscated hop: the connection counts for the proxy that wrote it."""
    only_proxies = headers(("X-Forwarded-For", "10.9.9.9, 10.1.1.1"))
    assert HUB.client_address("10.0.0.5", only_proxies) == "10.9.9.9"
    unknown = headers(("Forwarded", "for=unknown"))
    assert HUB.client_address("10.0.0.5", unknown) == "10.0.0.5"
    hidden = headers(("Forwarded", 'for="_hidden", for=10.1.1.1'))
    assert HUB.client_address("10.0.0.5", hidden) == "10.1.1.1"
    assert HUB.client_address("10.0.0.5", headers()) == "10.0.0.5"


def test_parse_host_forms() -> None:
    assert str(parse_host("1.2.3.4:80")) == "1.2.3.4"
    assert str(parse_host("[::1]:80")) == "::1"
    assert str(parse_host("::ffff:10.0.0.1")) == "10.0.0.1"
    assert parse_host("example.org") is None and parse_host("[broken") is None
