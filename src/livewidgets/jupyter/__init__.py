"""The Jupyter layer: ``%load_ext livewidgets``, shared widgets and ``share()``.

``session()`` is the kernel's current session (set by ``%livewidgets connect``);
``share(widget, trait, path)`` binds any widget trait to a shared path.
"""

from .runtime import current_session as session
from .share import Binding, share, unshare

__all__ = ["Binding", "session", "share", "unshare"]
