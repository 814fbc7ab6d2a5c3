"""Fork safety: a child process gets a fresh I/O thread and none of its parent's sessions.

``fork()`` copies the memory of every thread but runs only the one that forked: in
the child, livewidgets' I/O thread is gone while its loop object still looks alive,
and every session's sockets, locks and loop are the parent's. So a child that called
``connect()`` queued work on a loop nobody ran, and timed out (``multiprocessing``
forks by default on Linux before Python 3.14). After a fork, in the child,
:func:`os.register_at_fork` hooks here make the next ``connect()`` start a loop
thread of its own, and make the parent's sessions refuse further use with an error
that says so (their sockets stay the parent's: the child never writes to them).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["on_fork_in_child", "track"]


class _Abandonable(Protocol):
    def abandon(self, reason: str) -> None: ...


_engines: weakref.WeakSet[_Abandonable] = weakref.WeakSet()
_hooks: list[Callable[[], None]] = []


def track(engine: _Abandonable) -> None:
    """``engine`` belongs to this process: abandon it in any child forked later."""
    _engines.add(engine)


def on_fork_in_child(hook: Callable[[], None]) -> None:
    """Run ``hook`` in every child forked from now on (before it runs any user code)."""
    _hooks.append(hook)


def _after_fork_in_child() -> None:
    parent = os.getppid()
    reason = (
        f"this session belongs to process {parent}, which forked this one; "
        "call livewidgets.connect() in the child for a session of its own"
    )
    engines = list(_engines)
    _engines.clear()
    for engine in engines:
        engine.abandon(reason)
    for hook in _hooks:
        hook()


os.register_at_fork(after_in_child=_after_fork_in_child)
