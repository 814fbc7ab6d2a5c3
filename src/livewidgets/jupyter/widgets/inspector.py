"""``StateInspector``: a live, collapsible tree of the room's state at ``path``."""

from __future__ import annotations

from typing import Any

import traitlets

from ._base import STATIC, LiveWidget, Throttle

__all__ = ["StateInspector"]


class StateInspector(LiveWidget):
    """Shows the value at ``path`` ("" = the whole room), updated at most every ``interval`` s."""

    _esm = STATIC / "state_inspector.js"

    path = traitlets.Unicode("").tag(sync=True)
    data = traitlets.Any(None).tag(sync=True)
    # The room version the shown data includes (confirmed by the relay).
    version = traitlets.Int(0).tag(sync=True)

    def __init__(
        self, path: str = "", session: Any = None, interval: float = 0.2, **kwargs: Any
    ) -> None:
        super().__init__(session=session, path=path, **kwargs)
        throttle = Throttle(interval, self._refresh)
        self._own(self._session.subscribe(path, lambda _value, _path: throttle()))
        self._own(throttle.stop)
        self._refresh()

    def _refresh(self) -> None:
        self._set_from_session(
            data=self._session.get(self.path), version=int(self._session.version)
        )
