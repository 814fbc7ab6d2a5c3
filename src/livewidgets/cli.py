"""The ``livewidgets`` command line: ``livewidgets relay | token | demo``.

Each subcommand is a function that adds its parser to the subparsers and sets
``handler`` (``args -> exit status``); add new ones to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__

__all__ = ["COMMANDS", "build_parser", "main"]

Subparsers = Any  # argparse's _SubParsersAction is private


def _add_relay(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "relay",
        help="run a relay server",
        description="Run a livewidgets relay (WebSocket rooms, /healthz, /metrics).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8765, help="TCP port, 0 = any free one (default: %(default)s)"
    )
    parser.add_argument(
        "--store",
        default="sqlite:///rooms.db",
        help="memory:// or sqlite:///path/to/rooms.db (default: %(default)s)",
    )
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=1000,
        metavar="OPS",
        help="ops between snapshots (default: %(default)s)",
    )
    parser.add_argument(
        "--max-frame-size",
        type=int,
        default=2**20,
        metavar="BYTES",
        help="largest frame accepted (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    parser.set_defaults(handler=_run_relay)


# Subcommands, in help order. Others plug in here (e.g. token, demo).
COMMANDS: list[Callable[[Subparsers], None]] = [_add_relay]


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


async def _serve_relay(args: argparse.Namespace) -> None:
    from .relay import Relay

    relay = Relay(
        args.host,
        args.port,
        store=args.store,
        snapshot_every=args.snapshot_every,
        max_frame_size=args.max_frame_size,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await relay.start()
        # Scripts and tests wait for this exact line (the port is known only now).
        print(f"livewidgets relay listening on {relay.url} (store: {args.store})", flush=True)
        await stop.wait()
    finally:
        await relay.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


if __name__ == "__main__":
    sys.exit(main())
