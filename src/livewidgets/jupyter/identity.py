"""Who this kernel is in a room: user id, display name, colour, default room.

Rules (first match wins):

* user: ``--user`` / ``user=``, then ``$JUPYTERHUB_USER``, then the OS user
  (:func:`getpass.getuser`), then ``"anonymous"``;
* display name: ``$LIVEWIDGETS_NAME``, then the user;
* room: ``--room`` / ``room=``, then ``$LIVEWIDGETS_ROOM``, then ``"default"``;
* colour: derived from the user id (the same user has the same colour in every
  kernel and browser), never chosen at random.

The relay has the last word on ``user`` (it stamps the authenticated user into
presence); these are the defaults a kernel asks for.
"""

from __future__ import annotations

import getpass
import hashlib
import os

__all__ = ["DEFAULT_ROOM", "color_for", "default_name", "default_room", "default_user"]

DEFAULT_ROOM = "default"


def default_user() -> str:
    """``$JUPYTERHUB_USER``, else the OS user, else ``"anonymous"``."""
    hub_user = os.environ.get("JUPYTERHUB_USER", "").strip()
    if hub_user:
        return hub_user
    try:
        return getpass.getuser() or "anonymous"
    except (OSError, KeyError):
        # No login name and no passwd entry (some containers).
        return "anonymous"


def default_name(user: str) -> str:
    """The display name: ``$LIVEWIDGETS_NAME`` if set, else ``user``."""
    return os.environ.get("LIVEWIDGETS_NAME", "").strip() or user


def default_room() -> str:
    """``$LIVEWIDGETS_ROOM`` if set, else ``"default"``."""
    return os.environ.get("LIVEWIDGETS_ROOM", "").strip() or DEFAULT_ROOM


def color_for(user: str) -> str:
    """A stable, readable CSS colour (``hsl(h, 65%, 45%)``) derived from the user id."""
    digest = hashlib.sha256(user.encode()).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    return f"hsl({hue}, 65%, 45%)"
