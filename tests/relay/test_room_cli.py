"""``livewidgets room export | import | history | list`` against a real relay and a
real SQLite file (docs/history.md "Backups")."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import livewidgets.asyncio as lwa
from livewidgets.cli import main
from livewidgets.relay import Relay

from ..conftest import RelayFactory

RULES = [{"path": "**", "read": "anyone", "write": "writer"}]


async def cli(*argv: str) -> int:
    """Run the command line on a worker thread (its session has a loop of its own)."""
    return await asyncio.to_thread(main, list(argv))


async def fill(relay: Relay, room: str) -> None:
    ada = await lwa.connect(relay.url, room, "ada")
    await ada.set_rules(RULES)
    await ada.set("poll/q1", {"title": "Lunch?", "votes": {"yes": 2, "no": 1}})
    await ada.push("chat", {"id": "m1", "text": "héllo"})
    await ada.text("notes").insert(0, "first draft")
    await ada.increment("poll/q1/votes/yes")
    await ada.close()


async def test_export_then_import_into_a_new_room_gives_the_same_state(
    tmp_path: Path, relay_factory: RelayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    relay = await relay_factory(store=f"sqlite:///{tmp_path / 'rooms.db'}")
    await fill(relay, "lesson")
    exported = tmp_path / "lesson.json"
    assert await cli("room", "export", relay.url, "lesson", "--history", "-o", str(exported)) == 0
    document = json.loads(exported.read_text(encoding="utf-8"))
    assert document["format"] == "livewidgets-room" and document["version"] == 5
    assert [e["user"] for e in document["history"]] == ["ada"] * 5
    assert document["history"][1]["ops"][0]["path"] == "poll/q1"

    assert await cli("room", "import", relay.url, "copy", str(exported)) == 0
    assert "now equals the export" in capsys.readouterr().out
    grace = await lwa.connect(relay.url, "copy", "grace")
    assert grace.state == document["state"]
    assert grace.rules == [{"name": "**", **RULES[0]}]
    await grace.close()
    # Importing it again changes nothing.
    assert await cli("room", "import", relay.url, "copy", str(exported)) == 0
    assert "already equals" in capsys.readouterr().out

    assert await cli("room", "list", "--store", f"sqlite:///{tmp_path / 'rooms.db'}") == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["ROOM", "VERSION"]
    assert [line.split()[0] for line in listing[1:]] == ["copy", "lesson"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "is not JSON"),
        ('{"state": {}}', "not a livewidgets room export"),
        ('{"format": "livewidgets-room", "format_version": 9}', "format_version 9"),
        (
            '{"format": "livewidgets-room", "format_version": 1, "version": 1, "state": []}',
            '"state" must be a mapping',
        ),
        (
            '{"format": "livewidgets-room", "format_version": 1, "version": 1, "state": '
            '{"n": 1e400}}',
            "cannot be shared",
        ),
    ],
)
async def test_a_malformed_import_is_refused_and_changes_nothing(
    tmp_path: Path,
    relay: Relay,
    capsys: pytest.CaptureFixture[str],
    content: str,
    says: str,
) -> None:
    ada = await lwa.connect(relay.url, "kept", "ada")
    await ada.set("a", 1)
    broken = tmp_path / "broken.json"
    broken.write_text(content, encoding="utf-8")
    assert await cli("room", "import", relay.url, "kept", str(broken)) == 2
    err = capsys.readouterr().err
    assert says in err and "nothing was changed" in err
    await ada.set("b", 2)
    assert ada.state == {"a": 1, "b": 2} and ada.version == 2
    await ada.close()


async def test_history_prints_a_table(relay: Relay, capsys: pytest.CaptureFixture[str]) -> None:
    await fill(relay, "lesson")
    assert await cli("room", "history", relay.url, "lesson", "--path", "poll") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["VERSION", "TIME", "USER", "CHANGES"]
    assert lines[1].split()[0] == "2" and "ada" in lines[1] and 'title": "Lunch?"' in lines[1]
    assert lines[2].split()[0] == "5" and lines[2].endswith("poll/q1/votes/yes +1")
    assert await cli("room", "history", "ws://127.0.0.1:9", "lesson", "--timeout", "1") == 1
    assert "livewidgets room history:" in capsys.readouterr().err
