"""Identities of the people who connect with one share link (docs/security.md "Links").

A link token (``auth.issue_link_token``) names a link, not a person. Each holder gets
an identity of their own, derived at hello from what they send:

* **user** (stamped on presence): the name they give (``hello.user``: the client's
  ``--user``/``user=``, by default their login or JupyterHub name) as
  ``"<name> (guest)"``; without one, ``"guest-<n>"``, ``n`` six digits derived from
  the link and their client id. Both forms are reserved (``auth.is_link_user``): no
  personal token is issued for them, so a link holder cannot pass for a user who has
  a token, only for another holder of a link.
* **client id**: ``"L"`` + an HMAC, under the relay's secret, of the link id and the
  client id the holder asked for. Personal tokens' client ids start with a lowercase
  hex digit (relay.security), so the two namespaces are disjoint by construction; and
  the id the holder asked for never leaves the relay (others see only the HMAC), so
  no other holder can reproduce it to take over the connection, its dedupe state or
  its presence.
* **rate buckets** belong to that client id.

Everything is derived, nothing is remembered: the same client (same asked-for client
id, as the reference client sends on every reconnect) gets the same client id, the
same ``guest-<n>`` and the same buckets after a reconnect, on any relay sharing the
secret (Redis scale-out). The price is that two guests may draw the same
``guest-<n>`` (one chance in a million for a pair, ~0.04 % among 30 guests; their
presence entries and everything else stay separate, only the names look alike),
and that a holder who changes client id starts with fresh buckets: links are for
people the issuer trusts not to flood; the per-connection and per-address limits
still hold, and a link can be revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["GUEST_SUFFIX", "MAX_NAME", "LinkIdentity", "link_identity"]

# Marks a name given by a link holder (see the module docstring).
GUEST_SUFFIX = " (guest)"
# Longest name kept from hello.user (the rest is cut): presence shows it to everyone.
MAX_NAME = 64


@dataclass(frozen=True, slots=True)
class LinkIdentity:
    """Who one holder of a link is on this relay."""

    user: str
    client_id: str


def link_identity(secret: bytes, link_id: str, name: str, asked_id: str | None) -> LinkIdentity:
    """The identity of a holder of link ``link_id`` who says they are ``name``
    (``hello.user``) and asks for client id ``asked_id`` (None: a random one, so a
    client that cannot resume gets a fresh identity each time)."""
    asked = asked_id if asked_id is not None else secrets.token_hex(16)
    digest = _mac(secret, "client", link_id, asked)
    client_id = "L" + digest[:31]
    printable = "".join(char for char in name if char.isprintable() or char.isspace())
    clean = " ".join(printable.split())[:MAX_NAME]
    if clean:
        user = clean + GUEST_SUFFIX
    else:
        user = f"guest-{int(_mac(secret, 'guest', link_id, asked)[:8], 16) % 1_000_000:06d}"
    return LinkIdentity(user, client_id)


def _mac(secret: bytes, purpose: str, link_id: str, asked: str) -> str:
    # NUL-separated: no two (purpose, link, id) triples give the same message.
    message = f"livewidgets link {purpose}\0{link_id}\0{asked}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()
