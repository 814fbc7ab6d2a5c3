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
from collections.abc import Iterator
from typing import Any, Final

import msgspec

from ..errors import LivewidgetsError
from ..protocol.messages import MAX_BATCH_OPS, HistoryEntry, HistoryReply
from ..state.ops import MAX_VALUE_DEPTH, DeleteOp, Op, SetOp
from ..state.paths import MAX_PATH_DEPTH, InvalidPath, join_path, parse_path

__all__ = ["HistoryEntry", "HistoryError", "HistoryQueries", "describe_op", "revert_ops"]

_MISSING: Final[Any] = object()


class HistoryError(LivewidgetsError):
    """The relay refused a history query (``code``: ``out_of_history``, ``internal``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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


def describe_op(op: Op) -> str:
    """A short human description of ``op`` (for tables and timelines)."""
    data = msgspec.to_builtins(op)
    kind, path = data.pop("op"), data.pop("path")
    data.pop("if_version", None)
    if kind == "increment":
        by = data.get("by", 1)
        return f"{path} {by:+}"
    if kind == "set":
        return f"{path} = {_short(data.get('value'))}"
    if kind == "delete":
        return f"delete {path}"
    if kind == "push":
        return f"{path} + {_short(data.get('value'))}"
    if kind == "remove":
        return f"{path} remove item {data.get('id')}"
    if kind == "merge":
        return f"{path} merge {{{', '.join(map(str, data.get('value', {})))}}}"
    if kind == "text":
        inserted = sum(len(c) for c in data.get("delta", []) if isinstance(c, str))
        deleted = sum(-c for c in data.get("delta", []) if isinstance(c, int) and c < 0)
        return f"{path}: +{inserted} -{deleted} chars"
    return f"{kind} {path}"


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


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
