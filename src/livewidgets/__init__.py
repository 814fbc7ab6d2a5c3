"""livewidgets: Jupyter widgets whose state, presence and cursors are shared live.

Heavy parts (the relay, the client engine, the Jupyter layer) load on first use, so
``import livewidgets`` stays cheap inside every kernel.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it.
_LAZY = {
    "Relay": "livewidgets.relay",
    "connect": "livewidgets.client",
    "Session": "livewidgets.client",
    "Ack": "livewidgets.client",
    "share": "livewidgets.jupyter",
    "unshare": "livewidgets.jupyter",
    "session": "livewidgets.jupyter",
    "History": "livewidgets.jupyter.widgets",
}

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension", *_LAZY]


def __getattr__(name: str) -> Any:
    if name == "asyncio":  # the asyncio-native API, ``livewidgets.asyncio.connect``
        return importlib.import_module("livewidgets.asyncio")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'livewidgets' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext livewidgets``: register the ``%livewidgets`` magic."""
    from .jupyter.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .jupyter.extension import unload_ipython_extension as unload

    unload(ipython)
