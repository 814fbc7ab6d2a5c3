"""Public names of the relay package."""

from __future__ import annotations

import importlib

import livewidgets
import livewidgets.relay as relay


def test_relay_exports() -> None:
    """Everything in relay.__all__ exists, and livewidgets.Relay is the relay's Relay."""
    for name in relay.__all__:
        assert getattr(relay, name) is not None
    assert livewidgets.Relay is relay.Relay
    assert {"Relay", "open_store", "Store", "Policy", "AllowAll"} <= set(relay.__all__)


def test_every_relay_module_declares_all() -> None:
    """Each public relay module lists its public names in __all__."""
    for name in ["server", "connection", "runner", "hub", "http", "metrics", "policy"]:
        module = importlib.import_module(f"livewidgets.relay.{name}")
        assert all(hasattr(module, n) for n in module.__all__), name
    for name in ["store", "store.memory", "store.sqlite"]:
        module = importlib.import_module(f"livewidgets.relay.{name}")
        assert all(hasattr(module, n) for n in module.__all__), name
