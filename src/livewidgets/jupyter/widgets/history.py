"""``History``: a timeline of the room's changes (who, when, which paths, a compact
diff per op), filtered by path or user, live; an admin reverts to any entry.

History queries block on the session's I/O loop, so they never run on the thread
that delivered the request: a front-end message (the kernel's shell thread or a
subshell) or a room change (the session's callback thread) only *asks* for a
query; one worker thread per widget runs the queries, at most one every
``MIN_INTERVAL`` seconds for live refreshes (a burst of changes is one query now
and one at the end), and sets the traits. The view only renders what it gets.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from typing import Any

import traitlets

from ...client.ack import Ack
from ...client.history import ROOM, describe_op
from ...errors import LivewidgetsError
from ._base import STATIC, LiveWidget, color_for, initials

__all__ = ["History", "entry_summary", "summarize_op"]

# One op as a short human diff (shared with ``livewidgets room history``).
summarize_op = describe_op

log = logging.getLogger("livewidgets.jupyter")

_QUERY_FAILED = "history failed: "
# What a query or a revert may raise that the widget shows as its error.
_FAILED = (LivewidgetsError, ValueError, TimeoutError, concurrent.futures.TimeoutError)


def entry_summary(entry: Any) -> dict[str, Any]:
    """A :class:`~livewidgets.protocol.messages.HistoryEntry` as the plain dict the
    view renders: version, user, name initials and colour, time, client_id, the
    paths touched (in order, once each) and one summary line per op."""
    user = str(entry.user or "")
    paths: list[str] = []
    for op in entry.ops:
        path = str(getattr(op, "path", "")) or ROOM
        if path not in paths:
            paths.append(path)
    when = float(entry.time or 0.0)
    return {
        "version": int(entry.version),
        "user": user,
        "initials": initials(user or "?"),
        "color": color_for(user),
        "time": when,
        "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)) if when else "",
        "client_id": str(entry.client_id),
        "paths": paths,
        "ops": [summarize_op(op) for op in entry.ops],
    }


class History(LiveWidget):
    """The room's recent changes, newest on top; ``path`` (a path, or None for the
    whole room) is the initial path filter. Admins (role "admin", or a relay that
    checks no roles) get a "Revert to here" button per entry."""

    _esm = STATIC / "history.js"

    # Live refreshes start at most one query per MIN_INTERVAL seconds.
    MIN_INTERVAL = 0.5
    # Query timeout (seconds).
    TIMEOUT = 10.0

    # Newest first: {version, user, initials, color, time, iso, client_id, paths, ops}.
    entries = traitlets.List(traitlets.Dict()).tag(sync=True)
    path_filter = traitlets.Unicode("").tag(sync=True)
    user_filter = traitlets.Unicode("").tag(sync=True)
    # Every user seen in this widget's results (for the filter's dropdown), sorted.
    users = traitlets.List(traitlets.Unicode()).tag(sync=True)
    can_revert = traitlets.Bool(False).tag(sync=True)
    loading = traitlets.Bool(False).tag(sync=True)
    # Older entries match too ("Load older").
    more = traitlets.Bool(False).tag(sync=True)
    # What the last revert did ("" when none).
    notice = traitlets.Unicode("").tag(sync=True)
    limit = traitlets.Int(50).tag(sync=True)

    def __init__(
        self, path: str | None = None, *, limit: int = 50, session: Any = None, **kwargs: Any
    ) -> None:
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be between 1 and 1000, not {limit}")
        super().__init__(
            session=session, path_filter=(path or "").strip("/"), limit=limit, **kwargs
        )
        self._cv = threading.Condition()
        self._jobs: dict[str, Any] = {}  # "refresh" -> True, "older" -> True, "revert" -> [v]
        self._stopped = False
        self._last_refresh = float("-inf")
        self._seen_users: set[str] = set()
        self._shown_filters: Any = None  # the filters the shown entries match
        self._shown = limit  # entries the refresh asks for (grows with "Load older")
        self.observe(self._on_filter, ["path_filter", "user_filter"])
        self._thread = threading.Thread(target=self._work, name="livewidgets-history", daemon=True)
        self._thread.start()
        self._own(self._stop)
        self._own(self._session.subscribe("", lambda _value, _path: self._ask("refresh")))
        self._own(self._session.on("connected", lambda _payload: self._ask("refresh")))
        self.can_revert = self._session.role in (None, "admin")
        self._ask("refresh", now=True)

    # --- public API (blocking; call from your code, not from a session callback) ---

    def refresh(self, timeout: float | None = None) -> None:
        """Query again now and wait (up to ``timeout`` s) until the entries show it."""
        done = threading.Event()
        self._ask("refresh", now=True, done=done)
        done.wait(self.TIMEOUT if timeout is None else timeout)

    def load_older(self) -> None:
        """Ask for the page of entries older than the oldest shown (runs in the background)."""
        self._ask("older")

    def revert(self, version: int, timeout: float | None = None) -> Ack:
        """Make the filtered path (the room when none) what it was right after
        ``version`` (admins; :class:`~livewidgets.errors.OpRejected` ``forbidden``
        otherwise). Blocks until the relay answered; the entries refresh after."""
        ack: Ack = self._session.revert_to(
            int(version), self.path_filter.strip("/"), timeout=self.TIMEOUT
        )
        try:
            ack.result(self.TIMEOUT if timeout is None else timeout)
        finally:
            if threading.current_thread() is not self._thread:  # the worker refreshes itself
                self._ask("refresh", now=True)
        return ack

    # --- front-end messages (never block: the worker runs them) --------------------

    def _msg_refresh(self, msg: dict[str, Any]) -> None:
        self._ask("refresh", now=True)

    def _msg_older(self, msg: dict[str, Any]) -> None:
        self._ask("older")

    def _msg_revert(self, msg: dict[str, Any]) -> None:
        self._set_from_session(error="", notice="")
        version = msg["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"not a version: {version!r}")
        self._ask("revert", version=version)

    def _on_filter(self, change: Any) -> None:
        if self._is_from_session():
            return
        with self._cv:
            self._shown = self.limit  # a new filter starts from the newest page
        self._set_from_session(error="", notice="")
        self._ask("refresh", now=True)

    # --- the worker ----------------------------------------------------------------

    def _ask(
        self,
        job: str,
        *,
        now: bool = False,
        version: int | None = None,
        done: threading.Event | None = None,
    ) -> None:
        with self._cv:
            if self._stopped:
                if done is not None:
                    done.set()
                return
            if job == "revert":
                self._jobs.setdefault("revert", []).append(version)
            elif job == "refresh":
                waiters = self._jobs.setdefault("refresh", [])
                if done is not None:
                    waiters.append(done)
                if now:
                    self._last_refresh = float("-inf")
            else:
                self._jobs[job] = True
            self._cv.notify()

    def _stop(self) -> None:
        with self._cv:
            self._stopped = True
            jobs, self._jobs = self._jobs, {}
            self._cv.notify()
        for done in jobs.get("refresh", []):
            done.set()
        if self._thread is not threading.current_thread():
            # An idle worker ends at once; one inside a query drops its answer (the
            # widget is closed) and ends when the query does: don't hold close() for it.
            self._thread.join(timeout=1.0)

    def _work(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._stopped:
                        return
                    urgent = "revert" in self._jobs or "older" in self._jobs
                    if urgent:
                        break
                    if "refresh" in self._jobs:
                        wait = self._last_refresh + self.MIN_INTERVAL - time.monotonic()
                        if wait <= 0:
                            break
                        self._cv.wait(wait)
                    else:
                        self._cv.wait()
                jobs, self._jobs = self._jobs, {}
            try:
                self._run_jobs(jobs)
            except Exception:  # never let the worker die
                log.exception("[livewidgets] History: query failed")
            finally:
                for done in jobs.get("refresh", []):
                    done.set()

    def _run_jobs(self, jobs: dict[str, Any]) -> None:
        failed = ""  # a failed revert's error stays on the refreshed widget
        for version in jobs.get("revert", []):
            failed = self._do_revert(version)
        if "refresh" in jobs or "revert" in jobs:
            with self._cv:
                self._last_refresh = time.monotonic()
            self._do_refresh(failed)
        if "older" in jobs:
            self._do_older()

    def _filters(self) -> tuple[str | None, str | None]:
        path = self.path_filter.strip().strip("/")
        user = self.user_filter.strip()
        return path or None, user or None

    def _query(
        self, limit: int, before: int | None = None
    ) -> tuple[Any, list[dict[str, Any]], bool]:
        """(the filters used, the entries newest first, whether older ones match too)
        or raises."""
        filters = self._filters()
        path, user = filters
        found = self._session.history(path, limit, user=user, before=before, timeout=self.TIMEOUT)
        return filters, [entry_summary(e) for e in reversed(found)], found.more

    def _do_refresh(self, error: str = "") -> None:
        self._set_from_session(loading=True)
        with self._cv:
            limit = max(1, min(1000, self._shown))
        try:
            filters, entries, more = self._query(limit)
        except _FAILED as exc:
            self._set_from_session(loading=False, error=f"{_QUERY_FAILED}{exc}")
            return
        if filters != self._filters():
            return  # the filters changed meanwhile: their own refresh is queued
        current = list(self.entries) if filters == self._shown_filters else []
        if entries and current and int(entries[-1]["version"]) <= int(current[0]["version"]):
            # Overlaps what is shown: keep the older pages loaded before.
            oldest = int(entries[-1]["version"])
            tail = [e for e in current if int(e["version"]) < oldest]
            if tail:
                entries, more = entries + tail, self.more
        self._show(entries, filters, more=more, error=error)

    def _do_older(self) -> None:
        current = list(self.entries)
        if not current:
            return self._do_refresh()
        self._set_from_session(loading=True)
        try:
            filters, older, more = self._query(self.limit, before=int(current[-1]["version"]))
        except _FAILED as exc:
            self._set_from_session(loading=False, error=f"{_QUERY_FAILED}{exc}")
            return
        if filters != self._filters():
            return
        combined = current + older
        with self._cv:
            self._shown = min(1000, len(combined))
        self._show(combined, filters, more=more, error="")

    def _show(self, entries: list[dict[str, Any]], filters: Any, *, more: bool, error: str) -> None:
        self._shown_filters = filters
        if not error and not self.error.startswith(_QUERY_FAILED):
            error = self.error  # a revert's or a message's error stays until the next action
        self._seen_users.update(e["user"] for e in entries if e["user"])
        self._set_from_session(
            entries=entries,
            users=sorted(self._seen_users),
            more=more,
            loading=False,
            error=error,
            can_revert=self._session.role in (None, "admin"),
        )

    def _do_revert(self, version: int) -> str:
        """Revert; returns the error shown ("" when it worked)."""
        where = self.path_filter.strip().strip("/")
        try:
            self.revert(version)
        except _FAILED as exc:
            error = f"revert failed: {exc}"
            self._set_from_session(notice="", error=error)
            return error
        self._set_from_session(
            notice=f"Reverted {where or 'the room'} to version {version}.", error=""
        )
        return ""
