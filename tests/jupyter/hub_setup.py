"""A real JupyterHub on 127.0.0.1 for the Hub tests: configurable-http-proxy, the
dummy authenticator, local-process spawners, and the livewidgets relay as a managed
service (docs/deploy.md "JupyterHub"). Everything it starts is stopped by its PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROXY = ROOT / "js" / "node_modules" / ".bin" / "configurable-http-proxy"

CONFIG = """
import sys
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.public_url = "http://127.0.0.1:{proxy_port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = "proxy-{secret}"
c.JupyterHub.db_url = "sqlite:///{tmp}/hub.sqlite"
c.JupyterHub.cookie_secret = bytes.fromhex("{secret}" * 2)
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/home/{{username}}"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--allow-root"]  # tests and CI run as root
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.environment = {{
    # Where each server's kernels write their connection files (the test reads them).
    "JUPYTER_RUNTIME_DIR": lambda spawner: "{tmp}/runtime/" + spawner.user.name,
    "LIVEWIDGETS_RUNTIME_DIR": lambda spawner: "{tmp}/lw/" + spawner.user.name,
    "LIVEWIDGETS_DATA_DIR": lambda spawner: "{tmp}/lw/" + spawner.user.name,
    "LIVEWIDGETS_HEARTBEAT": "1",
    "PYTHONUNBUFFERED": "1",
}}
c.JupyterHub.services = [
    {{
        "name": "livewidgets",
        "url": "http://127.0.0.1:{relay_port}",
        "command": [
            sys.executable, "-m", "livewidgets.cli", "relay", "--hub",
            "--store", "sqlite:///{tmp}/rooms.db",
            "--hub-role", "teachers=admin", "--hub-recheck", "1",
        ],
    }},
    {{"name": "test-admin", "api_token": "{admin_token}"}},
]
c.JupyterHub.load_roles = [
    {{"name": "livewidgets-relay", "scopes": ["read:users:groups"], "services": ["livewidgets"]}},
    {{"name": "admin", "services": ["test-admin"]}},
]
c.JupyterHub.load_groups = {{"teachers": {{"users": ["alice"]}}}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Hub:
    """One JupyterHub process (and what it starts) in ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.proxy_port, self.hub_port = free_port(), free_port()
        self.relay_port, proxy_api_port = free_port(), free_port()
        self.admin_token = os.urandom(16).hex()
        config = CONFIG.format(
            proxy_port=self.proxy_port,
            hub_port=self.hub_port,
            proxy_api_port=proxy_api_port,
            relay_port=self.relay_port,
            proxy=str(PROXY),
            tmp=tmp,
            secret=os.urandom(16).hex(),
            admin_token=self.admin_token,
        )
        (tmp / "jupyterhub_config.py").write_text(config, encoding="utf-8")
        (tmp / "home").mkdir()
        self.log = tmp / "hub.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/hub/api"

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def start(self, timeout: float = 60.0) -> None:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "LIVEWIDGETS_"))
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.tmp / "jupyterhub_config.py")],
                cwd=self.tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyterhub exited:\n{self.log_tail()}")
            try:
                self.request("GET", "/")
                if self.request("GET", "/services/livewidgets")["url"]:
                    return
            except (OSError, urllib.error.URLError, KeyError):
                time.sleep(0.3)
        raise TimeoutError(f"jupyterhub did not start within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the Hub (it stops the proxy, the servers and the managed relay); then
        anything of its process group still left."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """A Hub REST API call as the test's admin service (or with ``token``)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.api + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {token or self.admin_token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None

    def start_server(self, user: str, timeout: float = 90.0) -> None:
        try:
            self.request("POST", "/users", {"usernames": [user]})
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # exists already
                raise
        self.request("POST", f"/users/{user}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.request("GET", f"/users/{user}")
            if model["servers"].get("", {}).get("ready"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{user}'s server did not start:\n{self.log_tail()}")

    def start_kernel(self, user: str) -> Path:
        """A kernel on ``user``'s server, started through the Hub's proxy with the
        server's REST API; the path of its connection file."""
        token = self.request("POST", f"/users/{user}/tokens", {"note": "test"})["token"]
        request = urllib.request.Request(
            f"{self.public}/user/{user}/api/kernels",
            data=b'{"name": "python3"}',
            method="POST",
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            kernel_id = json.loads(response.read())["id"]
        path = self.tmp / "runtime" / user / f"kernel-{kernel_id}.json"
        deadline = time.monotonic() + 30
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no connection file {path}:\n{self.log_tail()}")
            time.sleep(0.2)
        return path

    def server_token_id(self, user: str) -> str:
        """The id of the API token the Hub gave ``user``'s server (its kernels')."""
        tokens = self.request("GET", f"/users/{user}/tokens")["api_tokens"]
        for token in tokens:
            if "Server at" in (token.get("note") or ""):
                return str(token["id"])
        raise LookupError(f"no server token for {user}: {tokens}")


def hub_available() -> str | None:
    """Why the Hub tests cannot run here (None: they can)."""
    if shutil.which("node") is None:
        return "needs Node.js for configurable-http-proxy"
    if not PROXY.exists():
        return f"needs configurable-http-proxy ({PROXY}; npm --prefix js ci)"
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "needs jupyterhub (the hub extra)"
    return None
