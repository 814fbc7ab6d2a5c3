"""``Poll``: one button per option, live counts, one vote per user.

State at ``path``: ``voters/<user>``, the option each user chose; the counts are
derived from it, so there is no tally anyone could inflate. Voting again replaces
the user's entry. User names are %-escaped into path segments (``path_segment``).

One vote per user is the room's rule, not this client's: the poll asks for a rule
that lets each user write only their own entry (``{user}``, docs/rules.md), added
the first time an admin opens it (``_rules.ensure_rules``).
"""

from __future__ import annotations

from typing import Any

import traitlets

from ...client.ack import Ack
from ._base import STATIC, LiveWidget, path_segment
from ._rules import ensure_rules, pattern_path

__all__ = ["Poll"]


class Poll(LiveWidget):
    """A live poll at ``path``; ``vote(option)`` from Python or a click in the view."""

    _esm = STATIC / "poll.js"

    path = traitlets.Unicode().tag(sync=True)
    question = traitlets.Unicode("").tag(sync=True)
    options = traitlets.List(traitlets.Unicode()).tag(sync=True)
    # option -> votes (every listed option, 0 when nobody chose it)
    counts = traitlets.Dict().tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    # This user's choice (None: not voted).
    my_vote = traitlets.Unicode(None, allow_none=True).tag(sync=True)

    def __init__(
        self, path: str, question: str, options: list[str], session: Any = None, **kwargs: Any
    ) -> None:
        options = [str(o) for o in options]
        if not options or len(set(options)) != len(options):
            raise ValueError("a poll needs one or more distinct options")
        super().__init__(session=session, path=path, question=question, options=options, **kwargs)
        self._own(self._session.subscribe(path, lambda _value, _path: self._refresh()))
        self._refresh()
        self._protect()

    def rules(self) -> list[dict[str, Any]]:
        """The room rules this poll needs: each user writes only their own vote."""
        base = pattern_path(self.path)
        if base is None:
            return []
        return [
            {
                "name": f"poll {self.path}: one vote per user",
                "path": f"{base}/voters/{{user}}",
                "read": "anyone",
                "write": "{user} or admin",
                "type": "string",
                "max_bytes": 1024,
            }
        ]

    def _protect(self) -> None:
        ensure_rules(self._session, self.rules(), lambda msg: self._set_from_session(error=msg))

    @property
    def voter(self) -> str:
        """Who votes here: the session's user (its client id if it has no user)."""
        return str(self._session.user or self._session.client_id)

    def _voter_path(self) -> str:
        return f"{self.path}/voters/{path_segment(self.voter)}"

    def vote(self, option: str) -> Ack | None:
        """Vote for ``option``, moving an earlier vote of this user; None if unchanged."""
        if option not in self.options:
            raise ValueError(f"{option!r} is not an option of this poll")
        session = self._session
        with self._lock:
            if session.get(self._voter_path()) == option:
                return None
            ack: Ack = session.set(self._voter_path(), option)
        self._set_from_session(error="")
        return ack

    def _msg_vote(self, msg: dict[str, Any]) -> None:
        self.vote(str(msg["option"]))

    def _refresh(self) -> None:
        state = self._session.get(self.path)
        state = state if isinstance(state, dict) else {}
        voters = state.get("voters")
        voters = voters if isinstance(voters, dict) else {}
        counts = dict.fromkeys(self.options, 0)
        for choice in voters.values():
            if choice in counts:
                counts[choice] += 1
        mine = self._session.get(self._voter_path())
        self._set_from_session(
            counts=counts,
            total=sum(counts.values()),
            my_vote=mine if isinstance(mine, str) else None,
        )
