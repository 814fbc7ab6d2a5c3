"""Server processes under test: start, find the URL, read RSS and CPU, stop.

Every server runs in its own subprocess (``python -m ...``), on 127.0.0.1 and a port
the OS picks, with its file-descriptor limit raised for the 2,000-connection
scenario. The livewidgets relay runs as ``livewidgets relay`` would, minus its
throttles (bench.lwrelay).
"""

from __future__ import annotations

import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .systems import System

__all__ = ["ServerProcess", "cpu_seconds", "preemptions", "raise_fd_limit", "rss_kib"]

REPO = Path(__file__).resolve().parent.parent
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_fd_limit(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``want`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields after "(comm)": state is [0], utime is field 14 overall -> [11], stime [12].
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def preemptions(pid: int) -> int:
    """How often ``pid``'s main thread lost its CPU while it could run (involuntary
    context switches, from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("nonvoluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


class ServerProcess:
    """``with ServerProcess(system) as server: server.url, server.pid, ...``"""

    def __init__(
        self,
        sys_: System,
        *,
        profile_to: Path | None = None,
        experiments: Sequence[str] = (),
        cpus: frozenset[int] | None = None,
        nice: int | None = None,
        relay_args: Sequence[str] = (),
    ) -> None:
        self.system = sys_
        # Extra arguments for bench.lwrelay (livewidgets systems only).
        self.relay_args = list(relay_args)
        self.experiments = list(experiments)
        # The CPUs the server may run on (None: any; bench --pin-server).
        self.cpus = cpus
        # The server's nice value (None: inherited; bench --server-nice).
        self.nice = nice
        self.url = ""
        self._dir = Path(tempfile.mkdtemp(prefix=f"lwbench-{sys_.server_key}-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile_to = profile_to
        self._profiler: subprocess.Popen[bytes] | None = None
        self.stderr_path = self._dir / "server.log"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def command(self) -> list[str]:
        sys_ = self.system
        if sys_.server == "lw":
            store = "memory://" if sys_.store == "memory" else f"sqlite:///{self._dir}/rooms.db"
            extra = [arg for name in self.experiments for arg in ("--experiment", name)]
            return [
                sys.executable,
                "-m",
                "bench.lwrelay",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--store",
                store,
                *extra,
                *self.relay_args,
            ]
        module = {"floor": "bench.floor", "pycrdt": "bench.ypeer"}[sys_.server]
        # pycrdt-sqlite: ystore.db in the cwd, this server's temporary directory.
        extra = ["--ystore", sys_.store] if sys_.server == "pycrdt" and sys_.store else []
        return [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", "0", *extra]

    def start(self, timeout: float = 30.0) -> str:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=self._dir,
                env=env,
                preexec_fn=self._prepare_child,
            )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while b"listening on ws://" not in line:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.system.server_key} did not start: {self.log_tail()}")
            ready, _, _ = select.select([self._proc.stdout], [], [], remaining)
            if ready:
                line = self._proc.stdout.readline()
        text = line.decode()
        self.url = text[text.index("ws://") :].split()[0]
        if self._profile_to is not None:
            self._start_profiler()
        return self.url

    def _start_profiler(self) -> None:
        assert self._profile_to is not None
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            print("  (py-spy not installed: no profile)", file=sys.stderr)
            return
        self._profile_to.parent.mkdir(parents=True, exist_ok=True)
        self._profiler = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(self._profile_to),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # let it attach before the load starts

    def _prepare_child(self) -> None:
        raise_fd_limit()
        if self.cpus is not None:
            os.sched_setaffinity(0, self.cpus)
        if self.nice is not None:
            os.setpriority(os.PRIO_PROCESS, 0, self.nice)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def preemptions(self) -> int:
        return preemptions(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self._profiler is not None:
            self._profiler.send_signal(signal.SIGINT)
            try:
                self._profiler.wait(timeout)
            except subprocess.TimeoutExpired:
                self._profiler.kill()
            self._profiler = None
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self.experiments:  # what the experiments reported on their way out
            print(f"[{self.system.name}] {self.log_tail()}", file=sys.stderr)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
