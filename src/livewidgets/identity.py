"""Who this kernel is in a room: user id, display name, default room.

Rules (first match wins):

* user: ``--user`` / ``user=``, then ``$JUPYTERHUB_USER``, then the OS user
  (:func:`getpass.getuser`), then ``"anonymous"``;
* display name: ``--name`` / ``name=``, then ``$LIVEWIDGETS_NAME``, then the user;
* room: ``--room`` / ``room=``, then ``$LIVEWIDGETS_ROOM``, then ``"default"``.

The colour is derived from the user id by the client itself
(:func:`livewidgets.client.presence.color_for`), so it is the same everywhere.
The relay has the last word on ``user`` (it stamps the authenticated user into
presence); these are the defaults a kernel asks for.
"""

from __future__ import annotations

import getpass
import os

__all__ = ["DEFAULT_ROOM", "default_name", "default_room", "default_user"]

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
