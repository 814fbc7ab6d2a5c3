"""Widgets guard their invariants with room rules (docs/rules.md), not client code.

A Poll's "one vote per user" or a Chat's "only the author removes a message" held
only inside our own client: anyone on the raw protocol could break them. Each such
widget names the rules its paths need; :func:`ensure_rules` adds them to the room's
own rules when this session may (an admin), the first time the widget is used.

A room that had no rules of its own gets them together with :data:`OPEN_RULE`, so
that everything else in the room stays as open as before (any writer writes, any
member reads): adding a poll must not lock the room's other widgets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["OPEN_RULE", "ensure_rules", "pattern_path"]

OPEN_RULE: dict[str, Any] = {
    "name": "everything else",
    "path": "**",
    "read": "anyone",
    "write": "writer",
}

# Characters a rule pattern gives a meaning to; a widget path holding them cannot be
# named literally in a rule.
_SPECIAL = re.compile(r"[{}*]")


def pattern_path(path: str) -> str | None:
    """``path`` as the literal start of a rule pattern (None if it cannot be one)."""
    return None if _SPECIAL.search(path) else path


def ensure_rules(
    session: Any, wanted: list[dict[str, Any]], on_refused: Callable[[str], None]
) -> None:
    """Make the room's own rules include ``wanted`` (matched by ``name``).

    Tried as this session: the relay refuses it unless the session is an admin, and
    then ``on_refused`` gets a message for the user. Without rules in the room the
    widget works all the same, unprotected; with rules that lack its own, writes to
    its paths are refused until an admin opens the widget once.
    """
    current = session.rules
    rules = current if isinstance(current, list) else []
    names = {rule.get("name") for rule in rules if isinstance(rule, dict)}
    missing = [rule for rule in wanted if rule["name"] not in names]
    if not missing:
        return
    base = rules if isinstance(current, list) else [OPEN_RULE]
    what = ", ".join(rule["name"] for rule in missing)
    if getattr(session, "role", None) not in (None, "admin"):
        # Only an admin may: say what that means here instead of asking in vain.
        on_refused(_notice(what, unguarded=current is None))
        return
    try:
        ack = session.set_rules([*base, *missing])
    except ValueError as exc:  # a RulesError: the widget's path cannot be a pattern
        on_refused(f"cannot protect this widget with room rules: {exc}")
        return
    unguarded = current is None

    def done(result: Any) -> None:
        error = result.exception() if hasattr(result, "exception") else None
        if error is not None:
            on_refused(_notice(what, unguarded=unguarded))

    ack.add_done_callback(done)


def _notice(what: str, *, unguarded: bool) -> str:
    if unguarded:
        return (
            f"not protected by room rules ({what}): anyone could change it; "
            "an admin protects it by opening it once"
        )
    return (
        f"the room's rules do not cover this widget ({what}): its writes are "
        "refused until an admin opens it once"
    )
