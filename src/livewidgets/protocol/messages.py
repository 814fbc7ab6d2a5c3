"""Message types of the livewidgets wire protocol, version 1 (docs/protocol.md).

Messages are msgspec Structs tagged by their ``type`` field. The schema itself does
the validation (types, ranges, path syntax), so a frame is checked while it is
decoded, before anything touches state.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

import msgspec
from msgspec import Meta

from ..state.ops import DeleteOp, IncrementOp, MergeOp, Op, PushOp, RemoveOp, SetOp, TextOp
from ..state.paths import MAX_PATH_LENGTH, PATH_PATTERN

__all__ = [
    "PROTOCOL_VERSION",
    "AckMessage",
    "Admin",
    "Auth",
    "Authed",
    "Batch",
    "Broadcast",
    "ClientMessage",
    "DeleteOp",
    "Error",
    "Hello",
    "History",
    "HistoryEntry",
    "HistoryReply",
    "IncrementOp",
    "Join",
    "Joined",
    "Leave",
    "MergeOp",
    "Op",
    "OpMessage",
    "PresenceMessage",
    "PresenceUpdate",
    "PushOp",
    "Reject",
    "RemoveOp",
    "Revoked",
    "ServerMessage",
    "SetOp",
    "Snapshot",
    "TextOp",
    "Welcome",
]

PROTOCOL_VERSION = 1
MAX_BATCH_OPS = 1000
# A presence state (JSON-encoded) may not exceed this (error too_large).
MAX_PRESENCE_BYTES = 16 * 1024
# Token lifetimes a relay states (welcome.limits.expires_in, authed.expires_in): 10 years.
MAX_EXPIRES_IN = 10 * 365 * 86400.0

Path = Annotated[str, Meta(min_length=1, max_length=MAX_PATH_LENGTH, pattern=PATH_PATTERN)]
RoomName = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+-]+\Z")]
ClientId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+\Z")]
# Counters fit int64 everywhere (msgpack, SQLite), so a hostile number cannot poison a room.
Version = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Seq = Annotated[int, Meta(ge=1, le=2**63 - 1)]
ShortText = Annotated[str, Meta(max_length=256)]
# A link id (claim lid) or token id (jti), as auth.ID_PATTERN.
TokenRef = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+\Z")]


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    pass


# --- client -> relay --------------------------------------------------------------


class Hello(_Message, tag="hello"):
    """First frame of every connection."""

    protocol: int
    # Stable per client session; reuse it when reconnecting so resent ops are deduplicated.
    client_id: ClientId | None = None
    user: ShortText = ""
    token: Annotated[str, Meta(max_length=4096)] | None = None
    # A random challenge: a relay with a secret answers welcome.proof (docs/security.md).
    nonce: Annotated[str, Meta(min_length=16, max_length=64)] | None = None


class Join(_Message, tag="join"):
    """Enter a room; ``since`` = last version applied (None: send a snapshot), of the
    history ``epoch`` names (from ``joined.epoch``; a delta needs both)."""

    room: RoomName
    since: Version | None = None
    presence: dict[str, Any] | None = None
    epoch: Annotated[str, Meta(max_length=64)] | None = None


class Leave(_Message, tag="leave"):
    room: RoomName


class OpMessage(_Message, tag="op"):
    """One operation, made by the client against room version ``base_version``."""

    room: RoomName
    client_seq: Seq
    base_version: Version
    op: Op


class Batch(_Message, tag="batch"):
    """Several operations applied atomically under one version."""

    room: RoomName
    client_seq: Seq
    base_version: Version
    ops: Annotated[list[Op], Meta(min_length=1, max_length=MAX_BATCH_OPS)]


class PresenceMessage(_Message, tag="presence"):
    """Replace this connection's ephemeral presence state in a room."""

    room: RoomName
    state: dict[str, Any]


class Admin(_Message, tag="admin"):
    """Room administration (needs the admin role): ``reset`` deletes every top-level
    key in one relay-made batch; ``kick`` disconnects ``client_id`` (close 4011);
    ``revoke`` denies a ``link`` id or a ``token_id`` from now on, on every relay of
    the store, closing their connections (4006; answered with ``revoked``)."""

    room: RoomName
    action: Literal["reset", "kick", "revoke"]
    client_id: ClientId | None = None
    link: TokenRef | None = None
    token_id: TokenRef | None = None


class Auth(_Message, tag="auth"):
    """Renew this connection's credentials with a fresh token, without reconnecting
    (docs/security.md "Renewal"): the relay answers ``authed`` or an ``error``."""

    token: Annotated[str, Meta(min_length=1, max_length=4096)]


class History(_Message, tag="history"):
    """Read a joined room's history (docs/history.md), answered by ``history`` with the
    same ``id``: the newest ``limit`` entries before version ``before`` (None: up to
    the head) that changed ``path`` (or below or above it; None: any path), written
    by ``user`` (None: anyone); or, with ``at``, the room's state at that version.
    Both as the asker may read them under the room's rules."""

    room: RoomName
    id: Seq
    path: Path | None = None
    user: ShortText | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    before: Version | None = None
    at: Version | None = None


ClientMessage: TypeAlias = (
    Hello | Join | Leave | OpMessage | Batch | PresenceMessage | Admin | Auth | History
)


# --- relay -> client --------------------------------------------------------------


class Welcome(_Message, tag="welcome"):
    protocol: int
    client_id: str
    connection_id: str
    server: str
    # Sizes are ints; rates (ops_per_second, ...) may be fractional.
    limits: dict[str, int | float] = {}
    # HMAC of hello.nonce under the relay's secret (auth.relay_proof); None without.
    proof: str | None = None
    # Who the relay takes the client for: its user name (the token's, or a share-link
    # holder's own: relay.links) and role ("read", "write", "admin"); "" if not said.
    user: ShortText = ""
    role: ShortText = ""


class Snapshot(_Message, tag="snapshot"):
    """The whole room state at ``version``; broadcasts after it follow."""

    room: str
    version: Version
    state: dict[str, Any]
    # Highest client_seq of the receiving client the relay has processed: its ops up to
    # there are in ``state`` already (or were refused) and must not be replayed on top.
    last_seq: Version = 0


class Broadcast(_Message, tag="broadcast"):
    """An accepted op (or batch) from another client, in room order."""

    room: str
    version: Version
    origin: str
    client_seq: Seq
    ops: list[Op]


class Joined(_Message, tag="joined"):
    """Catch-up is complete: the client is at ``version`` and receives live broadcasts."""

    room: str
    version: Version
    mode: Literal["delta", "snapshot"]
    presence: dict[str, dict[str, Any]] = {}
    # The history ``version`` belongs to: send it back with ``join.since`` to resume.
    epoch: str = ""


class AckMessage(_Message, tag="ack"):
    room: str
    client_seq: Seq
    version: Version
    # True when this op had been applied before (a resend).
    duplicate: bool = False


class Reject(_Message, tag="reject"):
    room: str
    client_seq: Seq
    code: str
    message: str
    path: str | None = None
    # For conflicts: the value at path now and the version that last changed it.
    current: Any = None
    current_version: Version | None = None


class PresenceUpdate(_Message, tag="presence"):
    """Peers' presence changed: client_id -> new state, None when the peer left.

    The relay coalesces changes, so one message may carry many peers (a client skips
    its own client_id if present).
    """

    room: str
    states: dict[str, dict[str, Any] | None]


class Error(_Message, tag="error"):
    """A frame was refused. ``ref`` names the offending message type when known."""

    code: str
    message: str
    ref: str | None = None
    room: str | None = None


class Revoked(_Message, tag="revoked"):
    """The answer to an admin ``revoke``: recorded in the store (durably) and in force
    on this relay, which closed ``closed`` connections using it; other relays of the
    store close theirs as they hear of it (docs/security.md "Revocation")."""

    room: str
    link: str | None = None
    token_id: str | None = None
    closed: int = 0


class Authed(_Message, tag="authed"):
    """The token of an ``auth`` now holds for this connection, which expires in
    ``expires_in`` seconds (None: never); the old token's deadline is gone."""

    expires_in: Annotated[float, Meta(ge=0, le=MAX_EXPIRES_IN)] | None = None


class HistoryEntry(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, frozen=True):
    """One accepted op or batch as history shows it: its version, the Unix time the
    relay sequenced it (0: before history was kept), who wrote it (``user``; the
    relay logs an admin's reset under the admin's name) from which client, and the
    ops as applied (as the asker may see them)."""

    version: Version
    client_id: str
    ops: list[Op]
    user: str = ""
    time: float = 0.0


class HistoryReply(_Message, tag="history"):
    """The answer to ``history`` ``id``: ``entries`` oldest first (``more``: older
    ones matched too; ask again with ``before`` = the first one's version), or
    ``state`` at version ``at``. ``since``..``head``: the versions the room's history
    covers now. ``error``/``message``: the query was refused (nothing else is set)."""

    room: str
    id: Seq
    entries: list[HistoryEntry] = []
    more: bool = False
    since: Version = 0
    head: Version = 0
    at: Version | None = None
    state: dict[str, Any] | None = None
    error: str | None = None
    message: str | None = None


ServerMessage: TypeAlias = (
    Welcome
    | Snapshot
    | Broadcast
    | Joined
    | AckMessage
    | Reject
    | PresenceUpdate
    | Error
    | Revoked
    | Authed
    | HistoryReply
)
