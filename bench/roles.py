"""What the client processes do. Each role runs in its own forked process (bench.team).

Lean roles (readers, writers, fan-out writer, joiner) drive the servers with
:class:`~bench.systems.LeanClient`; engine roles (e2e, typists) use the real client
libraries: ``livewidgets.connect`` / ``livewidgets.asyncio.connect``, pycrdt's
``Provider``, or the ``websockets`` client for the floor.

Every loop is bounded by a count and by a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from .systems import LeanClient, System, marker, parse_marker, system
from .team import Control

__all__ = [
    "e2e_reader",
    "e2e_writer",
    "fanout_writer",
    "joiner",
    "readers",
    "typists",
    "writers",
]

NS = 1_000_000_000


def _cid(prefix: str, i: int) -> str:
    return f"{prefix}-{os.getpid()}-{i}"


async def _connect_many(
    sys_: System,
    url: str,
    room: str,
    n: int,
    prefix: str,
    concurrency: int = 32,
    presence: dict[str, Any] | None = None,
) -> list[LeanClient]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> LeanClient:
        async with gate:
            return await LeanClient.connect(
                sys_, url, room, _cid(prefix, i), timeout=60, presence=presence
            )

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _at(loop: asyncio.AbstractEventLoop, t: float, fn: Callable[[], None]) -> None:
    loop.call_at(loop.time() + (t - time.monotonic()), fn)


# --- lean roles ---------------------------------------------------------------------


async def readers(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """``n`` subscribers; per delivery: latency sample and (optionally) per-message stats.

    Params: system, url, room, n, expect (deliveries per client, to stop early),
    until (stop at t0 + until), window ([start, end] offsets from t0 for a delivery
    count), per_message (track count and last arrival per message), sample (keep
    every k-th latency sample), presence (livewidgets: join announced with this state).
    """
    sys_ = system(p["system"])
    t_start = time.monotonic()
    clients = await _connect_many(
        sys_, p["url"], p["room"], p["n"], "r", presence=p.get("presence")
    )
    connect_s = time.monotonic() - t_start
    latencies: list[int] = []
    per_message: dict[int, list[int]] = {}
    sample = max(1, int(p.get("sample", 1)))
    track = bool(p.get("per_message"))
    counter = [0]
    expected = p.get("expect")
    total_expected = expected * len(clients) if expected else None
    done = asyncio.get_running_loop().create_future()

    def on_delivery(sent: int, received: int) -> None:
        counter[0] += 1
        if counter[0] % sample == 0:
            latencies.append(received - sent)
        if track:
            entry = per_message.get(sent)
            if entry is None:
                per_message[sent] = [1, received]
            else:
                entry[0] += 1
                if received > entry[1]:
                    entry[1] = received
        if total_expected is not None and counter[0] >= total_expected and not done.done():
            done.set_result(None)

    for c in clients:
        c.on_delivery = on_delivery
    go = await ctl.aready({"connect_s": connect_s})
    t0 = go["t0"]
    loop = asyncio.get_running_loop()
    window_counts: list[int] = []
    window_cpu: list[float] = []
    for offset in p.get("window") or ():
        _at(
            loop,
            t0 + offset,
            lambda: (window_counts.append(counter[0]), window_cpu.append(time.process_time())),
        )
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(done, max(0.1, t0 + p["until"] - time.monotonic()))
    if p.get("window"):
        await _sleep_until(t0 + max(p["window"]) + 0.01)
    for c in clients:
        c.close()
    return {
        "clients": len(clients),
        "received": counter[0],
        "latencies_ns": latencies,
        "window_counts": window_counts,
        "window_cpu_s": window_cpu,
        "per_message": {str(k): v for k, v in per_message.items()},
        "connect_s": connect_s,
    }


async def fanout_writer(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """One writer at a fixed rate: ``count`` writes, write i at t0 + i / rate.

    Params: system, url, room, rate, count, key, and optionally ``times``: a list of
    offsets from t0 to write at instead (single broadcasts).
    """
    sys_ = system(p["system"])
    client = await LeanClient.connect(sys_, p["url"], p["room"], _cid("w", 0))
    go = await ctl.aready()
    t0 = go["t0"]
    times = p.get("times") or [i / p["rate"] for i in range(p["count"])]
    late = 0
    for i, offset in enumerate(times):
        target = t0 + offset
        now = time.monotonic()
        if target > now:
            await asyncio.sleep(target - now)
        elif now - target > 0.005:
            late += 1
        client.write(p["key"], {"i": i, "ts": marker(client.echo_tag)})
    acked = True
    if sys_.server in ("lw", "pycrdt"):
        acked = await client.wait_acked(client.seq, timeout=p.get("ack_timeout", 20))
    client.close()
    return {
        "sent": client.seq,
        "acked": client.acked - client.refused,
        "refused": client.refused,
        "all_acked": acked,
        "late": late,
    }


async def writers(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """``n`` writers as fast as their window allows, for ``duration`` s or ``count`` writes.

    livewidgets and pycrdt writers keep at most ``window`` writes unacknowledged (acks,
    resp. their own echoes); floor writers have no acks and are paced by TCP
    backpressure only. Params: system, url, room, n, window, duration | count each,
    keys (distinct keys per writer), window_at ([start, end] offsets: ack counts).
    """
    sys_ = system(p["system"])
    clients = await _connect_many(sys_, p["url"], p["room"], p["n"], "w")
    window = p.get("window", 32)
    keys = p.get("keys", 1)
    count = p.get("count")
    closed_loop = sys_.server in ("lw", "pycrdt")
    go = await ctl.aready()
    t0 = go["t0"]
    t_end = t0 + p["duration"] if p.get("duration") else t0 + p.get("max_s", 300)
    loop = asyncio.get_running_loop()
    ack_counts: list[int] = []
    window_cpu: list[float] = []
    for offset in p.get("window_at") or ():
        _at(
            loop,
            t0 + offset,
            lambda: (
                ack_counts.append(sum(c.acked - c.refused for c in clients)),
                window_cpu.append(time.process_time()),
            ),
        )
    await _sleep_until(t0)

    async def run(index: int, c: LeanClient) -> None:
        prefix = f"{p.get('key', 'sat')}/w{index}"
        since_yield = 0
        while time.monotonic() < t_end and (count is None or c.seq < count):
            if closed_loop:
                if c.unacked >= window:
                    ok = await c.wait_acked(c.seq - window + 1, max(0.01, t_end - time.monotonic()))
                    if not ok:
                        break
            else:
                try:
                    await asyncio.wait_for(c.conn.drain(), max(0.01, t_end - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                since_yield += 1
                if since_yield >= window:
                    since_yield = 0
                    await asyncio.sleep(0)
            key = f"{prefix}/k{c.seq % keys}" if keys > 1 else prefix
            c.write(key, {"i": c.seq, "ts": marker(c.echo_tag)})
        if closed_loop and count is not None:
            await c.wait_acked(c.seq, max(1.0, t_end - time.monotonic()))

    await asyncio.gather(*(run(i, c) for i, c in enumerate(clients)))
    elapsed = time.monotonic() - t0
    if p.get("window_at"):
        await _sleep_until(t0 + max(p["window_at"]) + 0.01)
    result = {
        "sent": sum(c.seq for c in clients),
        "acked": sum(c.acked - c.refused for c in clients),
        "refused": sum(c.refused for c in clients),
        "elapsed_s": elapsed,
        "ack_counts": ack_counts,
        "window_cpu_s": window_cpu,
    }
    for c in clients:
        c.close()
    await asyncio.sleep(0.05)
    return result


async def joiner(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """Join the room ``repeats`` times, one after the other; time each join.

    A join is timed from the TCP connect to a usable state: livewidgets ``joined``
    with the snapshot decoded; pycrdt sync step 2 applied to a fresh Doc.
    """
    sys_ = system(p["system"])
    # ``hold``: keep one member in the room so it stays loaded between the joins.
    holder = None
    if p.get("hold"):
        holder = await LeanClient.connect(sys_, p["url"], p["room"], _cid("hold", 0), timeout=120)
    await ctl.aready()
    times = []
    unloaded_checks = 0
    for i in range(p["repeats"]):
        if not p.get("hold") and sys_.loads_from_store:
            unloaded_checks += await _wait_no_rooms(p["url"])
        started = time.perf_counter()
        client = await LeanClient.connect(sys_, p["url"], p["room"], _cid("j", i), timeout=60)
        times.append(time.perf_counter() - started)
        client.close()
        await asyncio.sleep(p.get("pause", 0.2))  # without a holder: the idle room unloads
    if holder is not None:
        holder.close()
    return {"join_s": times, "confirmed_unloaded": unloaded_checks}


async def _wait_no_rooms(url: str, timeout: float = 3.0) -> int:
    """Poll the server's /healthz until no room is loaded; 1 if confirmed, 0 if not.

    The livewidgets relay and bench.ypeer with a YStore both answer it.
    """
    host, _, port = url[len("ws://") :].rstrip("/").rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(4096), timeout)
        writer.close()
        body = data.partition(b"\r\n\r\n")[2]
        try:
            if msgspec.json.decode(body).get("rooms") == 0:
                return 1
        except msgspec.DecodeError:
            pass
        await asyncio.sleep(0.01)
    return 0


# --- engine roles ---------------------------------------------------------------------


def _lw_options(sys_: System) -> dict[str, Any]:
    # Heartbeats every 5 s are the engine default; keep them (they are part of its cost).
    return {"binary": sys_.codec == "msgpack"}


def e2e_writer(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """Set ``e2e/x`` at a fixed rate through a real client library: on an asyncio loop,
    as pycrdt's Provider and the floor's client run, or (``sync``, livewidgets only)
    through ``livewidgets.connect`` from the main thread, its loop in another thread."""
    sys_ = system(p["system"])
    if sys_.server == "lw" and p.get("sync"):
        import livewidgets

        session = livewidgets.connect(p["url"], p["room"], "writer", **_lw_options(sys_))
        go = ctl.ready()
        _paced(go["t0"], p["rate"], p["count"], lambda i: session.set("e2e/x", _value(i)))
        session.flush(timeout=30)
        session.close()
        return {"sent": p["count"]}
    return asyncio.run(_async_e2e_writer(sys_, p, ctl))


def _value(i: int) -> dict[str, Any]:
    return {"i": i, "ts": marker()}


def _paced(t0: float, rate: float, count: int, fn: Callable[[int], Any]) -> None:
    for i in range(count):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        fn(i)


async def _apaced(t0: float, rate: float, count: int, fn: Callable[[int], Any]) -> None:
    for i in range(count):
        await _sleep_until(t0 + i / rate)
        result = fn(i)
        if isinstance(result, Awaitable):
            await result


async def _async_e2e_writer(sys_: System, p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    if sys_.server == "lw":
        import livewidgets.asyncio

        session = await livewidgets.asyncio.connect(
            p["url"], p["room"], "writer", **_lw_options(sys_)
        )
        go = await ctl.aready()

        def put(i: int) -> None:
            session.set("e2e/x", _value(i))  # its Ack is not awaited: no writer waits

        await _apaced(go["t0"], p["rate"], p["count"], put)
        await session.flush(timeout=30)
        await session.close()
        return {"sent": p["count"]}

    url = f"{p['url']}/{p['room']}"
    async with connect(url, compression=None, max_size=2**24) as ws:
        if sys_.server == "floor":
            encode = msgspec.json.Encoder().encode
            go = await ctl.aready()

            async def send(i: int) -> None:
                await ws.send(encode({"key": "e2e/x", "value": _value(i)}).decode())

            await _apaced(go["t0"], p["rate"], p["count"], send)
            return {"sent": p["count"]}
        from pycrdt import Doc, Map, Provider

        from .ypeer import WebsocketsChannel

        doc = Doc()
        ymap = doc.get("m", type=Map)
        async with Provider(doc, WebsocketsChannel(ws, url)) as provider:  # type: ignore[arg-type]
            await asyncio.wait_for(provider.synced.wait(), 30)
            go = await ctl.aready()

            def put(i: int) -> None:
                ymap["x"] = _value(i)

            await _apaced(go["t0"], p["rate"], p["count"], put)
            await asyncio.sleep(0.2)  # the provider sends in the background
    return {"sent": p["count"]}


def e2e_reader(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """Subscribe to ``e2e/x`` through a real client library; latency per callback."""
    sys_ = system(p["system"])
    latencies: list[int] = []
    done = threading.Event()

    def seen(value: Any) -> None:
        now = time.monotonic_ns()
        sent = parse_marker(str((value or {}).get("ts", "")).encode())
        if sent > 0:
            latencies.append(now - sent)
        if len(latencies) >= p["count"]:
            done.set()

    if sys_.server == "lw" and p.get("sync"):
        import livewidgets

        session = livewidgets.connect(p["url"], p["room"], "reader", **_lw_options(sys_))
        session.subscribe("e2e/x", lambda value, path: seen(value))
        go = ctl.ready()
        done.wait(max(0.1, go["t0"] + p["until"] - time.monotonic()))
        session.close()
    else:
        asyncio.run(_async_e2e_reader(sys_, p, ctl, seen, done))
    return {"latencies_ns": latencies}


async def _async_e2e_reader(
    sys_: System,
    p: dict[str, Any],
    ctl: Control,
    seen: Callable[[Any], None],
    done: threading.Event,
) -> None:
    from websockets.asyncio.client import connect

    if sys_.server == "lw":
        import livewidgets.asyncio

        session = await livewidgets.asyncio.connect(
            p["url"], p["room"], "reader", **_lw_options(sys_)
        )
        session.subscribe("e2e/x", lambda value, path: seen(value))
        go = await ctl.aready()
        deadline = go["t0"] + p["until"]
        while not done.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await session.close()
        return
    url = f"{p['url']}/{p['room']}"
    async with connect(url, compression=None, max_size=2**24) as ws:
        if sys_.server == "floor":
            decode = msgspec.json.Decoder().decode
            go = await ctl.aready()

            async def consume() -> None:
                async for message in ws:
                    seen(decode(message)["value"])
                    if done.is_set():
                        return

            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    consume(), max(0.1, go["t0"] + p["until"] - time.monotonic())
                )
            return
        from pycrdt import Doc, Map, Provider

        from .ypeer import WebsocketsChannel

        doc = Doc()
        ymap = doc.get("m", type=Map)

        def on_change(event: Any) -> None:
            if "x" in event.keys:
                seen(ymap["x"])

        ymap.observe(on_change)
        async with Provider(doc, WebsocketsChannel(ws, url)) as provider:  # type: ignore[arg-type]
            await asyncio.wait_for(provider.synced.wait(), 30)
            go = await ctl.aready()
            # ``done`` is a threading.Event (shared with the livewidgets driver): poll it.
            deadline = go["t0"] + p["until"]
            while not done.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)


async def typists(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """``n`` clients typing one character every 1/rate s at random places, ``keys`` each.

    Each client records its last keystroke and the moment its text first holds every
    keystroke of every client (``total`` characters). Params: system, url, room, n,
    rate, keys, total, until.
    """
    sys_ = system(p["system"])
    rng = random.Random(p.get("seed", 0) + ctl.index)
    n = p["n"]
    reached: list[float | None] = [None] * n
    all_reached = asyncio.Event()
    total = p["total"]
    loop = asyncio.get_running_loop()

    def make_check(i: int, length: Callable[[], int]) -> Callable[..., None]:
        def check(*_: Any) -> None:
            if reached[i] is None and length() >= total:
                reached[i] = time.monotonic()
                if all(r is not None for r in reached):
                    loop.call_soon_threadsafe(all_reached.set)

        return check

    inserts: list[Callable[[int, str], Any]] = []
    lengths: list[Callable[[], int]] = []
    values: list[Callable[[], str]] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    if sys_.server == "lw":
        import livewidgets.asyncio as lwa

        for i in range(n):
            session = await lwa.connect(
                p["url"], p["room"], f"typist{ctl.index}-{i}", **_lw_options(sys_)
            )
            text = session.text("doc/body")
            inserts.append(text.insert)
            lengths.append(lambda t=text: len(t.value))
            values.append(lambda t=text: t.value)
            text.subscribe(make_check(i, lengths[-1]))
            closers.append(session.close)
    else:
        from pycrdt import Doc, Provider, Text
        from websockets.asyncio.client import connect

        from .ypeer import WebsocketsChannel

        url = f"{p['url']}/{p['room']}"
        for i in range(n):
            ws = await connect(url, compression=None, max_size=2**24)
            doc = Doc()
            ytext = doc.get("t", type=Text)
            provider = Provider(doc, WebsocketsChannel(ws, url))  # type: ignore[arg-type]
            await provider.__aenter__()
            await asyncio.wait_for(provider.synced.wait(), 30)
            inserts.append(lambda pos, ch, t=ytext: t.insert(pos, ch))
            lengths.append(lambda t=ytext: len(t))
            values.append(lambda t=ytext: str(t))
            ytext.observe(make_check(i, lengths[-1]))

            async def close(provider: Any = provider, ws: Any = ws) -> None:
                await provider.__aexit__(None, None, None)
                await ws.close()

            closers.append(close)
    go = await ctl.aready()
    t0 = go["t0"]
    last_key: list[float] = [0.0] * n

    async def type_(i: int) -> None:
        phase = (i + ctl.index * n) / (p["rate"] * n * 2)
        for k in range(p["keys"]):
            await _sleep_until(t0 + phase + k / p["rate"])
            value_len = lengths[i]()
            inserts[i](rng.randint(0, value_len), chr(97 + rng.randrange(26)))
            last_key[i] = time.monotonic()
        make_check(i, lengths[i])()

    await asyncio.gather(*(type_(i) for i in range(n)))
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(all_reached.wait(), max(0.1, t0 + p["until"] - time.monotonic()))
    # Quiet period: whatever is still in flight settles, then compare the texts.
    await asyncio.sleep(p.get("settle", 0.2))
    finals = [values[i]() for i in range(n)]
    # Closed in this task: anyio (pycrdt's Provider) must exit a task group in the task
    # that entered it. The parent's timeout bounds this.
    for close in reversed(closers):  # task groups exit in reverse order of entry
        with contextlib.suppress(Exception):  # after the measurement: nothing to report
            await close()
    return {
        "last_key": max(last_key),
        "reached": reached,
        "lengths": [len(v) for v in finals],
        "digests": sorted({hashlib.sha1(v.encode()).hexdigest()[:12] for v in finals}),
        "finals_equal": len(set(finals)) == 1,
        "final": finals[0] if p.get("return_text") else None,
    }
