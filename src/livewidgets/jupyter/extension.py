"""``%load_ext livewidgets`` and the ``%livewidgets`` line magic.

::

    %livewidgets connect [URL] [--room R] [--user U] [--name N] [--token T]
                         [--token-cmd COMMAND] [--heartbeat SECONDS] [--timeout SECONDS]
    %livewidgets status
    %livewidgets disconnect
    %livewidgets relay start|stop|status
    %livewidgets share-link [--role R] [--ttl T] [--room R] [--user U]
    %livewidgets revoke --link ID | --token-id JTI

``connect`` without URL uses ``$LIVEWIDGETS_URL``, else on a JupyterHub the Hub's
``livewidgets`` service through its proxy with the server's Hub token
(:mod:`livewidgets.hub`), else the local relay of this user on this machine
(started if none runs, see :mod:`livewidgets.local_relay`). The room
defaults to ``$LIVEWIDGETS_ROOM`` or ``"default"``, the user to
``$JUPYTERHUB_USER`` or the OS user, the token to ``--token``, else (the local
relay) one minted from the local relay's secret for this user and room and renewed
at expiry, else ``$LIVEWIDGETS_TOKEN``, else the output of the token command. The
token command (``--token-cmd``, else ``$LIVEWIDGETS_TOKEN_CMD`` unless the local relay
mints the tokens) is a shell command that prints a token: the session runs it again
shortly before the token expires and renews it without reconnecting
(docs/security.md "Renewal"). The heartbeat (ping interval and pong timeout,
seconds) defaults to ``$LIVEWIDGETS_HEARTBEAT``.
The session becomes the kernel's current one (``livewidgets.session()``); widgets
shared on a previous session move to the new one.

While connected, the kernel publishes ``kernel="busy"|"idle"``, ``notebook`` (the
path jupyter_server gives the kernel's session), ``cell_id`` and ``busy_since`` (Unix
time) of the running cell, and ``cell=<execution
count>`` in its presence around every cell (IPython's ``pre_run_cell`` and
``post_run_cell`` events; one small presence frame each).

The same operations are plain functions for code: :func:`connect`,
:func:`disconnect`, :func:`status`, and :func:`relay_url` says where this kernel is
connected.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from .. import identity, local_relay
from ..client.session import Session
from ..client.session import connect as _connect_session
from ..client.tokens import TokenCommand, command_from_env
from ..errors import ConnectionRefused, SessionClosed
from ..hub import hub_service
from .runtime import set_current_session
from .share import bindings, rebind

__all__ = [
    "connect",
    "disconnect",
    "load_ipython_extension",
    "relay_url",
    "revoke",
    "share_link",
    "status",
    "unload_ipython_extension",
]


@dataclass
class _Connection:
    """What this kernel is connected to (for status and presence)."""

    session: Session
    url: str
    # Where the URL came from: "argument", "$LIVEWIDGETS_URL", "JupyterHub service
    # 'livewidgets'" or "local relay".
    source: str


class _State:
    """Per-kernel state of the extension (one IPython shell per process)."""

    shell: Any = None
    connection: _Connection | None = None


_state = _State()


# --- the API the magic calls -------------------------------------------------------------


def connect(
    url: str | None = None,
    *,
    room: str | None = None,
    user: str | None = None,
    name: str | None = None,
    token: str | None = None,
    token_cmd: str | None = None,
    timeout: float = 10.0,
    **options: Any,
) -> Session:
    """Connect this kernel (see the module docstring for the defaults); returns the
    session, which :func:`livewidgets.session` returns from now on."""
    source = "argument"
    if not url:
        url, source = os.environ.get("LIVEWIDGETS_URL", ""), "$LIVEWIDGETS_URL"
    on_hub = hub_service(os.environ)
    if not url and on_hub is not None:
        url, source = on_hub.url, f"JupyterHub service {on_hub.service!r}"
    if not url:
        url, source = local_relay.ensure_relay().url, "local relay"
    room = room or identity.default_room()
    user = user or identity.default_user()
    local = None
    if not token and not token_cmd:
        # This user's local relay (whatever the URL came from): a token of our own.
        local = local_relay.credentials(url, room, user)
        if local is not None:
            token = local.token
            options.setdefault("token_refresh", local.token_refresh)
            options.setdefault("verify_relay", local.verify_relay)
    token = token or os.environ.get("LIVEWIDGETS_TOKEN") or None
    hub_token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if token is None and not token_cmd and local is None and hub_token and source != "argument":
        # On a Hub, to the relay its operator set up (found or $LIVEWIDGETS_URL), never
        # to a URL typed in a cell: the token this kernel's server has; the relay asks
        # the Hub whose it is.
        token = hub_token
    command = TokenCommand(token_cmd) if token_cmd else None
    if command is None and options.get("token_refresh") is None:
        command = command_from_env()  # $LIVEWIDGETS_TOKEN_CMD
    if command is not None:
        # The first token too, unless one was given (a failure raises TokenCommandError).
        options["token_cmd"] = command
    heartbeat = os.environ.get("LIVEWIDGETS_HEARTBEAT")
    if heartbeat:
        options.setdefault("heartbeat_interval", float(heartbeat))
        options.setdefault("heartbeat_timeout", float(heartbeat))
    # The client publishes user, name and colour (derived from the user) in presence.
    options.setdefault("name", name or identity.default_name(user))
    try:
        session = _connect_session(url, room, user, token, timeout=timeout, **options)
    except ConnectionRefused:
        raise  # precise already: the relay's reason and limit, or the TLS/HTTP failure
    except (TimeoutError, SessionClosed) as exc:
        raise ConnectionError(
            f"livewidgets: could not join room {room!r} on {url} within {timeout} s "
            f"({type(exc).__name__}: {exc}); is the relay running? "
            "`%livewidgets relay status` shows the local one"
        ) from exc
    # Inside IPython, connect runs in a cell: busy now, idle from post_run_cell.
    running = "busy" if _state.shell is not None else "idle"
    since = time.time() if running == "busy" else None
    session.update_presence(
        kernel=running, cell=_execution_count(), notebook=_notebook(), busy_since=since
    )
    old = _state.connection
    _state.connection = _Connection(session, url, source)
    set_current_session(session)
    if old is not None:
        rebind(old.session, session)
        old.session.close()
    return session


def disconnect() -> bool:
    """Close this kernel's session (its shared widgets stop syncing); False if none."""
    connection = _state.connection
    if connection is None:
        return False
    _state.connection = None
    set_current_session(None)
    rebind(connection.session, None)
    connection.session.close()
    return True


def relay_url() -> str:
    """The URL of the relay this kernel is connected to (e.g. to connect a second,
    simulated user in a demo: ``livewidgets.connect(relay_url(), room, "grace")``, which
    signs grace's token itself when this is the local relay); RuntimeError when not
    connected."""
    if _state.connection is None:
        raise RuntimeError("livewidgets: not connected (run `%livewidgets connect`)")
    return _state.connection.url


def status() -> str:
    """One or two lines describing this kernel's connection."""
    connection = _state.connection
    if connection is None:
        return "livewidgets: not connected (run `%livewidgets connect`)"
    s = connection.session
    metrics = s.metrics
    peers = sorted({str(p.get("name") or p.get("user") or "?") for p in s.presence.values()})
    rtt = metrics.get("rtt_p50_ms")
    rtt_text = f"{rtt:.1f} ms" if isinstance(rtt, (int, float)) else "n/a"
    errors = metrics.get("callback_errors") or 0
    failing = (
        f"\n  {errors} callback error(s), last: {metrics.get('last_callback_error')}"
        if errors
        else ""
    )
    return (
        f"livewidgets: {s.connection_state}, room {s.room!r} as {s.user!r} on "
        f"{connection.url} ({connection.source})\n"
        f"  version {s.version}, {s.pending} pending, rtt p50 {rtt_text}, "
        f"{len(bindings(s))} shared widget traits, peers: {', '.join(peers) or 'none'}"
        f"{failing}"
    )


def share_link(
    role: str = "read",
    *,
    ttl: str = "2h",
    room: str | None = None,
    user: str | None = None,
    secret_file: str | None = None,
) -> str:
    """A capability for this room: a signed link token and the line that joins with it.

    Everyone who connects with the link gets an identity of their own: the ``--user``
    they give (their login by default), marked ``(guest)``, else ``guest-<n>``
    (docs/security.md "Links"). ``user``: a token for that one person instead.

    Needs the relay's secret (:func:`_signing_secret`). Whoever holds the result can
    join ``room`` (that room only) with ``role`` until it expires or is revoked
    (``%livewidgets revoke --link ID``, the id printed here).
    """
    from ..auth import issue_link_token, issue_token, parse_ttl

    connection = _state.connection
    room = room or (connection.session.room if connection else identity.default_room())
    lifetime = parse_ttl(ttl)
    url, secret = _signing_secret(secret_file, "share-link")
    url_part = f"{url} " if url else ""
    if user is not None:
        token = issue_token(secret, user=user, room=room, role=role, ttl=lifetime)
        return (
            f"livewidgets: {role} access to room {room!r} for {user!r}, {ttl}:\n"
            f"  %livewidgets connect {url_part}--room {shlex.quote(room)} --token {token}\n"
            f"  token: {token}"
        )
    token, link_id = issue_link_token(secret, room=room, role=role, ttl=lifetime)
    # The token stays on the last line: scripts take what follows "token: ".
    return (
        f"livewidgets: {role} link to room {room!r} for {ttl}, link id {link_id} "
        "(each person who opens it appears under their own name):\n"
        f"  revoke it: %livewidgets revoke --link {link_id}\n"
        f"  %livewidgets connect {url_part}--room {shlex.quote(room)} --token {token}"
        " --user <your name>\n"
        f"  token: {token}"
    )


def revoke(
    *,
    link: str | None = None,
    token_id: str | None = None,
    room: str | None = None,
    secret_file: str | None = None,
) -> str:
    """Revoke a share link (its id) or a token (its ``jti``) on this kernel's relay:
    refused from now on, its connections closed (4006). Signs a short admin token with
    the relay's secret (:func:`_signing_secret`) for ``room`` (default: this kernel's),
    so it reaches the links and tokens of that room."""
    from ..auth import issue_token
    from ..revoke import revoke as revoke_on

    connection = _state.connection
    room = room or (connection.session.room if connection else identity.default_room())
    url, secret = _signing_secret(secret_file, "revoke")
    if not url:
        raise RuntimeError(
            "livewidgets: revoke needs a relay: connect first, or set $LIVEWIDGETS_URL"
        )
    user = connection.session.user if connection else identity.default_user()
    token = issue_token(secret, user=user, room=room, role="admin", ttl=60)
    answer = revoke_on(url, room, token, link=link, token_id=token_id)
    what = f"link {answer.link}" if answer.link else f"token {answer.token_id}"
    return f"livewidgets: revoked {what}; closed {answer.closed} connection(s) on this relay"


def _signing_secret(secret_file: str | None, command: str) -> tuple[str, bytes]:
    """(relay URL, its secret) to sign with: ``secret_file``; else, for this user's
    local relay (the kernel is connected to it, or is not connected and no
    ``$LIVEWIDGETS_URL`` is set), the secret in its runtime file; else
    ``$LIVEWIDGETS_SECRET``. The URL is the kernel's relay ("" if unknown)."""
    from ..auth import load_secret

    connection = _state.connection
    url = connection.url if connection else os.environ.get("LIVEWIDGETS_URL", "")
    secret = load_secret(secret_file) if secret_file else None
    if secret is None:
        local = local_relay.read_info() if url else local_relay.find_relay()
        if local is not None and local.secret and local.url == (url or local.url):
            url, secret = local.url, local.secret.encode()
    if secret is None:
        secret = load_secret()
    if secret is None:
        raise RuntimeError(
            f"livewidgets: {command} needs the relay's secret ($LIVEWIDGETS_SECRET or "
            "--secret-file); a relay without one admits everyone who can reach it"
        )
    return url, secret


def _relay_status() -> str:
    info = local_relay.read_info()
    if info is None:
        return f"livewidgets: no local relay recorded in {local_relay.runtime_file()}"
    alive = "running" if local_relay.is_alive(info) else "NOT answering (stale file)"
    tokens = "tokens required" if info.secret else "NO secret: restart it to get one"
    return (
        f"livewidgets: local relay {info.url} pid {info.pid}, {alive}, {tokens}\n"
        f"  store {info.store}, log {info.log}"
    )


# --- the magic ----------------------------------------------------------------------------


class _ParserExit(Exception):
    """argparse wanted to exit (after -h): the magic just returns."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as UsageError instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        from IPython.core.error import UsageError

        raise UsageError(f"{self.prog}: {message}\n{self.format_usage()}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, end="")
        raise _ParserExit(status)


def _build_parser() -> _Parser:
    parser = _Parser(prog="%livewidgets", description="Live shared widgets for this kernel.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    c = sub.add_parser("connect", help="join a room (default: the local relay)")
    c.add_argument("url", nargs="?", help="relay URL (default: $LIVEWIDGETS_URL, else local)")
    c.add_argument("--room", help="room name (default: $LIVEWIDGETS_ROOM or 'default')")
    c.add_argument("--user", help="user id (default: $JUPYTERHUB_USER or the OS user)")
    c.add_argument("--name", help="display name (default: $LIVEWIDGETS_NAME or the user)")
    c.add_argument("--token", help="access token (default: $LIVEWIDGETS_TOKEN)")
    c.add_argument(
        "--token-cmd",
        metavar="COMMAND",
        help="shell command that prints a token, run again to renew it before it expires "
        "(default: $LIVEWIDGETS_TOKEN_CMD)",
    )
    c.add_argument(
        "--heartbeat",
        type=float,
        metavar="SECONDS",
        help="ping interval and pong timeout (default: $LIVEWIDGETS_HEARTBEAT or 5)",
    )
    c.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the room (default: %(default)s)",
    )
    sub.add_parser("status", help="show the connection")
    sub.add_parser("disconnect", help="leave the room")
    r = sub.add_parser("relay", help="manage the local relay")
    r.add_argument("action", choices=["start", "stop", "status"])
    link = sub.add_parser("share-link", help="print a token + connect line for this room")
    link.add_argument("--role", choices=["read", "write", "admin"], default="read")
    link.add_argument("--ttl", default="2h", help="lifetime: 30m, 2h, 7d (default: 2h)")
    link.add_argument("--room", help="room (default: this kernel's room)")
    link.add_argument(
        "--user",
        help="a token for this one user instead of a link (default: a link, whose "
        "holders each get their own identity)",
    )
    link.add_argument(
        "--secret-file",
        help="the relay's secret (else the local relay's, else $LIVEWIDGETS_SECRET)",
    )
    rv = sub.add_parser("revoke", help="revoke a share link or a token on this relay")
    what = rv.add_mutually_exclusive_group(required=True)
    what.add_argument("--link", metavar="ID", help="a link id (share-link prints it)")
    what.add_argument("--token-id", metavar="JTI", help="a token id (its jti claim)")
    rv.add_argument("--room", help="room whose links to reach (default: this kernel's)")
    rv.add_argument(
        "--secret-file",
        help="the relay's secret (else the local relay's, else $LIVEWIDGETS_SECRET)",
    )
    return parser


def livewidgets_magic(line: str) -> None:
    """``%livewidgets connect|status|disconnect|relay ...`` (``%livewidgets -h``)."""
    try:
        args = _build_parser().parse_args(shlex.split(line))
    except _ParserExit:
        return
    if args.command == "connect":
        options: dict[str, Any] = {}
        if args.heartbeat is not None:
            options.update(heartbeat_interval=args.heartbeat, heartbeat_timeout=args.heartbeat)
        session = connect(
            args.url,
            room=args.room,
            user=args.user,
            name=args.name,
            token=args.token,
            token_cmd=args.token_cmd,
            timeout=args.timeout,
            **options,
        )
        assert _state.connection is not None
        print(
            f"livewidgets: connected to room {session.room!r} as {session.user!r} on "
            f"{_state.connection.url} ({_state.connection.source})"
        )
    elif args.command == "disconnect":
        print("livewidgets: disconnected" if disconnect() else "livewidgets: not connected")
    elif args.command == "relay":
        _relay_command(args.action)
    elif args.command == "share-link":
        print(
            share_link(
                args.role,
                ttl=args.ttl,
                room=args.room,
                user=args.user,
                secret_file=args.secret_file,
            )
        )
    elif args.command == "revoke":
        print(
            revoke(
                link=args.link,
                token_id=args.token_id,
                room=args.room,
                secret_file=args.secret_file,
            )
        )
    else:  # "status", or no subcommand
        print(status())


def _relay_command(action: str) -> None:
    if action == "start":
        info = local_relay.ensure_relay()
        print(f"livewidgets: local relay {info.url} pid {info.pid}")
    elif action == "stop":
        stopped = local_relay.stop_relay()
        if stopped is None:
            print("livewidgets: no local relay was running")
            return
        print(f"livewidgets: stopped the local relay pid {stopped.pid}")
        connection = _state.connection
        if connection is not None and connection.url == stopped.url:
            print(
                "  this kernel's session will keep trying to reconnect: "
                "`%livewidgets relay start` or `%livewidgets disconnect`"
            )
    else:
        print(_relay_status())


# --- presence around cells --------------------------------------------------------------


def _execution_count() -> int | None:
    shell = _state.shell
    count = getattr(shell, "execution_count", None)
    return count if isinstance(count, int) else None


def _publish(**fields: Any) -> None:
    connection = _state.connection
    if connection is None or connection.session.connection_state == "closed":
        return
    connection.session.update_presence(**fields)


def _notebook() -> str | None:
    """The notebook this kernel runs for, as the server names it (``JPY_SESSION_NAME``,
    set by jupyter_server for the kernels it starts), else None."""
    return os.environ.get("JPY_SESSION_NAME") or None


def _pre_run_cell(info: Any = None) -> None:
    # During pre_run_cell the shell's counter is the number of the cell about to run;
    # the front end's cell id (JupyterLab, Notebook 7) names the cell itself.
    cell_id = getattr(info, "cell_id", None)
    _publish(
        kernel="busy",
        cell=_execution_count(),
        cell_id=cell_id if isinstance(cell_id, str) else None,
        notebook=_notebook(),
        busy_since=time.time(),
    )


def _post_run_cell(result: Any = None) -> None:
    _publish(kernel="idle", cell=getattr(result, "execution_count", None), busy_since=None)


# --- IPython entry points -----------------------------------------------------------------


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%livewidgets`` and the busy/idle presence hooks (idempotent)."""
    if _state.shell is ipython:
        return
    if _state.shell is not None:
        unload_ipython_extension(_state.shell)
    _state.shell = ipython
    ipython.register_magic_function(livewidgets_magic, "line", "livewidgets")
    ipython.events.register("pre_run_cell", _pre_run_cell)
    ipython.events.register("post_run_cell", _post_run_cell)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the presence hooks (the magic stays until the kernel restarts)."""
    for event, callback in (("pre_run_cell", _pre_run_cell), ("post_run_cell", _post_run_cell)):
        with contextlib.suppress(ValueError):  # not registered
            ipython.events.unregister(event, callback)
    if _state.shell is ipython:
        _state.shell = None
