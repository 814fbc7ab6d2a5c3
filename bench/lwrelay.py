"""The livewidgets relay as the bench runs it: what ``livewidgets relay`` runs, throttles off.

Same ``Relay``, ``SecurityPolicy`` and garbage-collector settings as the CLI (no
secret: loopback only), with
the abuse limits raised out of the way: the per-connection op rate (CLI default
200/s, ``--ops-rate 0`` = unlimited), connections per IP (CLI default 2,048, and every
bench client comes from 127.0.0.1) and connections per room (CLI default 2,000; the
idle scenario puts 2,000 in one room). Checking the limits still
costs what it costs; only the refusals are gone. Everything else is the default.

Run: ``python -m bench.lwrelay --store memory:// [--port 0]``; prints
``livewidgets relay listening on ws://HOST:PORT`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
import signal
from typing import Any

__all__ = ["main", "policy", "run"]

UNLIMITED: dict[str, float] = {
    "ops_per_second": math.inf,
    "ops_burst": math.inf,
    # Without a secret every connection is its own "user": its user bucket (200/s by
    # default) would cap each bench writer as surely as the connection's.
    "user_ops_per_second": math.inf,
    "user_ops_burst": math.inf,
    "presence_per_second": math.inf,
    "presence_burst": math.inf,
    "max_connections_per_ip": 10**9,
    "max_connections_per_user": 10**9,
    "max_connections_per_room": 10**9,
}


def policy(limits: str = "bench") -> Any:
    """The CLI's SecurityPolicy, without throttles (``"bench"``) or with the CLI's
    default limits (``"default"``, the flood scenario); None if this livewidgets has none."""
    try:
        from livewidgets.relay.security import Limits, SecurityPolicy
    except ImportError:
        return None
    if limits == "default":
        return SecurityPolicy(None, limits=Limits())
    names = {f.name for f in dataclasses.fields(Limits)}
    unlimited = Limits(**{k: v for k, v in UNLIMITED.items() if k in names})  # type: ignore[arg-type]
    return SecurityPolicy(None, limits=unlimited)


async def run(
    host: str,
    port: int,
    store: str,
    experiments: list[str] | None = None,
    limits: str = "bench",
    rules: str | None = None,
) -> None:
    from livewidgets.relay import Relay
    from livewidgets.relay.process import tune_garbage_collector

    from .experiments import apply

    logging.basicConfig(level=logging.WARNING)
    apply(experiments or [])
    options: dict[str, Any] = {}
    if rules:  # a rules file (bench.rules_cost); older relays have no rules
        from livewidgets.rules import load_rules

        options["rules"] = load_rules(rules)
    relay = Relay(host, port, store=store, policy=policy(limits), **options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await relay.start()
    tune_garbage_collector()
    try:
        print(f"livewidgets relay listening on {relay.url} (store: {store})", flush=True)
        await stop.wait()
    finally:
        await relay.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--store", default="memory://")
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        help="apply a what-if patch (bench.experiments)",
    )
    parser.add_argument(
        "--limits",
        choices=["bench", "default"],
        default="bench",
        help="bench: throttles lifted (default); default: the CLI's limits",
    )
    parser.add_argument("--rules", help="a rules file for rooms without their own")
    args = parser.parse_args()
    asyncio.run(run(args.host, args.port, args.store, args.experiment, args.limits, args.rules))


if __name__ == "__main__":
    main()
