"""Two users through a real JupyterHub (docs/deploy.md "JupyterHub"): the relay runs as
the Hub's managed service; the users' servers and kernels are started through the
Hub's REST API; the kernels connect with no token and no URL of their own, share a
slider and see each other under their Hub names; a member of ``teachers`` may reset
the room and a student may not; revoking a user's token disconnects them."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hub_setup import Hub, hub_available

TIMEOUT = 10.0
Kernel = Any  # conftest.Kernel

pytestmark = pytest.mark.skipif(hub_available() is not None, reason=str(hub_available()))

SETUP = """
%load_ext livewidgets
import ipywidgets as W
import livewidgets as lw
from livewidgets.jupyter import share
errors = []
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    hub = Hub(tmp_path_factory.mktemp("hub"))
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def kernels(hub: Hub, attach_kernel: Callable[[str], Kernel]) -> Iterator[dict[str, Kernel]]:
    """Alice (in the Hub group ``teachers``) and Bob, each with a server and a kernel,
    connected to room ``lesson`` with ``%livewidgets connect`` and nothing else."""
    started: dict[str, Kernel] = {}
    for user in ("alice", "bob"):
        hub.start_server(user)
        kernel = attach_kernel(str(hub.start_kernel(user)))
        kernel.run(SETUP)
        started[user] = kernel
    try:
        for user, kernel in started.items():
            out = kernel.run("%livewidgets connect --room lesson", timeout=3 * TIMEOUT)
            assert f"as '{user}'" in out, out
            kernel.run("session = lw.session(); session.on('error', errors.append)")
        yield started
    finally:
        for kernel in started.values():
            kernel.kc.stop_channels()


def test_hub_users_share_a_slider_with_no_token_and_see_their_hub_names(
    kernels: dict[str, Kernel], hub: Hub, wait_until: Callable[..., Any]
) -> None:
    alice, bob = kernels["alice"], kernels["bob"]
    status = alice.run("%livewidgets status")
    assert "JupyterHub service 'livewidgets'" in status, status
    assert f"ws://127.0.0.1:{hub.proxy_port}/services/livewidgets/" in status
    alice.run("slider = W.IntSlider(); binding = share(slider, path='demo/slider')")
    bob.run("slider = W.IntSlider(); binding = share(slider, path='demo/slider')")
    alice.run("slider.value = 42")
    wait_until(lambda: bob.eval("slider.value") == 42, message="Bob's slider at 42")
    bob.run("slider.value = 7")
    wait_until(lambda: alice.eval("slider.value") == 7, message="Alice's slider at 7")

    def names(kernel: Kernel) -> list[str]:
        return sorted(p["user"] for p in kernel.eval("lw.session().presence").values())

    wait_until(lambda: names(alice) == ["bob"], message="Alice sees Bob")
    wait_until(lambda: names(bob) == ["alice"], message="Bob sees Alice")
    assert alice.eval("lw.session().role") == "admin"  # group teachers
    assert bob.eval("lw.session().role") == "write"


def test_the_relay_answers_health_checks_under_its_service_prefix(hub: Hub) -> None:
    url = f"{hub.public}/services/livewidgets/healthz"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        assert json.loads(response.read())["status"] == "ok"


def test_a_teacher_may_reset_the_room_and_a_student_may_not(
    kernels: dict[str, Kernel], wait_until: Callable[..., Any]
) -> None:
    alice, bob = kernels["alice"], kernels["bob"]
    alice.run("s = lw.session(); s.set('board', 'kept'); s.flush()")
    wait_until(lambda: bob.eval("lw.session().get('board')") == "kept", message="the board")
    bob.run("lw.session().reset_room()")
    wait_until(
        lambda: any(e.get("code") == "forbidden" for e in bob.eval("errors")),
        message="Bob's reset refused",
    )
    assert alice.eval("lw.session().get('board')") == "kept"
    alice.run("lw.session().reset_room()")
    wait_until(lambda: bob.eval("lw.session().get('board')") is None, message="the reset")


def test_revoking_a_users_token_disconnects_them(
    kernels: dict[str, Kernel], hub: Hub, wait_until: Callable[..., Any]
) -> None:
    """The Hub deletes Bob's server token: within the relay's recheck interval (1 s
    here) his connection is closed with 4006 and his session stops; Alice stays."""
    bob = kernels["bob"]
    hub.request("DELETE", f"/users/bob/tokens/{hub.server_token_id('bob')}")
    wait_until(
        lambda: bob.eval("session.connection_state") == "closed",
        timeout=3 * TIMEOUT,
        message="Bob disconnected",
    )
    assert any(e.get("code") == "auth_revoked" for e in bob.eval("errors"))
    assert kernels["alice"].eval("session.connection_state") == "connected"
