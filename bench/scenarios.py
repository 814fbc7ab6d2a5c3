"""The scenarios (SCENARIOS; flood and lesson have modules of their own). Each starts
a fresh server process per system, drives it from separate client processes
(bench.roles via bench.team) and reports metrics.

pycrdt-sqlite (bench.ypeer with a SQLiteYStore per room) writes to its store *behind*
its broadcasts: its writers' "acks" are their own echoes, sent before the update is
in the store. Where that matters (join, durability, throughput) the scenarios read
the store's progress from the server's /healthz (updates committed, updates still
pending) and report what was committed, not only what was echoed.

A scenario a system cannot run is reported as "n/a"; one that failed as None (and
its error is kept in the results).
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import roles
from .flood import flood
from .lesson import lesson
from .many import many
from .results import Results, percentile
from .rules_cost import rules_cost
from .scaleout import scaleout
from .servers import ServerProcess
from .systems import SYSTEMS, System
from .team import Team

__all__ = ["SCENARIOS", "Config"]

NA = "n/a"


@dataclass
class Config:
    """Sizes of one run (``full()`` or ``quick()``)."""

    quick: bool = False
    fanout_rate: int = 200
    fanout_seconds: float = 5.0
    fanout_subscribers: tuple[int, ...] = (1, 10, 100)
    sat_writers: int = 10
    sat_readers: int = 10
    sat_window: int = 32
    sat_warmup: float = 0.5
    sat_seconds: float = 3.0
    idle_connections: int = 2000
    idle_broadcasts: int = 5
    # Two of the four livewidgets variants keep the run short (each runs two storms:
    # listeners, and members announced with a presence state). Defaults (JSON client,
    # SQLite relay) and the fastest pair (msgpack, memory).
    idle_systems: tuple[str, ...] = ("lw-json-sqlite", "lw-msgpack-mem", "floor", "pycrdt")
    history: tuple[int, ...] = (10_000, 100_000)
    history_writers: int = 4
    join_repeats: int = 20
    join_systems: tuple[str, ...] = tuple(s.name for s in SYSTEMS)
    # pycrdt-sqlite commits one update per transaction behind its echoes (~700/s when
    # idle, under 100/s while echoing at full speed, on the bench machine): a history
    # is usable only once the store caught up, and 100k updates take it minutes.
    # Larger histories are not built for it (reported "-", "not run: time budget").
    ystore_max_history: int = 10_000
    ystore_drain_timeout: float = 300.0
    e2e_rate: int = 100
    e2e_seconds: float = 10.0  # 1,000 samples: a p99 of 300 rested on 3
    text_clients: int = 10
    text_rate: float = 10.0
    text_seconds: float = 30.0
    # 30 s each: the defaults (JSON client, SQLite relay), the fastest pair, the peer
    # without and with its SQLite store.
    text_systems: tuple[str, ...] = (
        "lw-json-sqlite",
        "lw-msgpack-mem",
        "pycrdt",
        "pycrdt-sqlite",
    )
    durability_seconds: float = 3.0
    # A calm writer with and without a flooder (bench.flood): the flood lasts about
    # (count - burst) / rate = 5 s at the default 200/s, burst 400.
    flood_calm_rate: float = 50.0
    flood_seconds: float = 4.0
    flood_count: int = 1400
    flood_systems: tuple[str, ...] = ("lw-msgpack-sqlite",)
    # A lesson (bench.lesson) on a relay with the default limits and store: a slide
    # every lesson_period s, students answering one slide in ten; most students are
    # light clients in lesson_procs processes, lesson_sampled are full sessions.
    lesson_students: tuple[int, ...] = (100, 500, 1000)
    lesson_slides: int = 20
    lesson_period: float = 1.0
    lesson_procs: int = 4
    lesson_sampled: int = 10
    lesson_systems: tuple[str, ...] = ("lw-json-sqlite",)
    # The fan-out at 10 without and with 20 room rules (bench.rules_cost).
    rules_systems: tuple[str, ...] = ("lw-msgpack-mem", "lw-msgpack-sqlite")
    # Two relays on one Redis (bench.scaleout): fan-out across relays at fanout_rate for
    # fanout_seconds vs one relay; saturated writers/readers (sat_window, sat_warmup,
    # sat_seconds) on one relay vs split over two; failover: SIGKILL relay A after
    # scaleout_kill_at s, clients writing for scaleout_after_kill s more.
    scaleout_redis: str = "redis://127.0.0.1:6379/0"
    scaleout_subscribers: tuple[int, ...] = (1, 10)
    scaleout_writers: int = 10
    scaleout_readers: int = 10
    scaleout_failover_clients: int = 10
    scaleout_failover_rate: float = 20.0
    scaleout_kill_at: float = 2.0
    scaleout_after_kill: float = 5.0
    scaleout_systems: tuple[str, ...] = ("lw-msgpack-mem",)
    # 10,000 listeners in one room (bench.many): a connect storm from many_procs
    # processes, RSS per connection, then many_broadcasts writes many_gap s apart.
    many_connections: int = 10_000
    many_procs: int = 4
    many_broadcasts: int = 10
    many_gap: float = 1.0
    many_timeout: float = 60.0
    many_settle: float = 1.0
    many_quiet: float = 3.0
    many_systems: tuple[str, ...] = ("lw-json-sqlite", "lw-msgpack-mem", "floor")
    profile_dir: str | None = None
    # What-if patches applied to every livewidgets relay (bench.experiments).
    lw_experiments: tuple[str, ...] = ()
    # CPUs every server runs on, the harness and its clients on the others (None: all
    # share every CPU, the default). A diagnostic: it takes the load generators out of
    # the server's run queue (bench --pin-server; docs/benchmarks.md "What limits us").
    server_cpus: tuple[int, ...] | None = None
    # Nice value every server starts with (None: the harness's). A diagnostic: a
    # negative one gives the servers more CPU weight than their clients (bench
    # --server-nice).
    server_nice: int | None = None

    @classmethod
    def full(cls) -> Config:
        return cls()

    @classmethod
    def quick_(cls) -> Config:
        return cls(
            quick=True,
            fanout_seconds=0.4,
            sat_warmup=0.2,
            sat_seconds=0.7,
            idle_connections=200,
            idle_broadcasts=2,
            history=(1_000, 10_000),
            join_systems=("lw-msgpack-mem", "lw-msgpack-sqlite", "pycrdt", "pycrdt-sqlite"),
            ystore_max_history=1_000,
            history_writers=2,
            join_repeats=3,
            e2e_seconds=0.5,
            text_seconds=3.0,
            text_systems=("lw-json-sqlite", "pycrdt", "pycrdt-sqlite"),
            durability_seconds=0.7,
            flood_seconds=2.0,
            flood_count=800,
            lesson_students=(50, 200),
            lesson_slides=5,
            scaleout_kill_at=1.0,
            scaleout_after_kill=2.0,
            many_connections=2000,
            many_broadcasts=5,
            many_gap=0.5,
            many_quiet=1.0,
        )

    @classmethod
    def smoke(cls) -> Config:
        """Minimal counts: proves every code path still runs (CI), measures nothing."""
        return cls(
            quick=True,
            fanout_rate=50,
            fanout_seconds=0.2,
            fanout_subscribers=(2,),
            sat_writers=2,
            sat_readers=2,
            sat_warmup=0.1,
            sat_seconds=0.3,
            idle_connections=20,
            idle_broadcasts=2,
            history=(100, 300),
            history_writers=1,
            join_repeats=1,
            e2e_rate=50,
            e2e_seconds=0.2,
            text_clients=2,
            text_rate=10.0,
            text_seconds=0.3,
            text_systems=("lw-json-mem", "pycrdt", "pycrdt-sqlite"),
            # The idle scenario is for the store-less question "what does a connection
            # cost"; pycrdt-sqlite is left out of it in every mode.
            idle_systems=tuple(s.name for s in SYSTEMS if s.name != "pycrdt-sqlite"),
            durability_seconds=0.3,
            flood_calm_rate=20.0,
            flood_seconds=0.5,
            flood_count=500,
            flood_systems=tuple(s.name for s in SYSTEMS if s.is_livewidgets),
            lesson_students=(12,),
            lesson_slides=3,
            lesson_period=0.3,
            lesson_procs=2,
            lesson_sampled=2,
            lesson_systems=("lw-json-mem", "lw-msgpack-sqlite"),
            rules_systems=tuple(s.name for s in SYSTEMS if s.is_livewidgets),
            scaleout_subscribers=(2,),
            scaleout_writers=2,
            scaleout_readers=2,
            scaleout_failover_clients=4,
            scaleout_kill_at=0.5,
            scaleout_after_kill=1.5,
            scaleout_systems=("lw-json-mem",),
            many_connections=30,
            many_procs=2,
            many_broadcasts=2,
            many_gap=0.2,
            many_settle=0.1,
            many_quiet=0.2,
            many_systems=("lw-json-mem", "lw-msgpack-sqlite", "floor"),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    config: Config
    results: Results
    log: Callable[[str], None]

    def server(self, sys_: System, scenario: str, relay_args: Sequence[str] = ()) -> ServerProcess:
        profile = None
        if self.config.profile_dir and sys_.is_livewidgets:
            profile = Path(self.config.profile_dir) / f"{scenario}-{sys_.name}.txt"
        experiments = self.config.lw_experiments if sys_.is_livewidgets else ()
        cpus = frozenset(self.config.server_cpus) if self.config.server_cpus else None
        return ServerProcess(
            sys_,
            profile_to=profile,
            experiments=experiments,
            cpus=cpus,
            nice=self.config.server_nice,
            relay_args=relay_args if sys_.is_livewidgets else (),
        )

    def guard(self, scenario: str, sys_: System, fn: Callable[[], None]) -> None:
        """Run one system's part of a scenario; a failure is recorded, not fatal."""
        started = time.monotonic()
        try:
            fn()
        except Exception as exc:
            message = f"{scenario}/{sys_.name}: {type(exc).__name__}: {exc}"
            self.results.errors.append(message + "\n" + traceback.format_exc())
            self.log(f"  ! {message.splitlines()[0]}")
        self.log(f"  {scenario:<11} {sys_.name:<18} {time.monotonic() - started:6.1f} s")


def _ystore(sys_: System) -> bool:
    """pycrdt-websocket with a YStore (write-behind: echoes precede the store write)."""
    return sys_.server == "pycrdt" and sys_.store is not None


def healthz(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """``GET /healthz`` of a server that answers it (livewidgets relay, bench.ypeer)."""
    host, _, port = url[len("ws://") :].rstrip("/").rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        body = conn.getresponse().read()
    finally:
        conn.close()
    result: dict[str, Any] = json.loads(body)
    return result


def wait_store_drained(url: str, timeout: float) -> tuple[float, dict[str, Any]]:
    """Wait until a ystore server has unloaded every room (so every update of theirs
    is committed: bench.ypeer unloads a room only then); (seconds, last /healthz)."""
    started = time.monotonic()
    health = healthz(url)
    while health["rooms"] and time.monotonic() - started < timeout:
        time.sleep(0.1)
        health = healthz(url)
    if health["rooms"]:
        raise RuntimeError(f"store still behind after {timeout:.0f} s: {health}")
    return time.monotonic() - started, health


def _ms(ns: float | None) -> float | None:
    return None if ns is None else ns / 1e6


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


# --- 1. fan-out latency ------------------------------------------------------------------


def fanout_once(
    cfg: Config, sys_: System, server: ServerProcess, room: str, subs: int, count: int
) -> tuple[list[dict[str, Any]], float, int]:
    """One fan-out run in ``room``: ``count`` writes at cfg.fanout_rate to ``subs``
    subscribers. The readers' results then the writer's, the server's CPU seconds
    and preemptions during the run."""
    with Team() as team:
        for n in _split(subs, 1 if subs <= 10 else 2):
            team.spawn(
                roles.readers,
                {
                    "system": sys_.name,
                    "url": server.url,
                    "room": room,
                    "n": n,
                    "expect": count,
                    "until": cfg.fanout_seconds + 5,
                },
            )
        team.wait_ready(120)
        team.spawn(
            roles.fanout_writer,
            {
                "system": sys_.name,
                "url": server.url,
                "room": room,
                "rate": cfg.fanout_rate,
                "count": count,
                "key": "fan/x",
            },
        )
        cpu, preempted = server.cpu_seconds(), server.preemptions()
        team.start(delay=0.1)
        results = team.results(cfg.fanout_seconds + 60)
        return results, server.cpu_seconds() - cpu, server.preemptions() - preempted


def fanout(ctx: Context, systems: Sequence[System]) -> None:
    """One writer at a fixed rate; 1/10/100 subscribers; delivery latency p50/p99."""
    cfg = ctx.config
    count = int(cfg.fanout_rate * cfg.fanout_seconds)
    for sys_ in systems:

        def run(sys_: System = sys_) -> None:
            with ctx.server(sys_, "fanout") as server:
                for subs in cfg.fanout_subscribers:
                    results, cpu, preempted = fanout_once(
                        cfg, sys_, server, f"fanout{subs}", subs, count
                    )
                    lat = [x for r in results[:-1] for x in r["latencies_ns"]]
                    received = sum(r["received"] for r in results[:-1])
                    note = None
                    if received < count * subs:
                        note = f"{received}/{count * subs} delivered"
                    for q in (50, 99):
                        ctx.results.put(
                            "fanout",
                            f"p{q}_ms@{subs}",
                            sys_.name,
                            _ms(percentile(lat, q)),
                            label=f"fan-out p{q}, {subs} sub{'s' if subs > 1 else ''}",
                            unit="ms",
                            better="lower",
                            note=note,
                        )
                    # Context for the latencies: the server's CPU per write (its whole
                    # cost: decode, order, encode, one socket write per subscriber) and
                    # how often it lost its CPU to another process while it could run.
                    s_ = "s" if subs > 1 else ""
                    ctx.results.put(
                        "fanout",
                        f"cpu_us@{subs}",
                        sys_.name,
                        round(cpu / count * 1e6, 1),
                        label=f"fan-out: server CPU per write, {subs} sub{s_}",
                        unit="µs",
                        better="lower",
                        compare=False,
                    )
                    ctx.results.put(
                        "fanout",
                        f"preempted@{subs}",
                        sys_.name,
                        round(preempted / count, 2),
                        label=f"fan-out: server preempted per write, {subs} sub{s_}",
                        unit="",
                        better="lower",
                        compare=False,
                    )
                    ctx.results.raw.setdefault("fanout", {}).setdefault(sys_.name, {})[subs] = {
                        "received": received,
                        "expected": count * subs,
                        "late_writes": results[-1]["late"],
                        "p50_ms": _ms(percentile(lat, 50)),
                        "p90_ms": _ms(percentile(lat, 90)),
                        "p99_ms": _ms(percentile(lat, 99)),
                        "max_ms": _ms(max(lat) if lat else None),
                    }

        ctx.guard("fanout", sys_, run)


# --- 2. saturated throughput -------------------------------------------------------------


def throughput(ctx: Context, systems: Sequence[System]) -> None:
    """10 writers as fast as allowed + 10 readers; messages delivered to readers per second."""
    cfg = ctx.config
    w0, w1 = cfg.sat_warmup, cfg.sat_warmup + cfg.sat_seconds
    for sys_ in systems:

        def run(sys_: System = sys_) -> None:
            with ctx.server(sys_, "throughput") as server, Team() as team:
                common = {"system": sys_.name, "url": server.url, "room": "sat"}
                team.spawn(
                    roles.readers,
                    {
                        **common,
                        "n": cfg.sat_readers,
                        "until": w1 + 0.05,
                        "window": [w0, w1],
                        "sample": 50,
                    },
                )
                team.wait_ready(60)
                team.spawn(
                    roles.writers,
                    {
                        **common,
                        "n": cfg.sat_writers,
                        "window": cfg.sat_window,
                        "duration": w1 + 0.05,
                        "key": "sat",
                        "window_at": [w0, w1],
                    },
                )
                team.wait_ready(60)
                cpu: list[float] = []
                store: list[dict[str, Any]] = []
                t0 = team.go(0.15)
                samples = [(w0, cpu), (w1, cpu)]

                def tick() -> None:
                    while samples and time.monotonic() >= t0 + samples[0][0]:
                        samples.pop(0)[1].append(server.cpu_seconds())
                        if _ystore(sys_):  # how far the write-behind store kept up
                            store.append(healthz(server.url))

                results = team.results(w1 + 60, tick=tick, every=0.01)
            reader, writer = results
            counts = reader["window_counts"]
            rate = (counts[1] - counts[0]) / cfg.sat_seconds if len(counts) == 2 else None
            cpu_pct = 100 * (cpu[1] - cpu[0]) / cfg.sat_seconds if len(cpu) == 2 else None
            lat = reader["latencies_ns"]
            client_cpu = [
                100 * (r["window_cpu_s"][1] - r["window_cpu_s"][0]) / cfg.sat_seconds
                for r in (reader, writer)
                if len(r.get("window_cpu_s", [])) == 2
            ]
            put = ctx.results.put
            put(
                "throughput",
                "delivered_per_s",
                sys_.name,
                rate,
                label="saturated: delivered msgs/s (10 readers)",
                unit="msg/s",
                better="higher",
            )
            put(
                "throughput",
                "server_cpu_pct",
                sys_.name,
                cpu_pct,
                label="saturated: server CPU",
                unit="%",
                better="lower",
                compare=False,
            )
            put(
                "throughput",
                "client_cpu_pct",
                sys_.name,
                sum(client_cpu) if len(client_cpu) == 2 else None,
                label="saturated: client processes' CPU (readers + writers)",
                unit="%",
                better="lower",
                compare=False,
            )
            per_core = rate / (cpu_pct / 100) if rate and cpu_pct else None
            put(
                "throughput",
                "delivered_per_core_s",
                sys_.name,
                per_core,
                label="saturated: delivered msgs per server CPU-second",
                unit="msg/cpu-s",
                better="higher",
            )
            put(
                "throughput",
                "p50_ms_loaded",
                sys_.name,
                _ms(percentile(lat, 50)),
                label="saturated: delivery p50",
                unit="ms",
                better="lower",
            )
            ctx.results.raw.setdefault("throughput", {})[sys_.name] = {
                "reader": {k: v for k, v in reader.items() if k != "latencies_ns"},
                "writer": writer,
                "cpu_samples": cpu,
                "store_samples": store,
            }

        ctx.guard("throughput", sys_, run)


# --- 3. idle connections -------------------------------------------------------------------


def idle(ctx: Context, systems: Sequence[System]) -> None:
    """N idle members of one room: RSS per connection, time to reach all of them."""
    cfg = ctx.config
    n = cfg.idle_connections
    times = [0.25 * i for i in range(cfg.idle_broadcasts)]
    for sys_ in systems:
        if sys_.name not in cfg.idle_systems:
            continue

        def run(sys_: System = sys_) -> None:
            with ctx.server(sys_, "idle") as server, Team() as team:
                common = {"system": sys_.name, "url": server.url, "room": "idle"}
                team.spawn(roles.fanout_writer, {**common, "times": times, "key": "idle/x"})
                team.wait_ready(60)
                time.sleep(0.3 if n >= 1000 else 0.05)
                rss_before = server.rss_kib()
                started = time.monotonic()
                for part in _split(n, 2):
                    team.spawn(
                        roles.readers,
                        {
                            **common,
                            "n": part,
                            "expect": len(times),
                            "until": times[-1] + 30,
                            "per_message": True,
                        },
                    )
                infos = team.wait_ready(600)
                connect_s = time.monotonic() - started
                time.sleep(0.5 if n >= 1000 else 0.1)  # let the join storm drain
                rss_after = server.rss_kib()
                team.go(0.15)
                results = team.results(times[-1] + 90)
                if sys_.server == "lw":
                    announced_s = _announced_storm(server.url, sys_, n)
            merged: dict[str, list[int]] = {}
            for r in results[1:]:
                for sent, (count, last) in r["per_message"].items():
                    entry = merged.setdefault(sent, [0, 0])
                    entry[0] += count
                    entry[1] = max(entry[1], last)
            complete = [last - int(sent) for sent, (count, last) in merged.items() if count >= n]
            all_ms = statistics.median(complete) / 1e6 if complete else None
            note = (
                None
                if len(complete) == len(times)
                else (f"{len(complete)}/{len(times)} broadcasts reached all {n}")
            )
            put = ctx.results.put
            put(
                "idle",
                "rss_kib_per_conn",
                sys_.name,
                (rss_after - rss_before) / n,
                label=f"{n} idle conns: server RSS per conn",
                unit="KiB",
                better="lower",
            )
            put(
                "idle",
                "broadcast_all_ms",
                sys_.name,
                all_ms,
                label=f"{n} idle conns: one broadcast reaches all",
                unit="ms",
                better="lower",
                note=note,
            )
            put(
                "idle",
                "connect_all_s",
                sys_.name,
                connect_s,
                label=f"{n} idle conns: connect + join all",
                unit="s",
                better="lower",
            )
            if sys_.server == "lw":
                put(
                    "idle",
                    "connect_announced_s",
                    sys_.name,
                    announced_s,
                    label=f"{n} conns, each announced with a presence state: connect + join all",
                    unit="s",
                    better="lower",
                )
            ctx.results.raw.setdefault("idle", {})[sys_.name] = {
                "rss_before_kib": rss_before,
                "rss_after_kib": rss_after,
                "reader_connect_s": [i["connect_s"] for i in infos],
                "broadcast_all_ms": [c / 1e6 for c in complete],
            }

        ctx.guard("idle", sys_, run)


def _announced_storm(url: str, sys_: System, n: int) -> float:
    """Seconds for ``n`` members that each join with a presence state (as kernels do)
    to connect and join one room: every member learns every other, n² entries in all.
    pycrdt-websocket has no counterpart (it sends a newcomer no one's awareness)."""
    time.sleep(0.5 if n >= 1000 else 0.1)  # the listeners' connections close
    with Team() as team:
        started = time.monotonic()
        for part in _split(n, 2):
            team.spawn(
                roles.readers,
                {
                    "system": sys_.name,
                    "url": url,
                    "room": "idle-announced",
                    "n": part,
                    "until": 0.1,
                    "presence": {"status": "active"},
                },
            )
        team.wait_ready(600)
        connect_s = time.monotonic() - started
        team.go(0.05)
        team.results(60)
    return connect_s


# --- 4. join time with history -------------------------------------------------------------


def join(ctx: Context, systems: Sequence[System]) -> None:
    """Join a room with H ops of history: room in memory, and, where the server unloads
    idle rooms (livewidgets, pycrdt-sqlite), room loaded from its store.

    pycrdt-sqlite: after the build, wait until the store has committed every update
    (the server then unloads the room) before any join is timed.
    """
    cfg = ctx.config
    floor = [s for s in systems if s.server == "floor"]
    for sys_ in floor:
        for h in cfg.history:
            for mode in ("loaded", "unloaded"):
                _put_join(ctx, sys_.name, h, mode, NA)
    by_server: dict[str, list[System]] = {}
    for sys_ in systems:
        if sys_.server != "floor" and sys_.name in cfg.join_systems:
            by_server.setdefault(sys_.server_key, []).append(sys_)
    for group in by_server.values():
        builder = next((s for s in group if s.codec == "msgpack"), group[0])

        def run(group: list[System] = group, builder: System = builder) -> None:
            with ctx.server(builder, "join") as server:
                for h in cfg.history:
                    room = f"hist{h}"
                    if _ystore(builder) and h > cfg.ystore_max_history:
                        for sys_ in group:
                            for mode in ("loaded", "unloaded"):
                                _put_join(ctx, sys_.name, h, mode, None, "not run: time budget")
                        continue
                    started = time.monotonic()
                    with Team() as team:
                        for i, part in enumerate(_split(h, cfg.history_writers)):
                            team.spawn(
                                roles.writers,
                                {
                                    "system": builder.name,
                                    "url": server.url,
                                    "room": room,
                                    "n": 1,
                                    "window": 64,
                                    "count": part,
                                    "keys": 100,
                                    "key": f"h{i}",
                                    "max_s": 120,
                                },
                            )
                        team.start(delay=0.1)
                        built = team.results(300)
                    build_s = time.monotonic() - started
                    acked = sum(r["acked"] for r in built)
                    ctx.results.raw.setdefault("join_build", {})[f"{builder.server_key}@{h}"] = {
                        "ops": acked,
                        "seconds": build_s,
                        "ops_per_s": acked / build_s,
                    }
                    if acked < h:
                        raise RuntimeError(f"history: only {acked}/{h} ops acknowledged")
                    if _ystore(builder):
                        drain_s, health = wait_store_drained(server.url, cfg.ystore_drain_timeout)
                        ctx.results.raw["join_build"][f"{builder.server_key}@{h}"].update(
                            store_drain_s=drain_s,
                            committed=health["committed"],
                            store_errors=health["store_errors"],
                        )
                        if health["store_errors"] or health["committed"] < acked:
                            raise RuntimeError(f"history: store incomplete: {health}")
                    time.sleep(0.3)
                    for sys_ in group:
                        modes = ("loaded", "unloaded") if sys_.loads_from_store else ("loaded",)
                        for mode in modes:
                            with Team() as team:
                                team.spawn(
                                    roles.joiner,
                                    {
                                        "system": sys_.name,
                                        "url": server.url,
                                        "room": room,
                                        "repeats": cfg.join_repeats,
                                        "hold": mode == "loaded",
                                        "pause": 0.02 if mode == "loaded" else 0.1,
                                    },
                                )
                                team.start(delay=0.05)
                                (res,) = team.results(120)
                            _put_join(
                                ctx, sys_.name, h, mode, 1000 * statistics.median(res["join_s"])
                            )
                            ctx.results.raw.setdefault("join", {}).setdefault(sys_.name, {})[
                                f"{h}-{mode}"
                            ] = res["join_s"]
                            if mode == "unloaded":  # joins that /healthz showed unloaded
                                ctx.results.raw.setdefault("join_unloaded_confirmed", {})[
                                    f"{sys_.name}@{h}"
                                ] = f"{res['confirmed_unloaded']}/{cfg.join_repeats}"
                        if not sys_.loads_from_store:
                            _put_join(ctx, sys_.name, h, "unloaded", NA)

        ctx.guard("join", builder, run)
    for sys_ in systems:
        for mode in ("loaded", "unloaded"):
            lo = ctx.results.metric("join", f"ms@{cfg.history[0]}-{mode}")
            hi = ctx.results.metric("join", f"ms@{cfg.history[-1]}-{mode}")
            if lo is None or hi is None:
                continue
            a, b = lo.values.get(sys_.name), hi.values.get(sys_.name)
            ratio = (
                b / a
                if isinstance(a, float) and isinstance(b, float) and a
                else (NA if a == NA else None)
            )
            ctx.results.put(
                "join",
                f"ratio-{mode}",
                sys_.name,
                ratio,
                label=f"join {_k(cfg.history[-1])} / {_k(cfg.history[0])} ({mode})",
                unit="x",
                better="lower",
            )


def _k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 else str(n)


def _put_join(
    ctx: Context, system: str, h: int, mode: str, value: Any, note: str | None = None
) -> None:
    what = "room in memory" if mode == "loaded" else "room loaded from store"
    ctx.results.put(
        "join",
        f"ms@{h}-{mode}",
        system,
        value,
        label=f"join, {_k(h)} ops history ({what})",
        unit="ms",
        better="lower",
        note=note,
    )


# --- 5. end to end through the client library ---------------------------------------------


def e2e(ctx: Context, systems: Sequence[System]) -> None:
    """``set`` in one process -> subscriber callback in another, via the real clients:
    every system's asyncio client; livewidgets also through its sync API (a thread)."""
    cfg = ctx.config
    count = int(cfg.e2e_rate * cfg.e2e_seconds)
    for sys_ in systems:
        variants = [False, True] if sys_.server == "lw" else [False]

        def run(sys_: System = sys_, variants: list[bool] = variants) -> None:
            for sync in variants:
                with ctx.server(sys_, "e2e") as server, Team() as team:
                    common = {
                        "system": sys_.name,
                        "url": server.url,
                        "room": "e2e",
                        "rate": cfg.e2e_rate,
                        "count": count,
                        "sync": sync,
                    }
                    team.spawn(roles.e2e_reader, {**common, "until": cfg.e2e_seconds + 10})
                    team.wait_ready(60)
                    team.spawn(roles.e2e_writer, common)
                    team.start(delay=0.1)
                    reader, _ = team.results(cfg.e2e_seconds + 60)
                lat = reader["latencies_ns"]
                note = None if len(lat) >= count else f"{len(lat)}/{count} callbacks"
                for q in (50, 99):
                    ctx.results.put(
                        "e2e",
                        f"p{q}_ms_sync" if sync else f"p{q}_ms",
                        sys_.name,
                        _ms(percentile(lat, q)),
                        label=(
                            f"end to end, sync API (livewidgets.connect) p{q}"
                            if sync
                            else f"end to end set -> callback p{q}"
                        ),
                        unit="ms",
                        better="lower",
                        note=note,
                    )
            if sys_.server != "lw":
                for q in (50, 99):
                    ctx.results.put(
                        "e2e",
                        f"p{q}_ms_sync",
                        sys_.name,
                        NA,
                        label=f"end to end, sync API (livewidgets.connect) p{q}",
                        unit="ms",
                        better="lower",
                    )

        ctx.guard("e2e", sys_, run)


# --- 6. collaborative text -----------------------------------------------------------------


def text(ctx: Context, systems: Sequence[System]) -> None:
    """10 clients typing 10 keys/s each; convergence after the last key; relay CPU."""
    cfg = ctx.config
    keys = int(cfg.text_rate * cfg.text_seconds)
    total = keys * cfg.text_clients
    for sys_ in systems:
        if sys_.server == "floor":
            for key in ("convergence_ms", "cpu_s", "cpu_pct"):
                _put_text(ctx, sys_.name, key, NA)
            continue
        if sys_.name not in cfg.text_systems:
            continue

        def run(sys_: System = sys_) -> None:
            with ctx.server(sys_, "text") as server, Team() as team:
                for n in _split(cfg.text_clients, 2):
                    team.spawn(
                        roles.typists,
                        {
                            "system": sys_.name,
                            "url": server.url,
                            "room": "text",
                            "n": n,
                            "rate": cfg.text_rate,
                            "keys": keys,
                            "total": total,
                            "until": cfg.text_seconds + 60,
                        },
                    )
                team.wait_ready(120)
                t0 = team.go(0.15)
                samples: list[tuple[float, float]] = []

                def tick() -> None:
                    if time.monotonic() >= t0:
                        samples.append((time.monotonic(), server.cpu_seconds()))

                results = team.results(cfg.text_seconds + 120, tick=tick, every=0.05)
            last_key = max(r["last_key"] for r in results)
            reached = [x for r in results for x in r["reached"]]
            converged = (
                all(x is not None for x in reached)
                and len({d for r in results for d in r["digests"]}) == 1
            )
            end = max(x for x in reached if x is not None) if any(reached) else None
            conv_ms = 1000 * (end - last_key) if end is not None and converged else None
            cpu_s = None
            if samples and end is not None:
                start_cpu = samples[0][1]
                at_end = [c for t, c in samples if t <= end + 0.05] or [samples[-1][1]]
                cpu_s = at_end[-1] - start_cpu
            wall = (end - t0) if end is not None else None
            _put_text(
                ctx, sys_.name, "convergence_ms", conv_ms, None if converged else "did not converge"
            )
            _put_text(ctx, sys_.name, "cpu_s", cpu_s)
            _put_text(
                ctx,
                sys_.name,
                "cpu_pct",
                100 * cpu_s / wall if cpu_s is not None and wall else None,
            )
            ctx.results.raw.setdefault("text", {})[sys_.name] = {
                "keys_per_client": keys,
                "total": total,
                "converged": converged,
                "lengths": [x for r in results for x in r["lengths"]],
                "digests": [r["digests"] for r in results],
            }

        ctx.guard("text", sys_, run)


def _put_text(ctx: Context, system: str, key: str, value: Any, note: str | None = None) -> None:
    cfg = ctx.config
    what = f"text {cfg.text_clients}x{cfg.text_rate:g} keys/s {cfg.text_seconds:g} s"
    label, unit, better = {
        "convergence_ms": (f"{what}: convergence after last key", "ms", "lower"),
        "cpu_s": (f"{what}: relay CPU time", "s", "lower"),
        "cpu_pct": (f"{what}: relay CPU", "%", "lower"),
    }[key]
    ctx.results.put("text", key, system, value, label=label, unit=unit, better=better, note=note)


# --- 7. durability cost --------------------------------------------------------------------

_DURABILITY = {
    "acked_per_s": ("10 writers: acknowledged ops/s", "op/s", "higher", True),
    "durable_per_s": ("10 writers: ops/s committed to the store", "op/s", "higher", True),
    "server_cpu_pct": ("10 writers: server CPU", "%", "lower", False),
}


def _put_durability(
    ctx: Context, key: str, system: str, value: Any, note: str | None = None
) -> None:
    label, unit, better, compare = _DURABILITY[key]
    ctx.results.put(
        "durability",
        key,
        system,
        value,
        label=label,
        unit=unit,
        better=better,
        note=note,
        compare=compare,
    )


def durability(ctx: Context, systems: Sequence[System]) -> None:
    """10 writers, no readers: acknowledged ops/s, and ops/s committed to the store.

    livewidgets acks an op once it is committed (SQLite: fsynced), so with SQLite its
    acknowledged and committed rates are one number. pycrdt acknowledges nothing: a
    writer's "ack" is its own update echoed back, which pycrdt-sqlite sends before
    the store write; its committed rate is read from the server's /healthz.
    """
    cfg = ctx.config
    w0, w1 = cfg.sat_warmup, cfg.sat_warmup + cfg.durability_seconds
    for sys_ in systems:
        if sys_.server == "floor":
            for key in _DURABILITY:
                _put_durability(ctx, key, sys_.name, NA)
            continue

        def run(sys_: System = sys_) -> None:
            with ctx.server(sys_, "durability") as server, Team() as team:
                team.spawn(
                    roles.writers,
                    {
                        "system": sys_.name,
                        "url": server.url,
                        "room": "dur",
                        "n": cfg.sat_writers,
                        "window": cfg.sat_window,
                        "duration": w1 + 0.05,
                        "key": "dur",
                        "window_at": [w0, w1],
                    },
                )
                team.wait_ready(60)
                t0 = team.go(0.15)
                cpu: list[float] = []
                store: list[dict[str, Any]] = []
                marks = [w0, w1]

                def tick() -> None:
                    while marks and time.monotonic() >= t0 + marks[0]:
                        marks.pop(0)
                        cpu.append(server.cpu_seconds())
                        if _ystore(sys_):
                            store.append(healthz(server.url))

                (res,) = team.results(w1 + 60, tick=tick, every=0.01)
            counts = res["ack_counts"]
            rate = (counts[1] - counts[0]) / cfg.durability_seconds if len(counts) == 2 else None
            cpu_pct = 100 * (cpu[1] - cpu[0]) / cfg.durability_seconds if len(cpu) == 2 else None
            if sys_.is_livewidgets:
                # The ack follows the commit: acknowledged = committed (memory: nothing is).
                note = None
                durable: Any = rate if sys_.store == "sqlite" else NA
            elif _ystore(sys_):
                note = "echo, before the store write"
                durable = None
                if len(store) == 2:
                    committed = store[1]["committed"] - store[0]["committed"]
                    durable = committed / cfg.durability_seconds
                    ctx.results.raw.setdefault("durability", {})[sys_.name] = {
                        "echoed_in_window": counts[1] - counts[0] if len(counts) == 2 else None,
                        "committed_in_window": committed,
                        "pending_writes_at_end": store[1]["pending_writes"],
                        "store_errors": store[1]["store_errors"],
                    }
            else:
                note, durable = "echo", NA
            _put_durability(ctx, "acked_per_s", sys_.name, rate, note)
            _put_durability(ctx, "durable_per_s", sys_.name, durable)
            _put_durability(ctx, "server_cpu_pct", sys_.name, cpu_pct)

        ctx.guard("durability", sys_, run)
    metric = ctx.results.metric("durability", "acked_per_s")
    if metric is not None:
        for codec in ("json", "msgpack"):
            r = metric.ratio(f"lw-{codec}-sqlite", f"lw-{codec}-mem")
            if r is not None:
                ctx.results.raw.setdefault("durability", {})[f"sqlite/memory ({codec})"] = r
        r = metric.ratio("pycrdt-sqlite", "pycrdt")
        if r is not None:
            ctx.results.raw.setdefault("durability", {})["sqlite/memory (pycrdt echoes)"] = r


SCENARIOS: dict[str, Callable[[Context, Sequence[System]], None]] = {
    "fanout": fanout,
    "throughput": throughput,
    "idle": idle,
    "join": join,
    "e2e": e2e,
    "text": text,
    "durability": durability,
    "flood": flood,
    "lesson": lesson,
    "rules": rules_cost,
    "scaleout": scaleout,
    "many": many,
}
