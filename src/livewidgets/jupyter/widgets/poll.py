"""``Poll``: one button per option, live counts, one vote per user.

State at ``path``: ``votes/<option>`` counts (``increment``: concurrent votes all
count) and ``voters/<user>`` the option each user chose. Voting again moves the
vote: decrement, increment and record in one batch, so no reader ever sees a vote
counted twice or not at all. Option and user names are %-escaped into path
segments (``path_segment``).
"""

from __future__ import annotations

from typing import Any

import traitlets

from ...client.ack import Ack
from ._base import STATIC, LiveWidget, path_segment

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
            previous = session.get(self._voter_path())
            if previous == option:
                return None
            with session.batch() as ack:
                if isinstance(previous, str):
                    session.increment(f"{self.path}/votes/{path_segment(previous)}", -1)
                session.increment(f"{self.path}/votes/{path_segment(option)}", 1)
                session.set(self._voter_path(), option)
        self._set_from_session(error="")
        return ack  # type: ignore[no-any-return]

    def _msg_vote(self, msg: dict[str, Any]) -> None:
        self.vote(str(msg["option"]))

    def _refresh(self) -> None:
        state = self._session.get(self.path)
        state = state if isinstance(state, dict) else {}
        votes = state.get("votes")
        votes = votes if isinstance(votes, dict) else {}
        counts = {}
        for option in self.options:
            n = votes.get(path_segment(option), 0)
            counts[option] = max(0, int(n)) if isinstance(n, int | float) else 0
        mine = self._session.get(self._voter_path())
        self._set_from_session(
            counts=counts,
            total=sum(counts.values()),
            my_vote=mine if isinstance(mine, str) else None,
        )
