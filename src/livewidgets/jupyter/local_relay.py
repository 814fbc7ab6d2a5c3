"""The local relay: one per user per machine, found (or started) by every kernel.

``%livewidgets connect`` without a URL calls :func:`ensure_relay`, which returns
the relay this user already runs on this machine, or starts one. The rules:

* **Where it is written down.** A runtime file ``livewidgets-relay.json`` in
  ``$LIVEWIDGETS_RUNTIME_DIR`` (tests point it to a temp dir) or else
  ``jupyter_core.paths.jupyter_runtime_dir()``. It holds ``url``, ``pid``,
  ``store``, ``log``, ``started_at``, ``host``, ``version``. Rooms persist in
  SQLite at ``<data dir>/livewidgets-rooms.db``, data dir = ``$LIVEWIDGETS_DATA_DIR``
  or ``jupyter_data_dir()``; the relay's output goes to ``livewidgets-relay.log``
  next to the runtime file.
* **Alive** means: its pid is a running process AND ``GET /healthz`` on its URL
  answers 200 from a livewidgets server. A file failing either test is stale and
  is replaced (a process that still holds the pid and looks like our relay, but
  does not answer, is terminated first: it is wedged).
* **No duplicates.** Discover-or-start runs under an exclusive ``fcntl.flock`` on
  ``livewidgets-relay.lock`` next to the runtime file, so two kernels connecting at
  once find one relay: the second waits for the first to write the file.
* **Detached.** The relay runs as ``python -m livewidgets.cli relay --host
  127.0.0.1 --port 0 --store sqlite:///...`` in its own session
  (``start_new_session=True``), stdin from /dev/null and output to the log file
  (never a pipe to the kernel, which may die first), so it outlives the kernel
  that started it. Its URL is read from the line ``... listening on ws://...``
  it prints; the OS picks the port, so ports never clash.
* **Stop** (``%livewidgets relay stop``): SIGTERM to the pid in the file (SIGKILL
  if it is still running after the grace period), then the file is removed.

A runtime dir shared by several machines (NFS home) is not supported: set
``$LIVEWIDGETS_RUNTIME_DIR`` to a per-machine directory there.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "RUNTIME_FILE",
    "LocalRelayError",
    "RelayInfo",
    "data_dir",
    "ensure_relay",
    "find_relay",
    "is_alive",
    "read_info",
    "runtime_dir",
    "runtime_file",
    "stop_relay",
]

RUNTIME_FILE = "livewidgets-relay.json"
LOCK_FILE = "livewidgets-relay.lock"
LOG_FILE = "livewidgets-relay.log"
STORE_FILE = "livewidgets-rooms.db"

# "livewidgets relay listening on ws://127.0.0.1:41234 (store: ...)"
_LISTENING = re.compile(r"listening on (wss?://[^\s,()]+)")
# How often waits re-check their condition (they all have deadlines).
_POLL = 0.05

# Relays started by this process, by pid: kept so they can be reaped after a stop
# (and so Popen never warns that it was collected while its child still ran).
_children: dict[int, subprocess.Popen[bytes]] = {}


class LocalRelayError(RuntimeError):
    """The local relay could not be found, started or stopped; the message says why."""


@dataclass(frozen=True)
class RelayInfo:
    """What the runtime file says about the local relay."""

    url: str
    pid: int
    store: str
    log: str
    started_at: float
    host: str
    version: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RelayInfo:
        return cls(
            url=str(data["url"]),
            pid=int(data["pid"]),
            store=str(data.get("store", "")),
            log=str(data.get("log", "")),
            started_at=float(data.get("started_at", 0.0)),
            host=str(data.get("host", "")),
            version=str(data.get("version", "")),
        )


# --- locations --------------------------------------------------------------------


def runtime_dir() -> Path:
    """``$LIVEWIDGETS_RUNTIME_DIR``, else Jupyter's runtime dir (created, mode 0700)."""
    override = os.environ.get("LIVEWIDGETS_RUNTIME_DIR")
    if override:
        path = Path(override)
    else:
        from jupyter_core.paths import jupyter_runtime_dir

        path = Path(jupyter_runtime_dir())
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def data_dir() -> Path:
    """``$LIVEWIDGETS_DATA_DIR``, else Jupyter's data dir (created): where rooms persist."""
    override = os.environ.get("LIVEWIDGETS_DATA_DIR")
    if override:
        path = Path(override)
    else:
        from jupyter_core.paths import jupyter_data_dir

        path = Path(jupyter_data_dir())
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def runtime_file() -> Path:
    """The JSON file describing the local relay (it may not exist)."""
    return runtime_dir() / RUNTIME_FILE


# --- discovery --------------------------------------------------------------------


def read_info() -> RelayInfo | None:
    """The runtime file's content, or None if it is missing or unreadable."""
    _reap()
    try:
        return RelayInfo.from_json(json.loads(runtime_file().read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_alive(info: RelayInfo, timeout: float = 2.0) -> bool:
    """True iff ``info.pid`` runs AND the relay at ``info.url`` answers ``/healthz``."""
    return _pid_running(info.pid) and _healthy(info.url, timeout)


def find_relay() -> RelayInfo | None:
    """The running local relay, or None (never starts one)."""
    info = read_info()
    return info if info is not None and is_alive(info) else None


def ensure_relay(timeout: float = 30.0) -> RelayInfo:
    """The local relay, started first if none is alive. Safe to call from many
    kernels at once: exactly one relay results."""
    deadline = time.monotonic() + timeout
    with _exclusive_lock(deadline):
        info = read_info()
        if info is not None and is_alive(info):
            return info
        if info is not None:
            _retire(info)
        info = _start(deadline)
        _write_info(info)
        return info


def stop_relay(timeout: float = 10.0) -> RelayInfo | None:
    """Stop the local relay (SIGTERM, SIGKILL after ``timeout``) and remove its
    runtime file. Returns what was stopped, or None if no relay was recorded."""
    deadline = time.monotonic() + timeout
    with _exclusive_lock(deadline):
        info = read_info()
        if info is None:
            return None
        if _pid_running(info.pid) and (_healthy(info.url, 1.0) or _looks_like_relay(info.pid)):
            _terminate(info.pid, timeout)
        with contextlib.suppress(FileNotFoundError):
            runtime_file().unlink()
        return info


# --- internals ----------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive_lock(deadline: float) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on the lock file until the block ends (or time out)."""
    path = runtime_dir() / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LocalRelayError(
                        f"another kernel holds {path} for too long; is it stuck?"
                    ) from None
                time.sleep(_POLL)
        yield
    finally:
        # Closing the descriptor releases the lock.
        os.close(fd)


def _write_info(info: RelayInfo) -> None:
    path = runtime_file()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(info), f, indent=2)
        f.write("\n")
    # Atomic: readers see the old file or the new one, never half of it.
    os.replace(tmp, path)


def _start(deadline: float) -> RelayInfo:
    """Launch a detached relay and wait until it listens and answers /healthz."""
    store_path = data_dir() / STORE_FILE
    store = f"sqlite:///{store_path}"
    log_path = runtime_dir() / LOG_FILE
    command = [
        sys.executable,
        "-m",
        "livewidgets.cli",
        "relay",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--store",
        store,
        # The "listening on" line is printed, not logged; keep the log file small.
        "--log-level",
        "warning",
    ]
    # Unbuffered, so the "listening on" line reaches the log file at once.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=store_path.parent,
            env=env,
        )
    _children[proc.pid] = proc
    url = _wait_listening(proc, log_path, deadline)
    from .. import __version__

    return RelayInfo(
        url=url,
        pid=proc.pid,
        store=store,
        log=str(log_path),
        started_at=time.time(),
        host=socket.gethostname(),
        version=__version__,
    )


def _wait_listening(proc: subprocess.Popen[bytes], log_path: Path, deadline: float) -> str:
    while True:
        text = log_path.read_text(errors="replace")
        match = _LISTENING.search(text)
        if match and _healthy(match.group(1), 1.0):
            return match.group(1)
        if proc.poll() is not None:
            _children.pop(proc.pid, None)
            raise LocalRelayError(
                f"the local relay exited with code {proc.returncode} before listening; "
                f"its output ({log_path}):\n{_tail(text)}"
            )
        if time.monotonic() >= deadline:
            _terminate(proc.pid, 2.0)
            raise LocalRelayError(
                f"the local relay did not start listening in time; its output ({log_path}):\n"
                f"{_tail(text)}"
            )
        time.sleep(_POLL)


def _retire(info: RelayInfo) -> None:
    """Make way for a new relay: a wedged old one (pid runs, looks like our relay,
    but /healthz does not answer) is terminated; a dead one needs nothing."""
    if _pid_running(info.pid) and _looks_like_relay(info.pid):
        _terminate(info.pid, 5.0)


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` for it to end, then SIGKILL."""
    deadline = time.monotonic() + timeout
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        while _pid_running(pid):
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        else:
            return
        deadline = time.monotonic() + 2.0
    raise LocalRelayError(f"the local relay (pid {pid}) did not stop")


def _reap() -> None:
    """Collect relays this process started that have ended (stopped by another kernel),
    so they do not stay zombies until this kernel exits."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            _children.pop(pid, None)


def _pid_running(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie does not count)."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]  # reaped
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:  # pragma: no cover - any other errno: treat as gone
        return False
    return _proc_state(pid) not in ("Z", "X", None)


def _proc_state(pid: int) -> str | None:
    """The state letter from ``/proc/<pid>/stat`` ("R", "S", "Z", ...); "?" without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self").exists() else "?"
    except OSError:
        return "?"
    # The command name is in parentheses and may contain spaces: split after the last ")".
    return stat.rpartition(")")[2].split()[0]


def _looks_like_relay(pid: int) -> bool:
    """Whether ``pid`` runs ``... -m livewidgets.cli relay ...`` as we start it (guards
    against signalling an unrelated process that reused the pid)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    wanted = [b"-m", b"livewidgets.cli", b"relay"]
    return any(args[i : i + 3] == wanted for i in range(len(args) - 2))


def _healthy(url: str, timeout: float) -> bool:
    """``GET /healthz`` on the relay at ``url`` answers 200 from a livewidgets server."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return False
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    conn_class = (
        http.client.HTTPSConnection if parts.scheme == "wss" else http.client.HTTPConnection
    )
    conn = conn_class(parts.hostname, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
    except (OSError, ValueError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return (
        response.status == 200
        and isinstance(body, dict)
        and str(body.get("server", "")).startswith("livewidgets/")
    )


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"
