"""``livewidgets room``: export, import, history and list (docs/history.md "Backups").

An export is plain JSON a person can read::

    {"format": "livewidgets-room", "format_version": 1, "room": "class-101",
     "exported_at": "2026-12-05T19:40:00+00:00", "version": 57,
     "state": {...}, "history": [{"version": 1, "time": ..., "user": "ada",
     "client_id": "...", "ops": [{"op": "set", "path": "title", "value": "Lunch?"}]}]}

Export and import go through a relay, as a session of their own (not announced on
the room's presence lists), so they see and change exactly what that session's token
allows: with the relay's secret they sign a short admin token, which reads everything.
Import checks the whole file before connecting (:func:`read_export`), then makes the
room equal to the file's state with one batch of only what differs: a refused batch
changes nothing. ``list`` reads a store directly (no relay needed).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

import msgspec

from .client.history import describe_op, revert_ops
from .protocol.messages import HistoryEntry
from .state.ops import MAX_STATE_DEPTH, Op, OpError, check_value

__all__ = [
    "FORMAT",
    "ExportError",
    "RoomExport",
    "export_room",
    "history_table",
    "import_room",
    "list_rooms",
    "read_export",
]

FORMAT: Final = "livewidgets-room"
FORMAT_VERSION: Final = 1


class ExportError(ValueError):
    """An export file that cannot be imported, and why."""


@dataclass(frozen=True, slots=True)
class RoomExport:
    room: str
    version: int
    state: dict[str, Any]
    history: list[dict[str, Any]]


def export_room(session: Any, *, history: bool = False, page: int = 1000) -> dict[str, Any]:
    """The export of ``session``'s room (as that session may read it), oldest history
    first when ``history``."""
    session.flush()
    state, version = session.state, session.version
    document: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "room": session.room,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "version": version,
        "state": state,
    }
    if history:
        entries: list[HistoryEntry] = []
        before = version + 1
        while True:
            chunk = session.history(limit=page, before=before)
            entries[:0] = chunk
            if not chunk.more or not chunk:
                break
            before = chunk[0].version
        document["history"] = [_entry_data(e) for e in entries]
    return document


def _entry_data(entry: HistoryEntry) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(entry)
    return data


def read_export(stream: TextIO, name: str = "the file") -> RoomExport:
    """Parse and check an export; raises :class:`ExportError` saying what is wrong."""
    try:
        document = json.load(stream)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{name} is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ExportError(f'{name} is not a livewidgets room export (no "format": "{FORMAT}")')
    if document.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{name} has format_version {document.get('format_version')!r}; this livewidgets "
            f"reads {FORMAT_VERSION}"
        )
    state, version = document.get("state"), document.get("version")
    if not isinstance(state, dict):
        raise ExportError(f'{name}: "state" must be a mapping')
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ExportError(f'{name}: "version" must be a whole number >= 0')
    try:
        check_value(state, max_depth=MAX_STATE_DEPTH)
    except OpError as exc:
        raise ExportError(f'{name}: "state" cannot be shared: {exc}') from None
    history = document.get("history", [])
    if not isinstance(history, list):
        raise ExportError(f'{name}: "history" must be a list')
    return RoomExport(str(document.get("room", "")), version, state, history)


def import_room(session: Any, export: RoomExport, *, timeout: float = 30.0) -> int | None:
    """Make ``session``'s room equal to ``export.state`` (its rules included) with one
    batch; the version it got, or None if nothing differed."""
    session.flush()
    ops: list[Op] = revert_ops(session.state, export.state, include_rules=True)
    if not ops:
        return None
    with session.batch() as ack:
        for op in ops:
            session.apply(op)
    return int(ack.result(timeout))


def history_table(entries: Sequence[HistoryEntry]) -> str:
    """``entries`` as a readable table: version, local time, user, what changed."""
    rows = [("VERSION", "TIME", "USER", "CHANGES")]
    for entry in entries:
        when = (
            dt.datetime.fromtimestamp(entry.time).astimezone().strftime("%Y-%m-%d %H:%M:%S")
            if entry.time
            else "-"
        )
        changes = "; ".join(describe_op(op) for op in entry.ops) or "(nothing you may read)"
        rows.append((str(entry.version), when, entry.user or "-", changes))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{v:>{widths[0]}}  {t:<{widths[1]}}  {u:<{widths[2]}}  {c}" for v, t, u, c in rows
    )


async def list_rooms(store_url: str) -> list[tuple[str, int]]:
    """Every room in the store at ``store_url`` with its head version."""
    from .relay.store import open_store

    store = open_store(store_url)
    try:
        return await store.rooms()
    finally:
        await store.close()
