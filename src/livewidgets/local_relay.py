"""The local relay: one per user per machine, found (or started) by every kernel.

``%livewidgets connect`` without a URL calls :func:`ensure_relay`, which returns
the relay this user already runs on this machine, or starts one. The rules:

* **Where it is written down.** A runtime file ``livewidgets-relay.json`` in
  ``$LIVEWIDGETS_RUNTIME_DIR`` (tests point it to a temp dir) or else
  ``jupyter_core.paths.jupyter_runtime_dir()``. It holds ``url``, ``pid``,
  ``store``, ``log``, ``started_at``, ``host``, ``version`` and ``secret``. Rooms
  persist in SQLite at ``<data dir>/livewidgets-rooms.db``, data dir =
  ``$LIVEWIDGETS_DATA_DIR`` or ``jupyter_data_dir()``; the relay's output goes to
  ``livewidgets-relay.log`` next to the runtime file.
* **Private.** The runtime dir must belong to this user and is kept at mode 0700
  (group and other bits are removed; a dir of another user is refused). The runtime
  file, the log, the lock and the room database are created with mode 0600
  (``os.open(..., 0o600)``, no umask race); a runtime file owned by someone else is
  ignored.
* **Secret.** Every relay start draws a fresh secret (``secrets.token_urlsafe(32)``),
  hands it to the relay in its environment (``$LIVEWIDGETS_SECRET``, never on the
  command line, which every user can read in ``ps``) and records it in the runtime
  file. The relay then admits only signed tokens (docs/security.md). Kernels mint
  their own from the file (:func:`credentials`: this user and room, role ``admin``,
  valid :data:`TOKEN_TTL`) and mint a new one when the relay closes at expiry.
  A relay recorded without a secret (started by an older livewidgets) admits anyone:
  it is stopped and replaced.
* **Origins.** The relay admits connections without an ``Origin`` header (kernels)
  and browser pages of this machine only (``LOOPBACK_ORIGINS``: ``http(s)://``
  ``localhost``, ``127.0.0.1``, ``[::1]``, any port); other pages get HTTP 403.
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
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .auth import Role

__all__ = [
    "RUNTIME_FILE",
    "TOKEN_TTL",
    "LocalRelayError",
    "RelayInfo",
    "credentials",
    "data_dir",
    "ensure_relay",
    "find_relay",
    "is_alive",
    "issue_local_token",
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
# Lifetime of the tokens kernels mint for themselves (seconds). At expiry the relay
# closes the connection (4004) and the session reconnects with a fresh token.
TOKEN_TTL = 12 * 3600.0
# A refused token with more life left than this was not refused for its age.
_EXPIRY_SLACK = 60.0

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
    # The relay's token secret; "" for a relay that checks no tokens (older versions).
    secret: str = field(default="", repr=False)

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
            secret=str(data.get("secret", "")),
        )


# --- locations --------------------------------------------------------------------


def runtime_dir() -> Path:
    """``$LIVEWIDGETS_RUNTIME_DIR``, else Jupyter's runtime dir: created, this user's,
    mode 0700 (group/other bits removed); LocalRelayError if another user owns it."""
    path = _runtime_path()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid != os.geteuid():
        raise LocalRelayError(
            f"the runtime dir {path} belongs to another user (uid {st.st_uid}): the local "
            "relay's secret cannot be kept there; set $LIVEWIDGETS_RUNTIME_DIR to a "
            "directory of your own"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        path.chmod(stat.S_IMODE(st.st_mode) & 0o700)
    return path


def _runtime_path() -> Path:
    """Where the runtime dir is (neither created nor checked)."""
    override = os.environ.get("LIVEWIDGETS_RUNTIME_DIR")
    if override:
        return Path(override)
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


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
    """The runtime file's content, or None if it is missing, unreadable, or not this
    user's file."""
    _reap()
    return _read_info(runtime_file())


def _read_info(path: Path) -> RelayInfo | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if os.fstat(f.fileno()).st_uid != os.geteuid():
                return None  # planted by someone else: not our relay, not our secret
            return RelayInfo.from_json(json.loads(f.read()))
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
        if info is not None and info.secret and is_alive(info):
            return info
        if info is not None:
            # Dead, wedged, or without a secret (an older version's: it admits anyone).
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


# --- tokens -------------------------------------------------------------------------


def issue_local_token(
    info: RelayInfo,
    *,
    user: str,
    room: str,
    role: Role | str = "admin",
    ttl: float | None = None,
) -> str:
    """A token for the local relay ``info`` describes, signed with its secret (valid
    ``ttl`` seconds, default :data:`TOKEN_TTL`)."""
    from .auth import issue_token  # PyJWT: imported when needed, not at %load_ext

    if not info.secret:
        raise LocalRelayError(f"the local relay {info.url} has no secret (restart it)")
    ttl = TOKEN_TTL if ttl is None else ttl
    return issue_token(info.secret.encode(), user=user, room=room, role=role, ttl=ttl)


class LocalCredentials(NamedTuple):
    """What a session to this user's local relay connects with (EngineConfig fields)."""

    token: str
    token_refresh: Callable[[], str | None]
    verify_relay: Callable[[str, str | None], bool]


def credentials(url: str, room: str, user: str | None = None) -> LocalCredentials | None:
    """Token, renewal and relay check for a session of this user to ``room`` on
    ``url``, if ``url`` is this user's local relay (per its runtime file); else None.
    Never starts, creates or changes anything.

    The token admits ``room`` only, as ``user`` (default: the kernel's user), role
    admin, for :data:`TOKEN_TTL`. ``token_refresh`` is what the engine calls when the
    relay closes with 4004 (expired) or 4003 (refused): a fresh token while the runtime
    file still describes the relay at ``url``; None (give up) when it describes
    another relay now, or when the same secret would be refused again (the token was
    refused before it was due to expire).
    """
    from .identity import default_user

    try:
        info = _read_info(_runtime_path() / RUNTIME_FILE)
    except (ImportError, OSError):  # no jupyter_core and no $LIVEWIDGETS_RUNTIME_DIR
        return None
    if info is None or not info.secret or info.url != url:
        return None
    user = user or default_user()
    token = issue_local_token(info, user=user, room=room)
    secret, expires = info.secret, time.time() + TOKEN_TTL

    def token_refresh() -> str | None:
        nonlocal secret, expires
        current = _read_info(_runtime_path() / RUNTIME_FILE)
        if current is None or current.url != url or not current.secret:
            return None
        if current.secret == secret and time.time() < expires - _EXPIRY_SLACK:
            return None
        secret, expires = current.secret, time.time() + TOKEN_TTL
        return issue_local_token(current, user=user, room=room)

    def verify_relay(nonce: str, proof: str | None) -> bool:
        from .auth import verify_relay_proof

        # Whoever answers on ``url`` must hold the secret of the relay the runtime file
        # describes there (a relay restarted at the same address has a new one).
        current = _read_info(_runtime_path() / RUNTIME_FILE)
        if current is None or current.url != url or not current.secret:
            return False
        return verify_relay_proof(current.secret.encode(), nonce, proof)

    return LocalCredentials(token, token_refresh, verify_relay)


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
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a crash
    # Created here, 0600 from the start (O_EXCL: never an existing file or a link).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
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
    _private_store(store_path)
    from .relay.security import LOOPBACK_HOSTS, LOOPBACK_ORIGINS

    secret = secrets.token_urlsafe(32)
    allowlists = [arg for origin in LOOPBACK_ORIGINS for arg in ("--allow-origin", origin)]
    allowlists += [arg for host in LOOPBACK_HOSTS for arg in ("--allow-host", host)]
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
        *allowlists,
    ]
    # Unbuffered, so the "listening on" line reaches the log file at once. The secret
    # goes in the environment: /proc/<pid>/environ is readable by this user only.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LIVEWIDGETS_SECRET": secret}
    with _open_private(log_path) as log:
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
    from . import __version__

    return RelayInfo(
        url=url,
        pid=proc.pid,
        store=store,
        log=str(log_path),
        started_at=time.time(),
        host=socket.gethostname(),
        version=__version__,
        secret=secret,
    )


def _open_private(path: Path) -> BinaryIO:
    """``open(path, "wb")``, the file being mode 0600 whether new or not."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def _private_store(store_path: Path) -> None:
    """Room data is for this user only: the database (and SQLite's -wal/-shm/-journal
    files, which take the database's mode when SQLite creates them) at 0600. A new
    database is created empty here, at 0600, before the relay opens it."""
    fd = os.open(store_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(store_path.with_name(store_path.name + suffix), 0o600)


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
    """Make way for a new relay: an old one still running (wedged: /healthz does not
    answer; or without a secret) is terminated if its pid looks like our relay; a dead
    one needs nothing."""
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
