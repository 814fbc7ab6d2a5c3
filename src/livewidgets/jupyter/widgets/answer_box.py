"""``AnswerBox``: each user writes a private answer; only admins read them all.

State at ``path``: ``<user>`` -> that user's answer (a string). The room's rule for
it (added the first time an admin opens the box, docs/rules.md): each user writes
only their own entry, and reads only that one; admins read every entry. So a student
on the raw protocol can neither read a classmate's answer nor write it.
"""

from __future__ import annotations

from typing import Any

import traitlets

from ...client.ack import Ack
from ._base import STATIC, LiveWidget, path_segment
from ._rules import pattern_path, protect

__all__ = ["AnswerBox"]


class AnswerBox(LiveWidget):
    """A private answer box at ``path``; ``submit(text)`` from Python or the view."""

    _esm = STATIC / "answer_box.js"

    MAX_LENGTH = 10_000

    path = traitlets.Unicode().tag(sync=True)
    prompt = traitlets.Unicode("").tag(sync=True)
    # This user's answer ("" before one is submitted).
    my_answer = traitlets.Unicode("").tag(sync=True)
    # user -> answer, as far as this session may read (everyone's for an admin).
    answers = traitlets.Dict().tag(sync=True)
    sees_all = traitlets.Bool(False).tag(sync=True)
    max_length = traitlets.Int(MAX_LENGTH).tag(sync=True)

    def __init__(self, path: str, prompt: str = "", session: Any = None, **kwargs: Any) -> None:
        super().__init__(session=session, path=path, prompt=prompt, **kwargs)
        self._own(self._session.subscribe(path, lambda _value, _path: self._refresh()))
        self._refresh()
        protect(self)

    def rules(self) -> list[dict[str, Any]]:
        """The room rules this box needs: one private answer per user."""
        base = pattern_path(self.path)
        if base is None:
            return []
        return [
            {
                "name": f"answers {self.path}: private",
                "path": f"{base}/{{user}}",
                "read": "{user} or admin",
                "write": "{user}",
                "type": "string",
                "max_bytes": 4 * self.MAX_LENGTH + 16,
            }
        ]

    def _my_path(self) -> str:
        return f"{self.path}/{path_segment(str(self._session.user))}"

    def submit(self, text: str) -> Ack:
        """Save ``text`` as this user's answer (replacing an earlier one)."""
        text = str(text)
        if len(text) > self.MAX_LENGTH:
            raise ValueError(f"an answer has at most {self.MAX_LENGTH} characters")
        ack: Ack = self._session.set(self._my_path(), text)
        self._set_from_session(error="")
        return ack

    def _msg_submit(self, msg: dict[str, Any]) -> None:
        self.submit(str(msg["text"]))

    def _refresh(self) -> None:
        state = self._session.get(self.path)
        state = state if isinstance(state, dict) else {}
        answers = {str(user): str(text) for user, text in state.items() if isinstance(text, str)}
        mine = self._session.get(self._my_path())
        role = getattr(self._session, "role", None)
        self._set_from_session(
            answers=answers if role in (None, "admin") else {},
            sees_all=role in (None, "admin"),
            my_answer=mine if isinstance(mine, str) else "",
        )
