"""binder/: the one-click demo environment (repo2docker's requirements.txt, postBuild, start).

``binder/start`` runs here as Binder runs it, with a dummy command in place of the
notebook server: a temp HOME and a free port (``LIVEWIDGETS_PORT``). The test stops
the relay it started, by the pid that ``start`` records.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BINDER = Path(__file__).resolve().parents[1] / "binder"
START = BINDER / "start"

# What the notebook server would do: see LIVEWIDGETS_URL and a relay answering there.
CHECK = """
import json, os, urllib.request
url = os.environ["LIVEWIDGETS_URL"]
health = url.replace("ws://", "http://") + "/healthz"
with urllib.request.urlopen(health, timeout=5) as r:
    body = json.load(r)
print(json.dumps({"url": url, "status": r.status, "health": body}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def is_our_relay(pid: int) -> bool:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return b"livewidgets.cli" in args and b"relay" in args


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A temp HOME (subdirectories serve as more homes); every relay that ``start``
    left running under it is stopped afterwards, by its recorded pid."""
    yield tmp_path
    for pidfile in tmp_path.rglob(".livewidgets-relay.pid"):
        stop_relay(int(pidfile.read_text()))


def stop_relay(pid: int) -> None:
    """SIGTERM the relay ``pid`` (SIGKILL after 10 s) if it still runs and is a relay."""
    if not (pid_running(pid) and is_our_relay(pid)):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_running(pid):
        os.kill(pid, signal.SIGKILL)


def run_start(home: Path, port: int, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "LIVEWIDGETS_PORT": str(port)}
    env.pop("LIVEWIDGETS_URL", None)
    return subprocess.run(
        [str(START), *command], env=env, capture_output=True, text=True, timeout=60
    )


def test_binder_files_are_there() -> None:
    """requirements.txt lists JupyterLab; postBuild installs this package; both scripts run."""
    requirements = (BINDER / "requirements.txt").read_text()
    assert "jupyterlab" in requirements
    assert "pip install" in (BINDER / "postBuild").read_text()
    for script in ("postBuild", "start"):
        path = BINDER / script
        assert os.access(path, os.X_OK), f"binder/{script} is not executable"
        assert path.read_text().startswith("#!/bin/bash\n")
        subprocess.run(["bash", "-n", str(path)], check=True)  # syntax


def test_start_runs_a_relay_and_execs_the_command(home: Path) -> None:
    """start launches the relay on LIVEWIDGETS_PORT with its SQLite store in HOME,
    exports LIVEWIDGETS_URL, execs the command (its output and exit status pass
    through), and leaves the relay running for the server's kernels."""
    port = free_port()
    done = run_start(home, port, sys.executable, "-c", CHECK)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["url"] == f"ws://127.0.0.1:{port}"
    assert report["status"] == 200
    assert report["health"]["server"].startswith("livewidgets/")
    pid = int((home / ".livewidgets-relay.pid").read_text())
    assert pid_running(pid) and is_our_relay(pid)
    assert (home / ".livewidgets-rooms.db").exists()

    # exec: the command's exit status is start's.
    other_home = home / "other"
    other_home.mkdir()
    other = run_start(other_home, free_port(), sys.executable, "-c", "raise SystemExit(7)")
    assert other.returncode == 7, other.stderr


def test_start_still_execs_when_the_relay_cannot_start(home: Path) -> None:
    """A relay that cannot bind (port taken) does not block the server: the command
    runs without LIVEWIDGETS_URL (kernels then use a local relay of their own)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = "import os; print(os.environ.get('LIVEWIDGETS_URL', 'unset'))"
        done = run_start(home, port, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "unset"
    assert "did not start" in done.stderr
