"""Client processes: start a team of workers, wait until all are ready, start them
at one shared instant, collect their results, never wait forever.

Each worker is a forked process running one *role* (bench.roles). A role connects
its clients, calls ``ctl.ready(info)`` (or ``await ctl.aready(info)``), which blocks
until the parent says go and returns the parent's go data (always with ``t0``, the
shared start time in ``time.monotonic()`` seconds, a clock that all processes of the
machine share), then does its work and returns a JSON-able result.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import time
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["Control", "Team", "TeamError"]

_ctx = multiprocessing.get_context("fork")


class TeamError(RuntimeError):
    """A worker failed or did not answer in time."""


class Control:
    """The worker's end of the pipe to the parent."""

    def __init__(self, conn: multiprocessing.connection.Connection, index: int) -> None:
        self._conn = conn
        self.index = index

    def ready(self, info: Any = None, timeout: float = 300.0) -> dict[str, Any]:
        """Report ready; block until the parent's go (returns its data, with ``t0``)."""
        self._conn.send(("ready", info))
        if not self._conn.poll(timeout):
            raise TeamError("no go from the parent")
        kind, data = self._conn.recv()
        if kind != "go":
            raise TeamError(f"expected go, got {kind}")
        return dict(data)

    async def aready(self, info: Any = None, timeout: float = 300.0) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(None, self.ready, info, timeout)


def _worker_main(
    role: Callable[..., Any],
    params: dict[str, Any],
    conn: multiprocessing.connection.Connection,
    index: int,
) -> None:
    from .servers import raise_fd_limit

    raise_fd_limit()
    ctl = Control(conn, index)
    try:
        if asyncio.iscoroutinefunction(role):
            result = asyncio.run(role(params, ctl))
        else:
            result = role(params, ctl)
        conn.send(("result", result))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class Team:
    """``with Team() as team: team.spawn(role, params); team.start(); team.results()``"""

    def __init__(self) -> None:
        self._workers: list[tuple[Any, multiprocessing.connection.Connection, str]] = []
        # Workers that reported ready so far (wait_ready only waits for the others).
        self._ready = 0

    def spawn(self, role: Callable[..., Any], params: dict[str, Any]) -> None:
        parent, child = _ctx.Pipe()
        index = len(self._workers)
        process = _ctx.Process(target=_worker_main, args=(role, params, child, index), daemon=True)
        process.start()
        child.close()
        self._workers.append((process, parent, role.__name__))

    def wait_ready(self, timeout: float) -> list[Any]:
        """Block until every worker reported ready; their infos, in spawn order."""
        deadline = time.monotonic() + timeout
        infos = []
        for _, conn, name in self._workers[self._ready :]:
            kind, data = self._recv(conn, name, deadline)
            if kind != "ready":
                raise TeamError(f"worker {name} failed before ready:\n{data}")
            infos.append(data)
            self._ready += 1
        return infos

    def go(self, delay: float = 0.3, **data: Any) -> float:
        """Tell every worker to start at ``t0 = now + delay``; returns ``t0``."""
        t0 = time.monotonic() + delay
        for _, conn, _ in self._workers:
            conn.send(("go", {"t0": t0, **data}))
        return t0

    def start(self, ready_timeout: float = 120.0, delay: float = 0.3, **data: Any) -> float:
        self.wait_ready(ready_timeout)
        return self.go(delay, **data)

    def results(
        self, timeout: float, tick: Callable[[], None] | None = None, every: float = 0.05
    ) -> list[Any]:
        """Every worker's result, in spawn order (TeamError if one failed or timed out).

        ``tick`` is called about every ``every`` seconds while waiting (sampling).
        """
        deadline = time.monotonic() + timeout
        results = []
        for _, conn, name in self._workers:
            if tick is not None:
                while not conn.poll(every) and time.monotonic() < deadline:
                    tick()
            kind, data = self._recv(conn, name, deadline)
            if kind != "result":
                raise TeamError(f"worker {name} failed:\n{data}")
            results.append(data)
        return results

    def _recv(
        self, conn: multiprocessing.connection.Connection, name: str, deadline: float
    ) -> tuple[str, Any]:
        if not conn.poll(max(0.0, deadline - time.monotonic())):
            raise TeamError(f"worker {name} did not answer in time")
        try:
            return conn.recv()  # type: ignore[no-any-return]
        except EOFError:
            raise TeamError(f"worker {name} died") from None

    def close(self, *, abort: bool = False) -> None:
        """Reap the workers (at once when ``abort``, else after up to 5 s each)."""
        for process, conn, _ in self._workers:
            process.join(timeout=0 if abort else 5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=2)
            conn.close()
        self._workers = []

    def __enter__(self) -> Team:
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        self.close(abort=kind is not None)
