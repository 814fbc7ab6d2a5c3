"""SQLite store (``sqlite:///rooms.db``): the embedded, durable default.

Durability: WAL journal with ``synchronous=FULL``, so a commit is fsynced before
:meth:`SQLiteStore.append` returns; an op acked by the relay survives ``kill -9``
and a power cut. ``sqlite:///rooms.db?synchronous=normal`` skips the fsync per
commit (SQLite's WAL + NORMAL): acked ops still survive the relay being killed,
but the last commits may be lost if the machine itself crashes or loses power.

All SQLite calls run in one dedicated thread (SQLite connections are
single-threaded and every call may block on fsync), never on the event loop.

Encoding: ops, states and clock data are msgpack (msgspec); ops decode back into
the typed Op structs. The schema is versioned with ``PRAGMA user_version``;
:data:`MIGRATIONS` lists the steps, and a database from a newer release is refused.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from ...state.ops import Op
from ..history import HistoryHorizon, HistoryRecord
from ..lineage import Lineage
from ..revocation import Revocation
from ..room import LogEntry, RoomRecord
from . import StoreConflict, StoreError, check_continues, decode_revocation

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteStore"]

T = TypeVar("T")

# MIGRATIONS[i] upgrades a database from schema version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE rooms (
        room TEXT PRIMARY KEY,
        -- Version of the last appended entry (the log may be compacted past it).
        head_version INTEGER NOT NULL DEFAULT 0,
        snapshot_version INTEGER NOT NULL DEFAULT 0,
        snapshot_state BLOB,
        snapshot_clock BLOB
    ) WITHOUT ROWID;
    CREATE TABLE log (
        room TEXT NOT NULL,
        version INTEGER NOT NULL,
        client_id TEXT NOT NULL,
        client_seq INTEGER NOT NULL,
        ops BLOB NOT NULL,
        PRIMARY KEY (room, version)
    ) WITHOUT ROWID;
    CREATE TABLE dedupe (
        room TEXT NOT NULL,
        client_id TEXT NOT NULL,
        client_seq INTEGER NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (room, client_id)
    ) WITHOUT ROWID;
    """,
    # Epochs (relay.lineage): the room's current one and its earlier ones (msgpack
    # [[epoch, forked_at], ...]); the refusals each entry carries (LogEntry.refused:
    # msgpack [[seq, code], ...]).
    """
    ALTER TABLE rooms ADD COLUMN epoch TEXT;
    ALTER TABLE rooms ADD COLUMN ancestors BLOB;
    ALTER TABLE log ADD COLUMN refused BLOB;
    """,
    # Revoked link and token ids (relay.revocation), relay-wide: not per room.
    """
    CREATE TABLE revocations (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        scope TEXT NOT NULL,
        revoked_at REAL NOT NULL,
        PRIMARY KEY (kind, id, scope)
    ) WITHOUT ROWID;
    """,
    # History (relay.history): who wrote each entry and when; the snapshots that start
    # the kept history (the room's current one is in both tables). A room compacted
    # before this keeps its current snapshot as the start of its history.
    """
    ALTER TABLE log ADD COLUMN user TEXT;
    ALTER TABLE log ADD COLUMN time REAL;
    CREATE TABLE snapshots (
        room TEXT NOT NULL,
        version INTEGER NOT NULL,
        time REAL NOT NULL,
        state BLOB NOT NULL,
        PRIMARY KEY (room, version)
    ) WITHOUT ROWID;
    INSERT INTO snapshots (room, version, time, state)
        SELECT room, snapshot_version, 0, snapshot_state FROM rooms
        WHERE snapshot_version > 0 AND snapshot_state IS NOT NULL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_encode = msgspec.msgpack.Encoder().encode
_decode_ops = msgspec.msgpack.Decoder(list[Op]).decode
_decode_state = msgspec.msgpack.Decoder(dict[str, Any]).decode
_decode_any = msgspec.msgpack.Decoder().decode
_decode_refused = msgspec.msgpack.Decoder(tuple[tuple[int, str], ...]).decode
_decode_ancestors = msgspec.msgpack.Decoder(tuple[tuple[str, int], ...]).decode


class SQLiteStore:
    """A :class:`~livewidgets.relay.store.Store` in one SQLite file.

    The constructor opens (and creates or migrates) the database at once, in the
    writer thread, so a bad path fails here rather than at the first join.
    """

    def __init__(
        self, path: str, *, synchronous: str = "full", history: HistoryHorizon | None = None
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        self.path = path
        self.history = history or HistoryHorizon()
        self.synchronous = synchronous
        # One thread owns the connection; calls queue up on it in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livewidgets-sqlite")
        self._db: sqlite3.Connection | None = None
        self._closed = False
        try:
            self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    # --- Store protocol (event loop side) ----------------------------------------

    async def load(self, room: str) -> RoomRecord:
        return await self._call(self._load, room)

    async def append(self, room: str, entries: Sequence[LogEntry]) -> None:
        if entries:
            await self._call(self._append, room, list(entries))

    async def begin_epoch(self, room: str, lineage: Lineage) -> Lineage:
        await self._call(self._begin_epoch, room, lineage)
        return lineage

    async def read_log(self, room: str, after: int, limit: int) -> list[LogEntry]:
        return await self._call(self._read_log, room, after, limit)

    async def save_snapshot(
        self, room: str, version: int, state: dict[str, Any], clock_data: Any
    ) -> None:
        await self._call(self._save_snapshot, room, version, state, clock_data)

    async def read_history(self, room: str) -> HistoryRecord:
        return await self._call(self._read_history, room)

    async def rooms(self) -> list[tuple[str, int]]:
        return await self._call(self._rooms)

    async def revoke(self, revocation: Revocation) -> None:
        await self._call(self._revoke, revocation)

    async def revocations(self) -> list[Revocation]:
        return await self._call(self._revocations)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_db)
        finally:
            self._executor.shutdown(wait=True)

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        call = functools.partial(function, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # --- writer thread side --------------------------------------------------------

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal" and self.path != ":memory:":
                raise StoreError(f"{self.path}: cannot enable WAL journal (got {mode!r})")
            # FULL: fsync the WAL on every commit, so acked ops survive a power cut.
            # NORMAL: fsync only at checkpoints; commits survive a crash of this process.
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            db.execute("PRAGMA busy_timeout=5000")
            _migrate(db, self.path)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is closed")
        return self._db

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            # Fold the WAL back into the main file so the database is one self-contained file.
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()

    def _load(self, room: str) -> RoomRecord:
        with _transaction(self._conn(), "BEGIN") as db:
            row = db.execute(
                "SELECT snapshot_version, snapshot_state, snapshot_clock, epoch, ancestors"
                " FROM rooms WHERE room = ?",
                (room,),
            ).fetchone()
            record = RoomRecord(room)
            if row is not None:
                record.snapshot_version = row[0]
                record.snapshot_state = _decode_state(row[1]) if row[1] is not None else {}
                record.snapshot_clock = _decode_any(row[2]) if row[2] is not None else None
                if row[3] is not None:
                    record.lineage = Lineage(row[3], _decode_ancestors(row[4]))
            record.log = self._select_log(db, room, record.snapshot_version, -1)
            record.dedupe = {
                client_id: (seq, version)
                for client_id, seq, version in db.execute(
                    "SELECT client_id, client_seq, version FROM dedupe WHERE room = ?", (room,)
                )
            }
        # The table holds the dedupe of the entries up to the snapshot (_save_snapshot
        # writes it); the log after it says the rest.
        for entry in record.log:
            if entry.client_seq > record.dedupe.get(entry.client_id, (0, 0))[0]:
                record.dedupe[entry.client_id] = (entry.client_seq, entry.version)
        return record

    def _begin_epoch(self, room: str, lineage: Lineage) -> None:
        # Without an fsync of its own: the room's first append (synchronous=FULL) comes
        # after it in the same WAL, so it is durable before any version of this epoch
        # is; lost without them, it leaves nothing to misread (relay.lineage).
        db = self._conn()
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._record_epoch(db, room, lineage)
        finally:
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")

    @staticmethod
    def _record_epoch(db: sqlite3.Connection, room: str, lineage: Lineage) -> None:
        with _transaction(db, "BEGIN IMMEDIATE") as db:
            db.execute(
                "INSERT INTO rooms (room, epoch, ancestors) VALUES (?, ?, ?)"
                " ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch,"
                " ancestors = excluded.ancestors",
                (room, lineage.epoch, _encode(lineage.ancestors)),
            )

    def _read_log(self, room: str, after: int, limit: int) -> list[LogEntry]:
        with _transaction(self._conn(), "BEGIN") as db:
            return self._select_log(db, room, after, max(limit, 0))

    @staticmethod
    def _select_log(db: sqlite3.Connection, room: str, after: int, limit: int) -> list[LogEntry]:
        rows = db.execute(
            "SELECT version, client_id, client_seq, ops, refused, user, time FROM log"
            " WHERE room = ? AND version > ? ORDER BY version LIMIT ?",
            (room, after, limit),
        )
        return [
            LogEntry(
                v,
                cid,
                seq,
                tuple(_decode_ops(ops)),
                _decode_refused(refused) if refused else (),
                user or "",
                at or 0.0,
            )
            for v, cid, seq, ops, refused, user, at in rows
        ]

    def _read_history(self, room: str) -> HistoryRecord:
        # The history starts right before the oldest kept entry: at version 0, or at
        # the snapshot the log was last trimmed to (trims cut at snapshots).
        with _transaction(self._conn(), "BEGIN") as db:
            (first,) = db.execute("SELECT min(version) FROM log WHERE room = ?", (room,)).fetchone()
            if first is None:  # trimmed to the current snapshot (or a new room)
                row = db.execute(
                    "SELECT snapshot_version, snapshot_state FROM rooms WHERE room = ?", (room,)
                ).fetchone()
            elif first > 1:
                row = db.execute(
                    "SELECT version, state FROM snapshots WHERE room = ? AND version = ?",
                    (room, first - 1),
                ).fetchone()
                if row is None:
                    raise StoreError(f"room {room!r}: no snapshot at {first - 1} starts its log")
            else:
                row = None
            base, state = (row[0], _decode_state(row[1])) if row and row[1] else (0, {})
            return HistoryRecord(room, base, state, self._select_log(db, room, base, -1))

    def _rooms(self) -> list[tuple[str, int]]:
        with _transaction(self._conn(), "BEGIN") as db:
            names = [name for (name,) in db.execute("SELECT room FROM rooms ORDER BY room")]
            return [(name, _head(db, name)) for name in names]

    def _append(self, room: str, entries: list[LogEntry]) -> None:
        rows = [
            (
                room,
                e.version,
                e.client_id,
                e.client_seq,
                _encode(e.ops),
                _encode(e.refused) if e.refused else None,
                e.user,
                e.time,
            )
            for e in entries
        ]
        # One statement per commit: the head is the log's last version, and the dedupe
        # table follows the log at snapshots (the entries after one are read with it).
        with _transaction(self._conn(), "BEGIN IMMEDIATE") as db:
            check_continues(_head(db, room), entries)
            db.executemany(
                "INSERT INTO log (room, version, client_id, client_seq, ops, refused, user, time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _save_snapshot(self, room: str, version: int, state: dict[str, Any], clock: Any) -> None:
        state_blob, clock_blob = _encode(state), _encode(clock)
        with _transaction(self._conn(), "BEGIN IMMEDIATE") as db:
            head, snapshot_version = _head(db, room), _snapshot_version(db, room)
            if version <= snapshot_version:
                return
            if version > head:
                raise StoreConflict(f"snapshot at {version} is ahead of the log head {head}")
            # The dedupe of the entries the snapshot covers (the log may lose them).
            db.execute(
                "INSERT INTO dedupe (room, client_id, client_seq, version)"
                " SELECT room, client_id, max(client_seq), max(version) FROM log"
                " WHERE room = ? AND version > ? AND version <= ? GROUP BY client_id"
                " ON CONFLICT (room, client_id) DO UPDATE"
                " SET client_seq = excluded.client_seq, version = excluded.version"
                " WHERE excluded.client_seq > dedupe.client_seq",
                (room, snapshot_version, version),
            )
            db.execute(
                "INSERT INTO rooms (room, head_version, snapshot_version, snapshot_state,"
                " snapshot_clock) VALUES (?, ?, ?, ?, ?) ON CONFLICT (room) DO UPDATE SET"
                " head_version = excluded.head_version,"
                " snapshot_version = excluded.snapshot_version,"
                " snapshot_state = excluded.snapshot_state,"
                " snapshot_clock = excluded.snapshot_clock",
                (room, head, version, state_blob, clock_blob),
            )
            now = time.time()
            db.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?)", (room, version, now, state_blob)
            )
            kept = db.execute(
                "SELECT version, time FROM snapshots WHERE room = ? ORDER BY version", (room,)
            ).fetchall()
            cut = self.history.trim_to(head, kept, now)
            if cut is not None:
                db.execute("DELETE FROM log WHERE room = ? AND version <= ?", (room, cut))
                db.execute("DELETE FROM snapshots WHERE room = ? AND version < ?", (room, cut))

    def _revoke(self, revocation: Revocation) -> None:
        # A commit of its own, fsynced (synchronous=FULL): the revocation survives a
        # crash as soon as the admin is told it is done.
        with _transaction(self._conn(), "BEGIN IMMEDIATE") as db:
            db.execute(
                "INSERT INTO revocations VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (revocation.kind.value, revocation.id, revocation.scope, revocation.revoked_at),
            )

    def _revocations(self) -> list[Revocation]:
        with _transaction(self._conn(), "BEGIN") as db:
            rows = db.execute("SELECT kind, id, scope, revoked_at FROM revocations").fetchall()
        return [decode_revocation(row) for row in rows]


def _head(db: sqlite3.Connection, room: str) -> int:
    """The last stored version: the log's, else (nothing after it) the snapshot's."""
    (last,) = db.execute("SELECT max(version) FROM log WHERE room = ?", (room,)).fetchone()
    if last is not None:
        return int(last)
    row = db.execute(
        "SELECT max(snapshot_version, head_version) FROM rooms WHERE room = ?", (room,)
    ).fetchone()
    return int(row[0]) if row is not None else 0


def _snapshot_version(db: sqlite3.Connection, room: str) -> int:
    row = db.execute("SELECT snapshot_version FROM rooms WHERE room = ?", (room,)).fetchone()
    return int(row[0]) if row is not None else 0


class _transaction:
    """``with _transaction(db, "BEGIN IMMEDIATE") as db:`` commits, or rolls back and
    raises StoreError (StoreConflict passes through unchanged)."""

    def __init__(self, db: sqlite3.Connection, begin: str) -> None:
        self._db = db
        self._begin = begin

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute(self._begin)
        return self._db

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if kind is None:
            self._db.execute("COMMIT")
            return
        self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"sqlite: {exc}") from exc


def _migrate(db: sqlite3.Connection, path: str) -> None:
    """Bring the schema to SCHEMA_VERSION, one migration per transaction."""
    current = int(db.execute("PRAGMA user_version").fetchone()[0])
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {current} is newer than this relay's ({SCHEMA_VERSION})"
        )
    for version in range(current, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
