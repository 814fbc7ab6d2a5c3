"""10,000 connections on one server process: the connect storm, the memory they
hold, and what one broadcast to all of them costs the server.

One room, ``many_connections`` listeners, spread over ``many_procs`` client
processes (bench.team; each raises its own RLIMIT_NOFILE, the server's is raised by
bench.servers), plus one writer connected beforehand:

1. **storm**: every client process opens its share at one shared instant
   (``start_at``, the machine's monotonic clock), all at once, no concurrency gate:
   WebSocket handshake, then (livewidgets) hello + join until ``joined``. Counted:
   refused handshakes (an HTTP answer other than 101, e.g. 429/503; a TCP refusal or
   reset), closes before ``joined`` (by close code), and attempts that took longer
   than ``many_timeout`` s; the storm's duration (start to the last join) and the
   per-connection p50/p99.
2. **memory**: the server's RSS before the storm (the writer connected) and after it
   settled: KiB per connection.
3. **broadcasts**: the writer sends ``many_broadcasts`` writes, one every
   ``many_gap`` s. Per broadcast: the time from its send until the last listener got
   it, and the server's CPU seconds (all threads, utime + stime, read every ~2 ms
   from its process CPU clock: /proc's 10 ms ticks are too coarse) from its send to
   that last receipt; the mean of those is the server CPU per broadcast. The whole
   window's CPU (heartbeats included: 10,000 connections ping every 20 s, in waves as
   they joined) is kept in the raw results. Livewidgets relays are reported as a
   ratio to the floor's CPU per broadcast of the same run (target ≤ 1.1).

The livewidgets relay runs with the bench's lifted limits (bench.lwrelay ``--limits
bench``): its defaults allow 2,048 connections per address without tokens and 2,000
per room, and every bench client comes from 127.0.0.1 into one room. Its
``max_connections`` (what its fd limit leaves room for) is checked before the storm.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import statistics
import time
from collections.abc import Sequence
from typing import Any

from . import roles
from .results import percentile
from .servers import ServerProcess
from .systems import LW_JSON, LW_MSGPACK, LeanClient, System, parse_marker, system
from .team import Control, Team
from .wire import WireError, open_connection

__all__ = ["many", "storm_listeners"]

# File descriptors a process needs besides its connections (stdio, pipes, epoll, ...).
FD_SPARE = 64


def tcp_counters() -> dict[str, int]:
    """The kernel's listen-queue counters (/proc/net/netstat, this network namespace:
    every process of it counts, so a diagnostic): accept queue full (ListenOverflows),
    SYNs answered with a cookie (SyncookiesSent), SYNs sent again (TCPSynRetrans)."""
    wanted = ("ListenOverflows", "ListenDrops", "SyncookiesSent", "TCPSynRetrans")
    try:
        with open("/proc/net/netstat") as f:
            lines = [line.split() for line in f if line.startswith("TcpExt:")]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    values = dict(zip(lines[0][1:], lines[1][1:], strict=False))
    return {k: int(values[k]) for k in wanted if k in values}


def _fd_limit(pid: int) -> int:
    """The soft RLIMIT_NOFILE of process ``pid`` (/proc/<pid>/limits); -1: unlimited."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return -1 if soft == "unlimited" else int(soft)
    return -1


async def _open(
    sys_: System, url: str, room: str, client_id: str, timeout: float
) -> tuple[LeanClient | None, str]:
    """One storm connection: (client, "ok") or (None, why it failed)."""
    path, sub = (
        ("/", LW_MSGPACK if sys_.codec == "msgpack" else LW_JSON)
        if sys_.is_livewidgets
        else (f"/{room}", None)
    )
    try:
        conn = await open_connection(url, path, sub, timeout)
    except WireError as exc:  # "handshake refused: HTTP/1.1 503 Service Unavailable"
        status = str(exc).split(": ", 1)[-1].split()
        return None, f"http {status[1] if len(status) > 1 else '?'}"
    except TimeoutError:
        return None, "timeout"
    except OSError as exc:
        return None, f"tcp {errno.errorcode.get(exc.errno or 0, type(exc).__name__)}"
    client = LeanClient(sys_, conn, room, client_id)
    if sys_.is_livewidgets:
        try:
            await client._lw_join(timeout, None)
        except TimeoutError:
            conn.close()
            return None, "timeout"
        except ConnectionError:
            return None, f"close {conn.close_code}"
        except RuntimeError:  # an error message instead of joined
            conn.close()
            return None, "join refused"
    return client, "ok"


async def storm_listeners(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """At ``start_at`` open ``n`` listeners at once; report the storm as ready info;
    then count deliveries per broadcast (by send time) until all arrived or ``until``.

    Params: system, url, room, n, start_at, timeout, expect, until.
    """
    sys_ = system(p["system"])
    delay = p["start_at"] - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    started = time.monotonic()

    async def one(i: int) -> tuple[LeanClient | None, str, float]:
        client, outcome = await _open(sys_, p["url"], p["room"], roles._cid("m", i), p["timeout"])
        return client, outcome, time.monotonic() - started

    opened = await asyncio.gather(*(one(i) for i in range(p["n"])))
    clients = [c for c, _, _ in opened if c is not None]
    outcomes: dict[str, int] = {}
    for _, outcome, _ in opened:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    per_message: dict[int, list[int]] = {}
    counter = [0]
    total = p["expect"] * len(clients)
    done = asyncio.get_running_loop().create_future()

    def on_frame(payload: bytes) -> None:
        # Only the writer's broadcasts carry a marker; nothing is decoded.
        if b"@T" not in payload:
            return
        sent = parse_marker(payload)
        if sent < 0:
            return
        received = time.monotonic_ns()
        entry = per_message.get(sent)
        if entry is None:
            per_message[sent] = [1, received]
        else:
            entry[0] += 1
            entry[1] = received
        counter[0] += 1
        if counter[0] >= total and not done.done():
            done.set_result(None)

    for client in clients:
        client.conn.on_frame = on_frame
        while not client.conn._queue.empty():
            on_frame(client.conn._queue.get_nowait())
    info = {
        "outcomes": outcomes,
        "started": started,
        # Seconds from start_at to each successful join (ok) and to each failure.
        "ok_s": [round(t, 4) for c, _, t in opened if c is not None],
        "last_s": max((t for _, _, t in opened), default=0.0),
    }
    go = await ctl.aready(info, timeout=600)
    if total:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, max(0.1, go["t0"] + p["until"] - time.monotonic()))
    for client in clients:
        client.close()
    await asyncio.sleep(0.05)
    return {"clients": len(clients), "per_message": {str(k): v for k, v in per_message.items()}}


def _cpu_clock(pid: int) -> int:
    """The clock id of process ``pid``'s CPU time, all threads (Linux: readable with
    ``time.clock_gettime`` to the nanosecond, where /proc/<pid>/stat counts 10 ms ticks)."""
    return ((~pid) << 3) | 2  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)


def _cpu_between(samples: list[tuple[int, float]], start: int, end: int) -> float:
    """CPU seconds between the last sample at or before ``start`` and the first at or
    after ``end`` (monotonic ns)."""
    times = [t for t, _ in samples]
    i = max(0, bisect.bisect_right(times, start) - 1)
    j = min(len(samples) - 1, bisect.bisect_left(times, end))
    return samples[j][1] - samples[i][1]


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _run(ctx: Any, sys_: System, server: ServerProcess) -> dict[str, Any]:
    cfg = ctx.config
    n = cfg.many_connections
    fd_limit = _fd_limit(server.pid)
    if 0 <= fd_limit < n + FD_SPARE:
        raise RuntimeError(
            f"the server's open-file limit is {fd_limit}, too low for {n} connections "
            "(bench.servers raises it to the hard limit: raise that, ulimit -Hn)"
        )
    times = [i * cfg.many_gap for i in range(cfg.many_broadcasts)]
    window = cfg.many_broadcasts * cfg.many_gap
    common = {"system": sys_.name, "url": server.url, "room": "many"}
    with Team() as team:
        team.spawn(roles.fanout_writer, {**common, "times": times, "key": "many/x"})
        team.wait_ready(60)
        time.sleep(0.3)
        rss_before = server.rss_kib()
        start_at = time.monotonic() + 0.5  # after every listener process forked
        tcp0 = tcp_counters()
        for part in _split(n, cfg.many_procs):
            team.spawn(
                storm_listeners,
                {
                    **common,
                    "n": part,
                    "start_at": start_at,
                    "timeout": cfg.many_timeout,
                    "expect": len(times),
                    "until": window + 60,
                },
            )
        time.sleep(max(0.0, start_at - 0.02 - time.monotonic()))
        storm_cpu0 = server.cpu_seconds()
        # The listeners' storm reports (wait_ready returns those not returned before).
        infos = team.wait_ready(cfg.many_timeout + 120)
        storm_cpu = server.cpu_seconds() - storm_cpu0
        tcp1 = tcp_counters()
        time.sleep(cfg.many_settle)  # the storm's last frames, the collector
        rss_after = server.rss_kib()
        # The server's CPU when nothing is sent (context: heartbeats, timers).
        clock = _cpu_clock(server.pid)
        q0, c0 = time.monotonic(), time.clock_gettime(clock)
        time.sleep(cfg.many_quiet)
        idle_cpu_per_s = (time.clock_gettime(clock) - c0) / (time.monotonic() - q0)
        t0 = team.go(0.3)
        # The server's CPU clock every ~2 ms while the broadcasts run: each
        # broadcast's cost is read off it between its send and its last receipt.
        samples: list[tuple[int, float]] = []
        end = t0 + window
        while time.monotonic() < end:  # bounded by the window
            samples.append((time.monotonic_ns(), time.clock_gettime(clock)))
            time.sleep(0.002)
        results = team.results(window + 120)
    outcomes: dict[str, int] = {}
    for info in infos:
        for k, v in info["outcomes"].items():
            outcomes[k] = outcomes.get(k, 0) + v
    ok = outcomes.get("ok", 0)
    ok_s = [t for info in infos for t in info["ok_s"]]
    merged: dict[str, list[int]] = {}
    for r in results[1:]:
        for sent, (count, last) in r["per_message"].items():
            entry = merged.setdefault(sent, [0, 0])
            entry[0] += count
            entry[1] = max(entry[1], last)
    busy = [
        _cpu_between(samples, int(sent), last)
        for sent, (count, last) in merged.items()
        if count >= ok and int(sent) >= samples[0][0]
    ]
    cpu_window = samples[-1][1] - samples[0][1]
    elapsed = (samples[-1][0] - samples[0][0]) / 1e9
    reach_ms = sorted(
        (last - int(sent)) / 1e6 for sent, (count, last) in merged.items() if count >= ok
    )
    return {
        "n": n,
        "ok": ok,
        "outcomes": outcomes,
        "refused": sum(v for k, v in outcomes.items() if k not in ("ok", "timeout")),
        "timed_out": outcomes.get("timeout", 0),
        "storm_s": max(info["last_s"] for info in infos),
        "storm_spread_s": max(i["started"] for i in infos) - min(i["started"] for i in infos),
        "join_p50_s": percentile(ok_s, 50),
        "join_p99_s": percentile(ok_s, 99),
        "storm_cpu_s": storm_cpu,
        "storm_cpu_ms_per_conn": 1e3 * storm_cpu / n,
        "storm_tcp": {k: tcp1[k] - tcp0[k] for k in tcp1 if k in tcp0},
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "kib_per_conn": (rss_after - rss_before) / ok if ok else None,
        "idle_cpu_per_s": idle_cpu_per_s,
        # Send to last receipt, each broadcast (ms of server CPU): the metric's samples.
        "busy_cpu_ms": [round(1e3 * c, 2) for c in busy],
        "cpu_ms_per_broadcast": 1e3 * statistics.mean(busy) if busy else None,
        # The whole window (every broadcast, and heartbeats in between), per broadcast.
        "window_cpu_ms_per_broadcast": 1e3 * cpu_window / len(times),
        "window_cpu_s": cpu_window,
        "window_s": elapsed,
        "reach_all_ms": reach_ms,
        "reached_all": len(reach_ms),
        "broadcasts": len(times),
        "writer": results[0],
        "server_fd_limit": fd_limit,
    }


def many(ctx: Any, systems: Sequence[System]) -> None:
    """10,000 listeners in one room: storm, RSS per connection, CPU per broadcast."""
    cfg = ctx.config
    ran = []
    for sys_ in systems:
        if sys_.name not in cfg.many_systems or sys_.server == "pycrdt":
            continue

        def run(sys_: System = sys_) -> None:
            # --limits bench: the defaults would refuse all but 2,000 (per room) of the
            # listeners, all from 127.0.0.1 (2,048 per address without tokens).
            with ctx.server(sys_, "many", relay_args=("--limits", "bench")) as server:
                raw = _run(ctx, sys_, server)
            _report(ctx, sys_.name, raw)
            ran.append(sys_.name)

        ctx.guard("many", sys_, run)
    metric = ctx.results.metric("many", "cpu_ms_per_broadcast")
    if metric is None or "floor" not in ran:
        return
    n = cfg.many_connections
    for name in ran:
        if name != "floor":
            ctx.results.put(
                "many",
                "cpu_vs_floor",
                name,
                metric.ratio(name, "floor"),
                label=f"{n} conns: server CPU per broadcast / the floor's (target ≤ 1.1)",
                unit="x",
                better="lower",
                compare=False,
            )


def _report(ctx: Any, name: str, raw: dict[str, Any]) -> None:
    put = ctx.results.put
    n = raw["n"]
    reach = raw["reach_all_ms"]
    note = None
    if raw["reached_all"] < raw["broadcasts"]:
        note = f"{raw['reached_all']}/{raw['broadcasts']} broadcasts reached all {raw['ok']}"
    rows: tuple[tuple[str, Any, str, str, bool, str | None], ...] = (
        (
            "kib_per_conn",
            raw["kib_per_conn"],
            "server RSS per conn (target ≤ 12 KB)",
            "KiB",
            True,
            None,
        ),
        (
            "cpu_ms_per_broadcast",
            raw["cpu_ms_per_broadcast"],
            "server CPU per broadcast to all",
            "ms",
            True,
            None,
        ),
        (
            "reach_all_ms",
            percentile(reach, 50),
            "one broadcast reaches all (median)",
            "ms",
            True,
            note,
        ),
        ("storm_s", raw["storm_s"], "connect storm: all connected and joined", "s", True, None),
        (
            "join_p99_s",
            raw["join_p99_s"],
            "connect storm: one connection's join p99",
            "s",
            False,
            None,
        ),
        (
            "refused",
            raw["refused"],
            "connect storm: handshakes refused (target 0)",
            "",
            False,
            None,
        ),
        (
            "timed_out",
            raw["timed_out"],
            "connect storm: handshakes timed out (target 0)",
            "",
            False,
            None,
        ),
    )
    for key, value, label, unit, compare, row_note in rows:
        put(
            "many",
            key,
            name,
            value,
            label=f"{n} conns: {label}",
            unit=unit,
            better="lower",
            compare=compare,
            note=row_note,
        )
    ctx.results.raw.setdefault("many", {})[name] = raw
