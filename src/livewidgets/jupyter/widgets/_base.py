"""What every shared widget has: a session, owned subscriptions, echo-free trait updates.

Thread model (the engine runs on its own thread): session callbacks arrive on the
engine's I/O thread; front-end messages on the kernel subshell the front end sends
them to (JupyterLab ≥ 4.4 / Notebook ≥ 7.4 with ipykernel ≥ 7), else on the main
thread; user code may call widget methods from anywhere. Each widget serialises its
own state with ``_lock``, and its front-end messages are handled holding it
(:mod:`livewidgets.jupyter._comms`). A trait set because the *session* changed runs inside
:meth:`LiveWidget._from_session`; observers that would turn a trait change into a
new shared write check :meth:`LiveWidget._is_from_session` first, so a remote change
never comes back as a local one (ipywidgets' ``_property_lock`` idea). The flag is
thread-local: a user assigning the same trait on another thread at that moment is
still a local write.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ...client.presence import color_for as _client_color_for
from ...errors import LivewidgetsError
from .. import _comms
from ..runtime import current_session

__all__ = [
    "STATIC",
    "LiveWidget",
    "Throttle",
    "Ticker",
    "color_for",
    "initials",
    "path_segment",
    "presence_color",
    "presence_name",
]

log = logging.getLogger("livewidgets.jupyter")

# Built front ends (js/ -> npm run build); shipped in the wheel.
STATIC = Path(__file__).resolve().parent.parent.parent / "static"

Unsubscribe = Callable[[], Any]


def color_for(user: str) -> str:
    """A stable CSS colour for ``user`` (an HSL hue from a hash of the id).

    The same function the client uses for its own presence, so a peer whose
    presence lacks a colour still gets the colour it would have published. Mid
    lightness keeps it visible on light and dark themes; the front end picks black
    or white text on it by luminance.
    """
    return _client_color_for(user)


def initials(name: str) -> str:
    """Up to two letters for an avatar: "Ada Lovelace" -> "AL", "grace" -> "G".

    Punctuation is skipped ("<b>Bob</b> x" -> "BX"); a letter keeps its combining
    marks ("e\u0301mile" -> "E\u0301").
    """
    letters = [
        first
        for word in name.replace("_", " ").replace(".", " ").split()
        if (first := _first_letter(word))
    ]
    return "".join(letters[:2] if len(letters) > 1 else letters[:1]).upper() or "?"


def _first_letter(word: str) -> str:
    """The first letter or digit of ``word`` with its combining marks ("" if none)."""
    for i, ch in enumerate(word):
        if unicodedata.category(ch)[0] in "LN":
            out = ch
            for mark in word[i + 1 :]:
                if not unicodedata.combining(mark):
                    break
                out += mark
            return out
    return ""


def path_segment(key: str) -> str:
    """``key`` as one path segment: ``%`` ``/`` and control characters are %-escaped."""
    out = []
    for ch in key:
        if ch == "%" or ch == "/" or ord(ch) < 0x20:
            out.append(f"%{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out) or "%"


def presence_name(state: Mapping[str, Any]) -> str:
    """The display name of a presence entry."""
    return str(state.get("name") or state.get("user") or "anonymous")


def presence_color(state: Mapping[str, Any]) -> str:
    """The colour of a presence entry (derived from the user when it has none)."""
    color = state.get("color")
    return str(color) if color else color_for(str(state.get("user") or ""))


class LiveWidget(anywidget.AnyWidget):
    """Base of the shared widgets: bound to one session, ``close()`` lets go of it."""

    _css = STATIC / "style.css"

    # The last failure of a front-end action ("" when the last one worked), shown by
    # the view; e.g. a vote made while the session is closed.
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, *, session: Any = None, **kwargs: Any) -> None:
        # Set before anything can fail: ipywidgets' __del__ calls close().
        self._closed = False
        # What close() calls: session unsubscribe functions, timers to stop.
        self._disposers: list[Unsubscribe] = []
        # The session this widget reads and writes (default: the kernel's).
        self._session: Any = session if session is not None else current_session()
        # Serialises this widget's state between the I/O thread, the kernel's main
        # thread and user threads.
        self._lock = threading.RLock()
        # Per-thread "this trait change came from the session" flag.
        self._origin = threading.local()
        super().__init__(**kwargs)
        self.on_msg(self._on_frontend_msg)
        # Messages from the views go where the front end sends them (a subshell, so
        # they are handled while a cell runs) and run under _lock (see _comms).
        _comms.install(self, self._lock)

    @property
    def session(self) -> Any:
        """The session this widget is bound to."""
        return self._session

    @property
    def closed(self) -> bool:
        return self._closed

    # --- ownership ----------------------------------------------------------------

    def _own(self, dispose: Unsubscribe) -> None:
        """Call ``dispose`` on close() (an unsubscribe function, a timer's stop, ...)."""
        with self._lock:
            if not self._closed:
                self._disposers.append(dispose)
                return
        dispose()  # closed meanwhile: let go at once

    def close(self) -> None:
        """Unsubscribe from the session and close the widget (idempotent)."""
        if not hasattr(self, "_lock"):  # __init__ failed early (ipywidgets' __del__)
            self._closed = True
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            disposers, self._disposers = self._disposers, []
        for dispose in reversed(disposers):
            try:
                dispose()
            except Exception:
                log.exception("[livewidgets] %s: cleanup failed", type(self).__name__)
        super().close()

    # --- echo guard ---------------------------------------------------------------

    @contextlib.contextmanager
    def _from_session(self) -> Iterator[None]:
        """Trait changes made inside come from the session: observers must not write them."""
        depth = getattr(self._origin, "depth", 0)
        self._origin.depth = depth + 1
        try:
            with self.hold_sync():
                yield
        finally:
            self._origin.depth = depth

    def _is_from_session(self) -> bool:
        return getattr(self._origin, "depth", 0) > 0

    def _set_from_session(self, **traits: Any) -> None:
        """Set traits to mirror the session (one front-end message, no write-back)."""
        with self._lock:
            if self._closed:
                return
            with self._from_session():
                for name, value in traits.items():
                    setattr(self, name, value)

    # --- front-end messages -------------------------------------------------------

    def _on_frontend_msg(self, widget: Any, content: Any, buffers: Any) -> None:
        """Entry point for ``model.send(...)`` from the browser (ipywidgets calls it).

        A malformed message is logged and dropped: the peer misbehaving never
        raises into the kernel.
        """
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            log.warning("[livewidgets] %s: ignoring message %r", type(self).__name__, content)
            return
        handler = getattr(self, f"_msg_{content['type']}", None)
        if handler is None:
            log.warning(
                "[livewidgets] %s: unknown message type %r", type(self).__name__, content["type"]
            )
            return
        if self._closed:
            return
        try:
            handler(content)
        except (ValueError, TypeError, KeyError, LivewidgetsError) as exc:
            log.warning(
                "[livewidgets] %s: %r message failed: %s", type(self).__name__, content["type"], exc
            )
            self._set_from_session(error=f"{content['type']} failed: {exc}")

    def _tell_views(self, content: dict[str, Any]) -> None:
        """Send a custom message to every view of this widget."""
        if not self._closed:
            self.send(content)


class Ticker:
    """Calls ``fn`` every ``interval`` seconds on a daemon thread until :meth:`stop`.

    Widgets whose display changes with time alone (metrics, idle peers) use one;
    it keeps running while a cell blocks the kernel's main thread.
    """

    def __init__(self, interval: float, fn: Callable[[], Any], name: str) -> None:
        self.interval = interval
        self._fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._fn()
            except Exception:
                log.exception("[livewidgets] periodic refresh failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


class Throttle:
    """Runs ``fn`` at most once per ``interval`` seconds; the last call always runs.

    For widgets that mirror big values (the state inspector): a burst of changes
    becomes one update now and one at the end of the interval.
    """

    def __init__(self, interval: float, fn: Callable[[], Any]) -> None:
        self.interval = interval
        self._fn = fn
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._timer: threading.Timer | None = None
        self._stopped = False

    def __call__(self) -> None:
        with self._lock:
            if self._stopped or self._timer is not None:
                return  # a trailing run is already scheduled; it reads the latest state
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._fire)
                self._timer.daemon = True
                self._timer.start()
                return
            self._last = time.monotonic()
        self._fn()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            if self._stopped:
                return
            self._last = time.monotonic()
        try:
            self._fn()
        except Exception:
            log.exception("[livewidgets] throttled update failed")

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
