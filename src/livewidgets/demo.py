"""``livewidgets demo``: the example notebooks in JupyterLab, on the local relay.

What it does, in order:

1. Checks that the Jupyter side is installed (JupyterLab, ipywidgets, anywidget,
   ipykernel); if not, prints one line saying ``pip install "livewidgets[demo]"`` and
   exits with status 2.
2. Finds or starts this user's local relay (:func:`livewidgets.local_relay.ensure_relay`)
   so the first ``%livewidgets connect`` in a notebook is instant. The kernels find
   the same relay themselves (or use ``$LIVEWIDGETS_URL`` if you set it).
3. Picks the notebook directory: ``--dir PATH`` (the examples are copied into it,
   existing files are kept); else ``examples/`` of a source checkout, used in place;
   else (an installed, read-only package) a copy in ``<jupyter data dir>/livewidgets-demo``.
4. Starts JupyterLab on 127.0.0.1 (``--port``, default 8888 or the next free one)
   with a fresh token, waits until it answers, prints the URL and opens it in a
   browser unless ``--no-browser``.
5. Runs until Ctrl-C or SIGTERM, then stops JupyterLab cleanly (its kernels with it)
   and exits 0. The relay keeps running by design (``%livewidgets relay stop`` stops it),
   so rooms survive a demo restart.

JupyterLab runs in a session of its own, so a Ctrl-C in the terminal reaches only
this process, which then shuts JupyterLab down (no "Shutdown this Jupyter server?"
prompt). Its output goes to ``livewidgets-demo-jupyterlab.log`` next to the relay's
runtime file; the log's end is printed if it fails to start.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["DEMO_REQUIREMENTS", "add_arguments", "main", "run", "run_demo"]

# Modules the demo needs, besides livewidgets itself.
DEMO_REQUIREMENTS = ("jupyterlab", "ipywidgets", "anywidget", "ipykernel")
INSTALL_HINT = 'pip install "livewidgets[demo]"'
# The notebook opened first.
FIRST_NOTEBOOK = "01_shared_slider.ipynb"
DEFAULT_PORT = 8888
LOG_FILE = "livewidgets-demo-jupyterlab.log"
# How long JupyterLab may take to answer /api/status, and to stop.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_POLL = 0.1


class DemoError(RuntimeError):
    """The demo could not start; the message says why (printed, exit status 1)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser`` (the ``livewidgets demo`` subparser)."""
    parser.add_argument(
        "--no-browser",
        dest="open_browser",
        action="store_false",
        help="print the URL but do not open a browser",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"JupyterLab's port (default: {DEFAULT_PORT}, or the next free one)",
    )
    parser.add_argument(
        "--dir",
        dest="notebook_dir",
        type=Path,
        default=None,
        metavar="PATH",
        help="where the example notebooks go and JupyterLab starts "
        "(default: examples/ of a source checkout, else a copy in the Jupyter data dir)",
    )


def run(args: argparse.Namespace) -> int:
    """Handler for parsed arguments (``set_defaults(handler=run)``); the exit status."""
    return run_demo(port=args.port, notebook_dir=args.notebook_dir, open_browser=args.open_browser)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m livewidgets.demo [--no-browser] [--port N] [--dir PATH]``."""
    parser = argparse.ArgumentParser(
        prog="livewidgets demo",
        description="Open the livewidgets example notebooks in JupyterLab, on the local relay.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run_demo(
    *, port: int | None = None, notebook_dir: Path | None = None, open_browser: bool = True
) -> int:
    """Run the demo until Ctrl-C/SIGTERM; returns the exit status (0 ok, 1 failed to
    start, 2 JupyterLab or the widgets not installed)."""
    missing = missing_requirements()
    if missing:
        print(
            f"livewidgets demo needs {', '.join(missing)}: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2
    try:
        return _run(port, notebook_dir, open_browser)
    except DemoError as exc:
        print(f"livewidgets demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before JupyterLab started (nothing to stop)
        return 130


def missing_requirements() -> list[str]:
    """The modules of :data:`DEMO_REQUIREMENTS` that cannot be imported."""
    missing = []
    for name in DEMO_REQUIREMENTS:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # ValueError: a module blocked in sys.modules
            spec = None
        if spec is None:
            missing.append(name)
    return missing


# --- the steps ---------------------------------------------------------------------------


def _run(port: int | None, notebook_dir: Path | None, open_browser: bool) -> int:
    from . import local_relay

    try:
        relay = local_relay.ensure_relay()
    except local_relay.LocalRelayError as exc:
        raise DemoError(str(exc)) from exc
    root = prepare_notebooks(notebook_dir)
    print(f"livewidgets demo: relay {relay.url} (pid {relay.pid}, store {relay.store})")
    print(f"livewidgets demo: notebooks in {root}")
    log_path = local_relay.runtime_dir() / LOG_FILE
    lab = JupyterLab(root, pick_port(DEFAULT_PORT if port is None else port), log_path)
    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    try:
        if not lab.start(stop):
            return 0  # stopped while starting
        first = FIRST_NOTEBOOK if (root / FIRST_NOTEBOOK).exists() else None
        url = lab.url(f"/lab/tree/{first}" if first else "/lab")
        print(f"livewidgets demo: JupyterLab (pid {lab.pid}) is at {url}", flush=True)
        print("livewidgets demo: press Ctrl-C to stop it", flush=True)
        if open_browser:
            webbrowser.open(url)
        while not stop.is_set() and lab.running():
            stop.wait(0.5)
        if stop.is_set():
            print("\nlivewidgets demo: stopping JupyterLab ...", flush=True)
        code = lab.stop()
    finally:
        lab.stop()
        _restore_signal_handlers(previous)
    print(
        f"livewidgets demo: JupyterLab stopped; the relay {relay.url} keeps running "
        "(`%livewidgets relay stop` stops it)"
    )
    return 0 if stop.is_set() else code


def examples_source() -> Path | None:
    """Where the example notebooks are: ``examples/`` of a source checkout, else the
    copy shipped in the package (``livewidgets/examples``); None if neither exists."""
    here = Path(__file__).resolve().parent
    checkout = here.parent.parent  # src/livewidgets/demo.py -> the repository
    candidates = [here / "examples"]
    if (checkout / "pyproject.toml").exists():
        candidates.insert(0, checkout / "examples")
    for candidate in candidates:
        if any(candidate.glob("*.ipynb")):
            return candidate
    return None


def prepare_notebooks(notebook_dir: Path | None) -> Path:
    """The directory JupyterLab serves, with the examples in it (see the module doc)."""
    source = examples_source()
    if notebook_dir is None:
        if source is not None and os.access(source, os.W_OK):
            return source
        from .local_relay import data_dir

        notebook_dir = data_dir() / "livewidgets-demo"
    notebook_dir = notebook_dir.expanduser().resolve()
    try:
        notebook_dir.mkdir(parents=True, exist_ok=True)
        if source is not None and source.resolve() != notebook_dir:
            for notebook in sorted(source.glob("*.ipynb")):
                target = notebook_dir / notebook.name
                if not target.exists():  # keep the user's edits
                    shutil.copyfile(notebook, target)
    except OSError as exc:
        raise DemoError(f"cannot prepare {notebook_dir}: {exc}") from exc
    if source is None:
        print(
            "livewidgets demo: the example notebooks were not found; "
            "JupyterLab starts on an empty directory",
            file=sys.stderr,
        )
    return notebook_dir


def pick_port(preferred: int, tries: int = 10) -> int:
    """``preferred`` or one of the next ``tries`` ports if free on 127.0.0.1, else any
    free port (0 = any free port at once)."""
    for port in range(preferred, preferred + tries if preferred else 0):
        if _port_free(port):
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class JupyterLab:
    """A JupyterLab server process on 127.0.0.1 with a token we chose."""

    def __init__(self, root: Path, port: int, log_path: Path) -> None:
        self.root = root
        self.port = port
        self.log_path = log_path
        self.token = secrets.token_hex(24)
        self._proc: subprocess.Popen[bytes] | None = None
        self._returncode = 0

    def url(self, path: str = "/lab") -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def start(self, stop: threading.Event) -> bool:
        """Start JupyterLab and wait until ``/api/status`` answers (True), or ``stop`` is
        set (False, JupyterLab stopped). DemoError if it exits or does not answer."""
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                # Its own session: a terminal's Ctrl-C reaches us, and we stop it cleanly.
                start_new_session=True,
                # ... and if we are killed outright, it gets SIGTERM (Linux).
                preexec_fn=_term_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if stop.is_set():
                self.stop()
                return False
            if self._proc.poll() is not None:
                self._proc = None
                raise DemoError(
                    f"JupyterLab exited at start; its log ({self.log_path}):\n{self._tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise DemoError(
                    f"JupyterLab did not answer within {START_TIMEOUT:.0f} s; its log "
                    f"({self.log_path}):\n{self._tail()}"
                )
            stop.wait(_POLL)
        return True

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> int:
        """Shut down (``POST /api/shutdown``: kernels too), SIGTERM then SIGKILL if it
        lingers; returns its exit status. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return self._returncode
        if proc.poll() is None:
            with contextlib.suppress(OSError, urllib.error.URLError):
                self._request("POST", "/api/shutdown")
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    proc.wait(STOP_TIMEOUT)
                    break
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, sig)
            else:
                proc.wait(STOP_TIMEOUT)
        self._returncode = proc.returncode or 0
        return self._returncode

    def _answers(self) -> bool:
        try:
            return self._request("GET", "/api/status") == 200
        except (OSError, urllib.error.URLError):
            return False

    def _request(self, method: str, path: str) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)

    def _tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# --- signals -----------------------------------------------------------------------------


def _term_with_parent() -> None:
    """In the JupyterLab child before exec: SIGTERM when the demo process dies
    (``prctl(PR_SET_PDEATHSIG)``), so a demo killed with SIGKILL leaves no server behind."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


# What signal.signal() returns and accepts.
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _install_signal_handlers(stop: threading.Event) -> dict[int, _Handler]:
    """SIGINT and SIGTERM set ``stop`` (the main loop then shuts JupyterLab down)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, _Handler] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous  # signals can only be handled on the main thread
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handle)
    return previous


def _restore_signal_handlers(previous: dict[int, _Handler]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
