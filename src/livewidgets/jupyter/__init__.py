"""The Jupyter layer: ``%load_ext livewidgets``, shared widgets and ``share()``."""

from .runtime import current_session as session

__all__ = ["session"]
