"""SharedText over a real relay: Unicode indices, deltas, remote cursors, convergence.

Every test runs its clients on the test's event loop (``livewidgets.asyncio``)
against a relay on 127.0.0.1 (port 0). Waits are on conditions with deadlines,
never sleep-then-assert.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import livewidgets.asyncio as lw
from livewidgets.client import AsyncSession, ConflictError
from livewidgets.client.text import TextHandle
from livewidgets.relay import Relay
from livewidgets.state import text as text_ot

MS = 0.001 * float(os.environ.get("LIVEWIDGETS_TEST_TIMEOUT_FACTOR", "1"))
TIMEOUT = 5000 * MS
POLL = 0.01

Connect = Callable[..., Awaitable[AsyncSession]]


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` every 10 ms until it is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        await asyncio.sleep(POLL)


@pytest.fixture
async def connect(relay: Relay) -> AsyncIterator[Connect]:
    """Open sessions on ``relay`` (room "room" unless given); all closed at teardown."""
    sessions: list[AsyncSession] = []

    async def open_session(user: str, room: str = "room", **options: Any) -> AsyncSession:
        session = await lw.connect(relay.url, room, user, timeout=TIMEOUT, **options)
        sessions.append(session)
        return session

    yield open_session
    for session in reversed(sessions):
        await session.close()


class Recorder:
    """Collects ``(value, delta)`` from ``SharedText.subscribe`` and checks each delta."""

    def __init__(self, text: TextHandle) -> None:
        self.previous = text.value
        self.calls: list[tuple[str, list[int | str] | None]] = []
        self.bad: list[str] = []
        text.subscribe(self)

    def __call__(self, value: str, delta: list[int | str] | None) -> None:
        self.calls.append((value, delta))
        if delta is None:
            self.bad.append(f"no delta for {self.previous!r} -> {value!r}")
        elif text_ot.apply(self.previous, delta) != value:
            self.bad.append(f"{delta!r} does not turn {self.previous!r} into {value!r}")
        self.previous = value


async def converged(sessions: list[AsyncSession], path: str, expected: str | None = None) -> str:
    """Wait until every session shows the same text at ``path`` (and ``expected`` if given)."""

    def same() -> bool:
        values = {s.text(path).value for s in sessions}
        return len(values) == 1 and (expected is None or values == {expected})

    await wait_for(same, f"all clients to agree on {path!r} (expected {expected!r})")
    return sessions[0].text(path).value


# --- editing with Unicode ----------------------------------------------------------------


async def test_python_indices_become_utf16_deltas(connect: Connect) -> None:
    """insert/delete/replace take str indices and send the matching UTF-16 deltas."""
    a, b, c = await connect("ann"), await connect("bob"), await connect("cy")
    ta, tb, tc = a.text("doc"), b.text("doc"), c.text("doc")
    seen = {name: Recorder(t) for name, t in (("a", ta), ("b", tb), ("c", tc))}

    ta.insert(0, "a👍🏽b")  # 👍🏽 is two code points, four UTF-16 units
    assert seen["a"].calls[-1] == ("a👍🏽b", ["a👍🏽b"])
    ta.insert(3, "X")  # after the skin-tone modifier: offset 1 + 4
    assert seen["a"].calls[-1] == ("a👍🏽Xb", [5, "X", 1])
    await a.flush(TIMEOUT)
    await converged([a, b, c], "doc", "a👍🏽Xb")

    tb.insert(len(tb.value), "e\u0301")  # e + combining acute: two code points, two units
    assert seen["b"].calls[-1] == ("a👍🏽Xbe\u0301", [7, "e\u0301"])
    await b.flush(TIMEOUT)
    await converged([a, b, c], "doc", "a👍🏽Xbe\u0301")

    tc.replace(1, 3, "漢字")  # the emoji with its modifier: four units out, two in
    assert seen["c"].calls[-1] == ("a漢字Xbe\u0301", [1, "漢字", -4, 4])
    await c.flush(TIMEOUT)
    await converged([a, b, c], "doc", "a漢字Xbe\u0301")

    ta.delete(5, 2)  # the combining pair, by Python index
    assert seen["a"].calls[-1] == ("a漢字Xb", [5, -2])
    ta.insert(len(ta.value), "🇫🇷")  # a flag: two astral code points
    assert seen["a"].calls[-1] == ("a漢字Xb🇫🇷", [5, "🇫🇷"])
    await a.flush(TIMEOUT)
    await converged([a, b, c], "doc", "a漢字Xb🇫🇷")
    for recorder in seen.values():
        assert not recorder.bad
    # Remote clients got the same deltas (UTF-16 offsets, not code points).
    assert ("a漢字Xbe\u0301", [1, "漢字", -4, 4]) in seen["a"].calls
    assert seen["b"].calls[-1] == ("a漢字Xb🇫🇷", [5, "🇫🇷"])


async def test_concurrent_unicode_edits_converge(connect: Connect) -> None:
    """Edits made at once by three clients around emoji and combining marks all survive."""
    a, b, c = await connect("ann"), await connect("bob"), await connect("cy")
    ta, tb, tc = a.text("doc"), b.text("doc"), c.text("doc")
    ta.insert(0, "👍🏽e\u0301漢")
    await a.flush(TIMEOUT)
    await converged([a, b, c], "doc")
    recorders = [Recorder(t) for t in (ta, tb, tc)]
    # Nobody has seen the others' edits yet: these are concurrent.
    ta.insert(0, "<")
    tb.insert(2, "|")  # between the emoji and the e
    tc.insert(len(tc.value), ">")
    tc.delete(2, 2)  # the combining pair
    for session in (a, b, c):
        await session.flush(TIMEOUT)
    assert await converged([a, b, c], "doc") == "<👍🏽|漢>"
    for recorder in recorders:
        assert not recorder.bad


async def test_delta_splitting_an_emoji_is_refused_at_once(connect: Connect) -> None:
    """A delta whose offset falls inside a surrogate pair raises; nothing is sent."""
    a = await connect("ann")
    ta = a.text("doc")
    ta.insert(0, "a👍b")
    with pytest.raises(ValueError, match="surrogate"):
        ta.apply_delta([2, "x", 2])  # offset 2 is between the two halves of 👍
    assert ta.value == "a👍b"
    ta.apply_delta([3, "x", 1])  # after the emoji: fine
    assert ta.value == "a👍xb"
    await a.flush(TIMEOUT)


async def test_subscribe_gets_deltas_that_rebuild_the_value(connect: Connect) -> None:
    """Each (value, delta) turns the previous value into the new one, local and remote."""
    a, b = await connect("ann"), await connect("bob")
    ta, tb = a.text("doc"), b.text("doc")
    ra, rb = Recorder(ta), Recorder(tb)
    rng = random.Random(3)
    for _ in range(40):
        for t in (ta, tb):
            value = t.value
            if value and rng.random() < 0.3:
                t.delete(rng.randrange(len(value)), rng.randint(1, 2))
            else:
                t.insert(rng.randint(0, len(value)), rng.choice(["x", "👍🏽", "é", "漢"]))
        await asyncio.sleep(0)
    await a.flush(TIMEOUT)
    await b.flush(TIMEOUT)
    final = await converged([a, b], "doc")
    assert not ra.bad and not rb.bad
    assert ra.calls and rb.calls
    assert ra.previous == rb.previous == final


async def test_unsubscribe_stops_callbacks(connect: Connect) -> None:
    """The function subscribe returns removes the callback."""
    a = await connect("ann")
    ta = a.text("doc")
    calls: list[str] = []
    off = ta.subscribe(lambda value, delta: calls.append(value))
    ta.insert(0, "a")
    off()
    ta.insert(1, "b")
    assert calls == ["a"]
    await a.flush(TIMEOUT)


# --- set on a text path --------------------------------------------------------------


async def test_set_replaces_the_whole_text_for_everyone(connect: Connect) -> None:
    """``set`` on a text path replaces it everywhere; subscribers still get a delta."""
    a, b, c = await connect("ann"), await connect("bob"), await connect("cy")
    ta, tb, tc = a.text("doc"), b.text("doc"), c.text("doc")
    ta.insert(0, "old text 👍🏽")
    await a.flush(TIMEOUT)
    await converged([a, b, c], "doc", "old text 👍🏽")
    recorders = [Recorder(t) for t in (ta, tb, tc)]
    await b.set("doc", "new 漢字")
    assert await converged([a, b, c], "doc", "new 漢字") == "new 漢字"
    for recorder in recorders:
        assert not recorder.bad
        assert recorder.calls[-1][0] == "new 漢字"
    # Editing goes on from the new text.
    tc.insert(0, ">")
    await c.flush(TIMEOUT)
    await converged([a, b, c], "doc", ">new 漢字")


async def test_set_beats_a_concurrent_edit_of_the_old_text(connect: Connect) -> None:
    """An edit racing a ``set`` is either overwritten or refused; nobody keeps it."""
    a, b = await connect("ann"), await connect("bob")
    ta, tb = a.text("doc"), b.text("doc")
    ta.insert(0, "draft")
    await a.flush(TIMEOUT)
    await converged([a, b], "doc", "draft")
    edit = tb.insert(5, "!")
    replace = a.set("doc", "final")
    assert await replace > 0
    try:
        await edit  # landed before the set (then overwritten) ...
    except ConflictError as exc:  # ... or after it: refused, and rolled back
        assert exc.code == "conflict"
    await converged([a, b], "doc", "final")


# --- remote cursors ------------------------------------------------------------------


def selected(text: TextHandle, cursor: dict[str, Any]) -> str:
    """The characters between a cursor's anchor and head (UTF-16 offsets)."""
    value = text.value
    start, end = sorted((cursor["anchor"], cursor["head"]))
    return value[text_ot.from_utf16(value, start) : text_ot.from_utf16(value, end)]


async def cursor_at_world(connect: Connect) -> tuple[AsyncSession, ...]:
    """ann, bob and cy share "hello world"; ann selects "world" and cy sees it."""
    a, b, c = await connect("ann"), await connect("bob"), await connect("cy")
    ta, tc = a.text("doc"), c.text("doc")
    ta.insert(0, "hello world")
    await a.flush(TIMEOUT)
    await converged([a, b, c], "doc", "hello world")
    ta.set_cursor(6, 11)
    await wait_for(lambda: a.client_id in tc.cursors, "cy to see ann's cursor")
    assert tc.cursors[a.client_id]["anchor"] == 6 and tc.cursors[a.client_id]["head"] == 11
    assert selected(tc, tc.cursors[a.client_id]) == "world"
    return a, b, c


async def test_remote_cursor_stays_on_its_character(connect: Connect) -> None:
    """A peer's selection follows "world" while another client types before it."""
    a, b, c = await cursor_at_world(connect)
    tb, tc = b.text("doc"), c.text("doc")
    moves: list[dict[str, Any]] = []
    tc.on_cursors(lambda cursors: moves.append(cursors.get(a.client_id, {})))
    tb.insert(0, "👍🏽漢e\u0301 ")  # 4 + 1 + 2 + 1 = 8 UTF-16 units before the cursor
    await b.flush(TIMEOUT)
    await converged([a, b, c], "doc", "👍🏽漢e\u0301 hello world")
    cursor = tc.cursors[a.client_id]
    assert (cursor["anchor"], cursor["head"]) == (14, 19)
    assert selected(tc, cursor) == "world"
    assert moves and moves[-1]["anchor"] == 14
    # Typing exactly at the selection's end does not stretch a peer's selection.
    tb.insert(len(tb.value), "!")
    await b.flush(TIMEOUT)
    await converged([a, b, c], "doc", "👍🏽漢e\u0301 hello world!")
    assert selected(tc, tc.cursors[a.client_id]) == "world"
    # Deleting text the cursor sits in collapses it to the deletion's start.
    tb.delete(len(tb.value) - 7, 7)  # "world!" and the space before it
    await b.flush(TIMEOUT)
    await converged([a, b, c], "doc", "👍🏽漢e\u0301 hello")
    cursor = tc.cursors[a.client_id]
    assert cursor["anchor"] == cursor["head"] == text_ot.utf16_len(tc.value)
    assert cursor["name"] == "ann" and cursor["user"] == "ann" and cursor["color"]


async def test_republished_presence_keeps_own_cursor_on_its_character(
    connect: Connect,
) -> None:
    """After others typed before ann's cursor, ann publishing other presence keeps it put."""
    a, b, c = await cursor_at_world(connect)
    tb, tc = b.text("doc"), c.text("doc")
    tb.insert(0, ">> ")
    await b.flush(TIMEOUT)
    await converged([a, b, c], "doc", ">> hello world")
    assert selected(tc, tc.cursors[a.client_id]) == "world"
    a.update_presence(mood="focused")  # nothing to do with the cursor
    await wait_for(
        lambda: c.presence.get(a.client_id, {}).get("mood") == "focused", "ann's new presence"
    )
    assert selected(tc, tc.cursors[a.client_id]) == "world"


async def test_own_cursor_moves_with_own_typing_and_is_republished(connect: Connect) -> None:
    """Typing at my cursor moves it past the new text; my next publish says so."""
    a, b, c = await cursor_at_world(connect)
    ta, tc = a.text("doc"), c.text("doc")
    ta.set_cursor(5)  # right after "hello"
    await wait_for(lambda: tc.cursors.get(a.client_id, {}).get("anchor") == 5, "the caret")
    ta.insert(5, ",")
    assert a.my_presence["cursors"]["doc"] == {"anchor": 6, "head": 6}
    await a.flush(TIMEOUT)
    await converged([a, b, c], "doc", "hello, world")
    a.update_presence(mood="focused")
    await wait_for(
        lambda: c.presence.get(a.client_id, {}).get("mood") == "focused", "ann's new presence"
    )
    assert tc.cursors[a.client_id]["anchor"] == 6
    assert tc.value[:6] == "hello,"


async def test_peers_see_a_caret_after_the_text_its_owner_typed_there(
    connect: Connect,
) -> None:
    """Ann types at her caret: cy shows the caret where ann's own client has it."""
    a, b, c = await cursor_at_world(connect)
    ta, tc = a.text("doc"), c.text("doc")
    ta.set_cursor(5)
    await wait_for(lambda: tc.cursors.get(a.client_id, {}).get("anchor") == 5, "the caret")
    ta.insert(5, ",")
    await a.flush(TIMEOUT)
    await converged([a, b, c], "doc", "hello, world")
    assert tc.cursors[a.client_id]["anchor"] == a.my_presence["cursors"]["doc"]["anchor"] == 6


async def test_cursors_of_idle_and_departed_peers_disappear(connect: Connect) -> None:
    """A peer's cursor is hidden while it is idle, back when it acts, gone when it leaves."""
    a = await connect("ann", idle_after=0.3, heartbeat_interval=0.05)
    c = await connect("cy")
    ta, tc = a.text("doc"), c.text("doc")
    ta.insert(0, "hello")
    ta.set_cursor(2)
    await a.flush(TIMEOUT)
    await wait_for(
        lambda: (c.presence.get(a.client_id, {}).get("cursors") or {}).get("doc"),
        "cy to receive ann's cursor",
    )
    await wait_for(lambda: c.presence[a.client_id].get("status") == "idle", "ann to turn idle")
    assert a.client_id not in tc.cursors
    ta.insert(0, "¡")  # activity: ann is active again and her cursor comes back
    await wait_for(lambda: a.client_id in tc.cursors, "ann's cursor to come back")
    gone: list[dict[str, Any]] = []
    tc.on_cursors(gone.append)
    await a.close()
    await wait_for(lambda: a.client_id not in c.presence, "ann to leave")
    assert a.client_id not in tc.cursors
    assert gone and a.client_id not in gone[-1]


async def test_on_cursors_fires_when_a_peer_turns_idle(connect: Connect) -> None:
    """on_cursors reports the cursor set without the peer that just went idle."""
    a = await connect("ann", idle_after=0.3, heartbeat_interval=0.05)
    c = await connect("cy")
    ta, tc = a.text("doc"), c.text("doc")
    ta.insert(0, "hello")
    ta.set_cursor(2)
    await a.flush(TIMEOUT)
    reported: list[dict[str, Any]] = []
    tc.on_cursors(reported.append)
    await wait_for(lambda: reported and a.client_id in reported[-1], "ann's cursor reported")
    await wait_for(lambda: c.presence[a.client_id].get("status") == "idle", "ann to turn idle")
    await wait_for(lambda: a.client_id not in reported[-1], "on_cursors without ann", 1.0)


# --- many clients ----------------------------------------------------------------------

ALPHABET = ["a", "b", " ", "é", "e\u0301", "👍", "👍🏽", "漢", "字", "🇫🇷", "\n"]


async def test_ten_clients_two_hundred_edits_each_converge(connect: Connect) -> None:
    """10 clients x 200 random concurrent inserts/deletes: one text everywhere, all acked."""
    sessions = [await connect(f"user{i}") for i in range(10)]
    recorders = [Recorder(s.text("doc")) for s in sessions]
    acks: list[Any] = []

    async def type_randomly(session: AsyncSession, seed: int) -> None:
        rng = random.Random(seed)
        text = session.text("doc")
        for _ in range(200):
            value = text.value
            if value and rng.random() < 0.35:
                acks.append(text.delete(rng.randrange(len(value)), rng.randint(1, 3)))
            else:
                acks.append(text.insert(rng.randint(0, len(value)), rng.choice(ALPHABET)))
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 2 * MS)  # let relay messages in

    async with asyncio.timeout(30_000 * MS):
        await asyncio.gather(*(type_randomly(s, i) for i, s in enumerate(sessions)))
        await asyncio.gather(*(s.flush(TIMEOUT) for s in sessions))
        final = await converged(sessions, "doc")
        versions = {s.version for s in sessions}
        await wait_for(
            lambda: len({s.version for s in sessions}) == 1, f"one version (have {versions})"
        )
    assert len(acks) == 2000
    assert all(ack.done() and ack.exception() is None for ack in acks)
    for recorder in recorders:
        assert not recorder.bad, recorder.bad[:3]
    # A newcomer gets the same text from the relay.
    newcomer = await connect("late")
    assert newcomer.text("doc").value == final
    assert newcomer.version == sessions[0].version
