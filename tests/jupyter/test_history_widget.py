"""The History widget: pure op summaries, then against a real relay with real
sessions (entries, filters, live refresh, paging, revert, a non-admin).

Front-end messages are delivered by calling the widget's custom-message handler, as
ipywidgets does; every wait polls a condition with a deadline.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import livewidgets
from livewidgets.auth import issue_token
from livewidgets.client import Session
from livewidgets.errors import OpRejected
from livewidgets.jupyter.widgets import History, color_for
from livewidgets.jupyter.widgets.history import entry_summary, summarize_op
from livewidgets.protocol.messages import HistoryEntry
from livewidgets.relay.security import SecurityPolicy
from livewidgets.state.ops import (
    DeleteOp,
    IncrementOp,
    MergeOp,
    PushOp,
    RemoveOp,
    SetOp,
    TextOp,
)

Connect = Callable[..., Session]
Wait = Callable[..., Any]
TIMEOUT = 10.0
SECRET = b"h" * 32

# --- summaries (pure) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "text"),
    [
        (IncrementOp(path="poll/q1/votes/yes"), "poll/q1/votes/yes +1"),
        (IncrementOp(path="n", by=-2), "n \u22122"),
        (IncrementOp(path="x", by=0.5), "x +0.5"),
        (SetOp(path="title", value="Lunch?"), 'title = "Lunch?"'),
        (SetOp(path="flag", value=True), "flag = true"),
        (SetOp(path="", value={}), "(room) = {}"),
        (SetOp(path="cfg", value={"a": 1}), 'cfg = {"a": 1}'),
        (PushOp(path="chat", value="hi"), 'chat + "hi"'),
        (PushOp(path="chat", value={"id": "x", "text": "hi"}), 'chat + "hi"'),
        (RemoveOp(path="chat", id="3f2a9c1b00d1e2f3"), "chat \u2212 item 3f2a"),
        (RemoveOp(path="chat", id=7), "chat \u2212 item 7"),
        (
            TextOp(path="notes/body", delta=[5, "abcdefghijkl", -3, 2]),
            "notes/body: +12 \u22123 chars",
        ),
        (DeleteOp(path="extra"), "delete extra"),
        (MergeOp(path="", value={"a": 1, "b": 2}), "merge {a, b}"),
        (MergeOp(path="s", value={k: 0 for k in "abcdefg"}), "merge s {a, b, c, d, e, \u2026}"),
    ],
)
def test_summarize_op(op: Any, text: str) -> None:
    assert summarize_op(op) == text


def test_long_values_are_cut() -> None:
    text = summarize_op(SetOp(path="doc", value="x" * 500))
    assert text.startswith('doc = "xxx') and text.endswith("\u2026")
    assert len(text) < 60
    assert len(summarize_op(PushOp(path="log", value=list(range(1000))))) < 60


def test_entry_summary_is_plain_data() -> None:
    entry = HistoryEntry(
        version=7,
        client_id="c1",
        user="ada",
        time=1_700_000_000.0,
        ops=[IncrementOp(path="a/b"), SetOp(path="a/b", value=1), DeleteOp(path="")],
    )
    assert entry_summary(entry) == {
        "version": 7,
        "user": "ada",
        "initials": "A",
        "color": color_for("ada"),
        "time": 1_700_000_000.0,
        "iso": "2023-11-14T22:13:20Z",
        "client_id": "c1",
        "paths": ["a/b", "(room)"],
        "ops": ["a/b +1", "a/b = 1", "delete (room)"],
    }
    unknown = entry_summary(HistoryEntry(version=1, client_id="c", ops=[]))
    assert (unknown["user"], unknown["time"], unknown["iso"]) == ("", 0.0, "")


# --- against a real relay ---------------------------------------------------------------


@pytest.fixture
def made() -> Iterator[list[Any]]:
    """Widgets (and extra sessions) made in a test are closed at its end."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        thing.close()


def frontend(widget: History, **content: Any) -> None:
    widget._on_frontend_msg(widget, content, [])


def ops_of(widget: History) -> list[list[str]]:
    return [e["ops"] for e in widget.entries]


def test_entries_show_users_and_summaries_newest_first(
    connect: Connect, wait_until: Wait, made: list[Any]
) -> None:
    ada, grace = connect("ada"), connect("grace")
    ada.set("poll/q1/title", "Lunch?")
    ada.flush(TIMEOUT)
    grace.increment("poll/q1/votes/yes")
    grace.flush(TIMEOUT)
    ada.push("chat", {"id": "m1", "text": "hi"})
    ada.flush(TIMEOUT)
    history = History(session=ada)
    made.append(history)
    wait_until(lambda: len(history.entries) == 3, message="three entries")
    assert [e["user"] for e in history.entries] == ["ada", "grace", "ada"]
    assert ops_of(history) == [
        ['chat + "hi"'],
        ["poll/q1/votes/yes +1"],
        ['poll/q1/title = "Lunch?"'],
    ]
    assert history.entries[1]["color"] == color_for("grace")
    assert history.entries[1]["client_id"] == grace.client_id
    assert history.users == ["ada", "grace"]
    assert history.can_revert  # no roles on this relay: everyone may
    assert not history.loading and history.error == ""


def test_filters_by_path_and_user_and_refreshes_live(
    connect: Connect, wait_until: Wait, made: list[Any]
) -> None:
    ada, grace = connect("ada"), connect("grace")
    ada.set("poll/q1/title", "Lunch?")
    grace.increment("poll/q1/votes/yes")
    ada.push("chat", "hi")
    grace.flush(TIMEOUT)
    ada.flush(TIMEOUT)
    history = History("poll", session=ada)
    made.append(history)
    assert history.path_filter == "poll"
    wait_until(lambda: len(history.entries) == 2, message="the poll's two entries")
    # A user filter from the view (the dropdown sets the trait): a new server query.
    history.user_filter = "grace"
    wait_until(lambda: ops_of(history) == [["poll/q1/votes/yes +1"]], message="grace's entry")
    history.user_filter = ""
    history.path_filter = "chat"
    wait_until(lambda: ops_of(history) == [['chat + "hi"']], message="the chat entry")
    # Live: another session writes; the widget refreshes by itself (bounded wait).
    grace.push("chat", "hello")
    ada.set("elsewhere", 1)  # filtered out
    wait_until(
        lambda: ops_of(history) == [['chat + "hello"'], ['chat + "hi"']],
        message="the live refresh",
    )
    assert history.entries[0]["user"] == "grace"


def test_load_older_pages_back(connect: Connect, wait_until: Wait, made: list[Any]) -> None:
    ada = connect("ada")
    for _ in range(7):
        ada.increment("n")
    ada.flush(TIMEOUT)
    history = History(limit=3, session=ada)
    made.append(history)
    versions = lambda: [e["version"] for e in history.entries]  # noqa: E731
    wait_until(lambda: versions() == [7, 6, 5], message="the newest page")
    assert history.more
    frontend(history, type="older")
    wait_until(lambda: versions() == [7, 6, 5, 4, 3, 2], message="two pages")
    frontend(history, type="older")
    wait_until(lambda: versions() == [7, 6, 5, 4, 3, 2, 1], message="all of them")
    wait_until(lambda: not history.more, message="no more")
    # A refresh keeps the pages loaded.
    ada.increment("n")
    wait_until(lambda: versions() == list(range(8, 0, -1)), message="the refresh")


def test_revert_from_the_widget_restores_the_state(
    connect: Connect, wait_until: Wait, made: list[Any]
) -> None:
    ada, grace = connect("ada"), connect("grace")
    ada.set("doc/title", "Plan A")
    ada.flush(TIMEOUT)
    grace.set("doc/title", "Plan B")
    grace.set("doc/extra", True)
    grace.flush(TIMEOUT)
    history = History(session=ada)
    made.append(history)
    wait_until(lambda: len(history.entries) == 3, message="three entries")
    first = history.entries[-1]["version"]
    frontend(history, type="revert", version=first)
    wait_until(lambda: grace.get("doc") == {"title": "Plan A"}, message="the revert at grace")
    assert ada.get("doc") == {"title": "Plan A"}
    wait_until(lambda: "version" in history.notice, message="the notice")
    assert history.error == ""
    # The revert is itself an entry, by ada, on top.
    wait_until(lambda: len(history.entries) == 4, message="the revert's entry")
    assert history.entries[0]["user"] == "ada"
    # A malformed request is an error line, never an exception in the kernel.
    frontend(history, type="revert", version="x")
    assert "not a version" in history.error


def test_revert_respects_the_path_filter(
    connect: Connect, wait_until: Wait, made: list[Any]
) -> None:
    ada = connect("ada")
    ada.set("a", 1)
    ada.set("b", 1)
    ada.flush(TIMEOUT)
    ada.set("a", 2)
    ada.set("b", 2)
    ada.flush(TIMEOUT)
    history = History("a", session=ada)
    made.append(history)
    wait_until(lambda: len(history.entries) == 2, message="a's entries")
    history.revert(history.entries[-1]["version"])
    assert (ada.get("a"), ada.get("b")) == (1, 2)


def test_a_non_admin_cannot_revert(
    thread_relay: Callable[..., Any], room: str, wait_until: Wait, made: list[Any]
) -> None:
    relay = thread_relay(policy=SecurityPolicy(SECRET))

    def member(user: str, role: str) -> Session:
        token = issue_token(SECRET, user=user, room=room, role=role)
        session = livewidgets.connect(relay.url, room, user, token=token, timeout=TIMEOUT)
        made.append(session)
        return session

    teacher, bob = member("tess", "admin"), member("bob", "write")
    bob.set("x", 1)
    bob.flush(TIMEOUT)
    mine, theirs = History(session=teacher), History(session=bob)
    made.extend([mine, theirs])
    wait_until(lambda: len(theirs.entries) == 1 and len(mine.entries) == 1, message="entries")
    assert mine.can_revert and not theirs.can_revert
    # Even a hand-made message from bob's view is refused, and said in the widget.
    frontend(theirs, type="revert", version=1)
    wait_until(lambda: "forbidden" in theirs.error, message="the refusal")
    with pytest.raises(OpRejected, match="forbidden"):
        theirs.revert(1)


def test_live_refreshes_are_throttled(
    connect: Connect, wait_until: Wait, made: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of changes is a few queries (at most about two a second), and the last
    one shows the end of the burst."""
    ada, grace = connect("ada"), connect("grace")
    history = History(session=ada)
    made.append(history)
    wait_until(lambda: not history.loading, message="the first query")
    queries: list[float] = []
    real = ada.history

    def counting(*args: Any, **kwargs: Any) -> Any:
        queries.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(ada, "history", counting)
    start = time.monotonic()
    for _ in range(40):
        grace.increment("n")
        time.sleep(0.02)
    grace.flush(TIMEOUT)
    wait_until(lambda: len(history.entries) == 40, message="the whole burst")
    elapsed = time.monotonic() - start
    assert 1 <= len(queries) <= elapsed / History.MIN_INTERVAL + 2
    assert all(b - a >= History.MIN_INTERVAL * 0.9 for a, b in itertools.pairwise(queries))


def test_messages_from_the_view_never_wait_for_the_relay(
    connect: Connect, wait_until: Wait, made: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's comm thread only asks; the worker waits for the (here: stuck) query."""
    ada = connect("ada")
    history = History(session=ada)
    made.append(history)
    wait_until(lambda: not history.loading, message="the first query")
    release = threading.Event()
    real = ada.history

    def stuck(*args: Any, **kwargs: Any) -> Any:
        release.wait(TIMEOUT)
        return real(*args, **kwargs)

    monkeypatch.setattr(ada, "history", stuck)
    start = time.monotonic()
    frontend(history, type="refresh")
    history.path_filter = "x"  # what a filter change from the view does
    frontend(history, type="older")
    assert time.monotonic() - start < 0.5
    wait_until(lambda: history.loading, message="the query under way")
    release.set()
    wait_until(lambda: not history.loading, message="the query's end")
    assert history.error == ""


def test_close_stops_the_worker(connect: Connect) -> None:
    history = History(session=connect("ada"))
    history.close()
    assert not history._thread.is_alive()
    history.close()  # idempotent


def test_exported_at_the_top() -> None:
    assert livewidgets.History is History
