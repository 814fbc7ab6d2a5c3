"""The ``livewidgets`` command line: ``livewidgets relay | token | revoke | room | demo``.

Each subcommand is a function that adds its parser to the subparsers and sets
``handler`` (``args -> exit status``); add new ones to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .relay.history import DEFAULT_HISTORY_DAYS, DEFAULT_HISTORY_ENTRIES
from .relay.room import DEFAULT_MAX_STATE_BYTES
from .relay.security import Limits

__all__ = ["COMMANDS", "build_parser", "main"]

Subparsers = Any  # argparse's _SubParsersAction is private


def _add_relay(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "relay",
        help="run a relay server",
        description="Run a livewidgets relay (WebSocket rooms, /healthz, /metrics).",
    )
    parser.add_argument(
        "--host",
        help="interface to bind (default: 127.0.0.1; with --hub, $JUPYTERHUB_SERVICE_URL's)",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="TCP port, 0 = any free one (default: 8765; with --hub, $JUPYTERHUB_SERVICE_URL's)",
    )
    parser.add_argument(
        "--store",
        default="sqlite:///rooms.db",
        help="memory://, sqlite:///path/to/rooms.db or redis://host:6379/0 (shared by "
        "several relays; ?prefix=, ?poll_interval=, ?keep_log=, ?presence_heartbeat=) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=1000,
        metavar="OPS",
        help="ops between snapshots (default: %(default)s)",
    )
    parser.add_argument(
        "--history-entries",
        type=int,
        default=DEFAULT_HISTORY_ENTRIES,
        metavar="N",
        help="history kept behind snapshots: at least the last N entries (0: none beyond "
        "the newest snapshot; docs/history.md) (default: %(default)s)",
    )
    parser.add_argument(
        "--history-days",
        type=float,
        default=DEFAULT_HISTORY_DAYS,
        metavar="DAYS",
        help="and none older than this many days (default: %(default)s)",
    )
    parser.add_argument(
        "--max-frame-size",
        type=int,
        default=2**20,
        metavar="BYTES",
        help="largest frame accepted (default: %(default)s)",
    )
    parser.add_argument(
        "--max-state-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_STATE_BYTES,
        metavar="BYTES",
        help="largest JSON-encoded state of a room; ops that would grow it further are "
        "refused with too_large (default: %(default)s)",
    )
    parser.add_argument(
        "--presence-interval",
        type=_seconds,
        default=0.05,
        metavar="SECONDS",
        help="least time between two presence messages of a room; changes in between are "
        "coalesced, latest state per member (0: send each at once; default: %(default)s)",
    )
    parser.add_argument(
        "--rules",
        metavar="FILE",
        default=os.environ.get("LIVEWIDGETS_RULES") or None,
        help="room rules (TOML [[rule]] tables, or .json) for rooms that set none of "
        "their own; reloaded on SIGHUP (docs/rules.md) (default: $LIVEWIDGETS_RULES)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    security = parser.add_argument_group("security (docs/security.md)")
    security.add_argument(
        "--secret-file",
        metavar="PATH",
        help="HMAC secret for tokens (else $LIVEWIDGETS_SECRET); with one, every client "
        "needs a valid token",
    )
    security.add_argument(
        "--insecure",
        action="store_true",
        help="allow binding a non-loopback address without a secret",
    )
    security.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser Origin allowed to connect (glob; repeatable); default: any",
    )
    security.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="Host header the relay answers to, e.g. relay.example.org or 127.0.0.1:* "
        "(glob; repeatable; refuses DNS-rebinding pages); default: any",
    )
    security.add_argument("--certfile", metavar="PEM", help="TLS certificate chain: serve wss://")
    security.add_argument("--keyfile", metavar="PEM", help="TLS private key (with --certfile)")
    limits = Limits()
    security.add_argument(
        "--ops-rate",
        type=float,
        default=limits.ops_per_second,
        metavar="N",
        help="ops per second per connection and per user, burst twice that; advertised "
        "to clients, which pace themselves to it; 0 = unlimited (default: %(default)s)",
    )
    security.add_argument(
        "--max-connections-per-ip",
        type=_positive_int,
        default=limits.max_connections_per_ip,
        metavar="N",
        help="connections at once per client address without a token: all of them "
        "without a secret, else those that have not said hello yet (default: %(default)s)",
    )
    security.add_argument(
        "--max-connections-per-user",
        type=_positive_int,
        default=limits.max_connections_per_user,
        metavar="N",
        help="connections at once per token user, from any address (default: %(default)s)",
    )
    security.add_argument(
        "--max-connections-per-room",
        type=_positive_int,
        default=limits.max_connections_per_room,
        metavar="N",
        help="members per room (default: %(default)s)",
    )
    security.add_argument(
        "--trust-proxy",
        action="append",
        default=[],
        type=_cidr,
        metavar="CIDR",
        help="a reverse proxy's network (repeatable; e.g. 10.0.0.0/8): connections from it "
        "count for the client its Forwarded / X-Forwarded-For header names; default: "
        "none, the TCP peer is the client",
    )
    hub = parser.add_argument_group("JupyterHub (docs/deploy.md)")
    hub.add_argument(
        "--hub",
        action="store_true",
        help="run as a JupyterHub service: users are the Hub's, identified by the Hub token "
        "their server has ($JUPYTERHUB_API_TOKEN); listens on $JUPYTERHUB_SERVICE_URL unless "
        "--host/--port say otherwise, under $JUPYTERHUB_SERVICE_PREFIX",
    )
    hub.add_argument(
        "--hub-role",
        action="append",
        default=[],
        metavar="GROUP=ROLE",
        help="members of Hub group GROUP get ROLE (read, write or admin; repeatable; the "
        "highest wins; Hub admins are admins), e.g. teachers=admin",
    )
    hub.add_argument(
        "--hub-default-role",
        default="write",
        choices=["read", "write", "admin"],
        help="the role of Hub users in none of those groups (default: %(default)s)",
    )
    hub.add_argument(
        "--hub-recheck",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="ask the Hub again about every token in use this often; connections whose "
        "token it dropped are closed with 4006 (default: %(default)s)",
    )
    parser.set_defaults(handler=_run_relay)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _cidr(text: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an IP network: {exc}") from None
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text!r}")
    return value


def _add_token(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "token",
        help="print a signed access token, or a share link's",
        description="Print a token for --room (a name or glob) with --role, valid for --ttl: "
        "for one --user, or a --link that everyone it is given to can use, each under "
        "a name of their own (its link id goes to stderr, for `livewidgets revoke`).",
    )
    parser.add_argument("--room", required=True, help="room name or glob, e.g. 'class-*'")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="user id the relay will stamp")
    who.add_argument(
        "--link", action="store_true", help="a share link: each holder gets their own identity"
    )
    parser.add_argument("--role", choices=["read", "write", "admin"], default="write")
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME",
        help="a group the user is in, for room rules' group:NAME (repeatable)",
    )
    parser.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (default: 1h)")
    parser.add_argument("--secret-file", metavar="PATH", help="else $LIVEWIDGETS_SECRET")
    parser.set_defaults(handler=_run_token)


def _run_token(args: argparse.Namespace) -> int:
    from .auth import issue_link_token, issue_token, load_secret, parse_ttl

    try:
        secret = load_secret(args.secret_file)
        ttl = parse_ttl(args.ttl)
    except (OSError, ValueError) as exc:
        print(f"livewidgets token: {exc}", file=sys.stderr)
        return 2
    if secret is None:
        print("livewidgets token: no secret (--secret-file or LIVEWIDGETS_SECRET)", file=sys.stderr)
        return 2
    try:
        if args.link:
            token, link_id = issue_link_token(secret, room=args.room, role=args.role, ttl=ttl)
            # The token alone on stdout (scripts capture it); the id to revoke it by aside.
            print(f"link id: {link_id} (livewidgets revoke URL --link {link_id})", file=sys.stderr)
        else:
            token = issue_token(
                secret,
                user=args.user,
                room=args.room,
                role=args.role,
                ttl=ttl,
                groups=args.group,
            )
    except ValueError as exc:
        print(f"livewidgets token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _add_revoke(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "revoke",
        help="revoke a share link or a token on a relay",
        description="Revoke a share link (--link ID) or one token (--token-id JTI) on the "
        "relay at URL: refused from now on and its connections closed (4006), on every "
        "relay sharing that relay's store. Authenticates with --token (an admin token; "
        "the revocation reaches the tokens within its room claim), else signs a "
        "relay-wide admin token with --secret-file / $LIVEWIDGETS_SECRET.",
    )
    parser.add_argument("url", help="the relay, e.g. wss://relay.example.org:8765")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--link", metavar="ID", help="a link id (printed when the link was made)")
    what.add_argument("--token-id", metavar="JTI", help="a token id (its jti claim)")
    parser.add_argument("--token", help="an admin token (else one signed with the secret)")
    parser.add_argument(
        "--room",
        help="a room the admin token admits (needed with --token; default: livewidgets-admin)",
    )
    parser.add_argument("--secret-file", metavar="PATH", help="else $LIVEWIDGETS_SECRET")
    parser.add_argument("--cafile", metavar="PEM", help="CA for a wss:// relay's certificate")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    parser.set_defaults(handler=_run_revoke)


def _run_revoke(args: argparse.Namespace) -> int:
    import ssl

    from .auth import issue_token, load_secret
    from .revoke import RevokeError, revoke

    token, room = args.token, args.room
    if token is None:
        try:
            secret = load_secret(args.secret_file)
        except (OSError, ValueError) as exc:
            print(f"livewidgets revoke: {exc}", file=sys.stderr)
            return 2
        if secret is None:
            print(
                "livewidgets revoke: need --token, --secret-file or LIVEWIDGETS_SECRET",
                file=sys.stderr,
            )
            return 2
        # Relay-wide (room "*"), for one minute: enough for this one request.
        token = issue_token(secret, user="livewidgets-revoke", room="*", role="admin", ttl=60)
        room = room or "livewidgets-admin"
    elif room is None:
        print("livewidgets revoke: --token needs --room (a room it admits)", file=sys.stderr)
        return 2
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    try:
        answer = revoke(
            args.url,
            room,
            token,
            link=args.link,
            token_id=args.token_id,
            timeout=args.timeout,
            ssl=context,
        )
    except (RevokeError, OSError) as exc:
        print(f"livewidgets revoke: {exc}", file=sys.stderr)
        return 1
    what = f"link {answer.link}" if answer.link else f"token {answer.token_id}"
    print(f"livewidgets: revoked {what}; closed {answer.closed} connection(s) on this relay")
    return 0


def _add_room(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "room",
        help="export, import, show the history of, or list rooms",
        description="Back up and restore rooms, read their history (docs/history.md).",
    )
    actions = parser.add_subparsers(dest="action", title="actions", required=True)

    def connected(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        action: argparse.ArgumentParser = actions.add_parser(
            name, help=help_text, description=description
        )
        action.add_argument("url", help="the relay, e.g. ws://127.0.0.1:8765")
        action.add_argument("room", help="the room")
        action.add_argument(
            "--token",
            help="a token for the room (else an admin token signed with --secret-file / "
            "$LIVEWIDGETS_SECRET if there is one, else none: a relay without tokens)",
        )
        action.add_argument("--secret-file", metavar="PATH", help="else $LIVEWIDGETS_SECRET")
        action.add_argument("--cafile", metavar="PEM", help="CA for a wss:// relay's certificate")
        action.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
        return action

    export = connected(
        "export",
        "write a room's state (and history) as JSON",
        "Print the room as JSON (state and version; --history adds every kept entry), "
        "as the token may read it.",
    )
    export.add_argument("--history", action="store_true", help="include the kept history")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(handler=_run_room_export)
    restore = connected(
        "import",
        "make a room equal to an export (admins)",
        "Make the room's state equal to the export's, as one batch of only what differs "
        "(its rules included). The file is checked first: a malformed one changes nothing.",
    )
    restore.add_argument("file", help="an export (- for stdin)")
    restore.set_defaults(handler=_run_room_import)
    history = connected(
        "history",
        "show who changed what and when",
        "Print the room's kept history as a table, oldest first.",
    )
    history.add_argument("--path", help="only changes at, below or above this path")
    history.add_argument("--user", help="only changes by this user")
    history.add_argument("--limit", type=_positive_int, default=50, help="(default: %(default)s)")
    history.set_defaults(handler=_run_room_history)
    listing = actions.add_parser(
        "list",
        help="list the rooms of a store",
        description="List the rooms a store holds, with their versions (reads the store "
        "directly: no relay needed).",
    )
    listing.add_argument(
        "--store", default="sqlite:///rooms.db", help="(default: %(default)s, as the relay's)"
    )
    listing.set_defaults(handler=_run_room_list)


def _room_session(args: argparse.Namespace) -> Any:
    """A session of the room for a ``room`` action, not announced on its presence lists."""
    import ssl

    from .auth import issue_token, load_secret
    from .client import connect

    token = args.token
    if token is None:
        secret = load_secret(args.secret_file)
        if secret is not None:
            token = issue_token(
                secret, user="livewidgets-cli", room=args.room, role="admin", ttl=600
            )
    options: dict[str, Any] = {"announce": False, "timeout": args.timeout}
    if args.cafile:
        options["ssl"] = ssl.create_default_context(cafile=args.cafile)
    return connect(args.url, args.room, user="livewidgets-cli", token=token, **options)


def _room_action(args: argparse.Namespace, action: Callable[[Any], int]) -> int:
    from .errors import LivewidgetsError

    name = f"livewidgets room {args.action}"
    try:
        session = _room_session(args)
    except (LivewidgetsError, OSError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    try:
        return action(session)
    except (LivewidgetsError, OSError, ValueError, TimeoutError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    finally:
        session.close()


def _run_room_export(args: argparse.Namespace) -> int:
    import json

    from .room_admin import export_room

    def export(session: Any) -> int:
        text = json.dumps(export_room(session, history=args.history), indent=1, ensure_ascii=False)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text + "\n")
        else:
            print(text)
        return 0

    return _room_action(args, export)


def _run_room_import(args: argparse.Namespace) -> int:
    from .room_admin import ExportError, import_room, read_export

    try:
        if args.file == "-":
            export = read_export(sys.stdin, "stdin")
        else:
            with open(args.file, encoding="utf-8") as stream:
                export = read_export(stream, args.file)
    except (ExportError, OSError) as exc:
        print(f"livewidgets room import: {exc}; nothing was changed", file=sys.stderr)
        return 2

    def restore(session: Any) -> int:
        version = import_room(session, export, timeout=args.timeout)
        if version is None:
            print(f"livewidgets: room {args.room} already equals the export")
        else:
            print(f"livewidgets: room {args.room} now equals the export (version {version})")
        return 0

    return _room_action(args, restore)


def _run_room_history(args: argparse.Namespace) -> int:
    from .room_admin import history_table

    def show(session: Any) -> int:
        entries = session.history(args.path, args.limit, user=args.user, timeout=args.timeout)
        print(history_table(entries))
        return 0

    return _room_action(args, show)


def _run_room_list(args: argparse.Namespace) -> int:
    from .relay.store import StoreError
    from .room_admin import list_rooms

    try:
        rooms = asyncio.run(list_rooms(args.store))
    except (StoreError, OSError, ValueError, sqlite3.Error) as exc:
        print(f"livewidgets room list: {exc}", file=sys.stderr)
        return 1
    width = max([len("ROOM"), *(len(name) for name, _ in rooms)])
    print(f"{'ROOM':<{width}}  VERSION")
    for name, head in rooms:
        print(f"{name:<{width}}  {head}")
    return 0


# Subcommands, in help order. Others plug in here (e.g. token, demo).
def _add_demo(subparsers: Subparsers) -> None:
    from . import demo

    parser = subparsers.add_parser(
        "demo",
        help="start the local relay and JupyterLab on the examples",
        description="Start (or reuse) the local relay and JupyterLab on the example notebooks.",
    )
    demo.add_arguments(parser)
    parser.set_defaults(handler=demo.run)


COMMANDS: list[Callable[[Subparsers], None]] = [
    _add_relay,
    _add_token,
    _add_revoke,
    _add_room,
    _add_demo,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livewidgets", description="Live shared Jupyter widgets.")
    parser.add_argument("--version", action="version", version=f"livewidgets {__version__}")
    subparsers = parser.add_subparsers(dest="command", title="commands", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``livewidgets`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def _run_relay(args: argparse.Namespace) -> int:
    from .relay.store import StoreError

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(_serve_relay(args))
    except KeyboardInterrupt:
        return 130  # a second Ctrl-C during shutdown
    except (OSError, ValueError, StoreError, sqlite3.Error) as exc:  # port in use, bad store
        print(f"livewidgets relay: {exc}", file=sys.stderr)
        return 1
    return 0


def _relay_security(args: argparse.Namespace) -> tuple[Any, Any]:
    """(policy, ssl context) from the relay's options; ValueError when unsafe."""

    from .auth import load_secret
    from .relay.security import SecurityPolicy

    secret = load_secret(args.secret_file)
    if args.hub:
        return _hub_policy(args, secret), _tls(args)
    host = _listen_address(args)[0]
    if secret is None and not _is_loopback(host) and not args.insecure:
        raise ValueError(
            f"refusing to serve {host} without a secret: anyone could read and write "
            "every room. Pass --secret-file (or set LIVEWIDGETS_SECRET), or --insecure."
        )
    if secret is None:
        where = "only this machine can connect" if _is_loopback(host) else "INSECURE"
        print(f"livewidgets relay: no secret, no tokens checked ({where})", file=sys.stderr)
    policy = SecurityPolicy(
        secret, allow_origins=args.allow_origin, allow_hosts=args.allow_host, limits=_limits(args)
    )
    return policy, _tls(args)


def _limits(args: argparse.Namespace) -> Limits:
    rate = args.ops_rate or float("inf")
    burst = 2 * args.ops_rate if args.ops_rate else float("inf")
    return Limits(
        ops_per_second=rate,
        ops_burst=burst,
        user_ops_per_second=rate,
        user_ops_burst=burst,
        max_connections_per_ip=args.max_connections_per_ip,
        max_connections_per_user=args.max_connections_per_user,
        max_connections_per_room=args.max_connections_per_room,
    )


def _tls(args: argparse.Namespace) -> Any:
    import ssl

    if not args.certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


def _hub_policy(args: argparse.Namespace, secret: bytes | None) -> Any:
    """The policy of a relay run as a JupyterHub service (relay.hub_auth)."""
    try:
        from .relay.hub_auth import HubIdentities, HubPolicy, HubRoles
    except ImportError as exc:
        raise ValueError(
            f"--hub needs jupyterhub: pip install 'livewidgets[hub]' ({exc})"
        ) from None
    if not os.environ.get("JUPYTERHUB_API_TOKEN"):
        raise ValueError(
            "--hub needs the service's JupyterHub token in $JUPYTERHUB_API_TOKEN (the Hub "
            "sets it for a managed service; docs/deploy.md shows an external one)"
        )
    roles = HubRoles.parse(args.hub_role, args.hub_default_role)
    # A revoked token is then refused at hello within the same bound as it is closed.
    return HubPolicy(
        HubIdentities(cache_seconds=max(1, round(args.hub_recheck))),
        roles,
        recheck_interval=args.hub_recheck,
        secret=secret,
        allow_origins=args.allow_origin,
        allow_hosts=args.allow_host,
        limits=_limits(args),
    )


def _listen_address(args: argparse.Namespace) -> tuple[str, int, str]:
    """(host, port, base URL path) from the options, and with --hub from the Hub's
    environment for its managed service ($JUPYTERHUB_SERVICE_URL, _PREFIX)."""
    import urllib.parse

    host, port, base = args.host, args.port, "/"
    if args.hub:
        service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
        if service_url:
            parts = urllib.parse.urlsplit(service_url)
            host = host if host is not None else parts.hostname
            port = port if port is not None else parts.port
        base = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    return "127.0.0.1" if host is None else host, 8765 if port is None else port, base


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve_relay(args: argparse.Namespace) -> None:
    from .relay import Relay
    from .relay.history import HistoryHorizon
    from .relay.process import FD_RESERVE, raise_fd_limit, tune_garbage_collector

    args.host, args.port, base_url = _listen_address(args)
    policy, context = _relay_security(args)
    # Each connection is a file descriptor: lift the soft limit (often 1,024) to the
    # hard one, and say so when even that cannot hold a full room.
    fds = raise_fd_limit()
    if 0 <= fds < args.max_connections_per_room + FD_RESERVE:
        print(
            f"livewidgets relay: the file descriptor limit ({fds}) allows about "
            f"{fds - FD_RESERVE} connections, fewer than --max-connections-per-room "
            f"({args.max_connections_per_room}); raise it (ulimit -n) for large rooms",
            file=sys.stderr,
        )
    rules = _load_rules(args.rules)
    relay = Relay(
        args.host,
        args.port,
        trust_proxies=args.trust_proxy,
        store=args.store,
        snapshot_every=args.snapshot_every,
        history=HistoryHorizon(args.history_entries, args.history_days),
        max_frame_size=args.max_frame_size,
        max_state_bytes=args.max_state_bytes,
        presence_interval=args.presence_interval,
        policy=policy,
        ssl=context,
        rules=rules,
        base_url=base_url,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.rules:
        loop.add_signal_handler(signal.SIGHUP, _reload_rules, relay, args.rules)
    try:
        await relay.start()
        tune_garbage_collector()
        # Scripts and tests wait for this exact line (the port is known only now).
        print(f"livewidgets relay listening on {relay.url} (store: {args.store})", flush=True)
        await stop.wait()
    finally:
        await relay.stop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def _load_rules(path: str | None) -> Any:
    """The --rules file's rule set (None without one); a bad file stops the relay."""
    if not path:
        return None
    from .rules import RulesError, load_rules

    try:
        return load_rules(path)
    except RulesError as exc:
        raise SystemExit(f"livewidgets relay: --rules {path}: {exc}") from None


def _reload_rules(relay: Any, path: str) -> None:
    """SIGHUP: read the rules file again; a bad file keeps the rules in force."""
    from .rules import RulesError, load_rules

    log = logging.getLogger("livewidgets.relay")
    try:
        rules = load_rules(path)
    except RulesError as exc:
        log.error("SIGHUP: keeping the rules in force: %s", exc)
        return
    relay.reload_rules(rules)
    log.warning("SIGHUP: reloaded %d rules from %s", len(rules.rules), path)


if __name__ == "__main__":
    sys.exit(main())
