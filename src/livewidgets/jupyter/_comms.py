"""Front-end messages of shared widgets: handled where the front end sends them, one at a time.

**Why edits waited for a busy kernel.** JupyterLab ≥ 4.4 and Notebook ≥ 7.4 send widget
comm messages to a kernel subshell (``commsOverSubshells: perCommTarget``), so a kernel
with subshells (ipykernel ≥ 7) could handle them while a cell runs on the main shell.
But ipykernel 7.4's shell channel thread re-routes every ``comm_msg`` through the comm's
``_reply_subshell_for(data, subshell_id)``: it returns the subshell of the parent of
the *last message the kernel published on that comm*. That exists to bring a front
end's reply back to the loop that sent the request; for a widget it means the comm
follows whatever published last. A widget is created in a cell, so its ``comm_open``
(and every update published from the I/O thread or a timer, whose parent falls back
to the last cell's request) has a main-shell parent: the user's edit, sent to the
subshell, is routed to the main shell and waits there until the cell ends.

:func:`install` fixes both halves for one widget:

* **Routing.** The comm honours the subshell the front end chose. Only a message that
  answers a request the kernel sent (``data.content.id``, as anywidget's commands
  carry) is still routed back to the loop that asked.
* **One at a time per widget.** Front-end messages may now run on a subshell thread
  while the session's I/O thread applies a peer's change to the same widget, and
  ipywidgets' per-widget state is not thread-safe (``_property_lock`` is one dict per
  widget, ``hold_trait_notifications`` swaps ``notify_change`` on the instance,
  ``hold_sync`` is one flag). So the widget's messages from the front end run under
  :func:`widget_lock`, and every shared-state change applied to the widget takes the
  same lock: a browser change and a remote change are applied one after the other,
  never interleaved (the echo of one can never overtake the update of the other).

Where the front end does not use subshells, the messages wait for the main shell;
:func:`held` counts those waiting behind a running cell (the ConnectionStatus badge
shows it), as far as the kernel can tell: ipykernel 7.4's shell channel thread calls
the routing function as a message arrives, older kernels tell nothing.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from typing import Any

__all__ = ["HELD_AFTER", "held", "install", "widget_lock"]

# A front-end message waiting this long for the main shell counts as held (seconds).
HELD_AFTER = 0.4

_registry_lock = threading.Lock()
_locks: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()

# Marks a routing function installed here (so install() is idempotent).
_MARK = "_livewidgets_route"

# Per widget: when each of its front-end messages routed to the main shell arrived
# (time.monotonic(), oldest first); the main shell handles them in that order.
_waiting_lock = threading.Lock()
_waiting: weakref.WeakKeyDictionary[Any, deque[float]] = weakref.WeakKeyDictionary()


def held(older_than: float = HELD_AFTER) -> int:
    """How many front-end messages of shared widgets have waited more than
    ``older_than`` s for the main shell (a running cell); 0 where the kernel cannot
    tell (no shell channel thread)."""
    now = time.monotonic()
    with _waiting_lock:
        return sum(
            sum(1 for t in times if now - t > older_than)
            for widget, times in list(_waiting.items())
            if getattr(widget, "comm", None) is not None
        )


def _arrived_for_main(widget: Any) -> None:
    with _waiting_lock:
        times = _waiting.get(widget)
        if times is None:
            times = _waiting[widget] = deque()
        times.append(time.monotonic())


def _handled_on_main(widget: Any) -> None:
    with _waiting_lock:
        times = _waiting.get(widget)
        if times:
            times.popleft()


def widget_lock(widget: Any, lock: threading.RLock | None = None) -> threading.RLock:
    """The lock that serialises changes to ``widget`` (registered with ``lock`` if given,
    else created at the first call)."""
    with _registry_lock:
        found = _locks.get(widget)
        if found is None:
            found = lock if lock is not None else threading.RLock()
            _locks[widget] = found
        return found


def _request_id(data: Any) -> str | None:
    """The id of a request/response message (``{"content": {"id": ...}}``), as ipykernel
    reads it to route a front end's reply back to the loop that sent the request."""
    if isinstance(data, dict):
        content = data.get("content")
        request_id = content.get("id") if isinstance(content, dict) else None
        if isinstance(request_id, str):
            return request_id
    return None


def install(widget: Any, lock: threading.RLock | None = None) -> threading.RLock:
    """Route ``widget``'s front-end messages to the subshell the front end chose and
    handle them under the widget's lock; returns that lock. Idempotent; a widget
    without a comm (closed, or no kernel) is left alone."""
    lock = widget_lock(widget, lock)
    widget_ref = weakref.ref(widget)
    comm = getattr(widget, "comm", None)
    if comm is None:
        return lock
    route = getattr(comm, "_reply_subshell_for", None)
    if route is not None and not getattr(route, _MARK, False):

        def reply_subshell_for(data: Any, default: Any, _route: Any = route) -> Any:
            # A reply goes back to the loop that asked; anything else where the
            # front end sent it.
            target = _route(data, default) if _request_id(data) is not None else default
            if target is None and (w := widget_ref()) is not None:
                _arrived_for_main(w)
            return target

        setattr(reply_subshell_for, _MARK, True)
        comm._reply_subshell_for = reply_subshell_for
    handle = getattr(widget, "_handle_msg", None)
    on_msg = getattr(comm, "on_msg", None)
    if handle is not None and on_msg is not None:

        def handle_locked(msg: Any) -> None:
            if threading.current_thread() is threading.main_thread():
                _handled_on_main(widget)
            with lock:
                handle(msg)

        on_msg(handle_locked)
    return lock
