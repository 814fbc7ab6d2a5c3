"""The shared widgets against a real relay and real sessions (two users per test).

Front-end messages are simulated by calling the widget's custom-message handler
(``_on_frontend_msg(widget, content, buffers)``, what ipywidgets calls); messages
to the front end are captured by replacing the widget's ``send``. Waits poll a
condition with a deadline (the ``wait_until`` fixture from conftest.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

import livewidgets
from livewidgets.auth import issue_link_token, issue_token
from livewidgets.client import Session
from livewidgets.client.backoff import Backoff
from livewidgets.errors import OpRejected, SessionClosed
from livewidgets.jupyter import editing
from livewidgets.jupyter.widgets import (
    AnswerBox,
    Chat,
    ConflictResolver,
    ConnectionStatus,
    LiveWidget,
    Poll,
    Presence,
    SharedText,
    StateInspector,
    color_for,
)
from livewidgets.jupyter.widgets._base import STATIC, initials, path_segment
from livewidgets.relay import Relay
from livewidgets.relay.security import SecurityPolicy
from livewidgets.state import text as ot

Connect = Callable[..., Session]
Wait = Callable[..., Any]

TIMEOUT = 10.0
EVIL = "<img src=x onerror=alert(1)>"


class Recorder:
    """Stands in for ``widget.send``: the messages the kernel sent to the front end."""

    def __init__(self, widget: LiveWidget) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        widget.send = self

    def __call__(self, content: dict[str, Any], buffers: Any = None) -> None:
        with self._lock:
            self.messages.append(content)

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            out, self.messages = self.messages, []
        return out


def frontend(widget: LiveWidget, **content: Any) -> None:
    """Deliver a message from the browser, as ipywidgets would."""
    widget._on_frontend_msg(widget, content, [])


def settle(wait_until: Wait, *sessions: Session) -> int:
    """Every write so far is acknowledged and every session saw the last one."""
    for session in sessions:
        session.flush(TIMEOUT)
    version = max(s.version for s in sessions)
    wait_until(lambda: all(s.version >= version for s in sessions), message="sessions caught up")
    return version


@pytest.fixture
def widgets() -> Any:
    """Widgets made in a test are closed at its end."""
    made: list[LiveWidget] = []
    yield made
    for widget in made:
        widget.close()


# --- helpers --------------------------------------------------------------------------


def test_color_for_is_stable_css() -> None:
    """color_for gives the same hsl() colour for a user every time, different per user."""
    assert color_for("alice") == color_for("alice")
    assert color_for("alice") != color_for("bob")
    assert color_for("alice").startswith("hsl(")


def test_initials_and_segments() -> None:
    """Avatar initials keep combining marks; path segments escape / and %."""
    assert initials("Ada Lovelace") == "AL"
    assert initials("e\u0301mile zola") == "E\u0301Z"
    assert initials("") == "?"
    assert initials(EVIL) == "IS"
    assert initials("Bob <img src=x>") == "BI"
    assert path_segment("a/b%c") == "a%2Fb%25c"
    assert path_segment("") == "%"


def test_static_build_is_shipped() -> None:
    """Every widget's ESM and the stylesheet are in the package."""
    for cls in (
        SharedText,
        Presence,
        ConnectionStatus,
        Poll,
        Chat,
        StateInspector,
        ConflictResolver,
    ):
        assert "export" in str(cls._esm), cls
    assert (STATIC / "style.css").is_file()


def test_default_session_is_the_kernels(connect: Connect, widgets: list[LiveWidget]) -> None:
    """session=None uses current_session(); without one the error says what to do."""
    from livewidgets.jupyter.runtime import set_current_session

    set_current_session(None)
    with pytest.raises(RuntimeError, match="livewidgets connect"):
        Presence()
    a = connect("alice")
    set_current_session(a)
    try:
        widget = Presence(refresh=0)
        widgets.append(widget)
        assert widget.session is a
    finally:
        set_current_session(None)


# --- Poll -----------------------------------------------------------------------------


def test_poll_vote_reaches_the_other_session(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """A vote clicked in A's view shows in B's counts; B's widget writes nothing."""
    a, b = connect("alice"), connect("bob")
    pa = Poll("poll/q1", "Tea?", ["tea", "coffee"], session=a)
    # The first poll an admin opens gives the room its rule (version 1).
    assert settle(wait_until, a, b) == 1 and "one vote per user" in str(b.rules)
    pb = Poll("poll/q1", "Tea?", ["tea", "coffee"], session=b)
    widgets += [pa, pb]
    frontend(pa, type="vote", option="tea")
    wait_until(lambda: pb.counts == {"tea": 1, "coffee": 0}, message="bob sees the vote")
    # Widgets follow the session from its callback thread: alice's a moment later.
    wait_until(lambda: pa.my_vote == "tea", message="alice's widget shows her vote")
    assert pb.my_vote is None and pb.total == 1
    version = settle(wait_until, a, b)
    # Had B echoed the change, the room would have sequenced more than A's one vote.
    assert version == 2
    assert b.set("sentinel", True).result(TIMEOUT) == 3


def test_poll_one_vote_per_user_moves_atomically(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """Voting again moves the vote (one entry per user): nobody ever sees it counted twice."""
    a, a2, b = connect("alice"), connect("alice"), connect("bob")
    pa = Poll("poll/q", "?", ["x", "y", "a/b"], session=a)
    pa2 = Poll("poll/q", "?", ["x", "y", "a/b"], session=a2)
    pb = Poll("poll/q", "?", ["x", "y", "a/b"], session=b)
    widgets += [pa, pa2, pb]
    totals: list[int] = []
    pb.observe(lambda change: totals.append(change["new"]), "total")
    pa.vote("x")
    wait_until(lambda: pb.counts["x"] == 1, message="first vote")
    settle(wait_until, a, a2, b)
    assert pa2.my_vote == "x"  # the same user in another kernel sees their vote
    pa.vote("a/b")
    wait_until(lambda: pb.counts == {"x": 0, "y": 0, "a/b": 1}, message="moved vote")
    assert pa.vote("a/b") is None  # same choice: nothing to write
    frontend(pb, type="vote", option="y")
    wait_until(lambda: pa.counts == {"x": 0, "y": 1, "a/b": 1}, message="bob's vote")
    assert set(totals) <= {1, 2}, totals
    assert b.get("poll/q/voters/alice") == "a/b"


def test_poll_rejects_an_unknown_option(
    connect: Connect, widgets: list[LiveWidget], caplog: pytest.LogCaptureFixture
) -> None:
    """A bad vote from the browser is logged and shown, never raised into the kernel."""
    a = connect("alice")
    poll = Poll("p", "?", ["x"], session=a)
    widgets.append(poll)
    with caplog.at_level(logging.WARNING, "livewidgets.jupyter"):
        frontend(poll, type="vote", option="nope")
        frontend(poll, type="no-such-message")
        poll._on_frontend_msg(poll, "not a dict", [])
    assert "not an option" in poll.error
    assert a.get("p") is None
    with pytest.raises(ValueError, match="distinct"):
        Poll("p", "?", ["x", "x"], session=a)


# --- SharedText -----------------------------------------------------------------------


def test_text_browser_edit_reaches_the_other_widget_without_echo(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """An edit from A's view is acked to it, synced to B's views, and written once."""
    a, b = connect("alice"), connect("bob")
    ta, tb = SharedText("docs/notes", session=a), SharedText("docs/notes", session=b)
    widgets += [ta, tb]
    ra, rb = Recorder(ta), Recorder(tb)
    frontend(ta, type="edit", view="va", rev=0, delta=["hi \U0001f600"], anchor=5, head=5)
    assert ra.take() == [{"type": "ack", "view": "va", "rev": 1, "delta": ["hi \U0001f600"]}]
    assert ta.value == "hi \U0001f600" and ta.rev == 1
    wait_until(lambda: tb.value == "hi \U0001f600", message="bob's widget has the text")
    assert rb.take() == [{"type": "sync", "rev": 1, "delta": ["hi \U0001f600"]}]
    assert settle(wait_until, a, b) == 1
    assert b.set("sentinel", True).result(TIMEOUT) == 2
    assert ra.take() == [] and rb.take() == []  # no echo to either side's views


def test_text_concurrent_edits_are_transformed(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """An edit made at an old revision is transformed over what came after it."""
    a, b = connect("alice"), connect("bob")
    ta, tb = SharedText("t", session=a), SharedText("t", session=b)
    widgets += [ta, tb]
    ra = Recorder(ta)
    frontend(ta, type="edit", view="v", rev=0, delta=["hello"], anchor=5, head=5)
    wait_until(lambda: tb.value == "hello", message="bob has hello")
    b.text("t").insert(0, ">> ")  # bob's kernel edits from Python
    wait_until(lambda: ta.rev == 2, message="alice's widget took bob's edit")
    ra.take()
    # The view still thinks rev 1: it typed "!" at the end of "hello".
    frontend(ta, type="edit", view="v", rev=1, delta=[5, "!"], anchor=6, head=6)
    (ack,) = ra.take()
    assert ack == {"type": "ack", "view": "v", "rev": 3, "delta": [8, "!"]}
    wait_until(lambda: tb.value == ">> hello!", message="both edits at bob")
    assert ta.value == ">> hello!"


def test_text_python_value_assignment_is_a_local_edit(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """widget.value = ... edits the shared text and syncs the views."""
    a, b = connect("alice"), connect("bob")
    ta, tb = SharedText("t", session=a), SharedText("t", session=b)
    widgets += [ta, tb]
    ra = Recorder(ta)
    ta.value = "abc"
    ta.value = "aXc"
    assert ra.take() == [
        {"type": "sync", "rev": 1, "delta": ["abc"]},
        {"type": "sync", "rev": 2, "delta": [1, "X", -1, 1]},
    ]
    wait_until(lambda: tb.value == "aXc", message="bob has it")
    assert settle(wait_until, a, b) == 2


def test_text_cursor_reaches_peers(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """A view's cursor is published and shows in the other widget's cursors trait."""
    a, b = connect("alice", name="Alice <b>"), connect("bob")
    ta, tb = SharedText("t", session=a), SharedText("t", session=b)
    widgets += [ta, tb]
    ta.value = "hello world"
    wait_until(lambda: tb.value == "hello world", message="text at bob")
    frontend(ta, type="cursor", view="v", rev=1, anchor=6, head=11)
    (peer,) = wait_until(lambda: tb.cursors, message="alice's cursor at bob")
    assert (peer["anchor"], peer["head"], peer["name"]) == (6, 11, "Alice <b>")
    assert peer["client_id"] == a.client_id and peer["color"] == color_for("alice")
    # Bob types before alice's selection: her cursor moves along, at the new revision.
    b.text("t").insert(0, ">> ")
    wait_until(lambda: tb.cursors and tb.cursors[0]["anchor"] == 9, message="cursor moved")
    assert tb.cursors_rev == tb.rev
    ta.close()  # closing withdraws the cursor
    wait_until(lambda: tb.cursors == [], message="cursor gone")


def test_text_says_who_is_editing(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bob types in his view: Alice's SharedText says "Bob is editing" until he stops."""
    monkeypatch.setattr(editing, "HOLD", 0.3)
    a, b = connect("alice"), connect("bob", name="Bob")
    ta, tb = SharedText("t", session=a), SharedText("t", session=b)
    widgets += [ta, tb]
    frontend(tb, type="edit", view="v", rev=0, delta=["hi"], anchor=2, head=2)
    wait_until(lambda: ta.editing_hint == "Bob is editing", message="the hint at alice")
    assert tb.editing_hint == ""
    wait_until(lambda: ta.editing_hint == "", message="the hint gone after he stopped")
    assert ta.value == "hi"


def test_text_resets_a_view_it_cannot_serve(connect: Connect, widgets: list[LiveWidget]) -> None:
    """An edit at an unknown revision or one that does not fit gets a reset, not a crash."""
    a = connect("alice")
    ta = SharedText("t", session=a)
    widgets.append(ta)
    ra = Recorder(ta)
    frontend(ta, type="edit", view="v", rev=5, delta=["x"], anchor=1, head=1)
    frontend(ta, type="edit", view="v", rev=0, delta=[3, "x"], anchor=1, head=1)
    frontend(ta, type="edit", view="v", rev=0, delta="nope", anchor=1, head=1)
    frontend(ta, type="resync", view="w")
    assert ra.take() == [
        {"type": "reset", "view": "v", "rev": 0, "value": ""},
        {"type": "reset", "view": "v", "rev": 0, "value": ""},
        {"type": "reset", "view": "v", "rev": 0, "value": ""},
        {"type": "reset", "view": "w", "rev": 0, "value": ""},
    ]
    assert a.get("t") is None


def test_text_on_a_closed_session_reverts(connect: Connect, widgets: list[LiveWidget]) -> None:
    """Writes that cannot happen leave the widget showing the real text."""
    a = connect("alice")
    ta = SharedText("t", session=a)
    widgets.append(ta)
    ra = Recorder(ta)
    ta.value = "kept"
    a.flush(TIMEOUT)
    a.close()
    with pytest.raises(SessionClosed):
        ta.value = "lost"
    assert ta.value == "kept"
    frontend(ta, type="edit", view="v", rev=1, delta=[4, "!"], anchor=5, head=5)
    assert ra.take()[-1] == {"type": "reset", "view": "v", "rev": 1, "value": "kept"}
    assert "closed" in ta.error


class View:
    """A Python twin of js/src/text_sync.js (one browser view of a SharedText)."""

    def __init__(self, widget: SharedText, name: str, inbox: deque[dict[str, Any]]) -> None:
        self.widget, self.name, self.inbox = widget, name, inbox
        self.value, self.rev = widget.value, widget.rev
        self.outstanding: list[int | str] | None = None
        self.buffer: list[int | str] | None = None

    def type(self, new: str) -> None:
        delta = ot.diff(self.value, new)
        self.value = new
        if all(isinstance(c, int) and c > 0 for c in delta):
            return
        if self.outstanding is None:
            self.outstanding = delta
            self._send(delta)
        else:
            self.buffer = delta if self.buffer is None else ot.compose(self.buffer, delta)

    def _send(self, delta: list[int | str]) -> None:
        n = ot.utf16_len(self.value)
        frontend(
            self.widget, type="edit", view=self.name, rev=self.rev, delta=delta, anchor=n, head=n
        )

    def deliver(self) -> bool:
        if not self.inbox:
            return False
        msg = self.inbox.popleft()
        if msg["type"] == "reset":
            raise AssertionError(f"unexpected reset: {msg}")
        if msg["type"] == "ack" and msg["view"] == self.name:
            self.rev = msg["rev"]
            self.outstanding, self.buffer = self.buffer, None
            if self.outstanding is not None:
                self._send(self.outstanding)
        elif msg["rev"] > self.rev:
            assert msg["rev"] == self.rev + 1, (msg, self.rev)
            d = msg["delta"]
            if self.outstanding is not None:
                self.outstanding, d = ot.transform(self.outstanding, d)
            if self.buffer is not None:
                self.buffer, d = ot.transform(self.buffer, d)
            self.value = ot.apply(self.value, d)
            self.rev = msg["rev"]
        return True


def _random_edit(rng: random.Random, text: str, step: int) -> str:
    at = rng.randint(0, len(text))
    if text and rng.random() < 0.3:
        return text[:at] + text[at + rng.randint(1, 3) :]
    return text[:at] + rng.choice(["x", "\U0001f44d\U0001f3fd", "e\u0301", f"<{step}>"]) + text[at:]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_text_views_converge_under_concurrent_edits(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget], seed: int
) -> None:
    """Two views on A, one on B and Python edits on B, interleaved at random: all converge."""
    rng = random.Random(seed)
    a, b = connect("alice"), connect("bob")
    ta, tb = SharedText("doc", session=a), SharedText("doc", session=b)
    widgets += [ta, tb]
    # deques: the widgets append from the I/O thread (under their own lock, so in
    # order), the test pops on its thread; no lock of ours around widget calls.
    inboxes: dict[str, deque[dict[str, Any]]] = {"a1": deque(), "a2": deque(), "b1": deque()}

    def fan_out(names: list[str]) -> Callable[..., None]:
        def send(content: dict[str, Any], buffers: Any = None) -> None:
            for name in names:
                inboxes[name].append(content)

        return send

    ta.send = fan_out(["a1", "a2"])
    tb.send = fan_out(["b1"])
    views = [
        View(ta, "a1", inboxes["a1"]),
        View(ta, "a2", inboxes["a2"]),
        View(tb, "b1", inboxes["b1"]),
    ]
    for step in range(150):
        r = rng.random()
        view = rng.choice(views)
        if r < 0.45:
            view.type(_random_edit(rng, view.value, step))
        elif r < 0.55:
            text = b.text("doc")
            value = text.value
            at = rng.randint(0, len(value))
            text.insert(at, f"[{step}]")
        else:
            view.deliver()

    def quiet() -> bool:
        while any([v.deliver() for v in views]):
            pass
        return (
            all(v.outstanding is None for v in views)
            and ta.value == tb.value == a.text("doc").value == b.text("doc").value
            and all(v.value == v.widget.value for v in views)
        )

    wait_until(quiet, message="every view, widget and session agree")
    settle(wait_until, a, b)
    assert quiet()


# --- Presence & ConnectionStatus ------------------------------------------------------


def test_presence_lists_peers_with_colour_and_label(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """Peers appear with name, initials, colour and their cell; they go when they leave."""
    a = connect("alice", name="Ada Lovelace")
    bar = Presence(session=a, refresh=0)
    widgets.append(bar)
    assert [p["is_self"] for p in bar.peers] == [True]
    assert bar.peers[0]["initials"] == "AL"
    b = connect("bob", name=EVIL)
    (_me, bob) = wait_until(lambda: len(bar.peers) == 2 and bar.peers, message="bob appears")
    assert bob["name"] == EVIL and bob["color"] == color_for("bob") and not bob["is_self"]
    b.update_presence(cell=3, kernel="busy")
    wait_until(lambda: bar.peers[1]["label"] == "cell 3", message="bob's cell")
    assert bar.peers[1]["kernel"] == "busy"
    b.close()
    wait_until(lambda: len(bar.peers) == 1, message="bob left")
    bar.include_self = False
    assert bar.peers == []


def test_connection_status_tracks_state_rtt_and_queue(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """Connected with an RTT after a write; the periodic refresh keeps it current."""
    a = connect("alice")
    badge = ConnectionStatus(session=a, refresh=0.05)
    widgets.append(badge)
    assert badge.state == "connected"
    a.set("x", 1).result(TIMEOUT)
    wait_until(lambda: badge.rtt_ms is not None and badge.version == 1, message="metrics")
    assert badge.queue_depth == 0


def test_connection_status_counts_reconnect_attempts(
    wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """When the relay goes away the badge shows reconnecting, the attempt and the delay."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    relay = Relay(host="127.0.0.1", port=0)
    asyncio.run_coroutine_threadsafe(relay.start(), loop).result(TIMEOUT)
    session = livewidgets.connect(
        relay.url,
        "r",
        "alice",
        timeout=TIMEOUT,
        backoff=Backoff(initial=0.2, cap=0.4, minimum=0.1),
        heartbeat_interval=0.5,
        heartbeat_timeout=1.0,
    )
    try:
        badge = ConnectionStatus(session=session, refresh=0)
        widgets.append(badge)
        assert badge.state == "connected"
        asyncio.run_coroutine_threadsafe(relay.stop(), loop).result(TIMEOUT)
        wait_until(
            lambda: badge.state == "reconnecting" and badge.attempt >= 2,
            message="reconnecting, second attempt",
        )
        wait_until(lambda: badge.retry_id >= 1, message="a scheduled retry")
        assert 0.1 <= badge.retry_delay <= 0.4
        session.close()
        wait_until(lambda: badge.state == "closed", message="closed")
    finally:
        session.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


def test_connection_status_says_why_the_relay_refuses(
    wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """A relay at its per-address cap: the badge shows reconnecting, and last_error
    names the refusal and its limit while it waits; once a slot frees up, connected."""
    from livewidgets.relay.security import Limits, SecurityPolicy

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    policy = SecurityPolicy(None, limits=Limits(max_connections_per_ip=1))
    relay = Relay(host="127.0.0.1", port=0, policy=policy)
    asyncio.run_coroutine_threadsafe(relay.start(), loop).result(TIMEOUT)
    options: dict[str, Any] = {"backoff": Backoff(initial=0.05, cap=0.1, minimum=0.02)}
    holder = livewidgets.connect(relay.url, "r", "bob", timeout=TIMEOUT, **options)
    session = livewidgets.connect(relay.url, "r", "alice", wait=False, **options)
    try:
        badge = ConnectionStatus(session=session, refresh=0)
        widgets.append(badge)
        wait_until(lambda: "limit 1" in badge.last_error, message="the refusal shown")
        assert badge.state == "reconnecting"
        assert "refused (limit_exceeded): too many anonymous connections" in badge.last_error
        holder.close()
        wait_until(lambda: badge.state == "connected", message="connected once a slot is free")
        assert badge.last_error == ""
    finally:
        session.close()
        holder.close()
        asyncio.run_coroutine_threadsafe(relay.stop(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


# --- Chat, StateInspector, ConflictResolver -------------------------------------------


def test_chat_messages_reach_the_other_session(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """A message sent from A's view appears in B's list with name, colour and time."""
    a, b = connect("alice", name="Alice"), connect("bob")
    ca, cb = Chat("chat", session=a), Chat("chat", session=b)
    widgets += [ca, cb]
    frontend(ca, type="send", text=f"  hi {EVIL}  ")
    frontend(ca, type="send", text="   ")
    (message,) = wait_until(lambda: cb.messages, message="bob got it")
    assert message["text"] == f"hi {EVIL}"  # data, escaped by the view (textContent)
    assert (message["user"], message["name"], message["color"]) == (
        "alice",
        "Alice",
        color_for("alice"),
    )
    assert message["ts"] > 0 and message["id"]
    assert cb.me == "bob"
    with pytest.raises(ValueError, match="at most"):
        ca.send("x" * (Chat.MAX_LENGTH + 1))


def test_chat_shows_the_last_messages(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """Only the last SHOWN messages are kept in the trait."""
    a = connect("alice")
    with a.batch():
        for i in range(Chat.SHOWN + 5):
            a.push("chat", {"user": "x", "text": str(i)})
    chat = Chat("chat", session=a)
    widgets.append(chat)
    assert len(chat.messages) == Chat.SHOWN
    assert chat.messages[0]["text"] == "5" and chat.messages[-1]["text"] == str(Chat.SHOWN + 4)


def test_state_inspector_follows_the_room(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """The tree's data follows changes under its path, throttled, with the version."""
    a, b = connect("alice"), connect("bob")
    whole, part = StateInspector(session=a, interval=0.05), StateInspector("p", session=a)
    widgets += [whole, part]
    for i in range(20):
        b.set("p/n", i)
    b.set("q", True)
    wait_until(lambda: whole.data == {"p": {"n": 19}, "q": True}, message="whole room")
    wait_until(lambda: part.data == {"n": 19}, message="subtree")
    wait_until(lambda: whole.version == 21, message="version")


def test_conflict_resolver_keep_mine_and_keep_theirs(
    connect: Connect, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """A lost if_version write shows mine vs theirs; keep mine rewrites it over theirs."""
    a, b = connect("alice"), connect("bob")
    resolver = ConflictResolver("doc", session=a)
    other = ConflictResolver("elsewhere", session=a)
    widgets += [resolver, other]
    base = a.set("doc/title", "draft").result(TIMEOUT)
    settle(wait_until, a, b)
    b.set("doc/title", "theirs").result(TIMEOUT)
    a.set("doc/title", "mine", if_version=base)  # loses the race
    wait_until(lambda: resolver.active, message="conflict shown")
    assert (resolver.conflict_path, resolver.mine, resolver.theirs) == (
        "doc/title",
        "mine",
        "theirs",
    )
    assert resolver.their_version == base + 1 and not other.active
    frontend(resolver, type="keep_mine")
    assert not resolver.active and resolver.resolved == "mine"
    wait_until(lambda: b.get("doc/title") == "mine", message="mine won at bob")
    # Another conflict; this time keep theirs.
    version = settle(wait_until, a, b)
    b.increment("doc/count", 5).result(TIMEOUT)
    a.increment("doc/count", 1)
    a.set("doc/count", 2, if_version=version)
    wait_until(lambda: resolver.active and resolver.theirs == 6, message="second conflict")
    assert resolver.mine == 2
    frontend(resolver, type="keep_theirs")
    assert resolver.resolved == "theirs"
    settle(wait_until, a, b)
    assert b.get("doc/count") == 6


# --- close() --------------------------------------------------------------------------


def test_close_unsubscribes_everything(connect: Connect, wait_until: Wait) -> None:
    """After close() no widget trait follows the session and no timer thread is left."""
    a, b = connect("alice"), connect("bob")
    engine = a._engine
    a.text("t")  # the session's text handle outlives the widget (it is shared)

    def hooks() -> tuple[int, int, dict[str, int]]:
        events = {name: len(handlers) for name, handlers in engine.events._handlers.items()}
        return len(engine.dispatch.change_listeners), len(engine.subscriptions._subs), events

    before, threads = hooks(), threading.active_count()
    made: list[LiveWidget] = [
        SharedText("t", session=a),
        Poll("p", "?", ["x"], session=a),
        Chat("c", session=a),
        StateInspector(session=a),
        ConflictResolver("t", session=a),
        Presence(session=a, refresh=0.05),
        ConnectionStatus(session=a, refresh=0.05),
    ]
    assert hooks() != before
    for widget in made:
        widget.close()
        widget.close()  # idempotent
    after = hooks()
    assert after[:2] == before[:2]
    assert {k: v for k, v in after[2].items() if v} == {k: v for k, v in before[2].items() if v}
    snapshot = [dict(w.get_state()) for w in made]
    b.text("t").insert(0, "x")
    b.set("p/voters/bob", "x")
    b.push("c", {"text": "hi"})
    settle(wait_until, a, b)
    assert [dict(w.get_state()) for w in made] == snapshot
    wait_until(lambda: threading.active_count() <= threads, message="timer threads stopped")


# --- widgets guard their invariants with room rules ------------------------------------------

SECRET = b"s" * 32


@pytest.fixture
def member(
    thread_relay: Callable[..., Any], room: str, widgets: list[LiveWidget]
) -> Callable[..., Session]:
    """``member(user, role)``: a session of this test's room on a relay that checks
    tokens (one relay per test), closed at the end; ``member(link=token)`` joins with a
    share link instead."""
    relay = thread_relay(policy=SecurityPolicy(SECRET))

    def open_session(user: str = "", role: str = "write", link: str | None = None) -> Session:
        token = link or issue_token(SECRET, user=user, room=room, role=role)
        opened = livewidgets.connect(relay.url, room, user, token=token, timeout=TIMEOUT)
        widgets.append(_Closer(opened))
        return opened

    return open_session


def test_a_poll_protects_each_vote_with_a_room_rule(
    member: Callable[..., Session], wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """The teacher's poll gives the room its rule; then nobody, not even with a raw
    session, can change another user's vote, and a student's poll counts their own."""
    teacher, bob, mallory = member("tess", "admin"), member("bob"), member("mal")
    assert (teacher.role, bob.role) == ("admin", "write")
    widgets.append(Poll("poll/q1", "Tea?", ["tea", "coffee"], session=teacher))
    settle(wait_until, teacher, bob, mallory)
    assert teacher.rules is not None and any("one vote" in r["name"] for r in teacher.rules)
    bob_poll = Poll("poll/q1", "Tea?", ["tea", "coffee"], session=bob)
    widgets.append(bob_poll)
    assert bob_poll.vote("tea") is not None
    settle(wait_until, teacher, bob, mallory)
    assert mallory.get("poll/q1/voters/bob") == "tea"
    # A hostile session writes the store directly: refused by the relay, rolled back.
    for attempt in (
        mallory.set("poll/q1/voters/bob", "coffee"),
        mallory.delete("poll/q1/voters/bob"),
        mallory.set("poll/q1", {}),
        mallory.set_rules(None),
    ):
        with pytest.raises(OpRejected, match="forbidden"):
            attempt.result(TIMEOUT)
    settle(wait_until, teacher, bob, mallory)
    assert bob_poll.counts == {"tea": 1, "coffee": 0}
    assert teacher.get("poll/q1/voters") == {"bob": "tea"}


def test_share_link_holders_each_vote_once_under_their_own_name(
    member: Callable[..., Session], room: str, wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """A link holder is someone of their own to the relay (and so to the rules): the
    session knows that name, and the poll records the vote under it."""
    teacher = member("tess", "admin")
    widgets.append(Poll("poll/q", "?", ["x", "y"], session=teacher))
    link, _ = issue_link_token(SECRET, room=room, role="write")
    ana, guest = member("ana", link=link), member(link=link)
    assert ana.user == "ana (guest)" and guest.user.startswith("guest-")
    settle(wait_until, teacher, ana, guest)
    for session, option in ((ana, "x"), (guest, "y")):
        poll = Poll("poll/q", "?", ["x", "y"], session=session)
        widgets.append(poll)
        poll.vote(option).result(TIMEOUT)  # type: ignore[union-attr]
    settle(wait_until, teacher, ana, guest)
    assert teacher.get("poll/q/voters") == {"ana (guest)": "x", guest.user: "y"}


def test_a_student_poll_in_a_room_without_its_rule_says_so(
    member: Callable[..., Session], wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """A student cannot add the rule: the widget says its writes wait for an admin."""
    teacher = member("tess", "admin")
    teacher.set_rules([{"path": "notes/**", "read": "anyone", "write": "writer"}]).result(TIMEOUT)
    bob = member("bob")
    wait_until(lambda: bob.rules is not None, message="bob has the room's rules")
    poll = Poll("poll/q2", "?", ["x", "y"], session=bob)
    widgets.append(poll)
    assert "until an admin opens it once" in poll.error


def test_a_chat_keeps_each_message_its_authors(
    member: Callable[..., Session], wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """After the teacher opens the chat, a message can only be posted as oneself and
    removed by its author."""
    teacher, bob, mallory = member("tess", "admin"), member("bob"), member("mal")
    widgets.append(Chat("chat", session=teacher))
    settle(wait_until, teacher, bob, mallory)
    bob_chat = Chat("chat", session=bob)
    widgets.append(bob_chat)
    bob_chat.send("hello").result(TIMEOUT)  # type: ignore[union-attr]
    settle(wait_until, teacher, bob, mallory)
    message_id = bob_chat.messages[0]["id"]
    for attempt in (
        mallory.remove("chat", message_id),
        mallory.push("chat", {"id": "fake", "user": "bob", "text": "I quit"}),
        mallory.set("chat", []),
    ):
        with pytest.raises(OpRejected, match="forbidden"):
            attempt.result(TIMEOUT)
    assert mallory.push("chat", {"id": "m", "user": "mal", "text": "hi"}).result(TIMEOUT)
    bob_chat.delete(message_id).result(TIMEOUT)
    settle(wait_until, teacher, bob, mallory)
    assert [m["text"] for m in teacher.get("chat")] == ["hi"]


def test_an_answer_box_keeps_each_answer_private(
    member: Callable[..., Session], wait_until: Wait, widgets: list[LiveWidget]
) -> None:
    """Each student writes and reads only their own answer; the teacher reads all."""
    teacher, alice, bob = member("tess", "admin"), member("alice"), member("bob")
    board = AnswerBox("quiz/q1", "6 x 7?", session=teacher)
    widgets.append(board)
    settle(wait_until, teacher, alice, bob)
    boxes = {}
    for student, answer in ((alice, "42"), (bob, "41")):
        boxes[student.user] = box = AnswerBox("quiz/q1", "6 x 7?", session=student)
        widgets.append(box)
        box.submit(answer).result(TIMEOUT)
    settle(wait_until, teacher, alice, bob)
    wait_until(lambda: board.answers == {"alice": "42", "bob": "41"}, message="teacher sees all")
    assert board.sees_all and not boxes["bob"].sees_all
    assert (boxes["bob"].my_answer, boxes["bob"].answers) == ("41", {})
    assert bob.get("quiz/q1") == {"bob": "41"}  # alice's never reached bob's session
    with pytest.raises(OpRejected, match="forbidden"):
        bob.set("quiz/q1/alice", "0").result(TIMEOUT)


class _Closer:
    """Lets the ``widgets`` fixture close a session at the end of a test."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def close(self) -> None:
        self.session.close()
