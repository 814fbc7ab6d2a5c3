"""``share(widget, trait, path)``: bind any widget trait to a shared path, two-way.

Semantics (the contract tests check):

* **Join.** If ``path`` holds a value, the shared value wins: it is set on the
  trait. If the path is empty, or ``push_local=True``, the widget's current value
  is written. A value the trait refuses, or a trait value that is not plain JSON
  (numbers, strings, booleans, None, lists, dicts with string keys), raises
  ``ValueError`` from ``share()`` itself.
* **Remote → trait without echo.** A shared change is set on the trait with a
  per-thread guard raised; the binding's own observer sees the guard and does not
  write the value back (ipywidgets' ``_property_lock`` idea, made thread-safe,
  because session callbacks run on the session's I/O thread). A value the trait
  coerces (a slider clamping to its ``max``) is *not* written back either: the
  shared value stays what its writer meant.
* **Local → shared, coalesced.** Local changes are throttled per binding: the
  first one goes out at once, later ones within ``debounce`` seconds of the last
  write are coalesced, and the LAST value always goes out at the end of the window
  (trailing edge). So a slider drag costs at most one write per ``debounce`` s.
  Writes happen on one background thread, so they also go out while a cell runs.
* **Live while the kernel is busy.** The widget's front-end messages are handled on
  the kernel subshell the front end sends them to (JupyterLab ≥ 4.4 / Notebook ≥ 7.4
  with ipykernel ≥ 7), not queued behind the running cell; a drag reaches peers at
  once. Those messages and shared changes applied to the trait take one lock per
  widget (:mod:`livewidgets.jupyter._comms`), so a browser change and a remote change
  arriving together on two threads are applied one after the other.
* **No stale echo.** While a local value waits for its window, shared changes are
  not applied to the trait (the local value is newer and will be written after
  them). After a write, the session shows the write at once, and acks of older
  writes never move the trait back (visible state = confirmed + pending).
  Applying reads the session's current value, never a value captured earlier, so
  whatever thread applies last leaves the trait equal to the shared value.
* **Default path.** Without ``path``, the widget's ``description`` gives it:
  ``widgets/<slug>/<trait>`` where slug is the description lower-cased with every
  run of non-word characters replaced by ``-`` (``"Learning rate"`` →
  ``widgets/learning-rate/value``). No (usable) description → ``ValueError``: a
  path from a class name or widget id would be shared by accident or never.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from traitlets import HasTraits, TraitError

from ..client.session import Session, SessionAPI, shareable
from ..errors import LivewidgetsError
from ..state.paths import parse_path
from . import _comms, editing
from .runtime import current_session

__all__ = ["Binding", "bindings", "default_path", "rebind", "share", "unshare"]

log = logging.getLogger("livewidgets.jupyter")

_MISSING: Any = object()


def share(
    widget: HasTraits,
    trait: str = "value",
    path: str | None = None,
    *,
    session: SessionAPI | None = None,
    push_local: bool = False,
    debounce: float = 0.05,
) -> Binding:
    """Bind ``widget.<trait>`` to the shared ``path`` in both directions.

    ``session`` defaults to the kernel's (``%livewidgets connect``). Sharing the
    same widget trait again replaces the earlier binding (re-running a cell is
    fine). Returns the :class:`Binding`; ``binding.unshare()`` ends it.
    """
    if not isinstance(widget, HasTraits):
        raise TypeError(f"share() needs a widget (a HasTraits), not {type(widget).__name__}")
    if not widget.has_trait(trait):
        raise ValueError(f"{type(widget).__name__} has no trait {trait!r}")
    if debounce < 0:
        raise ValueError("debounce must be >= 0 seconds")
    path = default_path(widget, trait) if path is None else path
    parse_path(path)
    # Refuse what cannot travel now, not at the first drag.
    shareable(getattr(widget, trait))
    session = session if session is not None else current_session()
    unshare(widget, trait)
    binding = Binding(widget, trait, path, session, debounce)
    binding._start(push_local)
    with _registry_lock:
        _registry.setdefault(widget, {})[trait] = binding
    return binding


def unshare(widget: HasTraits, trait: str | None = None) -> int:
    """End the widget's bindings (only ``trait``'s if given); returns how many ended.
    A local value still waiting for its debounce window is written first."""
    with _registry_lock:
        by_trait = _registry.get(widget, {})
        ended = [by_trait.pop(t) for t in list(by_trait) if trait is None or t == trait]
        if not by_trait:
            _registry.pop(widget, None)
    for binding in ended:
        binding._stop()
    return len(ended)


def bindings(session: SessionAPI | None = None) -> list[Binding]:
    """The active bindings (of ``session`` only, if given)."""
    with _registry_lock:
        every = [b for by_trait in _registry.values() for b in by_trait.values()]
    return [b for b in every if session is None or b.session is session]


def rebind(old: SessionAPI, new: SessionAPI | None) -> int:
    """Move ``old``'s bindings to ``new`` (the shared value there wins), or end them if
    ``new`` is None. Used by ``%livewidgets connect``/``disconnect``; returns the count."""
    moved = 0
    for binding in bindings(old):
        binding.unshare()
        if new is not None:
            try:
                share(
                    binding.widget,
                    binding.trait,
                    binding.path,
                    session=new,
                    debounce=binding.debounce,
                )
            except ValueError as exc:
                log.warning("[livewidgets] could not re-share %r: %s", binding, exc)
                continue
        moved += 1
    return moved


def default_path(widget: HasTraits, trait: str) -> str:
    """``widgets/<slug of description>/<trait>``; ValueError without a description."""
    description = getattr(widget, "description", None)
    slug = ""
    if isinstance(description, str):
        slug = re.sub(r"\W+", "-", description.strip().lower()).strip("-")
    if not slug:
        raise ValueError(
            f"share() needs path= for this {type(widget).__name__}: the default path comes "
            "from a non-empty `description` (widgets/<description>/<trait>)"
        )
    return f"widgets/{slug}/{trait}"


class Binding:
    """One widget trait bound to one shared path. Create with :func:`share`.

    Counters (for tests and curious users): ``writes`` local values written,
    ``remote_updates`` shared values set on the trait; ``last_error`` is the latest
    write failure (the session closed, the relay refused, ...) or None.
    """

    def __init__(
        self, widget: HasTraits, trait: str, path: str, session: SessionAPI, debounce: float
    ) -> None:
        self.widget = widget
        self.trait = trait
        self.path = path
        self.session = session
        self.debounce = debounce
        self.writes = 0
        self.remote_updates = 0
        self.last_error: BaseException | None = None
        # Guards the fields below; never held while calling the session or user code,
        # except around setting the trait (whose observers only take leaf locks).
        self._lock = threading.RLock()
        # Held from taking the pending value until the session has it: writes stay in order.
        self._write_lock = threading.Lock()
        # The newest local value not yet written (_MISSING: none).
        self._pending: Any = _MISSING
        # A trailing write is scheduled on the share thread.
        self._scheduled = False
        self._last_write = float("-inf")
        self._active = False
        # Per thread: "this thread is setting the trait from the shared value".
        self._applying = threading.local()
        # Held while the widget's front-end messages are handled and while a shared
        # value is set on the trait (taken before _lock, never after it).
        self._widget_lock = _comms.install(widget)
        self._unsubscribe: Callable[[], None] | None = None
        # "Alice is editing" in the widget's tooltip (ipywidgets' DOMWidget.tooltip),
        # only while the application set none of its own (jupyter.editing).
        self._off_presence: Callable[[], None] | None = None
        self._hint = ""

    @property
    def active(self) -> bool:
        return self._active

    def unshare(self) -> None:
        """End this binding (a waiting local value is written first)."""
        with _registry_lock:
            by_trait = _registry.get(self.widget, {})
            if by_trait.get(self.trait) is self:
                del by_trait[self.trait]
                if not by_trait:
                    _registry.pop(self.widget, None)
        self._stop()

    def flush(self, timeout: float | None = 10.0) -> None:
        """Write a waiting local value now, then wait until the relay acknowledged it
        (with an AsyncSession, ``await session.flush()`` for the second part)."""
        self._write_pending()
        if isinstance(self.session, Session):
            self.session.flush(timeout)

    def __repr__(self) -> str:
        state = "active" if self._active else "ended"
        return (
            f"<livewidgets.Binding {type(self.widget).__name__}.{self.trait} <-> "
            f"{self.path!r} {state} writes={self.writes} remote={self.remote_updates}>"
        )

    # --- lifecycle ------------------------------------------------------------------

    def _start(self, push_local: bool) -> None:
        # Subscribe before reading, so no change can slip between the read and the
        # subscription; the lock makes an early callback wait for the initial sync.
        with self._widget_lock, self._lock:
            self._active = True
            self._unsubscribe = self.session.subscribe(self.path, self._on_shared)
            try:
                shared = self.session.get(self.path, _MISSING)
                if shared is _MISSING or push_local:
                    self._pending = getattr(self.widget, self.trait)
                else:
                    self._set_trait(shared, strict=True)
            except BaseException:
                self._active = False
                self._unsubscribe()
                raise
            self.widget.observe(self._on_trait, names=[self.trait])
            if self.widget.has_trait("tooltip"):
                self._off_presence = self.session.on("presence", self._on_presence)
            if self.widget.has_trait("comm"):
                # ipywidgets' close() sets comm to None: a closed widget ends its bindings.
                self.widget.observe(self._on_comm, names=["comm"])
        self._write_pending()

    def _stop(self) -> None:
        if not self._active:
            return
        self.widget.unobserve(self._on_trait, names=[self.trait])
        if self.widget.has_trait("comm"):
            self.widget.unobserve(self._on_comm, names=["comm"])
        # The last value always goes out, even when the binding ends inside a window.
        self._write_pending()
        with self._lock:
            self._active = False
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            off, self._off_presence = self._off_presence, None
        if off is not None:
            off()
            self._show_editors([])

    def _on_presence(self, _payload: Any) -> None:
        self._show_editors(editing.editing(self.session, self.path))

    def _show_editors(self, names: list[str]) -> None:
        text = editing.hint(names)
        with self._widget_lock:
            current = getattr(self.widget, "tooltip", None)
            if text == self._hint or current not in (None, "", self._hint):
                return  # unchanged, or the application's own tooltip: leave it
            self._hint = text
            setattr(self.widget, "tooltip", text or None)  # noqa: B010 - a DOMWidget trait

    def _on_comm(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            self.unshare()
        else:
            _comms.install(self.widget)

    # --- shared -> trait (session thread, or the writer's thread) ----------------------

    def _on_shared(self, _value: Any, _path: str) -> None:
        with self._widget_lock, self._lock:
            # A newer local value is waiting: it will be written after this change.
            if not self._active or self._pending is not _MISSING:
                return
            # Read now rather than use the callback's value: whichever thread applies
            # last then leaves the trait equal to the latest shared value.
            shared = self.session.get(self.path, _MISSING)
            if shared is not _MISSING:
                self._set_trait(shared, strict=False)

    def _set_trait(self, shared: Any, *, strict: bool) -> None:
        """Set the trait to ``shared`` with the echo guard up (lock held)."""
        value = _to_trait(getattr(self.widget, self.trait), shared)
        if _same(getattr(self.widget, self.trait), value):
            return
        self._applying.active = True
        try:
            setattr(self.widget, self.trait, value)
        except TraitError as exc:
            if strict:
                raise ValueError(
                    f"the shared value at {self.path!r} does not fit "
                    f"{type(self.widget).__name__}.{self.trait}: {exc}; share another path "
                    "or pass push_local=True"
                ) from None
            log.warning(
                "[livewidgets] %s.%s refused the shared value at %r: %s",
                type(self.widget).__name__,
                self.trait,
                self.path,
                exc,
            )
            return
        finally:
            self._applying.active = False
        self.remote_updates += 1

    # --- trait -> shared (any thread) -------------------------------------------------

    def _on_trait(self, change: dict[str, Any]) -> None:
        if getattr(self._applying, "active", False):
            return  # our own remote update, not a local change
        value = change["new"]
        try:
            shareable(value)
        except ValueError as exc:
            log.warning(
                "[livewidgets] not sharing %s.%s: %s", type(self.widget).__name__, self.trait, exc
            )
            return
        with self._lock:
            if not self._active:
                return
            self._pending = value
            editing.touch(self.session, self.path)
            if self._scheduled:
                return  # the trailing write of this window will carry it
            self._scheduled = True
            delay = max(0.0, self._last_write + self.debounce - time.monotonic())
        _scheduler.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        with self._lock:
            self._scheduled = False
        self._write_pending()

    def _write_pending(self) -> None:
        with self._write_lock:
            with self._lock:
                value, self._pending = self._pending, _MISSING
                if value is _MISSING:
                    return
                self._last_write = time.monotonic()
            try:
                ack = self.session.set(self.path, value)
            except (LivewidgetsError, ValueError) as exc:
                self._failed(exc)
                return
            self.writes += 1
            ack.add_done_callback(self._on_ack)

    def _on_ack(self, ack: Any) -> None:
        error = ack.exception()
        if error is not None:
            self._failed(error)

    def _failed(self, error: BaseException) -> None:
        self.last_error = error
        log.warning(
            "[livewidgets] writing %s.%s to %r failed: %s",
            type(self.widget).__name__,
            self.trait,
            self.path,
            error,
        )


def _to_trait(current: Any, shared: Any) -> Any:
    """The trait-side form of a shared value: JSON has lists where traits hold tuples."""
    if isinstance(current, tuple) and isinstance(shared, list):
        return tuple(shared)
    return shared


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # an odd __eq__ (arrays): treat as different and let the trait decide
        return False


# --- registry -------------------------------------------------------------------------

_registry_lock = threading.Lock()
# widget -> trait -> binding. A binding keeps its widget alive until it ends (on
# unshare(), or when the widget is closed).
_registry: dict[HasTraits, dict[str, Binding]] = {}


# --- the share thread ----------------------------------------------------------------


class _Scheduler:
    """One daemon thread running delayed calls (trailing writes) in time order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), fn))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="livewidgets-share", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:
                log.exception("[livewidgets] scheduled call %r failed", fn)


_scheduler = _Scheduler()
