"""Processes and pages for the browser tests: a relay, JupyterLab, Chromium, notebooks.

Everything here starts real processes on 127.0.0.1 and stops only those it started,
by PID. Waits poll a condition until a deadline (``wait_for``); timeouts scale with
``LIVEWIDGETS_TEST_TIMEOUT_FACTOR``. The recipe (flags, settings, readiness) is the
one in shared/BROWSER_TESTING.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nbformat

T = TypeVar("T")

FACTOR = float(os.environ.get("LIVEWIDGETS_TEST_TIMEOUT_FACTOR", "1"))
# The basic wait for something to show up in a page (seconds).
TIMEOUT = 15.0 * FACTOR
# The same for Playwright, which counts in milliseconds (pages load slower: x4).
MS = 4000 * TIMEOUT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Without this Chromium still looks up Google hosts.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"

_LISTENING = re.compile(r"listening on (ws://127\.0\.0\.1:(\d+))")


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline."""


def wait_for(predicate: Callable[[], T], timeout: float = TIMEOUT, message: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"timed out after {timeout:.1f} s waiting for {message} (last: {last!r})"
            )
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM our own child, SIGKILL after ``grace`` s; always reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(grace)


# --- the relay ---------------------------------------------------------------------------


class RelayProcess:
    """``python -m livewidgets.cli relay`` on 127.0.0.1 with a SQLite store.

    The first start picks a free port (``--port 0``); :meth:`restart` reuses that
    port and the store, as a relay restarted by an operator would.
    """

    def __init__(self, store: Path, log: Path) -> None:
        self.store = store
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None, "already running"
        command = [
            sys.executable,
            "-m",
            "livewidgets.cli",
            "relay",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            f"sqlite:///{self.store}",
        ]
        start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

        def listening() -> int | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the relay exited early:\n{self.log.read_text()[-2000:]}")
            with open(self.log, "rb") as f:
                f.seek(start)
                match = _LISTENING.search(f.read().decode(errors="replace"))
            return int(match.group(2)) if match else None

        # A restart on the same port may have to wait for the old socket to go.
        self.port = wait_for(listening, 3 * TIMEOUT, "the relay to listen")

    def stop(self) -> None:
        """SIGTERM (a graceful stop: clients are closed with 1001), wait until gone."""
        if self.proc is not None:
            _stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


# --- JupyterLab --------------------------------------------------------------------------


NOTIFICATION_SETTINGS = {"fetchNews": "false", "checkForUpdates": False}


def isolated_jupyter_env(base: Path) -> dict[str, str]:
    """Environment for a Jupyter server whose config, runtime files, settings and
    workspaces live under ``base``, with the news and update checks off."""
    settings = base / "lab-settings"
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps(NOTIFICATION_SETTINGS)
    )
    return {
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "PYTHONUNBUFFERED": "1",
    }


class LabServer:
    """``jupyter lab`` on 127.0.0.1 with a token, a temp root and temp settings."""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base = base
        self.root = base / "root"
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.log = base / "jupyterlab.log"
        self._extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def page_url(self, path: str) -> str:
        """``path`` on this server with the token (``/lab/workspaces/x``, ``/tree``...)."""
        sep = "&" if "?" in path else "?"
        return f"{self.url}{path}{sep}token={self.token}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **isolated_jupyter_env(self.base), **self._extra_env}
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.news_url=",
            "--ServerApp.terminals_enabled=False",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
            )
        wait_for(self._ready, 6 * TIMEOUT, "JupyterLab to answer /api/status")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early:\n{self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(self.page_url("/api/status"), timeout=2) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def api(self, method: str, path: str) -> Any:
        """Call the REST API with the token; the decoded JSON answer (None if empty)."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method in ("POST", "PUT") else None,
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def stop(self) -> None:
        """``POST /api/shutdown`` (kernels go with it), then SIGTERM our PID if needed."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError, urllib.error.URLError):
            self.api("POST", "/api/shutdown")
        try:
            self.proc.wait(10 * FACTOR)
        except subprocess.TimeoutExpired:
            _stop_process(self.proc)
        self.proc = None

    def write_notebook(self, name: str, cells: list[str]) -> str:
        """A notebook of code cells in the root; returns its path relative to the root."""
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "display_name": "Python 3",
            "language": "python",
            "name": "python3",
        }
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        nbformat.write(nb, self.root / name)
        return name


# --- notebooks in a page -------------------------------------------------------------------


def connect_cell(room: str, user: str, name: str) -> str:
    return f"%load_ext livewidgets\n%livewidgets connect --room {room} --user {user} --name {name}"


WIDGETS_CELL = """\
import ipywidgets as W
import livewidgets as lw
from livewidgets.jupyter import share
from livewidgets.jupyter.widgets import ConnectionStatus, Presence, SharedText

level = W.IntSlider(value=10, min=0, max=100, description="Level")
share(level, path="e2e/level")
notes = SharedText("e2e/notes", rows=4, placeholder="Shared notes: type here")
W.VBox([ConnectionStatus(), Presence(), level, notes])
"""

# A fuller room for the renders: a simulated peer (Grace) votes, chats, writes in the
# notes and leaves her cursor there, so every widget has something to show.
GALLERY_CELL = """\
from livewidgets.jupyter.extension import relay_url
from livewidgets.jupyter.widgets import Chat, Poll, StateInspector

grace = lw.connect(relay_url(), lw.session().room, "grace", name="Grace Hopper")
poll = Poll("e2e/poll", "Which sort is stable?", ["Quicksort", "Merge sort", "Heapsort"])
chat = Chat("e2e/chat")
Poll(poll.path, poll.question, poll.options, session=grace).vote("Merge sort")
Chat(chat.path, session=grace).send("Hi! I think merge sort is stable.")
text = grace.text("e2e/notes")
text.insert(0, "Agenda\\n- pick a date for the demo\\n- book a room\\n")
text.set_cursor(len("Agenda\\n- pick a date"))
grace.flush(10)
poll.vote("Merge sort")
chat.send("Agreed, and heapsort is not.")
W.VBox([poll, chat, StateInspector("e2e")])
"""


def notebook_cells(room: str, user: str, name: str, *extra: str) -> list[str]:
    """The test notebook: connect, then the shared widgets (and ``extra`` cells)."""
    return [connect_cell(room, user, name), WIDGETS_CELL, *extra]


# JavaScript run in the page (window.jupyterapp comes from expose_app_in_browser).
_OPEN_JS = """
async ([path, mode]) => {
  const app = window.jupyterapp;
  const widget = await app.commands.execute('docmanager:open',
      {path, factory: 'Notebook', options: mode ? {mode} : undefined});
  await widget.context.ready;
  await widget.sessionContext.ready;
  app.shell.activateById(widget.id);
  return widget.id;
}
"""

_RUN_ALL_JS = """
async (id) => {
  const app = window.jupyterapp;
  app.shell.activateById(id);
  await app.commands.execute('notebook:run-all-cells');
}
"""

_CELL_STATE_JS = """
(id) => {
  const app = window.jupyterapp;
  let panel = null;
  for (const w of app.shell.widgets('main')) if (w.id === id) panel = w;
  if (panel === null) return null;
  const cells = panel.content.widgets;
  return {
    running: cells.filter((c) => c.model.executionState === 'running').length,
    unrun: cells.filter((c) => c.model.type === 'code' && c.model.executionCount === null).length,
  };
}
"""

_SHUTDOWN_JS = """
async (id) => {
  const app = window.jupyterapp;
  for (const w of app.shell.widgets('main')) {
    if (w.id !== id) continue;
    await w.sessionContext.shutdown();
    w.dispose();
  }
}
"""

_THEME_JS = """
async (theme) => { await window.jupyterapp.commands.execute('apputils:change-theme', {theme}); }
"""


class Notebook:
    """One notebook open in a page: DOM queries are scoped to its panel."""

    def __init__(self, page: Any, panel_id: str, path: str) -> None:
        self.page = page
        self.panel_id = panel_id
        self.path = path
        self.panel = page.locator(f'[id="{panel_id}"]')

    def run_all(self) -> None:
        """Run every cell and wait until all finished (fails on an error output)."""
        self.page.evaluate(_RUN_ALL_JS, self.panel_id)
        wait_for(
            lambda: (
                (s := self.page.evaluate(_CELL_STATE_JS, self.panel_id))
                and s["running"] == 0
                and s["unrun"] == 0
            ),
            3 * TIMEOUT,
            f"the cells of {self.path} to finish",
        )
        errors = self.panel.locator('[data-mime-type="application/vnd.jupyter.error"]')
        if errors.count():
            raise AssertionError(f"{self.path} failed:\n{errors.first.inner_text()}")

    def widget(self, css: str) -> Any:
        """The first element matching ``css`` in this notebook's outputs."""
        return self.panel.locator(f".jp-OutputArea {css}").first

    def shutdown(self) -> None:
        """Shut the kernel down and close the notebook (as the user's UI would)."""
        self.page.evaluate(_SHUTDOWN_JS, self.panel_id)


def open_notebook(page: Any, path: str, mode: str | None = None) -> Notebook:
    """Open ``path`` in the page's JupyterLab (``mode``: e.g. "split-right") and wait
    for its kernel."""
    panel_id = page.evaluate(_OPEN_JS, [path, mode])
    return Notebook(page, str(panel_id), path)


def open_lab(context: Any, lab: LabServer) -> Any:
    """A new page showing JupyterLab in a workspace of its own, ready for commands."""
    page = context.new_page()
    page.goto(lab.page_url(f"/lab/workspaces/e2e-{uuid.uuid4().hex[:10]}"))
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.started !== undefined", timeout=MS
    )
    page.evaluate(
        "async () => { await window.jupyterapp.started; await window.jupyterapp.restored; }"
    )
    return page


_CURRENT_JS = """
async () => {
  const app = window.jupyterapp;
  await app.started;
  await app.restored;
  // The notebook named in the URL opens after the app is restored.
  const deadline = Date.now() + 60000;
  let widget = app.shell.currentWidget;
  while (!widget || !widget.context) {
    if (Date.now() > deadline) throw new Error('no document opened in the page');
    await new Promise((resolve) => setTimeout(resolve, 50));
    widget = app.shell.currentWidget;
  }
  await widget.context.ready;
  await widget.sessionContext.ready;
  return widget.id;
}
"""


def open_url(context: Any, url: str, path: str) -> Notebook:
    """A new page at ``url`` showing the notebook ``path`` (JupyterLab's
    ``/lab/tree/...`` or Notebook 7's ``/notebooks/...``), its kernel ready."""
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=MS)
    return Notebook(page, str(page.evaluate(_CURRENT_JS)), path)


def open_notebook7(context: Any, lab: LabServer, path: str) -> Notebook:
    """A new page showing ``path`` in Notebook 7 (``/notebooks/...``), kernel ready."""
    return open_url(context, lab.page_url(f"/notebooks/{path}"), path)


def set_theme(page: Any, theme: str) -> None:
    """Switch JupyterLab's theme ("JupyterLab Light", "JupyterLab Dark") and wait for it."""
    page.evaluate(_THEME_JS, theme)
    light = "true" if "Light" in theme else "false"
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=MS)


def screenshot(page: Any, name: str, **options: Any) -> Path:
    """Save a PNG under test-artifacts/e2e/ (gitignored); returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), **options)
    return path


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    """Print how long a block took (shown with pytest -s; handy to keep the suite fast)."""
    start = time.monotonic()
    yield
    print(f"[e2e] {label}: {time.monotonic() - start:.1f} s")
