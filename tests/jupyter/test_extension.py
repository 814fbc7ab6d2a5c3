"""%load_ext livewidgets: the %livewidgets magic, cell presence, and the local relay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ipywidgets as W
import pytest
from IPython.core.error import UsageError
from IPython.core.events import EventManager, available_events

import livewidgets
from livewidgets import local_relay
from livewidgets.auth import verify_token
from livewidgets.client import Session
from livewidgets.jupyter import extension, share
from livewidgets.jupyter.widgets import Presence
from livewidgets.jupyter.widgets.presence import activity

Connect = Callable[..., Session]
Wait = Callable[..., Any]


class FakeShell:
    """Just what the extension uses of an IPython shell (a real EventManager)."""

    def __init__(self) -> None:
        self.events = EventManager(self, available_events)
        self.magics: dict[str, Callable[[str], None]] = {}
        self.execution_count = 1

    def register_magic_function(self, func: Any, magic_kind: str, magic_name: str) -> None:
        assert magic_kind == "line"
        self.magics[magic_name] = func

    def magic(self, line: str) -> None:
        self.magics["livewidgets"](line)

    def start_cell(self, cell_id: str | None = None) -> None:
        self.events.trigger("pre_run_cell", SimpleNamespace(raw_cell="", cell_id=cell_id))

    def end_cell(self) -> None:
        self.events.trigger("post_run_cell", SimpleNamespace(execution_count=self.execution_count))
        self.execution_count += 1


@pytest.fixture
def shell() -> Iterator[FakeShell]:
    """A shell with the extension loaded; disconnected and unloaded afterwards."""
    shell = FakeShell()
    livewidgets.load_ipython_extension(shell)
    yield shell
    extension.disconnect()
    livewidgets.unload_ipython_extension(shell)


def test_load_registers_the_magic_and_cell_hooks(shell: FakeShell) -> None:
    """Loading registers %livewidgets and the pre/post_run_cell hooks, once."""
    livewidgets.load_ipython_extension(shell)  # loading twice changes nothing
    assert "livewidgets" in shell.magics
    assert shell.events.callbacks["pre_run_cell"] == [extension._pre_run_cell]
    assert shell.events.callbacks["post_run_cell"] == [extension._post_run_cell]


def test_connect_prints_one_line_and_sets_the_kernel_session(
    shell: FakeShell, relay_url: str, room: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """connect URL --room --user joins, prints room/user/URL, and lw.session() is it."""
    shell.magic(f"connect {relay_url} --room {room} --user alice --heartbeat 0.5")
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert f"room '{room}'" in out and "'alice'" in out and relay_url in out
    session = livewidgets.session()
    assert (session.room, session.user, session.connection_state) == (room, "alice", "connected")


def test_connect_defaults_come_from_the_environment(
    shell: FakeShell,
    relay_url: str,
    room: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No URL: $LIVEWIDGETS_URL; room from $LIVEWIDGETS_ROOM; user from $JUPYTERHUB_USER."""
    monkeypatch.setenv("LIVEWIDGETS_URL", relay_url)
    monkeypatch.setenv("LIVEWIDGETS_ROOM", room)
    monkeypatch.setenv("JUPYTERHUB_USER", "hubuser")
    monkeypatch.setenv("LIVEWIDGETS_NAME", "Hub User")
    shell.magic("connect")
    assert "$LIVEWIDGETS_URL" in capsys.readouterr().out
    session = livewidgets.session()
    assert (session.room, session.user) == (room, "hubuser")
    assert session.my_presence["name"] == "Hub User"


def test_cells_publish_busy_and_idle_in_presence(
    shell: FakeShell, relay_url: str, room: str, connect: Connect, wait_until: Wait
) -> None:
    """Peers see kernel busy with the running cell's number, then idle."""
    shell.magic(f"connect {relay_url} --room {room} --user alice")
    me = livewidgets.session().client_id
    peer = connect("bob")

    def mine() -> dict[str, Any]:
        return peer.presence.get(me, {})

    wait_until(lambda: mine().get("kernel") == "busy", message="busy in the connect cell")
    shell.end_cell()
    wait_until(lambda: mine().get("kernel") == "idle", message="idle after the connect cell")
    shell.execution_count = 5
    shell.start_cell()
    wait_until(lambda: mine().get("kernel") == "busy" and mine().get("cell") == 5, message="busy")
    shell.end_cell()
    wait_until(lambda: mine().get("kernel") == "idle" and mine().get("cell") == 5, message="idle")


def test_presence_says_which_notebook_and_cell_run_and_since_when(
    shell: FakeShell,
    relay_url: str,
    room: str,
    connect: Connect,
    wait_until: Wait,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The notebook (as jupyter_server names the kernel's session), the cell's id and
    since when it runs; a Presence widget of a peer says it in words."""
    monkeypatch.setenv("JPY_SESSION_NAME", "work/analysis.ipynb")
    shell.magic(f"connect {relay_url} --room {room} --user alice")
    shell.end_cell()
    me = livewidgets.session().client_id
    peer = connect("bob")

    def mine() -> dict[str, Any]:
        return peer.presence.get(me, {})

    started = time.time()
    shell.start_cell(cell_id="c0ffee-12")
    wait_until(lambda: mine().get("cell_id") == "c0ffee-12", message="the running cell's id")
    state = mine()
    assert (state["kernel"], state["notebook"]) == ("busy", "work/analysis.ipynb")
    assert started - 1 <= state["busy_since"] <= time.time()
    words = activity(state, now=state["busy_since"] + 40)
    assert words == "running a cell in analysis.ipynb, busy 40 s"
    bar = Presence(session=peer, refresh=0)
    entry = next(p for p in bar.peers if p["client_id"] == me)
    bar.close()
    assert entry["activity"].startswith("running a cell in analysis.ipynb, busy ")
    shell.end_cell()
    wait_until(lambda: mine().get("kernel") == "idle", message="idle again")
    assert mine().get("busy_since") is None and activity(mine()) == "idle"


def test_status_and_disconnect(
    shell: FakeShell, relay_url: str, room: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """status describes the connection; disconnect closes it and lw.session() says so."""
    shell.magic("status")
    assert "not connected" in capsys.readouterr().out
    shell.magic(f"connect {relay_url} --room {room} --user alice")
    session = livewidgets.session()
    capsys.readouterr()
    shell.magic("status")
    out = capsys.readouterr().out
    assert "connected" in out and room in out and "version" in out
    shell.magic("disconnect")
    assert "disconnected" in capsys.readouterr().out
    assert session.connection_state == "closed"
    with pytest.raises(RuntimeError, match="livewidgets connect"):
        livewidgets.session()


def test_connecting_again_moves_shared_widgets(
    shell: FakeShell, relay_url: str, room: str, connect: Connect, wait_until: Wait
) -> None:
    """A new connect closes the old session; widgets shared on it follow to the new one."""
    shell.magic(f"connect {relay_url} --room {room}-old --user alice")
    slider = W.IntSlider(value=3)
    share(slider, path="x")
    shell.magic(f"connect {relay_url} --room {room} --user alice")
    peer = connect("bob")
    wait_until(lambda: peer.get("x") == 3, message="slider value in the new room")
    peer.set("x", 8)
    wait_until(lambda: slider.value == 8, message="slider follows the new room")


def test_usage_errors_do_not_kill_the_kernel(
    shell: FakeShell, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad arguments raise UsageError; -h prints help and returns."""
    with pytest.raises(UsageError, match="unrecognized arguments"):
        shell.magic("connect --bogus")
    with pytest.raises(UsageError, match="invalid choice"):
        shell.magic("relay reboot")
    shell.magic("-h")
    assert "connect" in capsys.readouterr().out


def test_unreachable_relay_is_a_clear_error(shell: FakeShell, room: str) -> None:
    """connect to a closed port fails after --timeout naming the room and the URL."""
    url = "ws://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(ConnectionError, match=f"could not join room '{room}' on {url}"):
        shell.magic(f"connect {url} --room {room} --timeout 0.5")


# --- the local relay ----------------------------------------------------------------------


def _relay_pids(store_dir: str) -> list[int]:
    """Pids of relay processes whose store lies in ``store_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if (
            state != "Z"
            and b"livewidgets.cli" in args
            and any(store_dir.encode() in a for a in args)
        ):
            pids.append(int(proc.name))
    return pids


def _stop(pid: int) -> None:
    """SIGTERM a relay this test caused to start, and wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while local_relay._pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture
def local_env(runtime_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Runtime/data dirs in tmp; any relay started there is stopped (by pid) at the end."""
    yield runtime_env
    for pid in _relay_pids(runtime_env["LIVEWIDGETS_DATA_DIR"]):
        _stop(pid)


def test_relay_magic_starts_reports_and_stops_the_local_relay(
    shell: FakeShell, local_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """relay start writes the runtime file; status says running; stop ends it."""
    shell.magic("relay status")
    assert "no local relay" in capsys.readouterr().out
    shell.magic("relay start")
    info = local_relay.read_info()
    assert info is not None and local_relay.is_alive(info)
    assert Path(local_env["LIVEWIDGETS_RUNTIME_DIR"], "livewidgets-relay.json").exists()
    assert info.store.endswith(f"{local_env['LIVEWIDGETS_DATA_DIR']}/livewidgets-rooms.db")
    shell.magic("relay start")  # already running: the same one
    assert local_relay.read_info() == info
    capsys.readouterr()
    shell.magic("relay status")
    assert f"{info.url} pid {info.pid}, running" in capsys.readouterr().out
    shell.magic("relay stop")
    assert f"pid {info.pid}" in capsys.readouterr().out
    assert local_relay.read_info() is None and not local_relay._pid_running(info.pid)


def test_stale_runtime_file_is_replaced_without_signalling_its_pid(
    local_env: dict[str, str],
) -> None:
    """A file whose pid is not a relay (pid reuse) is stale: a new relay replaces it,
    and the unrelated process is left alone."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        runtime = Path(local_env["LIVEWIDGETS_RUNTIME_DIR"])
        runtime.mkdir(parents=True, exist_ok=True)
        stale = {"url": "ws://127.0.0.1:9", "pid": bystander.pid}
        (runtime / "livewidgets-relay.json").write_text(json.dumps(stale))
        info = local_relay.ensure_relay()
        assert info.pid != bystander.pid and local_relay.is_alive(info)
        assert bystander.poll() is None
        assert local_relay.stop_relay() == info
    finally:
        bystander.kill()
        bystander.wait()


def test_two_kernels_without_url_share_one_local_relay(
    kernel_factory: Callable[..., list[Any]],
    local_env: dict[str, str],
    room: str,
    wait_until: Wait,
) -> None:
    """Two kernels connecting at once with no URL end on one relay: same runtime file,
    same URL, one relay process; each signs its own token with the relay's secret; they
    see each other in the room and a value written in one reaches the other."""
    kernels = kernel_factory(2, **local_env)
    code = f"%load_ext livewidgets\n%livewidgets connect --room {room} --heartbeat 0.5"
    requests = [(k, k.submit(code)) for k in kernels]  # both connect concurrently
    outputs = [k.result(msg_id, timeout=30) for k, msg_id in requests]
    info = local_relay.read_info()
    assert info is not None
    for out in outputs:
        assert f"on {info.url} (local relay)" in out
    assert _relay_pids(local_env["LIVEWIDGETS_DATA_DIR"]) == [info.pid]
    ids = [k.eval("__import__('livewidgets').session().client_id") for k in kernels]
    wait_until(
        lambda: ids[1] in kernels[0].eval("list(__import__('livewidgets').session().presence)"),
        message="kernel B in kernel A's presence",
    )
    assert info.secret
    tokens = [k.eval("__import__('livewidgets').session()._engine.token") for k in kernels]
    assert all(tokens) and tokens[0] != tokens[1]
    for token in tokens:
        assert verify_token(info.secret.encode(), token).room == room
    kernels[0].run("__import__('livewidgets').session().set('from/a', 42).result(10)")
    wait_until(
        lambda: kernels[1].eval("__import__('livewidgets').session().get('from/a')") == 42,
        message="kernel A's write in kernel B",
    )
