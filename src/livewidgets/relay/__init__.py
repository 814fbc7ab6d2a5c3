"""The livewidgets relay: sequences each room's ops, stores them, fans them out.

``Relay`` is the server (``async with Relay(port=8765, store="sqlite:///rooms.db")``);
``open_store`` opens a storage backend from a URL. See relay.server for the layout.
"""

from .policy import AllowAll, Denied, Policy, Principal
from .server import Relay
from .store import Store, StoreConflict, StoreError, open_store

__all__ = [
    "AllowAll",
    "Denied",
    "Policy",
    "Principal",
    "Relay",
    "Store",
    "StoreConflict",
    "StoreError",
    "open_store",
]
