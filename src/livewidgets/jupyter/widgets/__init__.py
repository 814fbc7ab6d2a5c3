"""Shared Jupyter widgets (anywidget): each binds to paths of a livewidgets session.

Every widget takes ``session=None`` (the kernel's, from
:func:`livewidgets.jupyter.runtime.current_session`), mirrors the session into
its traits from session callbacks without echoing them back as writes, and lets
go of the session on ``close()``. Front ends live in ``js/src`` and ship built in
``livewidgets/static``.
"""

from ._base import LiveWidget, color_for
from .answer_box import AnswerBox
from .chat import Chat
from .conflict import ConflictResolver
from .history import History
from .inspector import StateInspector
from .poll import Poll
from .presence import ConnectionStatus, Presence
from .shared_text import SharedText

__all__ = [
    "AnswerBox",
    "Chat",
    "ConflictResolver",
    "ConnectionStatus",
    "History",
    "LiveWidget",
    "Poll",
    "Presence",
    "SharedText",
    "StateInspector",
    "color_for",
]
