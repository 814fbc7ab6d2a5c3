"""A lesson on one relay with its default limits: can a class of 1,000 meet, and how
quickly does each slide reach every student?

One room, as a class uses it: the teacher advances a slide every ``lesson_period``
seconds (``slide`` = its number and a timestamp marker); every student is a member
announced with a presence state and answers about one slide in ten, spread over the
slide's second: a poll vote (``polls/<slide>/<student>``) or an answer box
(``answers/<slide>/<student>``, a sentence). Every answer reaches every member, as
shared state does.

Most students are light raw-protocol clients (bench.systems.LeanClient, a few in each
of ``lesson_procs`` processes) so the numbers measure the relay, not the test rig; a
sample of ``lesson_sampled`` full sessions (``livewidgets.asyncio.connect``, the
engine a kernel runs) measures slide → student latency through the real client.

The relay runs as ``livewidgets relay`` does by default (``bench.lwrelay --limits
default``: every limit at its default, no secret, so all students are anonymous and
come from 127.0.0.1). Reported per class size: slide → student p50/p99 (full
sessions, and light clients), the relay's CPU and peak RSS during the lesson, how long
the class took to join, and how many connections, joins or writes were refused
(target: none).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from . import roles
from .results import percentile
from .servers import ServerProcess
from .systems import LeanClient, System, marker, parse_marker, system
from .team import Control, Team

__all__ = ["lesson"]

# A student answers slides where (student + slide) % ANSWER_EVERY == 0: one in ten.
ANSWER_EVERY = 10
SENTENCE = "I think the answer is the second one, because the curve flattens out."


def _answers(index: int, slide: int) -> bool:
    return (index + slide) % ANSWER_EVERY == 0


def _answer(slide: int, who: str, index: int) -> tuple[str, Any]:
    """A poll vote on even slides, an answer box on odd ones (no timestamp marker:
    only slides are timed)."""
    if slide % 2 == 0:
        return f"polls/{slide}/{who}", {"choice": index % 4}
    return f"answers/{slide}/{who}", {"text": SENTENCE}


async def teacher(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """Advance a slide every ``period`` s, ``slides`` times; wait for the last acks."""
    sys_ = system(p["system"])
    client = await LeanClient.connect(sys_, p["url"], p["room"], "teacher", timeout=60)
    go = await ctl.aready()
    for n in range(p["slides"]):  # bounded by count; each wait bounded below
        delay = go["t0"] + n * p["period"] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        client.write("slide", {"n": n, "ts": marker()})
    acked = await client.wait_acked(client.seq, 30.0)
    result = {"sent": client.seq, "acked": acked, "refused": client.refused}
    client.close()
    return result


async def students(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """``n`` light students (indices ``first`` ...): receive every slide, answer one in
    ten, ``answer_at`` s after it (spread by student)."""
    sys_ = system(p["system"])
    started = time.monotonic()
    clients, refused_joins = await _join(sys_, p)
    connect_s = time.monotonic() - started
    latencies: list[int] = []
    slides_seen = [0] * len(clients)
    refused = [0]
    sent_at: list[int] = []  # per latency sample: when its slide was sent
    for i, client in enumerate(clients):
        client.conn.on_frame = _student_frames(client, i, slides_seen, latencies, refused, sent_at)
    go = await ctl.aready({"connect_s": connect_s})
    cpu0 = time.process_time()
    loop = asyncio.get_running_loop()
    first = p["first"]
    for i, client in enumerate(clients):
        index = first + i
        for slide in range(p["slides"]):
            if _answers(index, slide):
                at = go["t0"] + slide * p["period"] + p["period"] * (0.1 + 0.8 * (index % 97) / 97)
                key, value = _answer(slide, client.client_id, index)
                loop.call_at(
                    loop.time() + at - time.monotonic(),
                    lambda c=client, k=key, v=value: c.write(k, v),  # type: ignore[misc]
                )
    await asyncio.sleep(max(0.0, go["t0"] + p["slides"] * p["period"] + 1.0 - time.monotonic()))
    result = {
        "clients": len(clients),
        "connect_s": connect_s,
        "latencies_ns": latencies,
        "slide_p50_ms": _per_slide(sent_at, latencies),
        "missed_slides": sum(p["slides"] - seen for seen in slides_seen),
        "answers": sum(c.seq for c in clients),
        "refused": refused_joins + refused[0],
        # The rig's own cost: this process's CPU seconds during the lesson.
        "cpu_s": time.process_time() - cpu0,
    }
    for client in clients:
        client.close()
    return result


def _student_frames(
    client: LeanClient,
    index: int,
    slides_seen: list[int],
    latencies: list[int],
    refused: list[int],
    sent_at: list[int],
) -> Any:
    """A light student's frame handler: a slide (the only frames with a timestamp
    marker) is timed; a refusal is counted; everything else (the other students'
    answers, presence, acks) is read off the socket and dropped without decoding, so
    the rig's CPU goes to reading what the relay sends, not to parsing it."""
    decode = client._decode_any

    def on_frame(payload: bytes) -> None:
        if b"@T" in payload:
            sent = parse_marker(payload)
            if sent > 0:
                slides_seen[index] += 1
                latencies.append(time.monotonic_ns() - sent)
                sent_at.append(sent)
        elif (b"reject" in payload or b"error" in payload) and decode(payload).get("type") in (
            "reject",
            "error",
        ):
            refused[0] += 1

    return on_frame


async def _join(sys_: System, p: dict[str, Any]) -> tuple[list[LeanClient], int]:
    """Connect and join ``n`` students, 32 at a time; (clients, joins that failed)."""
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> LeanClient | None:
        who = f"s{p['first'] + i}"
        async with gate:
            try:
                return await LeanClient.connect(
                    sys_, p["url"], p["room"], who, timeout=60, presence={"name": who}
                )
            except (RuntimeError, OSError, asyncio.TimeoutError):
                return None  # refused or never answered: counted

    joined = await asyncio.gather(*(one(i) for i in range(p["n"])))
    clients = [c for c in joined if c is not None]
    return clients, len(joined) - len(clients)


async def sampled(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """``n`` full sessions (the engine a kernel runs): slide → callback latency, and
    they answer like the others."""
    import livewidgets.asyncio

    sys_ = system(p["system"])
    latencies: list[int] = []
    sessions = []
    refused = 0
    for i in range(p["n"]):
        who = f"k{p['first'] + i}"
        try:
            session = await livewidgets.asyncio.connect(
                p["url"], p["room"], who, timeout=60, **roles._lw_options(sys_)
            )
        except Exception:
            refused += 1
            continue

        def seen(value: Any, path: str) -> None:
            sent = parse_marker(str((value or {}).get("ts", "")).encode())
            if sent > 0:
                latencies.append(time.monotonic_ns() - sent)

        session.subscribe("slide", seen)
        sessions.append(session)
    go = await ctl.aready()
    for slide in range(p["slides"]):
        await asyncio.sleep(max(0.0, go["t0"] + (slide + 0.5) * p["period"] - time.monotonic()))
        for i, session in enumerate(sessions):
            if _answers(p["first"] + i, slide):
                key, value = _answer(slide, session.user, i)
                session.set(key, value)
    await asyncio.sleep(max(0.0, go["t0"] + p["slides"] * p["period"] + 1.0 - time.monotonic()))
    for session in sessions:
        try:
            await session.flush(timeout=10)
        except Exception:
            refused += 1
        await session.close()
    return {"latencies_ns": latencies, "sessions": len(sessions), "refused": refused}


def _per_slide(sent_at: list[int], latencies: list[int]) -> dict[int, float]:
    """Median latency (ms) per slide, keyed by its send time (ns): a slide late for
    everyone (a pause of the relay or of the machine) shows as one high entry."""
    by_slide: dict[int, list[int]] = {}
    for sent, latency in zip(sent_at, latencies, strict=True):
        by_slide.setdefault(sent, []).append(latency)
    return {sent: (percentile(v, 50) or 0) / 1e6 for sent, v in sorted(by_slide.items())}


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _run_class(ctx: Any, sys_: System, server: ServerProcess, size: int) -> dict[str, Any]:
    """One lesson of ``size`` students on ``server``: the raw measurements."""
    cfg = ctx.config
    common = {
        "system": sys_.name,
        "url": server.url,
        "room": f"lesson-{size}",
        "slides": cfg.lesson_slides,
        "period": cfg.lesson_period,
    }
    sample = min(cfg.lesson_sampled, size)
    light = size - sample
    lesson_s = cfg.lesson_slides * cfg.lesson_period
    with Team() as team:
        team.spawn(teacher, common)
        first = 0
        for n in _split(light, cfg.lesson_procs):
            if n:
                team.spawn(students, {**common, "n": n, "first": first})
                first += n
        team.spawn(sampled, {**common, "n": sample, "first": first})
        infos = team.wait_ready(300)
        t0 = team.go(0.5)
        time.sleep(max(0.0, t0 - time.monotonic()))
        cpu0, rss = server.cpu_seconds(), server.rss_kib()
        end = t0 + lesson_s
        while time.monotonic() < end:  # bounded by the lesson's length
            time.sleep(0.25)
            rss = max(rss, server.rss_kib())
        cpu = server.cpu_seconds() - cpu0
        results = team.results(lesson_s + 120)
    joins = [info["connect_s"] for info in infos if isinstance(info, dict)]
    light_results = [r for r in results if "missed_slides" in r]
    full = results[-1]
    return {
        "rig_cpu_pct": 100 * sum(r["cpu_s"] for r in light_results) / lesson_s,
        "size": size,
        "full_latencies_ns": full["latencies_ns"],
        "light_latencies_ns": [x for r in light_results for x in r["latencies_ns"]],
        "cpu_pct": 100 * cpu / lesson_s,
        "rss_mb": rss / 1024,
        "join_s": max(joins) if joins else None,
        "refused": results[0]["refused"] + sum(r["refused"] for r in results[1:]),
        "missed_slides": sum(r["missed_slides"] for r in light_results),
        # Median per slide in the first light process: which slides were late.
        "slide_p50_ms": list(light_results[0]["slide_p50_ms"].values()) if light_results else [],
        "answers": sum(r["answers"] for r in light_results),
        "sessions": full["sessions"],
    }


def lesson(ctx: Any, systems: Sequence[System]) -> None:
    """Slide → student latency, relay CPU and RSS for each class size."""
    for sys_ in systems:
        if not sys_.is_livewidgets or sys_.name not in ctx.config.lesson_systems:
            continue

        def run(sys_: System = sys_) -> None:
            for size in ctx.config.lesson_students:
                # A fresh relay per class size: each row starts from the same state.
                with ctx.server(sys_, "lesson", relay_args=("--limits", "default")) as server:
                    raw = _run_class(ctx, sys_, server, size)
                _report(ctx, sys_.name, raw)

        ctx.guard("lesson", sys_, run)


def _report(ctx: Any, name: str, raw: dict[str, Any]) -> None:
    put = ctx.results.put
    size = raw["size"]
    for kind, samples in (("full", raw["full_latencies_ns"]), ("light", raw["light_latencies_ns"])):
        for q in (50, 99):
            value = percentile(samples, q)
            put(
                "lesson",
                f"slide_p{q}_ms_{kind}@{size}",
                name,
                None if value is None else value / 1e6,
                label=f"slide → student p{q}, {size} students ({kind} clients)",
                unit="ms",
                better="lower",
                compare=False,
            )
    context = (
        ("relay_cpu_pct", raw["cpu_pct"], "relay CPU during the lesson", "%"),
        ("relay_rss_mb", raw["rss_mb"], "relay peak RSS (target ≤ 200 MB at 1,000)", "MB"),
        ("join_s", raw["join_s"], "time for the class to join", "s"),
        ("refused", raw["refused"], "connections, joins or writes refused (target 0)", ""),
        ("missed_slides", raw["missed_slides"], "slides a light student never got", ""),
        ("rig_cpu_pct", raw["rig_cpu_pct"], "light students' processes' CPU (the rig)", "%"),
    )
    for key, value, label, unit in context:
        put(
            "lesson",
            f"{key}@{size}",
            name,
            value,
            label=f"{label}, {size} students",
            unit=unit,
            better="lower",
            compare=False,
        )
    ctx.results.raw.setdefault("lesson", {})[f"{name}@{size}"] = {
        k: v for k, v in raw.items() if not k.endswith("latencies_ns")
    }
