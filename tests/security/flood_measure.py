"""Flood measurement: what one flooding client does to a well-behaved one.

Run ``python -m tests.security.flood_measure`` from the repository root (about a
minute). It starts a real relay (``livewidgets relay``, default limits, with a secret;
clients use tokens, ``--no-secret`` to go without) as a subprocess, then for each
scenario runs a *flooder* in another subprocess while a *calm* client in this process
writes 50 ops/s to the flooded room and times each op → ack. The table it prints is
copied into docs/security.md ("Flooding").

Scenarios (each bounded: at most ``--ops`` frames and ``--seconds`` seconds):

* ``baseline`` - no flooder;
* ``ops-burst-same-room`` - ops as fast as the flooder can write them into the calm
  client's room (whenever the relay closes it, it reconnects and goes on);
* ``ops-burst-other-room`` - the same into another room;
* ``ops-5000/s-same-room``, ``ops-1000/s-same-room`` - paced floods at 25x and 5x the
  limit: mostly refused, never closed (see test_sustained_paced_flood_is_closed);
* ``presence-burst-same-room`` - presence updates as fast as possible;
* ``invalid-frames-burst`` - frames that fail validation, interleaved with valid ones so
  the 16-in-a-row close never triggers (validation failures are not rate limited).

Options: ``--store sqlite:///{tmp}/rooms.db`` (default ``memory://``), ``--ops``,
``--seconds``, ``--calm-rate``, ``--repeat N`` (median of N runs). Not a test: numbers
depend on the machine (see the header it prints).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from livewidgets.auth import issue_token
from livewidgets.protocol import (
    JSON_SUBPROTOCOL,
    PROTOCOL_VERSION,
    AckMessage,
    Hello,
    Join,
    Joined,
    Leave,
    OpMessage,
    PresenceMessage,
    SetOp,
    client_codec,
)
from livewidgets.relay.security import Limits

ROOM = "class"
# name -> (what the flooder sends, into which room, frames per second; 0 = as fast as it can)
SCENARIOS: dict[str, tuple[str, str, float]] = {
    "baseline": ("", "", 0),
    "ops-burst-same-room": ("ops", ROOM, 0),
    "ops-burst-other-room": ("ops", "elsewhere", 0),
    "ops-5000/s-same-room": ("ops", ROOM, 5000),
    "ops-1000/s-same-room": ("ops", ROOM, 1000),
    "presence-burst-same-room": ("presence", ROOM, 0),
    "invalid-frames-burst": ("invalid", ROOM, 0),
}
CODEC = client_codec(JSON_SUBPROTOCOL)


async def open_client(url: str, room: str, user: str) -> ClientConnection:
    """Connect, hello as ``user`` (with a token for ``user`` when the relay has a secret,
    from ``$FLOOD_SECRET``), join ``room``; return once joined."""
    ws = await connect(url, subprotocols=[Subprotocol(JSON_SUBPROTOCOL)], max_size=None)
    secret = os.environ.get("FLOOD_SECRET")
    token = issue_token(secret.encode(), user=user, room="*") if secret else None
    await ws.send(CODEC.frame(Hello(PROTOCOL_VERSION, user=user, token=token)))
    await ws.send(CODEC.frame(Join(room)))
    while not isinstance(CODEC.decode(await ws.recv()), Joined):
        pass
    return ws


# --- the flooder (a subprocess) ------------------------------------------------------


@dataclass
class FloodStats:
    sent: int = 0
    connections: int = 0
    replies: dict[str, int] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)


def flood_frames(kind: str, room: str, start: int) -> list[str]:
    """A chunk of 1000 frames of ``kind``, client_seq from ``start``."""
    if kind.startswith("ops"):
        return [
            CODEC.frame(OpMessage(room, start + i, 0, SetOp(f"flood/{i % 50}", value=i)))  # type: ignore[misc]
            for i in range(1000)
        ]
    if kind == "presence":
        return [CODEC.frame(PresenceMessage(room, {"cursor": i})) for i in range(1000)]  # type: ignore[misc]
    # invalid-frames: a frame that fails validation, then a valid one (not_joined), so
    # the relay's "16 invalid frames in a row" close never triggers.
    bad = '{"type":"op","room":"class","client_seq":1,"base_version":0,"op":{"op":"nope"}}'
    good = CODEC.frame(Leave("not-joined-room"))
    return [bad if i % 2 else good for i in range(1000)]  # type: ignore[misc]


async def flooder(
    url: str, kind: str, room: str, max_ops: int, seconds: float, rate: float
) -> FloodStats:
    stats = FloodStats()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    seq = 1
    while stats.sent < max_ops and loop.time() < deadline:
        ws = await open_client(url, room, "flooder")
        stats.connections += 1
        reader = asyncio.create_task(_drain(ws, stats))
        # Paced floods send rate/100 frames every 10 ms, on an absolute schedule.
        tick, per_tick, next_tick = 0.01, max(1, round(rate / 100)), loop.time()
        try:
            while stats.sent < max_ops and loop.time() < deadline:
                chunk = flood_frames(kind, room, seq)
                seq += len(chunk)
                for frame in chunk:
                    await ws.send(frame)
                    stats.sent += 1
                    if rate and stats.sent % per_tick == 0:
                        next_tick += tick
                        await asyncio.sleep(max(0.0, next_tick - loop.time()))
                    if stats.sent >= max_ops or loop.time() >= deadline:
                        break
        except ConnectionClosed:
            pass
        if ws.close_code is None:
            await ws.close()
        await reader
        code = str(ws.close_code)
        stats.closes[code] = stats.closes.get(code, 0) + 1
    return stats


async def _drain(ws: ClientConnection, stats: FloodStats) -> None:
    try:
        async for frame in ws:
            message = CODEC.decode(frame)
            key = f"{type(message).__name__}:{getattr(message, 'code', '')}".rstrip(":")
            stats.replies[key] = stats.replies.get(key, 0) + 1
    except ConnectionClosed:
        pass


# --- the calm client (this process) --------------------------------------------------


@dataclass
class Calm:
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    refused: int = 0


async def calm_client(url: str, seconds: float, rate: float, ready: asyncio.Event) -> Calm:
    """Write ``rate`` ops/s for ``seconds``; time each op → ack."""
    result = Calm()
    ws = await open_client(url, ROOM, "calm")
    sent_at: dict[int, float] = {}
    done = asyncio.Event()

    async def read() -> None:
        async for frame in ws:
            message = CODEC.decode(frame)
            if isinstance(message, AckMessage) and message.client_seq in sent_at:
                result.latencies.append(time.perf_counter() - sent_at.pop(message.client_seq))
            elif getattr(message, "code", None):
                result.refused += 1
            if done.is_set() and not sent_at:
                return

    reader = asyncio.create_task(read())
    ready.set()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for seq in range(1, int(seconds * rate) + 1):
        await asyncio.sleep(max(0.0, start + seq / rate - loop.time()))
        sent_at[seq] = time.perf_counter()
        await ws.send(CODEC.frame(OpMessage(ROOM, seq, 0, SetOp(f"calm/{seq % 10}", value=seq))))
        result.sent += 1
    done.set()
    try:
        await asyncio.wait_for(reader, 10.0)  # the last acks (a long grace: we measure them)
    except asyncio.TimeoutError:
        reader.cancel()
    await ws.close()
    return result


# --- orchestration ---------------------------------------------------------------------


async def start_relay(
    store: str, secret_file: str | None
) -> tuple[asyncio.subprocess.Process, str]:
    secret = ["--secret-file", secret_file] if secret_file else []
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "livewidgets.cli", "relay", "--port", "0", "--store", store],
        *["--log-level", "warning", *secret],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    match = re.search(rb"listening on (ws://\S+)", line)
    assert match, line
    return process, match[1].decode()


async def run_scenario(url: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    flood: asyncio.subprocess.Process | None = None
    kind, room, rate = SCENARIOS[name]
    if kind:
        flood = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "tests.security.flood_measure", "--flooder", url],
            *[kind, room, str(args.ops), str(args.seconds), str(rate)],
            stdout=asyncio.subprocess.PIPE,
        )
    ready = asyncio.Event()
    calm = await calm_client(url, args.seconds, args.calm_rate, ready)
    stats: dict[str, Any] = {}
    if flood is not None:
        out, _ = await asyncio.wait_for(flood.communicate(), args.seconds + 30)
        stats = json.loads(out)
    return {"scenario": name, "calm": calm, "flood": stats}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_table(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    """One row per scenario; with --repeat N, p50 and p99 are the median over the runs
    (p99's range in brackets) and max is the worst of all runs."""
    limits = Limits()
    print(
        f"# flood_measure: {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; store {args.store}; "
        f"{'no secret' if args.no_secret else 'tokens'}; "
        f"limits {limits.ops_per_second:g} ops/s (burst {limits.ops_burst:g}), "
        f"{limits.presence_per_second:g} presence/s (burst {limits.presence_burst:g}), "
        f"close after {limits.max_rate_violations} refusals within "
        f"{getattr(limits, 'violation_window', 0):g} s; calm client "
        f"{args.calm_rate:g} ops/s for {args.seconds:g} s; flood <= {args.ops} frames; "
        f"{args.repeat} run(s) per scenario"
    )
    print()
    print(
        "| scenario | flood frames sent | flood closes | flood replies (first run) "
        "| calm acked/sent | calm p50 ms | calm p99 ms | calm max ms |"
    )
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for name, rows in runs.items():
        p50s, p99s, maxes, acked, sent = [], [], [], 0, 0
        for row in rows:
            ms = [x * 1000 for x in row["calm"].latencies]
            p50s.append(percentile(ms, 0.5))
            p99s.append(percentile(ms, 0.99))
            maxes.append(max(ms, default=float("nan")))
            acked, sent = acked + len(ms), sent + row["calm"].sent
        floods = [row["flood"] for row in rows]
        closes: dict[str, int] = {}
        for flood in floods:
            for code, n in flood.get("closes", {}).items():
                closes[code] = closes.get(code, 0) + n
        replies = ", ".join(f"{k} {v}" for k, v in sorted(floods[0].get("replies", {}).items()))
        spread = f" [{min(p99s):.2f}-{max(p99s):.2f}]" if len(rows) > 1 else ""
        print(
            f"| {name} | {sum(f.get('sent', 0) for f in floods) // len(rows)} | "
            f"{', '.join(f'{k}: {v}' for k, v in sorted(closes.items())) or '-'} | "
            f"{replies or '-'} | {acked}/{sent} | {statistics.median(p50s):.2f} | "
            f"{statistics.median(p99s):.2f}{spread} | {max(maxes):.2f} |"
        )


async def orchestrate(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.scenarios}
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store.replace("{tmp}", tmp)
        secret_file = None
        if not args.no_secret:
            # Tokens, as a shared relay runs: limits follow the user across reconnects.
            secret = secrets.token_hex(32)
            os.environ["FLOOD_SECRET"] = secret  # inherited by the flooder processes
            secret_file = os.path.join(tmp, "relay.secret")
            Path(secret_file).write_text(secret)  # noqa: ASYNC240 - tiny, once, at start
        process, url = await start_relay(store, secret_file)
        try:
            for attempt in range(args.repeat):
                for name in args.scenarios:
                    runs[name].append(await run_scenario(url, name, args))
                    print(f"# done: {name} ({attempt + 1}/{args.repeat})", file=sys.stderr)
        finally:
            os.kill(process.pid, signal.SIGTERM)  # the relay we started, by its pid
            await process.wait()
    print_table(runs, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.security.flood_measure")
    parser.add_argument("--store", default="memory://", help="relay store ({tmp}: a temp dir)")
    parser.add_argument("--ops", type=int, default=50_000, help="most frames per flood")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each scenario")
    parser.add_argument("--calm-rate", type=float, default=50.0, help="calm client ops/s")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario")
    parser.add_argument(
        "--no-secret",
        action="store_true",
        help="no tokens (limits are then per connection: a reconnect starts afresh)",
    )
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument(
        "--flooder",
        nargs=6,
        metavar=("URL", "KIND", "ROOM", "OPS", "S", "RATE"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.flooder:
        url, kind, room, ops, seconds, rate = args.flooder
        stats = asyncio.run(flooder(url, kind, room, int(ops), float(seconds), float(rate)))
        print(json.dumps(stats.__dict__))
        return 0
    asyncio.run(orchestrate(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
