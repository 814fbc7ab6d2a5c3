"""A front end's widget messages on a kernel subshell (ipykernel >= 7), without a browser.

The test plays the front end through jupyter_client, as JupyterLab >= 4.4 does with
``commsOverSubshells: perCommTarget``: it creates a subshell on the control channel
and sends ``comm_msg`` updates with that ``subshell_id`` in the header, keeping one
update in flight per widget (ipywidgets' throttle: the next goes after the kernel's
``idle`` for the previous) and applying ``update``/``echo_update`` replies the way
ipywidgets' front end does. The peer is a real session on the test relay.
"""

from __future__ import annotations

import contextlib
import queue
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from livewidgets.client import Session

Wait = Callable[..., Any]
Kernel = Any  # conftest.Kernel

pytest.importorskip("ipykernel")
from ipykernel import version_info as ipykernel_version  # noqa: E402

if ipykernel_version < (7,):
    pytest.skip("kernel subshells need ipykernel >= 7", allow_module_level=True)


# Rounds of a browser change and a remote change at (almost) the same time.
ROUNDS = 100


@pytest.fixture(scope="module")
def kernel(
    kernel_factory: Callable[..., list[Kernel]],
    relay_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Kernel]:
    tmp = tmp_path_factory.mktemp("busy-kernel")
    (k,) = kernel_factory(
        1,
        LIVEWIDGETS_URL=relay_url,
        LIVEWIDGETS_HEARTBEAT="0.5",
        LIVEWIDGETS_RUNTIME_DIR=str(tmp / "runtime"),
        LIVEWIDGETS_DATA_DIR=str(tmp / "data"),
    )
    k.run("%load_ext livewidgets\nimport time\nimport ipywidgets as W\nimport livewidgets as lw")
    yield k


class FrontEnd:
    """One widget model as ipywidgets' front end keeps it, talking to a real kernel."""

    def __init__(self, kernel: Kernel, comm_id: str, value: Any, subshell_id: str | None):
        self.kernel = kernel
        self.kc = kernel.kc
        self.comm_id = comm_id
        self.value = value  # what the view shows
        self.subshell_id = subshell_id
        self.in_flight: str | None = None  # msg_id of the update awaiting its idle
        self.expected_echo: str | None = None  # msg_id whose echo_update we wait for
        self.sent = 0

    @staticmethod
    def create_subshell(kernel: Kernel) -> str:
        kc = kernel.kc
        request = kc.session.msg("create_subshell_request", {})
        kc.control_channel.send(request)
        while True:
            reply = kc.control_channel.get_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == request["header"]["msg_id"]:
                assert reply["content"]["status"] == "ok", reply["content"]
                return str(reply["content"]["subshell_id"])

    def send(self, value: Any) -> None:
        """The user moved the view to ``value`` (sent as ipywidgets sends it)."""
        data = {"method": "update", "state": {"value": value}, "buffer_paths": []}
        msg = self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        if self.subshell_id is not None:
            msg["header"]["subshell_id"] = self.subshell_id
        self.kc.shell_channel.send(msg)
        self.value = value
        self.in_flight = self.expected_echo = msg["header"]["msg_id"]
        self.sent += 1

    def pump(self, timeout: float = 0.0) -> bool:
        """Handle one IOPub message if one comes within ``timeout``; False if none."""
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return False
        self.handle(msg)
        return True

    def take_buffered(self) -> bool:
        """Handle this widget's messages that ``Kernel.run`` read and put aside."""
        taken = False
        for msgs in self.kernel._buffered.values():
            for msg in [m for m in msgs if m["msg_type"] in ("comm_msg", "status")]:
                msgs.remove(msg)
                self.handle(msg)
                taken = True
        return taken

    def handle(self, msg: dict[str, Any]) -> None:
        parent = msg.get("parent_header", {}).get("msg_id")
        if msg["msg_type"] == "status":
            if parent == self.in_flight and msg["content"]["execution_state"] == "idle":
                self.in_flight = None
        elif msg["msg_type"] == "comm_msg" and msg["content"]["comm_id"] == self.comm_id:
            data = msg["content"]["data"]
            state = dict(data.get("state", {}))
            if data.get("method") == "echo_update" and self.expected_echo is not None:
                if parent != self.expected_echo:
                    state.pop("value", None)  # an echo older than ours
                else:
                    self.expected_echo = None
            if data.get("method") in ("update", "echo_update") and "value" in state:
                self.value = state["value"]


def test_a_drag_on_a_subshell_reaches_peers_while_a_cell_runs(
    kernel: Kernel, connect: Callable[..., Session], room: str, wait_until: Wait
) -> None:
    """The kernel sleeps 4 s in a cell; slider updates sent to a subshell reach the
    peer session within 2 s each, before the cell ends."""
    peer = connect("alice")
    kernel.run(
        f"%livewidgets connect --room {room} --user bob\n"
        "slider = W.IntSlider(max=1000)\n"
        "lw.share(slider, path='busy/slider').flush()"
    )
    comm_id = kernel.eval("slider.model_id")
    front = FrontEnd(kernel, comm_id, 0, FrontEnd.create_subshell(kernel))
    cell = kernel.submit("print('sleeping', flush=True); time.sleep(4); print('awake')")
    seen = []
    try:
        for msg in kernel.messages(cell):  # until the cell is inside its sleep
            if msg["msg_type"] == "stream" and "sleeping" in msg["content"]["text"]:
                break
        start = time.monotonic()
        for value in (11, 22, 33):
            front.send(value)
            wait_until(lambda v=value: peer.get("busy/slider") == v, 2.0, f"the peer at {value}")
            seen.append(time.monotonic() - start)
            while front.in_flight is not None:
                front.pump(0.5)
    finally:
        assert "awake" in kernel.result(cell, timeout=15)
    assert seen[-1] < 4.0, f"the updates waited for the cell: {seen}"


def test_without_a_subshell_a_change_waits_for_the_cell_and_the_badge_counts_it(
    kernel: Kernel, connect: Callable[..., Session], room: str, wait_until: Wait
) -> None:
    """A front end that sends to the main shell (no subshell_id): the update waits
    for the cell, and meanwhile ConnectionStatus (updated from its own thread) says
    one change is held; after the cell the peer has it and the count is back to 0."""
    peer = connect("alice")
    kernel.run(
        f"%livewidgets connect --room {room} --user bob\n"
        "from livewidgets.jupyter.widgets import ConnectionStatus\n"
        "status = ConnectionStatus(refresh=0.2)\n"
        "slider = W.IntSlider(max=1000)\n"
        "lw.share(slider, path='held/slider').flush()"
    )
    slider_id, status_id = kernel.eval("[slider.model_id, status.model_id]")
    front = FrontEnd(kernel, slider_id, 0, None)
    cell = kernel.submit("print('sleeping', flush=True); time.sleep(3)")
    counts: list[int] = []

    def watch(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "comm_msg" and msg["content"]["comm_id"] == status_id:
            held = msg["content"]["data"].get("state", {}).get("held")
            if held is not None:
                counts.append(held)

    for msg in kernel.messages(cell):
        watch(msg)
        if msg["msg_type"] == "stream" and "sleeping" in msg["content"]["text"]:
            break
    front.send(42)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline and 1 not in counts:
        with contextlib.suppress(queue.Empty):
            watch(kernel.kc.get_iopub_msg(timeout=0.1))
    assert 1 in counts, f"the badge never counted the held change: {counts}"
    assert peer.get("held/slider") != 42, "the change went out during the cell"
    for msg in kernel.messages(cell, timeout=10):
        watch(msg)
    wait_until(lambda: peer.get("held/slider") == 42, message="the peer to get the change")
    wait_until(lambda: kernel.eval("status.held") == 0, message="the held count back to 0")


def test_browser_and_remote_changes_on_two_threads_converge(
    kernel: Kernel, connect: Callable[..., Session], room: str, wait_until: Wait
) -> None:
    """Round after round, the view sends a slider value (handled on a subshell thread)
    while a peer writes another one (applied on the session's I/O thread), a few
    milliseconds apart either way: ipywidgets' per-widget property lock, echo and
    trait notifications run on both threads at once. After each round the view, the
    kernel's trait, the kernel's session and the peer hold the same value."""
    peer = connect("alice")
    kernel.run(
        f"%livewidgets connect --room {room} --user bob\n"
        "slider = W.IntSlider(max=100000)\n"
        "lw.share(slider, path='race/slider', debounce=0).flush()"
    )
    comm_id = kernel.eval("slider.model_id")
    front = FrontEnd(kernel, comm_id, 0, FrontEnd.create_subshell(kernel))
    rng = random.Random(19)
    disagreements = []
    for round_ in range(ROUNDS):
        mine, theirs = 2 * round_ + 1, 2 * round_ + 2  # never equal
        offset = rng.uniform(-0.001, 0.002)
        if offset < 0:
            peer.set("race/slider", theirs)
            time.sleep(-offset)
            front.send(mine)
        else:
            front.send(mine)
            time.sleep(offset)
            peer.set("race/slider", theirs)
        peer.flush(10)
        while front.in_flight is not None:
            front.pump(1.0)

        def settled() -> list[Any] | None:
            while front.pump(0.05):  # until the kernel has been quiet for 50 ms
                pass
            trait, session = kernel.eval("[slider.value, lw.session().get('race/slider')]")
            if front.take_buffered():  # the kernel spoke meanwhile: look again
                return None
            values = [front.value, trait, session, peer.get("race/slider")]
            return values if len(set(values)) == 1 else None

        try:
            wait_until(settled, 2.0, f"round {round_}: view, trait, session and peer to agree")
        except BaseException:
            trait, session = kernel.eval("[slider.value, lw.session().get('race/slider')]")
            disagreements.append(
                (round_, offset, front.value, trait, session, peer.get("race/slider"))
            )
            front.send(2 * ROUNDS + round_)  # start the next round from an agreed value
            while front.in_flight is not None:
                front.pump(1.0)
    assert not disagreements, f"(round, offset, view, trait, session, peer): {disagreements}"
