"""Real kernels sharing widgets through a real relay (jupyter_client, no browser)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from livewidgets.client.session import SessionAPI

Wait = Callable[..., Any]
Kernel = Any  # conftest.Kernel

SETUP = """
%load_ext livewidgets
import json, time
import ipywidgets as W
import livewidgets as lw
from livewidgets.jupyter import share
"""


@pytest.fixture(scope="module")
def kernel_env(relay_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Kernels connect to the test relay ($LIVEWIDGETS_URL) with a short heartbeat."""
    tmp = tmp_path_factory.mktemp("kernels")
    return {
        "LIVEWIDGETS_URL": relay_url,
        "LIVEWIDGETS_HEARTBEAT": "0.5",
        "LIVEWIDGETS_RUNTIME_DIR": str(tmp / "runtime"),
        "LIVEWIDGETS_DATA_DIR": str(tmp / "data"),
    }


@pytest.fixture(scope="module")
def pair(
    kernel_factory: Callable[..., list[Kernel]], kernel_env: dict[str, str]
) -> Iterator[tuple[Kernel, Kernel]]:
    """Kernels A and B with the extension loaded (each test joins its own room)."""
    a, b = kernel_factory(2, **kernel_env)
    for kernel in (a, b):
        kernel.run(SETUP)
    yield a, b


def join(kernel: Kernel, room: str, user: str) -> str:
    """Connect ``kernel`` to ``room`` as ``user``; returns its client id."""
    out = kernel.run(f"%livewidgets connect --room {room} --user {user}")
    assert f"room '{room}' as '{user}'" in out
    return str(kernel.eval("lw.session().client_id"))


def peers(kernel: Kernel) -> dict[str, dict[str, Any]]:
    return dict(kernel.eval("lw.session().presence"))


def test_slider_set_in_one_kernel_is_seen_in_the_other(
    pair: tuple[Kernel, Kernel], room: str, wait_until: Wait
) -> None:
    """share(IntSlider) in A and B; slider.value = 7 in A reaches B's slider."""
    a, b = pair
    join(a, room, "alice")
    a.run("slider = W.IntSlider(); binding = share(slider, path='demo/slider'); binding.flush()")
    join(b, room, "bob")
    b.run("slider = W.IntSlider(value=3); binding = share(slider, path='demo/slider')")
    assert b.eval("slider.value") == 0  # the shared value won on join
    a.run("slider.value = 7")
    wait_until(lambda: b.eval("slider.value") == 7, message="B's slider at 7")
    assert b.eval("binding.writes") == 0  # B never echoed anything back


@pytest.mark.skipif(
    not hasattr(SessionAPI, "text"), reason="session.text() (collaborative text) not available"
)
def test_text_edited_concurrently_in_both_kernels_converges(
    pair: tuple[Kernel, Kernel], room: str, wait_until: Wait
) -> None:
    """Both kernels insert into one shared text at once; both end with the same text
    holding every insert."""
    a, b = pair
    join(a, room, "alice")
    join(b, room, "bob")
    edit = """
t = lw.session().text("notes/shared")
for i in range(40):
    t.insert(0 if i % 2 else len(t.value), {letter!r})
    time.sleep(0.002)
lw.session().flush(10)
"""
    requests = [(k, k.submit(edit.format(letter=ch))) for k, ch in ((a, "a"), (b, "b"))]
    for kernel, msg_id in requests:
        kernel.result(msg_id)

    def converged() -> bool:
        texts = [k.eval("lw.session().text('notes/shared').value") for k in (a, b)]
        return texts[0] == texts[1] and sorted(texts[0]) == sorted("a" * 40 + "b" * 40)

    wait_until(converged, message="both kernels hold the same 80 characters")


def test_busy_kernel_keeps_receiving_updates(
    pair: tuple[Kernel, Kernel], room: str, wait_until: Wait
) -> None:
    """While A sleeps in a cell, B's writes reach A's session and A's widget model:
    the times A recorded them lie inside the sleep."""
    a, b = pair
    a_id = join(a, room, "alice")
    a.run(
        "got = []\n"
        "lw.session().subscribe('busy/x', lambda v, p: got.append((time.monotonic(), v)))\n"
        "slider = W.IntSlider(); share(slider, path='busy/slider').flush()\n"
        "moved = []\n"
        "slider.observe(lambda c: moved.append((time.monotonic(), c['new'])), names='value')\n"
    )
    join(b, room, "bob")
    b.run("slider = W.IntSlider(); share(slider, path='busy/slider')")
    sleep = a.submit(
        "t0 = time.monotonic(); print('sleeping', flush=True); time.sleep(5); t1 = time.monotonic()"
    )
    for msg in a.messages(sleep):  # wait until the cell is inside its sleep
        if msg["msg_type"] == "stream" and "sleeping" in msg["content"]["text"]:
            break
    wait_until(lambda: peers(b).get(a_id, {}).get("kernel") == "busy", message="B sees A busy")
    b.run("lw.session().set('busy/x', 42); slider.value = 9")
    a.result(sleep, timeout=15)
    t0, t1 = a.eval("[t0, t1]")
    got, moved = a.eval("got"), a.eval("moved")
    assert any(v == 42 and t0 < t < t1 for t, v in got), (t0, t1, got)
    assert any(v == 9 and t0 < t < t1 for t, v in moved), (t0, t1, moved)
    wait_until(lambda: peers(b).get(a_id, {}).get("kernel") == "idle", message="A idle again")


def _carol(
    kernel_factory: Callable[..., list[Kernel]], kernel_env: dict[str, str], room: str
) -> tuple[Kernel, str]:
    (carol,) = kernel_factory(1, **kernel_env)
    carol.run(SETUP)
    return carol, join(carol, room, "carol")


def test_killed_kernel_leaves_presence(
    pair: tuple[Kernel, Kernel],
    kernel_factory: Callable[..., list[Kernel]],
    kernel_env: dict[str, str],
    room: str,
    wait_until: Wait,
    heartbeat_timeout: float,
) -> None:
    """SIGKILL a kernel: its peer sees it leave presence within the heartbeat timeout."""
    _, b = pair
    carol, carol_id = _carol(kernel_factory, kernel_env, room)
    join(b, room, "bob")
    wait_until(lambda: carol_id in peers(b), message="B sees carol")
    killed = time.monotonic()
    carol.km.shutdown_kernel(now=True)  # SIGKILL: no goodbye from the kernel
    wait_until(lambda: carol_id not in peers(b), message="carol gone from B's presence")
    assert time.monotonic() - killed < heartbeat_timeout + 1.0


def test_frozen_kernel_leaves_presence_after_the_heartbeat_timeout(
    pair: tuple[Kernel, Kernel],
    kernel_factory: Callable[..., list[Kernel]],
    kernel_env: dict[str, str],
    room: str,
    wait_until: Wait,
    heartbeat_timeout: float,
) -> None:
    """SIGSTOP a kernel (its socket stays open but silent): the relay's heartbeat drops it."""
    _, b = pair
    carol, carol_id = _carol(kernel_factory, kernel_env, room)
    join(b, room, "bob")
    wait_until(lambda: carol_id in peers(b), message="B sees carol")
    pid = carol.km.provisioner.pid
    assert pid is not None and Path(f"/proc/{pid}").exists()
    os.kill(pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        wait_until(lambda: carol_id not in peers(b), message="carol dropped by the heartbeat")
        assert time.monotonic() - frozen < heartbeat_timeout + 1.0
    finally:
        os.kill(pid, signal.SIGCONT)
        carol.km.shutdown_kernel(now=True)
