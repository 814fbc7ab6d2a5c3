"""Fixtures for the Jupyter layer: a relay on a background thread, sessions, real kernels.

Blocking code (threaded sessions, jupyter_client) runs in these tests, so the relay
lives on its own event loop thread instead of the test's loop. Waits poll a
condition with a deadline (the ``wait_until`` fixture), scaled by
``LIVEWIDGETS_TEST_TIMEOUT_FACTOR`` (the ``timeout`` fixture). Helpers are handed
out as fixtures because tests/jupyter is not a package (no relative imports).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from jupyter_client.manager import KernelManager

import livewidgets
from livewidgets.client import Session
from livewidgets.relay import Relay

T = TypeVar("T")

FACTOR = float(os.environ.get("LIVEWIDGETS_TEST_TIMEOUT_FACTOR", "1"))
TIMEOUT = 10.0 * FACTOR
# The relay's heartbeat in these tests: a silent peer is dropped within PING + PONG.
RELAY_PING = 0.5
RELAY_PONG = 1.0
# Client session options for in-process sessions: fast heartbeat and backoff.
FAST: dict[str, Any] = {"heartbeat_interval": 0.5, "heartbeat_timeout": 1.0}


def wait_until(
    predicate: Callable[[], T], timeout: float = TIMEOUT, message: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.1f} s waiting for {message}")
        time.sleep(0.01)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    """``wait_until(predicate, timeout=TIMEOUT, message=...)``: poll with a deadline."""
    return wait_until


@pytest.fixture
def timeout() -> float:
    """The basic wait in seconds (scaled by LIVEWIDGETS_TEST_TIMEOUT_FACTOR)."""
    return TIMEOUT


class ThreadRelay:
    """A real relay on 127.0.0.1 (port 0) running on its own event loop thread."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="test-relay", daemon=True
        )
        self._thread.start()
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        self.relay = Relay(**options)
        self.run(self.relay.start())
        self.url = self.relay.url

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def stop(self) -> None:
        self.run(self.relay.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture
def heartbeat_timeout() -> float:
    """Longest time the test relay takes to drop a silent peer."""
    return RELAY_PING + RELAY_PONG


@pytest.fixture(scope="session")
def relay_url() -> Iterator[str]:
    """URL of one relay (memory store, short heartbeat) shared by the Jupyter tests."""
    relay = ThreadRelay(ping_interval=RELAY_PING, ping_timeout=RELAY_PONG)
    yield relay.url
    relay.stop()


@pytest.fixture
def thread_relay() -> Iterator[Callable[..., ThreadRelay]]:
    """``thread_relay(**Relay options)``: one more relay for this test (e.g. with a
    SecurityPolicy), stopped at the end."""
    started: list[ThreadRelay] = []

    def start(**options: Any) -> ThreadRelay:
        relay = ThreadRelay(**options)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def room() -> str:
    """A fresh room name per test (tests share the relay, never a room)."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def connect(relay_url: str, room: str) -> Iterator[Callable[..., Session]]:
    """``connect(user="a", **options)``: a session in this test's room, closed at the end."""
    sessions: list[Session] = []

    def open_session(user: str = "user", **options: Any) -> Session:
        options = {**FAST, "timeout": TIMEOUT, **options}
        session = livewidgets.connect(relay_url, options.pop("room", room), user, **options)
        sessions.append(session)
        return session

    yield open_session
    for session in sessions:
        # Let the last writes land first: closing with writes pending is not under test.
        with contextlib.suppress(Exception):
            session.flush(TIMEOUT)
        session.close()


# --- real kernels ---------------------------------------------------------------------------


class KernelFailed(AssertionError):
    """Code run in a test kernel raised; the message holds the kernel's traceback."""


class Kernel:
    """A real ipykernel driven through jupyter_client (blocking channels)."""

    def __init__(self, km: KernelManager) -> None:
        self.km = km
        self.kc = km.client()
        self.kc.start_channels()
        # iopub messages read while waiting for another request, by parent msg_id.
        self._buffered: dict[str, list[dict[str, Any]]] = {}

    def wait_ready(self) -> None:
        self.kc.wait_for_ready(timeout=3 * TIMEOUT)

    def submit(self, code: str) -> str:
        """Start running ``code``; returns the request id for :meth:`result`."""
        return str(self.kc.execute(code, store_history=True))

    def messages(self, msg_id: str, timeout: float = TIMEOUT) -> Iterator[dict[str, Any]]:
        """The iopub messages of request ``msg_id`` as they come, until it is idle."""
        deadline = time.monotonic() + timeout
        while True:
            pending = self._buffered.get(msg_id)
            if pending:
                msg = pending.pop(0)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"kernel request {msg_id} not idle after {timeout} s")
                try:
                    msg = self.kc.get_iopub_msg(timeout=min(remaining, 0.5))
                except queue.Empty:
                    continue
                parent = msg.get("parent_header", {}).get("msg_id")
                if parent != msg_id:
                    self._buffered.setdefault(parent, []).append(msg)
                    continue
            yield msg
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return

    def result(self, msg_id: str, timeout: float = TIMEOUT) -> str:
        """The stdout of request ``msg_id`` once it finished; KernelFailed on an error."""
        out: list[str] = []
        for msg in self.messages(msg_id, timeout):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise KernelFailed("\n".join([*content["traceback"], *out]))
        self._buffered.pop(msg_id, None)
        return "".join(out)

    def run(self, code: str, timeout: float = TIMEOUT) -> str:
        """Run ``code`` to the end; returns its stdout."""
        return self.result(self.submit(code), timeout)

    def eval(self, expression: str, timeout: float = TIMEOUT) -> Any:
        """The JSON value of ``expression`` in the kernel."""
        out = self.run(f"import json as _j; print(_j.dumps({expression}))", timeout)
        return json.loads(out.strip().splitlines()[-1])

    def shutdown(self) -> None:
        self.kc.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel_factory() -> Iterator[Callable[..., list[Kernel]]]:
    """``kernel_factory(n, **env)``: start n kernels in parallel (their env on top of
    ours), ready to run code; every kernel started is shut down at the end."""
    started: list[Kernel] = []

    def start(count: int = 1, **env: str) -> list[Kernel]:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        managers = []
        for _ in range(count):
            km = KernelManager(kernel_name="python3")
            km.start_kernel(env=full_env)
            managers.append(km)
        kernels = [Kernel(km) for km in managers]
        started.extend(kernels)
        for kernel in kernels:
            kernel.wait_ready()
        return kernels

    yield start
    for kernel in started:
        kernel.shutdown()


class _Attached:
    """Stands for a KernelManager of a kernel someone else started (a Hub user's
    server's): the test only drives it, never shuts it down."""

    has_kernel = False

    def __init__(self, connection_file: str) -> None:
        from jupyter_client import BlockingKernelClient

        self._client = BlockingKernelClient(connection_file=connection_file)
        self._client.load_connection_file()

    def client(self) -> Any:
        return self._client


@pytest.fixture(scope="module")
def attach_kernel() -> Callable[[str], Kernel]:
    """``attach_kernel(connection_file)``: a :class:`Kernel` for a running kernel."""

    def attach(connection_file: str) -> Kernel:
        kernel = Kernel(_Attached(connection_file))  # type: ignore[arg-type]
        kernel.wait_ready()
        return kernel

    return attach


@pytest.fixture
def runtime_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Runtime and data dirs in tmp_path (set here and returned for kernels): nothing
    touches the user's real local relay."""
    env = {
        "LIVEWIDGETS_RUNTIME_DIR": str(tmp_path / "runtime"),
        "LIVEWIDGETS_DATA_DIR": str(tmp_path / "data"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LIVEWIDGETS_URL", raising=False)
    return env
