"""deploy/: the relay image and compose file, checked as far as a machine without Docker can.

* deploy/compose.yaml is parsed with PyYAML (in the locked dev environment through
  jupyter-events; not a dependency of the package) and its ``${VAR:-default}`` values are
  interpolated here the way compose does, strictly: any other ``$`` form fails the test.
* Each relay service's command, interpolated to loopback, free ports, temporary stores
  and a temporary secret, runs as a real process behind the image's ENTRYPOINT
  (``livewidgets relay``); its health check command runs as written; a client with a
  token signed by the secret writes and reads; SIGTERM stops it with status 0.
* The Redis pair runs on the machine's Redis (127.0.0.1:6379) under a fresh key prefix.
* deploy/Dockerfile is read statically: its CMD is the compose command's defaults, its
  HEALTHCHECK the same snippet, its user not root, its port the one compose publishes.

Only 127.0.0.1; every wait is bounded; only processes started here are signalled.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

import livewidgets
from livewidgets.auth import issue_token, load_secret
from livewidgets.errors import ConnectionRefused

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# The package under test, for the relay subprocesses (never an installed copy).
SRC = str(Path(livewidgets.__file__).resolve().parents[1])
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
ROOM = "deploy-check"

# --- compose, read and interpolated as `docker compose` does ---------------------------

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}$]*))?\}")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """``${VAR:-default}`` (default if VAR is unset or empty), ``${VAR}``, ``$$``; any
    other use of ``$`` is an error, so the file cannot mean more than this test reads."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value
    leftover = _VARIABLE.sub("", value)
    assert "$" not in leftover, f"unsupported interpolation in {value!r}"

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, default = match["name"], match["default"]
        if default is not None:
            return env.get(name) or default
        assert name in env, f"{value!r} needs ${name}"
        return env[name]

    return _VARIABLE.sub(substitute, value)


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    result: dict[str, Any] = interpolate(raw, env or {})
    return result


# --- the Dockerfile, read statically ----------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage, as (KEYWORD, arguments), continuations joined."""
    lines: list[str] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
        else:
            lines.append(pending)
            pending = ""
    assert not pending, "a continuation at the end of the Dockerfile"
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, f"{line!r} before FROM"
        stages[-1].append((keyword.upper(), args.strip()))
    return stages


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [args for key, args in stage if key == keyword]
    assert len(found) == 1, f"{keyword}: {found}"
    return found[0]


def exec_form(args: str) -> list[str]:
    """An exec-form (JSON array) argument list: a shell form would wrap it in `sh -c`."""
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def dockerfile_healthcheck(stage: list[tuple[str, str]]) -> list[str]:
    args = only(stage, "HEALTHCHECK")
    match = re.fullmatch(r"((?:--[a-z-]+=\S+\s+)*)CMD\s+(\[.*\])", args)
    assert match, args
    return exec_form(match[2])


def entrypoint_argv(entrypoint: list[str]) -> list[str]:
    """The image's ENTRYPOINT as a command here: the ``livewidgets`` console script is
    ``livewidgets.cli:main`` (pyproject.toml), run from this checkout."""
    assert entrypoint[0] == "livewidgets"
    return [sys.executable, "-m", "livewidgets.cli", *entrypoint[1:]]


# --- real relay processes ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write_secret(path: Path) -> bytes:
    """A secret as deploy/README.md makes one (64 hex digits and a newline)."""
    path.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
    path.chmod(0o600)
    secret = load_secret(str(path))
    assert secret is not None and re.fullmatch(rb"[0-9a-f]{64}", secret)
    return secret


@contextmanager
def relay_process(argv: list[str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start ``argv``; yield the process and its URL once it says it listens. The test
    stops it; if it is still running at the end, it is killed (by its pid)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])),
    }
    with log.open("ab") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)
    lines: queue.Queue[bytes] = queue.Queue()
    assert process.stdout is not None

    def read_lines(out: IO[bytes]) -> None:
        for line in iter(out.readline, b""):
            lines.put(line)
        lines.put(b"")  # end of output: the process is gone

    reader = threading.Thread(target=read_lines, args=(process.stdout,), daemon=True)
    reader.start()
    try:
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            line = b""
        match = re.match(rb"livewidgets relay listening on (ws://\S+)", line)
        assert match, f"no 'listening on' line ({line!r}); log: {log.read_text()[-2000:]}"
        yield process, match[1].decode()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        reader.join(timeout=STOP_TIMEOUT)
        process.stdout.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as `docker stop` sends it: the relay exits 0 within the bound."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_TIMEOUT) == 0


def healthcheck(test: list[str]) -> int:
    """Run a compose health check (``["CMD", "python", ...]``) here; its exit status."""
    assert test[:2] == ["CMD", "python"], test
    return subprocess.run([sys.executable, *test[2:]], timeout=30, check=False).returncode


def write(url: str, token: str, path: str, value: Any) -> None:
    with livewidgets.connect(url, ROOM, token=token, timeout=START_TIMEOUT) as session:
        session.set(path, value).result(timeout=START_TIMEOUT)


def read(url: str, token: str, path: str) -> Any:
    with livewidgets.connect(url, ROOM, token=token, timeout=START_TIMEOUT) as session:
        return session.get(path)


# --- the tests --------------------------------------------------------------------------


def test_sqlite_relay_runs_as_composed(tmp_path: Path) -> None:
    """The SQLite profile's relay: started from its compose command, healthy by its own
    check, serving a client with a token, stopped by SIGTERM with status 0."""
    secret = write_secret(tmp_path / "secret")
    port = free_port()
    env = {
        "LIVEWIDGETS_HOST": "127.0.0.1",
        "LIVEWIDGETS_PORT": str(port),
        "LIVEWIDGETS_STORE": f"sqlite:///{tmp_path}/rooms.db",
        "LIVEWIDGETS_SECRET_FILE": str(tmp_path / "secret"),
    }
    service = compose(env)["services"]["relay"]
    entrypoint = exec_form(only(dockerfile_stages()[-1], "ENTRYPOINT"))
    argv = entrypoint_argv(entrypoint) + service["command"]
    token = issue_token(secret, user="operator", room=ROOM, role="write")
    with relay_process(argv, tmp_path / "relay.log") as (process, url):
        assert url == f"ws://127.0.0.1:{port}"
        assert healthcheck(service["healthcheck"]["test"]) == 0
        write(url, token, "probe", {"ok": 1})
        assert read(url, token, "probe") == {"ok": 1}
        with pytest.raises(ConnectionRefused, match="needs a token"):
            livewidgets.connect(url, ROOM, timeout=3, max_attempts=1)  # no token: refused
        stop(process)
    assert (tmp_path / "rooms.db").stat().st_size > 0
    assert healthcheck(service["healthcheck"]["test"]) != 0  # nobody answers any more


def redis_ready() -> str | None:
    """Why the Redis pair cannot run here, or None."""
    if find_spec("redis") is None:
        return "the redis package is not installed (pip install 'livewidgets[redis]')"
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return None
    except OSError:
        return "no Redis on 127.0.0.1:6379"


def test_redis_pair_runs_as_composed(tmp_path: Path) -> None:
    """relay-a and relay-b, each from its compose command (loopback, its own free port,
    one fresh Redis key prefix): written through A, read through B."""
    reason = redis_ready()
    if reason:
        pytest.skip(reason)
    import redis

    secret = write_secret(tmp_path / "secret")
    prefix = f"lwdeploy{uuid.uuid4().hex[:12]}"
    entrypoint = exec_form(only(dockerfile_stages()[-1], "ENTRYPOINT"))
    base = {
        "LIVEWIDGETS_HOST": "127.0.0.1",
        "LIVEWIDGETS_REDIS_STORE": f"redis://127.0.0.1:6379/0?prefix={prefix}",
        "LIVEWIDGETS_SECRET_FILE": str(tmp_path / "secret"),
    }
    # One compose file, each relay started with its own port (as two hosts would).
    a, b = (compose({**base, "LIVEWIDGETS_PORT": str(free_port())})["services"] for _ in "ab")
    token = issue_token(secret, user="operator", room=ROOM, role="write")
    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    try:
        with (
            relay_process(
                entrypoint_argv(entrypoint) + a["relay-a"]["command"], tmp_path / "a.log"
            ) as (process_a, url_a),
            relay_process(
                entrypoint_argv(entrypoint) + b["relay-b"]["command"], tmp_path / "b.log"
            ) as (process_b, url_b),
        ):
            assert url_a != url_b
            assert healthcheck(a["relay-a"]["healthcheck"]["test"]) == 0
            assert healthcheck(b["relay-b"]["healthcheck"]["test"]) == 0
            write(url_a, token, "probe", "through A")
            assert read(url_b, token, "probe") == "through A"
            assert client.keys(f"{prefix}:*"), "nothing written under the test's prefix"
            stop(process_a)
            stop(process_b)
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


def test_dockerfile_matches_compose() -> None:
    """One source of truth: the image's CMD is the compose relay command's defaults, its
    HEALTHCHECK the snippet the tests above ran, its user not root, its port published."""
    stages = dockerfile_stages()
    final = stages[-1]
    assert all(only(stage, "FROM").startswith("python:3.11-slim") for stage in stages)
    services = compose()["services"]
    cmd = exec_form(only(final, "CMD"))
    assert exec_form(only(final, "ENTRYPOINT")) == ["livewidgets", "relay"]
    assert services["relay"]["command"] == cmd
    assert cmd[cmd.index("--secret-file") + 1] == "/run/secrets/livewidgets_secret"
    for name in ("relay-a", "relay-b"):
        command = services[name]["command"]
        store = command.index("--store") + 1
        assert command[:store] + command[store + 1 :] == cmd[:store] + cmd[store + 1 :]
        assert command[store] == "redis://redis:6379/0"  # the service below
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    port = cmd[cmd.index("--port") + 1]
    assert only(final, "EXPOSE") == port == "8765"
    # Health: the image's check is compose's, on the same URL.
    check = dockerfile_healthcheck(final)
    assert check[:2] == ["python", "-c"] and check[3] == f"http://127.0.0.1:{port}/healthz"
    for name in ("relay", "relay-a", "relay-b"):
        assert services[name]["healthcheck"]["test"] == ["CMD", *check]
    # Not root: the last USER names a uid (or user) other than 0/root.
    user = [args for key, args in final if key == "USER"][-1].split(":")[0]
    assert user not in ("0", "root")
    # The SQLite store lives in the volume.
    assert only(final, "VOLUME") in ("/data", '["/data"]')
    assert cmd[cmd.index("--store") + 1] == "sqlite:////data/rooms.db"
    assert "relay-data:/data" in services["relay"]["volumes"]


def test_compose_services() -> None:
    """Redis durable as docs say, restart policies, secrets, profiles that do not collide."""
    data = compose()
    services = data["services"]
    redis_service = services["redis"]
    assert redis_service["image"] == "redis:7-alpine"
    command = " ".join(redis_service["command"])
    assert "--appendonly yes" in command and "--appendfsync always" in command
    assert "redis-data:/data" in redis_service["volumes"]
    assert data["secrets"]["livewidgets_secret"]["file"] == "./secret"
    published = {}
    for name, service in services.items():
        assert service["restart"] in ("always", "unless-stopped", "on-failure"), name
        assert service["healthcheck"]["test"][0] == "CMD", name
        if name != "redis":
            assert service["secrets"] == ["livewidgets_secret"]
            assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
            assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
            (mapping,) = service["ports"]
            host, host_port, container_port = mapping.split(":")
            assert (host, container_port) == ("127.0.0.1", "8765"), name
            published[name] = (service["profiles"], host_port)
    assert published == {
        "relay-a": (["redis"], "8765"),
        "relay-b": (["redis"], "8766"),
        "relay": (["sqlite"], "8765"),
    }
    assert services["redis"]["profiles"] == ["redis"]


def test_image_context_holds_what_the_build_needs() -> None:
    """The Dockerfile COPYs what hatchling needs for the wheel (pyproject.toml), and
    Dockerfile.dockerignore lets exactly that into the build context."""
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["build-system"]["build-backend"] == "hatchling.build"
    assert pyproject["project"]["scripts"]["livewidgets"] == "livewidgets.cli:main"
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", pyproject["project"]["readme"], *wheel["packages"]}
    needed |= set(wheel.get("force-include", {}))
    copied = set()
    for stage in dockerfile_stages():
        for key, args in stage:
            if key == "COPY" and not args.startswith("--from"):
                *sources, _ = args.split()
                copied |= {source.rstrip("/") for source in sources}
    assert all(any(n == c or n.startswith(c + "/") for c in copied) for n in needed), needed
    ignore = [
        line
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    assert {line[1:] for line in ignore if line.startswith("!")} == copied
    assert all((ROOT / source).exists() for source in copied)
