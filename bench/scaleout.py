"""Two livewidgets relays on one Redis store, serving the same rooms (issue 23).

Two relay processes (bench.lwrelay, ``--store redis://...?prefix=<unique>``) share
one Redis; the clients are split between them. In one run, against the same
store, the scenario measures:

* **fan-out across relays**: one writer on relay A at ``fanout_rate`` for
  ``fanout_seconds``, ``scaleout_subscribers`` subscribers on relay B; and the same
  with writer and subscribers on relay A (the single-relay baseline). p50/p99 and
  the ratio cross/single (target in the issue: p99 at most 2x single). With Redis a
  relay broadcasts only what is committed, so the baseline already pays one append
  round trip; across relays B hears of the entry on the room's pub/sub channel,
  reads it (``read_log``) and broadcasts it.
* **saturated throughput**: ``scaleout_writers`` writers (window ``sat_window``) and
  ``scaleout_readers`` readers in one room, all on relay A; then split half and half
  over A and B, in the same room (its log contended by both relays) and in a room
  per relay (rooms spread over relays). Delivered msgs/s per relay (its readers'
  deliveries) and in total, acked ops/s, each relay's CPU seconds in the window and
  Redis's (raw: each relay's preemptions, store conflicts, remote entries, commits).
* **failover**: ``scaleout_failover_clients`` full ``livewidgets.asyncio`` sessions,
  half on A (URLs ``[A, B]``), half on B (``[B, A]``), each writing
  ``scaleout_failover_rate`` times a second a key of its own in a log and its
  latest ``{"i", "t"}``. Relay A is killed with SIGKILL ``scaleout_kill_at`` s
  into the run. Reported: the time from the kill until every client of A is
  joined again (via B), and until a write that each client of A made after the
  kill has reached every other client; then a fresh session reads the room from B
  and every acknowledged write must be in it (lost acked ops: target 0).

The relays run with the system's codec; the system's own store is replaced by
Redis (``relay_args`` ``--store``). Without a reachable Redis the scenario records
"not run: ..." and returns. Its keys (unique prefix) are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import time
import uuid
from collections.abc import Sequence
from typing import Any

from . import roles
from .results import percentile
from .systems import System, system
from .team import Control, Team

__all__ = ["failover_clients", "final_log", "scaleout"]

# Writes made this long after the planned kill count as "made after the kill"; the
# harness checks that the kill happened within it.
KILL_SLACK = 0.05


def _ms(ns: float | None) -> float | None:
    return None if ns is None else ns / 1e6


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


# --- Redis ------------------------------------------------------------------------


def redis_problem(url: str) -> str | None:
    """Why the Redis at ``url`` cannot be used (None: it answers PING)."""
    try:
        import redis
    except ImportError:
        return "the redis package is not installed"
    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"Redis unreachable at {url}: {type(exc).__name__}: {exc}"
    return None


def _redis_cpu(url: str) -> float | None:
    """Redis's own CPU seconds (INFO cpu: user + sys; every client's load, not only ours)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except Exception:
        return None
    finally:
        client.close()


def _delete_prefix(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        client.close()


# Counters read from each relay's /metrics around the saturated window.
COUNTERS = (
    "livewidgets_store_conflicts_total",
    "livewidgets_remote_entries_total",
    "livewidgets_commit_seconds_count",
)


def _counters(url: str) -> dict[str, float]:
    """COUNTERS from the relay's ``GET /metrics`` (those it has; {} if it does not answer)."""
    host, _, port = url[len("ws://") :].rstrip("/").rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return {}
    finally:
        conn.close()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in COUNTERS:
            found[name] = float(value)
    return found


def _store_url(base: str, prefix: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}prefix={prefix}"


# --- roles (client processes) --------------------------------------------------------


async def failover_clients(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """``n`` full sessions dialing ``urls`` in order; each writes ``log/<name>/n<k>``
    and ``last/<name>`` = {"i": k, "t": monotonic} every 1/rate s until ``kill_at +
    after`` s past t0. Per session: when it lost and regained its connection (and
    where), when it first saw each other writer's write made after the kill, which
    of its log writes were acknowledged."""
    import livewidgets.asyncio as lwa

    sys_ = system(p["system"])
    sessions: list[Any] = []
    records: list[dict[str, Any]] = []
    threshold: list[float | None] = [None]

    def watcher(rec: dict[str, Any]) -> Any:
        def seen(value: Any, _path: str) -> None:
            limit = threshold[0]
            if limit is None or not isinstance(value, dict):
                return
            now = time.monotonic()
            first = rec["first_seen"]
            for writer, v in value.items():
                if writer == rec["name"] or writer in first or not isinstance(v, dict):
                    continue
                if v.get("t", 0.0) >= limit:
                    first[writer] = now

        return seen

    for i in range(p["n"]):
        name = f"{p['tag']}{i}"
        session = await lwa.connect(
            p["urls"], p["room"], name, binary=sys_.codec == "msgpack", timeout=60
        )
        rec: dict[str, Any] = {
            "name": name,
            "disconnected": [],
            "connected": [],
            "first_seen": {},
        }

        def on_down(_d: Any, rec: dict[str, Any] = rec) -> None:
            rec["disconnected"].append(time.monotonic())

        def on_up(_d: Any, rec: dict[str, Any] = rec, s: Any = session) -> None:
            rec["connected"].append([time.monotonic(), s.url])

        session.on("disconnected", on_down)
        session.on("connected", on_up)
        session.subscribe("last", watcher(rec))
        sessions.append(session)
        records.append(rec)
    go = await ctl.aready()
    t0 = go["t0"]
    threshold[0] = t0 + p["kill_at"] + KILL_SLACK
    end = t0 + p["kill_at"] + p["after"]
    acks: list[list[tuple[int, Any]]] = [[] for _ in sessions]
    k = 0
    while t0 + k / p["rate"] < end:
        delay = t0 + k / p["rate"] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        for j, (session, rec) in enumerate(zip(sessions, records, strict=True)):
            acks[j].append((k, session.set(f"log/{rec['name']}/n{k}", k)))
            session.set(f"last/{rec['name']}", {"i": k, "t": now})
        k += 1
    stopped = time.monotonic()  # closing below also reports "disconnected"
    for session, rec, mine in zip(sessions, records, acks, strict=True):
        try:
            await session.flush(timeout=p.get("flush_timeout", 30))
        except Exception as exc:  # reported: what was not acked is not claimed
            rec["flush_error"] = f"{type(exc).__name__}: {exc}"
        rec["written"] = len(mine)
        rec["acked"] = [i for i, a in mine if a.done() and a.exception() is None]
        rec["failed"] = sum(1 for _, a in mine if a.done() and a.exception() is not None)
        rec["final_url"] = session.url
        rec["stopped"] = stopped
    for session in sessions:
        with contextlib.suppress(Exception):
            await session.close()
    return {"records": records}


async def final_log(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """A fresh session on ``urls``: the room's ``log`` ({writer: [k, ...]})."""
    import livewidgets.asyncio as lwa

    sys_ = system(p["system"])
    await ctl.aready()
    session = await lwa.connect(
        p["urls"], p["room"], "verifier", binary=sys_.codec == "msgpack", timeout=60
    )
    log = session.get("log", {}) or {}
    await session.close()
    return {
        "log": {
            writer: sorted(int(key[1:]) for key in entries)
            for writer, entries in log.items()
            if isinstance(entries, dict)
        }
    }


# --- the parts ---------------------------------------------------------------------


def _fanout(
    cfg: Any, sys_: System, writer_url: str, reader_url: str, room: str, subs: int, count: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One writer on ``writer_url``, ``subs`` subscribers on ``reader_url`` (as
    bench.scenarios.fanout_once); the readers' results and the writer's."""
    with Team() as team:
        for n in _split(subs, 1 if subs <= 10 else 2):
            team.spawn(
                roles.readers,
                {
                    "system": sys_.name,
                    "url": reader_url,
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
                "url": writer_url,
                "room": room,
                "rate": cfg.fanout_rate,
                "count": count,
                "key": "fan/x",
            },
        )
        team.start(delay=0.1)
        results = team.results(cfg.fanout_seconds + 60)
    return results[:-1], results[-1]


def fanout_part(ctx: Any, sys_: System, a: Any, b: Any) -> None:
    cfg = ctx.config
    count = int(cfg.fanout_rate * cfg.fanout_seconds)
    raw = ctx.results.raw["scaleout"][sys_.name].setdefault("fanout", {})
    for subs in cfg.scaleout_subscribers:
        s_ = "s" if subs > 1 else ""
        p99: dict[str, float | None] = {}
        for mode, reader_url in (("single", a.url), ("cross", b.url)):
            readers, writer = _fanout(cfg, sys_, a.url, reader_url, f"so-{mode}{subs}", subs, count)
            lat = [x for r in readers for x in r["latencies_ns"]]
            received = sum(r["received"] for r in readers)
            note = None if received >= count * subs else f"{received}/{count * subs} delivered"
            where = "writer on A, subs on B" if mode == "cross" else "writer and subs on A"
            for q in (50, 99):
                value = _ms(percentile(lat, q))
                if q == 99:
                    p99[mode] = value
                ctx.results.put(
                    "scaleout",
                    f"{mode}_p{q}_ms@{subs}",
                    sys_.name,
                    value,
                    label=f"2 relays on Redis: fan-out p{q}, {subs} sub{s_}, {where}",
                    unit="ms",
                    better="lower",
                    note=note,
                )
            raw[f"{mode}@{subs}"] = {
                "received": received,
                "expected": count * subs,
                "late_writes": writer["late"],
                "all_acked": writer["all_acked"],
                "p50_ms": _ms(percentile(lat, 50)),
                "p90_ms": _ms(percentile(lat, 90)),
                "p99_ms": _ms(percentile(lat, 99)),
                "max_ms": _ms(max(lat) if lat else None),
            }
        single, cross = p99.get("single"), p99.get("cross")
        ctx.results.put(
            "scaleout",
            f"p99_ratio@{subs}",
            sys_.name,
            cross / single if cross is not None and single else None,
            label=f"2 relays: fan-out p99 across relays / one relay, {subs} sub{s_} (target ≤ 2)",
            unit="x",
            better="lower",
            compare=False,
        )


def _saturate(
    ctx: Any, sys_: System, servers: list[Any], rooms: list[str]
) -> tuple[
    list[dict[str, Any]], list[dict[str, Any]], list[float], float | None, list[dict[str, float]]
]:
    """Writers and readers split evenly over ``servers`` (one room); per server its
    readers' and writers' results; in the window: each server's CPU seconds, Redis's,
    each server's COUNTERS."""
    cfg = ctx.config
    w0, w1 = cfg.sat_warmup, cfg.sat_warmup + cfg.sat_seconds
    readers_n = _split(cfg.scaleout_readers, len(servers))
    writers_n = _split(cfg.scaleout_writers, len(servers))
    with Team() as team:
        for server, room, n in zip(servers, rooms, readers_n, strict=True):
            team.spawn(
                roles.readers,
                {
                    "system": sys_.name,
                    "url": server.url,
                    "room": room,
                    "n": n,
                    "until": w1 + 0.05,
                    "window": [w0, w1],
                    "sample": 50,
                },
            )
        team.wait_ready(60)
        for server, room, n in zip(servers, rooms, writers_n, strict=True):
            team.spawn(
                roles.writers,
                {
                    "system": sys_.name,
                    "url": server.url,
                    "room": room,
                    "n": n,
                    "window": cfg.sat_window,
                    "duration": w1 + 0.05,
                    "key": "sat",
                    "window_at": [w0, w1],
                },
            )
        team.wait_ready(60)
        marks: list[tuple[list[float], float | None, list[dict[str, float]]]] = []
        t0 = team.go(0.15)
        pending = [w0, w1]

        def tick() -> None:
            while pending and time.monotonic() >= t0 + pending[0]:
                pending.pop(0)
                cpu = [s.cpu_seconds() for s in servers]
                marks.append(
                    (
                        cpu,
                        _redis_cpu(cfg.scaleout_redis),
                        [{"preempted": s.preemptions(), **_counters(s.url)} for s in servers],
                    )
                )

        results = team.results(w1 + 60, tick=tick, every=0.01)
    k = len(servers)
    readers, writers = results[:k], results[k:]
    if len(marks) != 2:
        return readers, writers, [], None, []
    cpu = [after - before for before, after in zip(marks[0][0], marks[1][0], strict=True)]
    r0, r1 = marks[0][1], marks[1][1]
    counters = [
        {name: after[name] - before.get(name, 0.0) for name in after}
        for before, after in zip(marks[0][2], marks[1][2], strict=True)
    ]
    redis_cpu = r1 - r0 if r0 is not None and r1 is not None else None
    return readers, writers, cpu, redis_cpu, counters


def throughput_part(ctx: Any, sys_: System, a: Any, b: Any) -> None:
    cfg = ctx.config
    span = cfg.sat_seconds
    raw = ctx.results.raw["scaleout"][sys_.name].setdefault("throughput", {})
    put = ctx.results.put
    who = f"{cfg.scaleout_writers} writers, {cfg.scaleout_readers} readers"
    # One room on one relay; the same room on two (contention on its log); a room per
    # relay (rooms spread over relays: no contention, no remote entries).
    modes = (
        ("one", [a], ["so-sat-one"], "1 relay"),
        ("two", [a, b], ["so-sat-two"] * 2, "2 relays, one room"),
        ("split", [a, b], ["so-sat-split-a", "so-sat-split-b"], "2 relays, a room each"),
    )
    for mode, servers, rooms, where in modes:
        readers, writers, cpu, redis_cpu, counters = _saturate(ctx, sys_, servers, rooms)
        rates = []
        for r in readers:
            c = r["window_counts"]
            rates.append((c[1] - c[0]) / span if len(c) == 2 else None)
        acked = []
        for w in writers:
            c = w["ack_counts"]
            acked.append((c[1] - c[0]) / span if len(c) == 2 else None)
        total = sum(rates) if all(x is not None for x in rates) else None  # type: ignore[misc]
        names = ["A", "B"][: len(servers)]
        put(
            "scaleout",
            f"sat_delivered_per_s_{mode}",
            sys_.name,
            total,
            label=f"Redis, {where}: saturated, delivered msgs/s in total ({who})",
            unit="msg/s",
            better="higher",
        )
        acked_total = sum(acked) if all(x is not None for x in acked) else None  # type: ignore[misc]
        put(
            "scaleout",
            f"sat_acked_per_s_{mode}",
            sys_.name,
            acked_total,
            label=f"Redis, {where}: saturated, acked ops/s in total",
            unit="op/s",
            better="higher",
        )
        put(
            "scaleout",
            f"sat_cpu_s_{mode}",
            sys_.name,
            round(sum(cpu), 2) if cpu else None,
            label=f"Redis, {where}: relay CPU seconds in the {span:g} s window (all relays)",
            unit="s",
            better="lower",
            compare=False,
        )
        if len(servers) == 2:
            cpus: list[float | None] = list(cpu) or [None, None]
            for name, rate, c in zip(names, rates, cpus, strict=True):
                put(
                    "scaleout",
                    f"sat_delivered_per_s_{mode}_{name}",
                    sys_.name,
                    rate,
                    label=f"Redis, {where}: delivered msgs/s by relay {name}",
                    unit="msg/s",
                    better="higher",
                    compare=False,
                )
                put(
                    "scaleout",
                    f"sat_cpu_s_{mode}_{name}",
                    sys_.name,
                    None if c is None else round(c, 2),
                    label=f"Redis, {where}: relay {name} CPU seconds in the window",
                    unit="s",
                    better="lower",
                    compare=False,
                )
        raw[mode] = {
            "window_s": span,
            "delivered_per_s": dict(zip(names, rates, strict=True)),
            "acked_per_s": dict(zip(names, acked, strict=True)),
            "relay_cpu_s": dict(zip(names, cpu, strict=False)),
            "redis_cpu_s": redis_cpu,
            "relay_counters": dict(zip(names, counters, strict=False)),
            "refused": sum(w["refused"] for w in writers),
            "reader_p50_ms": [_ms(percentile(r["latencies_ns"], 50)) for r in readers],
        }
    one = ctx.results.metric("scaleout", "sat_delivered_per_s_one")
    for mode, _, _, where in modes[1:]:
        other = ctx.results.metric("scaleout", f"sat_delivered_per_s_{mode}")
        ratio = None
        if one is not None and other is not None:
            x, y = one.values.get(sys_.name), other.values.get(sys_.name)
            ratio = y / x if isinstance(x, float) and isinstance(y, float) and x else None
        put(
            "scaleout",
            f"sat_{mode}_over_one",
            sys_.name,
            ratio,
            label=f"Redis: saturated delivered msgs/s, {where} / 1 relay",
            unit="x",
            better="higher",
            compare=False,
        )


def failover_part(ctx: Any, sys_: System, a: Any, b: Any) -> None:
    cfg = ctx.config
    n_a, n_b = _split(cfg.scaleout_failover_clients, 2)
    common = {
        "system": sys_.name,
        "room": "so-failover",
        "rate": cfg.scaleout_failover_rate,
        "kill_at": cfg.scaleout_kill_at,
        "after": cfg.scaleout_after_kill,
    }
    killed: list[float] = []
    with Team() as team:
        team.spawn(failover_clients, {**common, "tag": "a", "n": n_a, "urls": [a.url, b.url]})
        team.spawn(failover_clients, {**common, "tag": "b", "n": n_b, "urls": [b.url, a.url]})
        t0 = team.start(120, delay=0.2)

        def tick() -> None:
            if not killed and time.monotonic() >= t0 + cfg.scaleout_kill_at:
                killed.append(time.monotonic())
                os.kill(a.pid, signal.SIGKILL)  # relay A, the process this scenario started

        limit = cfg.scaleout_kill_at + cfg.scaleout_after_kill + 90
        side_a, side_b = team.results(limit, tick, 0.005)
    with Team() as team:
        team.spawn(final_log, {**common, "urls": [b.url]})
        team.start(60)
        (final,) = team.results(60)
    if not killed:
        raise RuntimeError("failover: relay A was never killed")
    t_kill = killed[0]
    late_kill = t_kill - (t0 + cfg.scaleout_kill_at)
    recs_a, recs_b = side_a["records"], side_b["records"]
    everyone = recs_a + recs_b
    # Reconnected: the first "connected" after the kill, and where.
    reconnect_s: list[float | None] = []
    via_b = 0
    for rec in recs_a:
        after = [(t, url) for t, url in rec["connected"] if t >= t_kill]
        reconnect_s.append(after[0][0] - t_kill if after else None)
        via_b += bool(after) and after[0][1] == b.url
    # Reached: each other client's first sight of a write made after the kill by each
    # client of A.
    reach_s: list[float | None] = []
    for rec in everyone:
        for writer in (r["name"] for r in recs_a if r["name"] != rec["name"]):
            seen = rec["first_seen"].get(writer)
            reach_s.append(None if seen is None else seen - t_kill)
    acked = {rec["name"]: set(rec["acked"]) for rec in everyone}
    present = {w: set(ks) for w, ks in final["log"].items()}
    lost = {w: sorted(ks - present.get(w, set())) for w, ks in acked.items()}
    lost_n = sum(len(v) for v in lost.values())
    reconnected = all(x is not None for x in reconnect_s)
    reached = all(x is not None for x in reach_s)
    note = None
    if not reconnected or not reached:
        note = f"{sum(x is not None for x in reconnect_s)}/{len(recs_a)} reconnected"
    if late_kill > KILL_SLACK:
        note = f"kill {late_kill * 1000:.0f} ms late: times uncertain"
    put = ctx.results.put
    clients = f"{n_a}+{n_b} clients"
    put(
        "scaleout",
        "failover_reconnect_ms",
        sys_.name,
        1000 * max(reconnect_s) if reconnected and reconnect_s else None,  # type: ignore[type-var]
        label=f"failover ({clients}, A killed): last client of A joined again via B",
        unit="ms",
        better="lower",
        note=note,
    )
    put(
        "scaleout",
        "failover_ms",
        sys_.name,
        1000 * max(reach_s) if reached and reach_s else None,  # type: ignore[type-var]
        label=f"failover ({clients}): kill -> a write of every client of A reached all others",
        unit="ms",
        better="lower",
        note=note,
    )
    put(
        "scaleout",
        "failover_lost_acked",
        sys_.name,
        lost_n,
        label="failover: acknowledged writes missing from the final state (target 0)",
        unit="ops",
        better="lower",
        compare=False,
    )
    ctx.results.raw["scaleout"][sys_.name]["failover"] = {
        "kill_late_ms": 1000 * late_kill,
        "reconnect_ms": [None if x is None else 1000 * x for x in reconnect_s],
        "reconnected_via_b": via_b,
        "reach_ms": sorted(1000 * x for x in reach_s if x is not None),
        "reach_missing": sum(x is None for x in reach_s),
        "written": sum(rec["written"] for rec in everyone),
        "acked": sum(len(rec["acked"]) for rec in everyone),
        "failed": sum(rec["failed"] for rec in everyone),
        "flush_errors": [rec["flush_error"] for rec in everyone if "flush_error" in rec],
        "lost_acked": {w: v for w, v in lost.items() if v},
        "b_disconnects": sum(
            sum(t < rec["stopped"] for t in rec["disconnected"]) for rec in recs_b
        ),
        "a_final_urls_b": sum(rec["final_url"] == b.url for rec in recs_a),
    }


# --- the scenario ------------------------------------------------------------------

HEADLINES = (
    ("failover_ms", "failover: kill -> writes of A's clients reached all others", "ms"),
    ("sat_delivered_per_s_two", "Redis, 2 relays: saturated, delivered msgs/s in total", "msg/s"),
)


def scaleout(ctx: Any, systems: Sequence[System]) -> None:
    """Two relays on one Redis: fan-out across relays vs one, throughput, failover."""
    cfg = ctx.config
    for sys_ in systems:
        if not sys_.is_livewidgets or sys_.name not in cfg.scaleout_systems:
            continue

        def run(sys_: System = sys_) -> None:
            base = cfg.scaleout_redis
            raw = ctx.results.raw.setdefault("scaleout", {}).setdefault(sys_.name, {})
            problem = redis_problem(base)
            if problem is not None:
                raw["skipped"] = problem
                ctx.log(f"  scaleout: not run: {problem}")
                for key, label, unit in HEADLINES:
                    ctx.results.put(
                        "scaleout",
                        key,
                        sys_.name,
                        None,
                        label=label,
                        unit=unit,
                        better="lower" if unit == "ms" else "higher",
                        note=f"not run: {problem}",
                    )
                return
            prefix = f"lwbench-{uuid.uuid4().hex[:12]}"
            store = _store_url(base, prefix)
            raw["store"] = store
            try:
                relay_args = ("--store", store)
                with (
                    ctx.server(sys_, "scaleout", relay_args=relay_args) as a,
                    ctx.server(sys_, "scaleout", relay_args=relay_args) as b,
                ):
                    fanout_part(ctx, sys_, a, b)
                    throughput_part(ctx, sys_, a, b)
                    failover_part(ctx, sys_, a, b)  # last: relay A does not survive it
            finally:
                raw["redis_keys_deleted"] = _delete_prefix(base, prefix)

        ctx.guard("scaleout", sys_, run)
