"""Shared-state paths: ``"poll/q1/votes"`` is the key sequence ``("poll", "q1", "votes")``.

A path is one or more non-empty segments joined by ``/``. The root (``""``) may be
read and subscribed to, but operations always name at least one segment.
"""

from __future__ import annotations

import functools
import re

__all__ = [
    "MAX_PATH_DEPTH",
    "MAX_PATH_LENGTH",
    "PATH_PATTERN",
    "InvalidPath",
    "is_related",
    "is_within",
    "join_path",
    "parse_path",
]

MAX_PATH_LENGTH = 512
MAX_PATH_DEPTH = 32
# Used by the wire schema (protocol.messages) so the relay checks paths while decoding.
PATH_PATTERN = r"^[^/\x00-\x1f]+(/[^/\x00-\x1f]+)*\Z"
_CONTROL = re.compile(r"[\x00-\x1f]")


class InvalidPath(ValueError):
    """A path that is empty, has empty segments or control characters, or is too long/deep."""


def parse_path(path: str, *, allow_root: bool = False) -> tuple[str, ...]:
    """Split and check ``path``; raise :class:`InvalidPath` saying what is wrong."""
    if not isinstance(path, str):
        raise InvalidPath(f"path must be a string, not {type(path).__name__}")
    return _parse(path, allow_root)


# Every op parses its path, on the relay and in each client, and a room's paths
# repeat: parsed ones are kept (tuples are immutable; errors are never cached).
@functools.lru_cache(maxsize=8192)
def _parse(path: str, allow_root: bool) -> tuple[str, ...]:
    if path == "":
        if allow_root:
            return ()
        raise InvalidPath("path must not be empty")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidPath(f"path is longer than {MAX_PATH_LENGTH} characters")
    segments = tuple(path.split("/"))
    if len(segments) > MAX_PATH_DEPTH:
        raise InvalidPath(f"path is deeper than {MAX_PATH_DEPTH} segments")
    if "" in segments:
        raise InvalidPath(f"path {path!r} has an empty segment")
    if _CONTROL.search(path):
        raise InvalidPath(f"path {path!r} contains a control character")
    return segments


def join_path(*segments: str) -> str:
    """Join segments (each may itself hold ``/``) into one path, skipping empty parts."""
    return "/".join(s for s in segments if s)


def is_within(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or lies below it (the root contains everything)."""
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def is_related(a: str, b: str) -> bool:
    """True when a change at one path can change the value at the other."""
    return is_within(a, b) or is_within(b, a)
