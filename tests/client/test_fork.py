"""A forked child can use livewidgets; the parent's sessions are not shared with it
(client.forks). The child is a real ``multiprocessing`` fork-context process, as the
Linux default start method makes it before Python 3.14."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import livewidgets
from livewidgets import Session
from livewidgets.errors import SessionClosed

from .conftest import Background
from .helpers import FAST, TIMEOUT, eventually_sync

_fork = multiprocessing.get_context("fork")


def _child(url: str, parent_session: Session, results: Any) -> None:
    """In the forked child: the parent's session refuses, a new one connects and syncs."""
    report: dict[str, Any] = {}
    try:
        parent_session.set("from_child_via_parent", 1)
    except SessionClosed as exc:
        report["parent_session_error"] = str(exc)
    started = time.monotonic()
    session = livewidgets.connect(url, "room", user="child", timeout=5.0, **FAST)
    report["connect_s"] = time.monotonic() - started
    report["seen"] = session.get("parent")
    session.set("child", 42).result(5.0)
    session.close()
    results.put(report)


def test_forked_child_connects_and_syncs_parent_unaffected(
    background: Background, sync_connect: Callable[..., Session]
) -> None:
    url = background.relay.url
    parent = sync_connect(url, user="parent")
    parent.set("parent", "hello").result(TIMEOUT)
    results = _fork.SimpleQueue()
    child = _fork.Process(target=_child, args=(url, parent, results), daemon=True)
    child.start()
    try:
        child.join(20.0)
        assert child.exitcode == 0, f"child exit code {child.exitcode}"
        report = results.get()
    finally:
        if child.is_alive():
            child.kill()
    # The child connected within its own timeout (it used to hang until 26 s) ...
    assert report["connect_s"] < 5.0
    # ... saw the parent's state, and was told the parent's session is not its own.
    assert report["seen"] == "hello"
    assert "belongs to process" in report["parent_session_error"]
    assert "livewidgets.connect() in the child" in report["parent_session_error"]
    # The parent's session never noticed: it sees the child's write and keeps writing.
    eventually_sync(lambda: parent.get("child") == 42, what="the child's write")
    assert parent.set("after", 1).result(TIMEOUT) >= 2
    assert parent.connection_state == "connected"
