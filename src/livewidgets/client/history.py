"""Reading a room's history, and reverting to a past version (docs/history.md).

:class:`HistoryQueries` matches the relay's ``history`` replies to the coroutines
waiting for them (the engine owns one; queries travel like admin messages: sent
when connected, again after a reconnect until answered). :func:`revert_ops` is pure:
the ops that turn the room as it is into the room as it was, so ``revert_to`` is
one ordinary batch, checked by the relay like any write and undoable like one.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Final

from ..errors import LivewidgetsError
from ..protocol.messages import MAX_BATCH_OPS, HistoryEntry, HistoryReply
from ..state.ops import MAX_VALUE_DEPTH, DeleteOp, Op, SetOp
from ..state.paths import MAX_PATH_DEPTH, InvalidPath, join_path, parse_path

__all__ = [
    "ROOM",
    "HistoryEntry",
    "HistoryError",
    "HistoryPage",
    "HistoryQueries",
    "describe_op",
    "revert_ops",
]

_MISSING: Final[Any] = object()


class HistoryError(LivewidgetsError):
    """The relay refused a history query (``code``: ``out_of_history``, ``internal``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class HistoryPage(list[HistoryEntry]):
    """Entries of one ``history`` answer, oldest first, and what the answer said about
    the rest: ``more`` (older entries matched too: ask again with ``before`` = the
    first one's version), ``since`` and ``head`` (the kept history covers the
    versions after ``since`` up to ``head``)."""

    def __init__(self, reply: HistoryReply) -> None:
        super().__init__(reply.entries)
        self.more = reply.more
        self.since = reply.since
        self.head = reply.head


class HistoryQueries:
    """History queries in flight: id -> the future its asker awaits, on its loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[HistoryReply]] = {}

    def open(self) -> tuple[int, asyncio.Future[HistoryReply]]:
        """A new query id and the future its reply resolves (call on the asker's loop)."""
        future: asyncio.Future[HistoryReply] = asyncio.get_running_loop().create_future()
        with self._lock:
            query_id, self._next_id = self._next_id, self._next_id + 1
            self._waiting[query_id] = future
        return query_id, future

    def close(self, query_id: int) -> None:
        with self._lock:
            self._waiting.pop(query_id, None)

    def answered(self, reply: HistoryReply) -> None:
        """The relay's reply (from any thread): resolve its future, or raise in it."""
        with self._lock:
            future = self._waiting.pop(reply.id, None)
        if future is None:
            return
        if reply.error is not None:
            error = HistoryError(reply.error, reply.message or "")
            future.get_loop().call_soon_threadsafe(_settle, future, None, error)
        else:
            future.get_loop().call_soon_threadsafe(_settle, future, reply, None)

    def fail_all(self, error: BaseException) -> None:
        """The session closed: every waiting query fails with ``error``."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.get_loop().call_soon_threadsafe(_settle, future, None, error)


def _settle(
    future: asyncio.Future[HistoryReply],
    reply: HistoryReply | None,
    error: BaseException | None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert reply is not None
        future.set_result(reply)


def revert_ops(
    current: dict[str, Any],
    past: dict[str, Any],
    path: str = "",
    *,
    max_ops: int = MAX_BATCH_OPS,
    include_rules: bool = False,
) -> list[Op]:
    """The ops that turn the room ``current`` into the room ``past`` at ``path`` and
    below (the whole room when ""), touching only what differs: mappings are compared
    key by key, anything else is replaced whole (a value absent in ``past`` is
    deleted). At the root, ``$``-keys (the room's rules) are left alone unless
    ``include_rules`` (an import): rules are changed on purpose, never by a revert.

    At most ``max_ops`` ops (one batch): beyond that, differing mappings are replaced
    whole from ever higher up. Raises ValueError if even that does not fit.
    """
    before, after = _value_at(current, path), _value_at(past, path)
    for depth in (MAX_VALUE_DEPTH + MAX_PATH_DEPTH, 2, 1, 0):
        ops = list(_diff(before, after, path, depth, include_rules))
        if len(ops) <= max_ops:
            return ops
    raise ValueError(f"reverting {path or 'the room'} takes more than {max_ops} changes")


def _value_at(root: dict[str, Any], path: str) -> Any:
    """The value at ``path`` (the root when ""), or the absent marker."""
    node: Any = root
    for segment in parse_path(path, allow_root=True):
        if not isinstance(node, dict) or segment not in node:
            return _MISSING
        node = node[segment]
    return node


def _diff(current: Any, past: Any, path: str, depth: int, rules: bool = False) -> Iterator[Op]:
    """Ops from ``current`` to ``past`` at ``path``, comparing mappings key by key
    ``depth`` levels down (below that, or at a non-root path with depth 0, a differing
    mapping is replaced whole)."""
    if current is past or (type(current) is type(past) and current == past):
        return
    if isinstance(current, dict) and isinstance(past, dict) and (depth > 0 or not path):
        keys = [*current, *(k for k in past if k not in current)]
        if not path and not rules:
            keys = [k for k in keys if not k.startswith("$")]
        if path and not all(_addressable(path, k) for k in keys):
            # A key that cannot be addressed as a path: replace the mapping whole.
            yield SetOp(path=path, value=past)
            return
        for key in keys:
            yield from _diff(
                current.get(key, _MISSING), past.get(key, _MISSING), _join(path, key), depth - 1
            )
        return
    if not path:
        raise ValueError("a room's state is always a mapping")
    if past is _MISSING:
        yield DeleteOp(path=path)
    else:
        yield SetOp(path=path, value=past)


def _join(path: str, key: str) -> str:
    return join_path(path, key) if path else key


def _addressable(path: str, key: str) -> bool:
    """Whether ``key`` below ``path`` can be named by a path of its own."""
    try:
        return len(parse_path(_join(path, key))) == len(parse_path(path)) + 1
    except InvalidPath:
        return False


# --- describing ops (the History widget, `livewidgets room history`) ---------------


# Values longer than this (as shown) are cut with an ellipsis.
VALUE_CHARS = 40
ROOM = "(room)"


def _short(text: str, limit: int = VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _value(value: Any) -> str:
    """A value as a short literal: ``"Lunch?"``, ``3``, ``{"a": 1}`` (cut when long)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return _short(text)


def _number(by: Any) -> str:
    if isinstance(by, bool) or not isinstance(by, int | float):
        return f"+{_value(by)}"
    text = f"{by:+d}" if isinstance(by, int) else f"{by:+g}"
    return text.replace("-", "\u2212")


def _item_id(item_id: Any) -> str:
    text = str(item_id)
    return text[:4] if len(text) > 8 else text


def _text_counts(delta: Iterable[Any]) -> tuple[int, int]:
    added = removed = 0
    for part in delta:
        if isinstance(part, str):
            added += len(part)
        elif isinstance(part, int) and not isinstance(part, bool) and part < 0:
            removed -= part
    return added, removed


def describe_op(op: Any) -> str:
    """One op as a short human diff: ``poll/q1/votes/yes +1``, ``title = "Lunch?"``,
    ``chat + "hi"``, ``chat \u2212 item 3f2a``, ``notes/body: +12 \u22123 chars`` (a minus sign),
    ``delete extra``, ``merge settings {a, b}`` (long values cut)."""
    tag = str(getattr(getattr(op, "__struct_config__", None), "tag", "") or type(op).__name__)
    path = str(getattr(op, "path", ""))
    where = path or ROOM
    if tag == "set":
        return f"{where} = {_value(getattr(op, 'value', None))}"
    if tag == "increment":
        return f"{where} {_number(getattr(op, 'by', 1))}"
    if tag == "push":
        value = getattr(op, "value", None)
        if isinstance(value, dict) and isinstance(value.get("text"), str):
            value = value["text"]  # a chat message: its text says most
        return f"{where} + {_value(value)}"
    if tag == "remove":
        return f"{where} \u2212 item {_short(_item_id(getattr(op, 'id', '')), 12)}"
    if tag == "text":
        added, removed = _text_counts(getattr(op, "delta", []) or [])
        return f"{where}: +{added} \u2212{removed} chars"
    if tag == "delete":
        return f"delete {where}"
    if tag == "merge":
        keys = [str(k) for k in (getattr(op, "value", None) or {})]
        shown = ", ".join(_short(k, 16) for k in keys[:5]) + (", \u2026" if len(keys) > 5 else "")
        return f"merge {path + ' ' if path else ''}{{{shown}}}"
    return f"{tag} {where}"
