"""Operational transformation for plain text (sans-I/O, stdlib only).

A *delta* describes one change to a whole document. Its wire form is a JSON list
of components, read left to right over the base text:

=============  ===================================
``int > 0``    retain that many units
``str``        insert the string (non-empty)
``int < 0``    delete ``-n`` units
=============  ===================================

Example: ``[5, "abc", -2, 3]`` keeps 5 units, inserts "abc", deletes 2 and keeps 3.
Like ot.js's TextOperation a delta spans the *whole* base: retains plus deletes
equal the base length, so a trailing retain is kept, never implied.

Canonical form (what :func:`normalize` and :func:`validate` return, and what every
function here produces): no zero components or empty strings; adjacent components
of the same kind are merged; an insert directly next to a delete comes first
(``["x", -2]``, never ``[-2, "x"]``). So between two retains there is at most one
insert followed by at most one delete, and equal edits have equal deltas.

Units are UTF-16 code units, which is what the browser counts (JS
``string.length``, ``selectionStart``) and what Yjs uses. Python counts code
points, so astral characters (emoji, flags, U+1D11E ...) are one Python index but
two units. Positions inside such a character would split a surrogate pair and are
rejected. Strings with no astral character (checked in C: ``str.isascii()`` or
``max()``) take a fast path where units and indices coincide.

Concurrent inserts at the same position are ordered deterministically by
:func:`transform`: the first operand's insert goes first, so the relay and every
client converge on the same text.

All failures raise :class:`TextOpError` (a ``ValueError``) saying what is wrong.
"""

from __future__ import annotations

import difflib
from typing import TypeAlias

__all__ = [
    "Delta",
    "TextOpError",
    "apply",
    "base_length",
    "compose",
    "diff",
    "diff_regions",
    "edit",
    "from_utf16",
    "invert",
    "normalize",
    "target_length",
    "to_utf16",
    "transform",
    "transform_position",
    "transform_selection",
    "utf16_len",
    "validate",
]

Delta: TypeAlias = list[int | str]
Component: TypeAlias = int | str


class TextOpError(ValueError):
    """An invalid delta, a length mismatch, or an offset that splits a surrogate pair."""


# ---------------------------------------------------------------------------
# UTF-16 units


def _bmp_only(s: str) -> bool:
    """True when no character needs a surrogate pair, so units equal indices."""
    # Both run in C; isascii() is O(1) as CPython keeps it as a flag on the string.
    return s.isascii() or max(s) < "\U00010000"


def _encode(s: str) -> bytes:
    # surrogatepass: a lone surrogate (possible from JSON) still counts as one unit.
    return s.encode("utf-16-le", "surrogatepass")


def utf16_len(s: str) -> int:
    """Length of ``s`` in UTF-16 code units (JS ``string.length``)."""
    return len(s) if _bmp_only(s) else len(_encode(s)) // 2


def to_utf16(s: str, index: int) -> int:
    """Convert a Python index into ``s`` to a UTF-16 offset."""
    if not 0 <= index <= len(s):
        raise TextOpError(f"index {index} is outside the string (length {len(s)})")
    return index if _bmp_only(s) else utf16_len(s[:index])


def from_utf16(s: str, offset: int) -> int:
    """Convert a UTF-16 offset into ``s`` to a Python index."""
    return _Units(s).index(offset)


class _Units:
    """A string addressed by UTF-16 offsets; pays for conversion only if it has astral chars."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._utf16 = None if _bmp_only(text) else _encode(text)
        self.length = len(text) if self._utf16 is None else len(self._utf16) // 2

    def check(self, offset: int) -> None:
        """Raise unless ``offset`` is a valid boundary between characters."""
        if not 0 <= offset <= self.length:
            raise TextOpError(
                f"offset {offset} is outside the text (length {self.length} UTF-16 units)"
            )
        if self._utf16 is not None and 0 < offset < self.length:
            # Little-endian: the odd byte is the high byte of each unit.
            high = self._utf16[2 * offset + 1]
            prev_high = self._utf16[2 * offset - 1]
            if 0xDC <= high <= 0xDF and 0xD8 <= prev_high <= 0xDB:
                raise TextOpError(
                    f"offset {offset} splits a surrogate pair (inside an astral character "
                    f"such as an emoji)"
                )

    def index(self, offset: int) -> int:
        """Python index of a UTF-16 offset."""
        self.check(offset)
        if self._utf16 is None:
            return offset
        return len(self._utf16[: 2 * offset].decode("utf-16-le", "surrogatepass"))

    def slice(self, start: int, end: int) -> str:
        """The text between two UTF-16 offsets."""
        self.check(start)
        self.check(end)
        if self._utf16 is None:
            return self.text[start:end]
        return self._utf16[2 * start : 2 * end].decode("utf-16-le", "surrogatepass")


# ---------------------------------------------------------------------------
# Shape


def _is_delete(comp: object) -> bool:
    return isinstance(comp, int) and comp < 0


def _size(comp: Component) -> int:
    """Units a component spans: of the base for retain/delete, of the target for insert."""
    return utf16_len(comp) if isinstance(comp, str) else abs(comp)


def _push(out: Delta, comp: Component) -> None:
    """Append ``comp`` to a delta under construction, keeping it canonical."""
    if comp == 0 or comp == "":
        return
    last = out[-1] if out else None
    if isinstance(comp, str):
        if isinstance(last, str):
            out[-1] = last + comp
        elif _is_delete(last):
            # Canonical order puts an insert before the delete next to it.
            if len(out) >= 2 and isinstance(out[-2], str):
                out[-2] = out[-2] + comp
            else:
                out.insert(len(out) - 1, comp)
        else:
            out.append(comp)
    elif isinstance(last, int) and (last > 0) == (comp > 0):
        out[-1] = last + comp
    else:
        out.append(comp)


def normalize(delta: Delta) -> Delta:
    """Return the canonical form of ``delta`` (see the module docstring)."""
    out: Delta = []
    for comp in delta:
        _push(out, comp)
    return out


def validate(delta: object) -> Delta:
    """Check a delta from the wire and return it normalized."""
    if not isinstance(delta, list):
        raise TextOpError(f"delta must be a list, got {type(delta).__name__}")
    for i, comp in enumerate(delta):
        # bool is an int subclass in Python, but true/false on the wire is a client bug.
        if isinstance(comp, bool) or not isinstance(comp, int | str):
            raise TextOpError(
                f"delta component {i} must be an int or a str, got {type(comp).__name__}"
            )
        if comp == 0 or comp == "":
            raise TextOpError(f"delta component {i} must not be {comp!r}")
    return normalize(delta)


def base_length(delta: Delta) -> int:
    """Length (UTF-16 units) of the text the delta applies to."""
    return sum(abs(c) for c in delta if isinstance(c, int))


def target_length(delta: Delta) -> int:
    """Length (UTF-16 units) of the text the delta produces."""
    return sum(_size(c) for c in delta if not _is_delete(c))


def _check_base(delta: Delta, length: int) -> None:
    if base_length(delta) != length:
        raise TextOpError(
            f"delta expects a base of {base_length(delta)} UTF-16 units but the text has {length}"
        )


# ---------------------------------------------------------------------------
# Applying and building deltas


def apply(text: str, delta: Delta) -> str:
    """Apply ``delta`` to ``text``."""
    delta = validate(delta)
    doc = _Units(text)
    _check_base(delta, doc.length)
    parts: list[str] = []
    pos = 0
    for comp in delta:
        if isinstance(comp, str):
            parts.append(comp)
            continue
        end = pos + abs(comp)
        if comp > 0:
            parts.append(doc.slice(pos, end))
        else:
            doc.check(end)  # a delete must not leave half an emoji behind
        pos = end
    return "".join(parts)


def edit(text_len: int, index: int, delete: int = 0, insert: str = "") -> Delta:
    """Delta for a single edit: at ``index`` delete ``delete`` units, then insert ``insert``."""
    if index < 0 or delete < 0 or index + delete > text_len:
        raise TextOpError(
            f"edit of {delete} units at {index} does not fit a text of {text_len} units"
        )
    return normalize([index, insert, -delete, text_len - index - delete])


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix; binary search so the comparisons run in C."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def diff(old: str, new: str) -> Delta:
    """Delta turning ``old`` into ``new``, replacing only what lies between common ends."""
    # Prefix and suffix are measured in code points, so they never split a surrogate pair.
    start = _common_prefix(old, new)
    end = _common_prefix(old[start:][::-1], new[start:][::-1])
    old_mid, new_mid = old[start : len(old) - end], new[start : len(new) - end]
    return normalize(
        [
            utf16_len(old[:start]),
            new_mid,
            -utf16_len(old_mid),
            utf16_len(old[len(old) - end :]),
        ]
    )


def diff_regions(old: str, new: str) -> Delta:
    """Like :func:`diff`, but keeps every unchanged stretch in between (difflib).

    Used for three-way merges, where an edit made elsewhere must not swallow the
    text between two separate changes. Slower (difflib is roughly quadratic in the
    changed middle), so only for resyncs, not for every keystroke.
    """
    out: Delta = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, old, new, autojunk=False
    ).get_opcodes():
        if tag == "equal":
            _push(out, utf16_len(old[i1:i2]))
            continue
        if j2 > j1:
            _push(out, new[j1:j2])
        if i2 > i1:
            _push(out, -utf16_len(old[i1:i2]))
    return normalize(out)


def invert(delta: Delta, base_text: str) -> Delta:
    """Delta that undoes ``delta``, which must apply to ``base_text``."""
    delta = validate(delta)
    doc = _Units(base_text)
    _check_base(delta, doc.length)
    out: Delta = []
    pos = 0
    for comp in delta:
        if isinstance(comp, str):
            _push(out, -utf16_len(comp))
        elif comp > 0:
            _push(out, comp)
            pos += comp
        else:
            _push(out, doc.slice(pos, pos - comp))  # bring the deleted text back
            pos -= comp
    return out


# ---------------------------------------------------------------------------
# Compose and transform


class _Reader:
    """Walks a delta, letting callers consume part of a component to stay in lockstep."""

    def __init__(self, delta: Delta) -> None:
        self._rest = iter(delta)
        self.head: Component | None = next(self._rest, None)

    def _head(self) -> Component:
        if self.head is None:  # unreachable once the callers have compared lengths
            raise TextOpError("delta ended before the other operand")
        return self.head

    def size(self) -> int:
        return _size(self._head())

    def take(self, n: int | None = None) -> Component:
        """Consume ``n`` units of the head component (all of it if None) and return them."""
        head = self._head()
        if n is None or n >= _size(head):
            self.head = next(self._rest, None)
            return head
        if isinstance(head, str):
            cut = from_utf16(head, n)  # raises if n falls inside an emoji
            self.head = head[cut:]
            return head[:cut]
        sign = 1 if head > 0 else -1
        self.head = head - sign * n
        return sign * n


def compose(a: Delta, b: Delta) -> Delta:
    """One delta with the effect of ``a`` followed by ``b``."""
    a, b = validate(a), validate(b)
    if target_length(a) != base_length(b):
        raise TextOpError(
            f"cannot compose: first delta produces {target_length(a)} UTF-16 units "
            f"but the second expects {base_length(b)}"
        )
    ra, rb = _Reader(a), _Reader(b)
    out: Delta = []
    while ra.head is not None or rb.head is not None:
        if _is_delete(ra.head):
            _push(out, ra.take())  # a's deletions never reach b
        elif isinstance(rb.head, str):
            _push(out, rb.take())  # b's insertions don't touch a's output
        else:
            n = min(ra.size(), rb.size())
            x, y = ra.take(n), rb.take(n)
            if not _is_delete(y):
                _push(out, x)  # b keeps what a produced
            elif not isinstance(x, str):
                _push(out, y)  # b deletes base text a had kept
            # else b deletes text a inserted: it never existed as far as the result cares
    return out


def _over(mine: Component, theirs: Component) -> Component:
    """What ``mine`` still does to a span ``theirs`` has already handled."""
    return 0 if _is_delete(theirs) else mine


def transform(a: Delta, b: Delta) -> tuple[Delta, Delta]:
    """Rebase two concurrent deltas on each other (TP1).

    Returns ``(a2, b2)`` with ``apply(apply(s, a), b2) == apply(apply(s, b), a2)``.
    Inserts at the same position put a's text before b's.
    """
    a, b = validate(a), validate(b)
    if base_length(a) != base_length(b):
        raise TextOpError(
            f"cannot transform: deltas have different bases "
            f"({base_length(a)} and {base_length(b)} UTF-16 units)"
        )
    ra, rb = _Reader(a), _Reader(b)
    a2: Delta = []
    b2: Delta = []
    while ra.head is not None or rb.head is not None:
        if isinstance(ra.head, str):  # checked first: the tie-break that puts a first
            ins = ra.take()
            _push(a2, ins)
            _push(b2, _size(ins))
        elif isinstance(rb.head, str):
            ins = rb.take()
            _push(a2, _size(ins))
            _push(b2, ins)
        else:
            n = min(ra.size(), rb.size())
            x, y = ra.take(n), rb.take(n)
            _push(a2, _over(x, y))
            _push(b2, _over(y, x))
    return a2, b2


# ---------------------------------------------------------------------------
# Cursors


def transform_position(pos: int, delta: Delta, *, own: bool = False) -> int:
    """Move a cursor (UTF-16 offset) through ``delta`` so it stays by the same character.

    An insert exactly at the cursor pushes it along only if ``own`` (its owner typed
    it). A cursor inside a deleted range collapses to the start of the deletion.
    Cursors are advisory, so a stale position is clamped into the text, not rejected.
    The delta is normalized first, so an insert next to a delete counts as coming
    before it whichever order the sender used.
    """
    delta = validate(delta)
    pos = min(max(pos, 0), base_length(delta))
    base, shift = 0, 0
    for comp in delta:
        if base > pos:
            break  # nothing further right can move the cursor
        if isinstance(comp, str):
            if base < pos or own:
                shift += utf16_len(comp)
        elif comp > 0:
            base += comp
        else:
            shift -= max(0, min(-comp, pos - base))
            base -= comp
    return pos + shift


def transform_selection(
    sel: tuple[int, int], delta: Delta, *, own: bool = False
) -> tuple[int, int]:
    """Move an ``(anchor, head)`` selection through ``delta``."""
    anchor, head = sel
    return (
        transform_position(anchor, delta, own=own),
        transform_position(head, delta, own=own),
    )
