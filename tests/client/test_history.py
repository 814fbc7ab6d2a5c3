"""History against real relays (docs/history.md): who changed what and when, paths
and users, paging, the horizon and compaction, restarts on a real SQLite file, two
relays on a real Redis, read rules, the state at a past version and revert_to."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest

from livewidgets.auth import issue_token
from livewidgets.client import OpRejected
from livewidgets.client.history import HistoryError, revert_ops
from livewidgets.relay import Relay
from livewidgets.relay.history import HistoryHorizon
from livewidgets.relay.security import SecurityPolicy
from livewidgets.relay.store.redis import RedisStore
from livewidgets.state.ops import apply_ops

from ..relay.helpers import REDIS_URL, redis_available
from .conftest import Connect
from .helpers import eventually

SECRET = secrets.token_bytes(32)


def ops_of(entries: list) -> list[list[tuple[str, str]]]:
    return [[(op.__struct_config__.tag, op.path) for op in e.ops] for e in entries]


async def test_history_records_who_changed_what_and_when(relay: Relay, connect: Connect) -> None:
    ada = await connect(relay.url, user="ada")
    grace = await connect(relay.url, user="grace")
    before = time.time()
    await ada.set("poll/q1/title", "Lunch?")
    await grace.increment("poll/q1/votes/yes")
    await ada.push("chat", {"text": "hi"})
    with ada.batch() as both:
        ada.increment("poll/q1/votes/no")
        ada.set("poll/q1/closed", True)
    await both
    entries = await grace.history()
    assert [e.version for e in entries] == [1, 2, 3, 4]
    assert [e.user for e in entries] == ["ada", "grace", "ada", "ada"]
    assert all(before - 1 <= e.time <= time.time() + 1 for e in entries)
    assert entries[1].client_id == grace.client_id
    assert ops_of(entries)[3] == [("increment", "poll/q1/votes/no"), ("set", "poll/q1/closed")]
    # By path (a parent's set replaces what is below it, so it counts too), by user.
    assert [e.version for e in await ada.history("poll/q1/votes")] == [2, 4]
    assert [e.version for e in await ada.history("poll/q1/votes/yes/deeper")] == [2]
    assert [e.version for e in await ada.history(user="grace")] == [2]
    assert [e.version for e in await ada.history("chat", user="grace")] == []


async def test_history_pages_back_with_before_and_limit(relay: Relay, connect: Connect) -> None:
    ada = await connect(relay.url)
    for _ in range(25):
        ada.increment("n")
    await ada.flush()
    newest = await ada.history(limit=10)
    assert [e.version for e in newest] == list(range(16, 26))
    older = await ada.history(limit=10, before=newest[0].version)
    assert [e.version for e in older] == list(range(6, 16))
    with pytest.raises(ValueError, match="limit"):
        await ada.history(limit=0)


async def test_a_reset_is_logged_under_the_admin_who_asked(relay: Relay, connect: Connect) -> None:
    ada = await connect(relay.url, user="ada")
    await ada.set("a", 1)
    ada.reset_room()
    await eventually(lambda: ada.state == {}, what="the reset")
    (last,) = await ada.history(limit=1)
    assert (last.client_id, last.user, ops_of([last])) == ("@relay", "ada", [[("delete", "a")]])


async def test_history_survives_restarts_and_compaction_within_the_horizon(
    tmp_path: Path, relay_factory, connect: Connect
) -> None:
    """SQLite, a snapshot every 5 versions, a horizon of 12 entries: compaction keeps
    the history; a restart keeps it; the horizon drops whole snapshot intervals."""
    store = f"sqlite:///{tmp_path / 'rooms.db'}"
    horizon = HistoryHorizon(entries=12)
    first = await relay_factory(store=store, snapshot_every=5, history=horizon)
    ada = await connect(first.url, user="ada")
    for _ in range(9):
        ada.increment("n")
    await ada.flush()
    assert [e.version for e in await ada.history()] == list(range(1, 10))
    await ada.close()
    await first.stop()

    second = await relay_factory(store=store, snapshot_every=5, history=horizon)
    grace = await connect(second.url, user="grace")
    assert grace.get("n") == 9
    entries = await grace.history(limit=1000)
    assert [e.version for e in entries] == list(range(1, 10))
    assert all(e.user == "ada" for e in entries)
    for _ in range(21):
        grace.increment("n")
    await grace.flush()
    # Snapshots every 5 versions or so (at the end of a round): the history keeps
    # the last 12 entries at least, and drops whole snapshot intervals beyond.
    entries = await grace.history(limit=1000)
    versions = [e.version for e in entries]
    assert versions == list(range(versions[0], 31))
    assert 12 <= len(versions) < 12 + 2 * 5
    start = versions[0] - 1
    assert await grace.state_at(start, "n") == start
    with pytest.raises(HistoryError, match="out_of_history"):
        await grace.state_at(start - 1)


async def test_state_at_and_revert_to(relay: Relay, connect: Connect) -> None:
    ada = await connect(relay.url, user="ada")
    grace = await connect(relay.url, user="grace")
    await ada.set("notes", {"title": "Plan", "body": "first"})
    await ada.set("poll/yes", 3)
    checkpoint = ada.version
    await grace.set("notes/body", "vandalized")
    await grace.delete("poll")
    await grace.set("extra", [1, 2])
    assert await ada.state_at(checkpoint) == {
        "notes": {"title": "Plan", "body": "first"},
        "poll": {"yes": 3},
    }
    assert await ada.state_at(checkpoint, "notes/body") == "first"

    # A path only: the rest stays as it is.
    await ada.revert_to(checkpoint, "notes")
    await eventually(lambda: grace.get("notes/body") == "first", what="the path revert")
    assert grace.get("extra") == [1, 2] and grace.get("poll") is None

    # The room: one batch, logged like any write.
    reverted = await ada.revert_to(checkpoint)
    await eventually(lambda: grace.state == ada.state, what="the room revert")
    assert ada.state == {"notes": {"title": "Plan", "body": "first"}, "poll": {"yes": 3}}
    (entry,) = await ada.history(limit=1)
    assert entry.version == reverted and entry.user == "ada"
    assert sorted(ops_of([entry])[0]) == [("delete", "extra"), ("set", "poll")]
    # Nothing is destroyed: the vandalized room is still a version to go back to.
    assert (await ada.state_at(reverted - 1))["extra"] == [1, 2]
    # And the revert is a write of Ada's like any other: she can undo it.
    undo = ada.undo()
    assert undo is not None
    await undo
    await eventually(lambda: grace.get("extra") == [1, 2], what="the undone revert")
    assert grace.get("poll") is None and grace.get("notes/body") == "first"


async def test_revert_is_for_admins(relay_factory, connect: Connect) -> None:
    relay = await relay_factory(policy=SecurityPolicy(SECRET))
    writer = issue_token(SECRET, user="bob", room="*", role="write")
    bob = await connect(relay.url, token=writer)
    await bob.set("a", 1)
    await bob.set("a", 2)
    with pytest.raises(OpRejected, match="forbidden"):
        await bob.revert_to(1)
    assert [e.user for e in await bob.history()] == ["bob", "bob"]


async def test_history_shows_only_what_the_rules_let_the_reader_see(
    relay_factory, connect: Connect
) -> None:
    relay = await relay_factory(policy=SecurityPolicy(SECRET))
    admin = await connect(
        relay.url, token=issue_token(SECRET, user="teacher", room="*", role="admin")
    )
    await admin.set_rules(
        [
            {"path": "**", "read": "anyone", "write": "writer"},
            {"path": "answers/{user}/**", "read": "{user} or admin", "write": "{user}"},
        ]
    )
    ada = await connect(relay.url, token=issue_token(SECRET, user="ada", room="*", role="write"))
    bob = await connect(relay.url, token=issue_token(SECRET, user="bob", room="*", role="write"))
    await ada.set("answers/ada/q1", "secret-ada")
    await bob.set("answers/bob/q1", "secret-bob")
    await ada.set("topic", "fractions")
    seen_by_bob = await bob.history()
    assert "secret-ada" not in repr(seen_by_bob)
    # Ada's answer shows Bob at most that "answers" exists, never what is under hers.
    paths = [op.path for e in seen_by_bob for op in e.ops]
    assert "answers/bob/q1" in paths and not any(p.startswith("answers/ada") for p in paths)
    seen_by_teacher = await admin.history("answers")
    assert [e.user for e in seen_by_teacher] == ["ada", "bob"]
    assert "secret-ada" not in repr(await bob.state_at(ada.version))
    assert (await admin.state_at(ada.version))["answers"]["ada"]["q1"] == "secret-ada"


@pytest.mark.skipif(not redis_available(), reason="needs Redis on 127.0.0.1:6379")
async def test_history_on_two_relays_sharing_redis(connect: Connect) -> None:
    prefix = f"lwtest-{secrets.token_hex(4)}"
    stores = [RedisStore(REDIS_URL, prefix=prefix, poll_interval=0.2) for _ in range(2)]
    async with (
        Relay(store=stores[0], snapshot_every=5) as one,
        Relay(store=stores[1], snapshot_every=5) as two,
    ):
        ada = await connect(one.url, user="ada")
        grace = await connect(two.url, user="grace")
        for n in range(6):
            await (ada if n % 2 else grace).increment("n")
        await eventually(lambda: ada.get("n") == grace.get("n") == 6, what="both relays")
        for session in (ada, grace):
            entries = await session.history()
            assert [e.version for e in entries] == list(range(1, 7))
            assert [e.user for e in entries] == ["grace", "ada"] * 3
        assert await ada.state_at(3, "n") == 3
    for store in stores:
        await store.close()


async def test_a_query_asked_offline_is_answered_once_connected(
    tmp_path: Path, connect: Connect
) -> None:
    store = f"sqlite:///{tmp_path / 'rooms.db'}"
    async with Relay(store=store) as relay:
        ada = await connect(relay.url)
        await ada.set("a", 1)
        port = relay.port
    await eventually(lambda: ada.connection_state != "connected", what="the disconnect")
    query = asyncio.ensure_future(ada.history())
    await asyncio.sleep(0.2)
    assert not query.done()
    async with Relay(port=port, store=store):
        entries = await asyncio.wait_for(query, 10)
    assert [e.version for e in entries] == [1]


def test_revert_ops_change_only_what_differs() -> None:
    current = {"$rules": [1], "a": {"x": 1, "y": 2}, "b": [1], "new": 5}
    past = {"$rules": [0], "a": {"x": 1, "y": 3, "z": {"deep": True}}, "b": [1]}
    ops = revert_ops(current, past)
    assert [(op.__struct_config__.tag, op.path) for op in ops] == [
        ("set", "a/y"),
        ("set", "a/z"),
        ("delete", "new"),
    ]
    assert apply_ops(current, ops) == {**past, "$rules": [1]}  # rules are never reverted
    assert revert_ops(current, past, "a/x") == []
    assert [op.path for op in revert_ops(current, past, "a")] == ["a/y", "a/z"]


def test_revert_ops_replace_whole_mappings_beyond_one_batch() -> None:
    current = {"m": {str(i): i for i in range(50)}}
    past = {"m": {str(i): -i for i in range(50)}}
    assert len(revert_ops(current, past)) == 49  # "0" is the same
    coarse = revert_ops(current, past, max_ops=10)
    assert [(op.__struct_config__.tag, op.path) for op in coarse] == [("set", "m")]
    assert apply_ops(current, coarse) == past
    odd = {"m": {"a/b": 1}}
    assert [op.path for op in revert_ops({"m": {}}, odd)] == ["m"]  # "a/b" is no key path


async def test_a_page_says_whether_older_entries_match(relay: Relay, connect: Connect) -> None:
    ada = await connect(relay.url)
    for _ in range(4):
        ada.increment("n")
    await ada.flush()
    page = await ada.history(limit=2)
    assert [e.version for e in page] == [3, 4] and page.more
    assert (page.since, page.head) == (0, 4)
    rest = await ada.history(limit=2, before=3)
    assert [e.version for e in rest] == [1, 2] and not rest.more
