"""A flooder against the default limits: is it held to the rate, and what does it cost
the calm writers in the same room?

The relay runs with the CLI's default policy and limits (``bench.lwrelay --limits
default``: 200 ops/s, burst 400, per connection and per user), unlike every other
scenario, which lifts the throttles out of the way. Two runs on one relay, one after
the other:

* **quiet**: a calm writer sends one op every ``1 / flood_calm_rate`` s and waits for
  its ack (op→ack latency);
* **flood**: the same calm writer while a raw-protocol flooder sends
  ``flood_count`` ops as fast as the socket takes them, ignoring the advertised rate.

Reported: the calm writer's p50/p99 in both runs and their ratio (target: p99 under
the flood at most 2x quiet), the flooder's rate after its burst (held to ~200/s), and how many
of its ops were refused (target: 0; the relay slows it, docs/protocol.md "Pacing").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from . import roles
from .results import percentile
from .systems import LeanClient, System, system
from .team import Control, Team

__all__ = ["calm_writer", "flood"]

NS = 1_000_000_000
# What the default relay advertises (livewidgets.relay.security.Limits).
DEFAULT_RATE = 200.0
DEFAULT_BURST = 400.0


async def calm_writer(p: dict[str, Any], ctl: Control) -> dict[str, Any]:
    """One writer: an op every 1/rate s for ``seconds``, each awaited (op→ack, ns)."""
    sys_ = system(p["system"])
    client = await LeanClient.connect(sys_, p["url"], p["room"], "calm", timeout=60)
    go = await ctl.aready()
    t0 = go["t0"] + p.get("start_after", 0.0)
    period = 1.0 / p["rate"]
    count = int(p["seconds"] * p["rate"])
    latencies: list[int] = []
    for i in range(count):  # bounded by count, each wait by a deadline
        delay = t0 + i * period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.monotonic_ns()
        client.write("calm", i)
        if not await client.wait_acked(client.seq, 10.0):
            break
        latencies.append(time.monotonic_ns() - sent)
    result = {"latencies_ns": latencies, "sent": client.seq, "refused": client.refused}
    client.close()
    await asyncio.sleep(0.05)
    return result


def _run(ctx: Any, sys_: System, url: str, with_flood: bool) -> tuple[dict[str, Any], Any]:
    cfg = ctx.config
    common = {"system": sys_.name, "url": url, "room": "flood"}
    with Team() as team:
        # The flood starts first, so the calm writer runs entirely inside it.
        calm = {**common, "rate": cfg.flood_calm_rate, "seconds": cfg.flood_seconds}
        team.spawn(calm_writer, {**calm, "start_after": 0.2 if with_flood else 0.0})
        if with_flood:
            team.spawn(
                roles.writers,
                {
                    **common,
                    "n": 1,
                    "key": "flood",
                    "count": cfg.flood_count,
                    "window": cfg.flood_count,  # everything in flight: ignores the rate
                    "max_s": 4 * cfg.flood_seconds + 30,
                },
            )
        team.start(60)
        results = team.results(4 * cfg.flood_seconds + 60)
    return results[0], results[1] if with_flood else None


def flood(ctx: Any, systems: Sequence[System]) -> None:
    """Calm writer p99 without and with a flooder in the room; the flooder's rate."""
    for sys_ in systems:
        # The throttle is ours: the other systems have nothing to compare.
        if not sys_.is_livewidgets or sys_.name not in ctx.config.flood_systems:
            continue

        def run(sys_: System = sys_) -> None:
            with ctx.server(sys_, "flood", relay_args=("--limits", "default")) as server:
                quiet, _ = _run(ctx, sys_, server.url, with_flood=False)
                loaded, flooder = _run(ctx, sys_, server.url, with_flood=True)
            put = ctx.results.put
            p99s = []
            for label, calm in (("quiet", quiet), ("flood", loaded)):
                lat = calm["latencies_ns"]
                for q in (50, 99):
                    value = percentile(lat, q)
                    put(
                        "flood",
                        f"calm_p{q}_ms_{label}",
                        sys_.name,
                        None if value is None else value / 1e6,
                        label=f"calm writer op→ack p{q}, {label}",
                        unit="ms",
                        better="lower",
                    )
                    if q == 99:
                        p99s.append(value)
            ratio = p99s[1] / p99s[0] if all(p99s) else None
            put(
                "flood",
                "calm_p99_ratio",
                sys_.name,
                ratio,
                label="calm p99 under the flood / quiet (target ≤ 2)",
                unit="x",
                better="lower",
                compare=False,
            )
            after_burst = max(0.0, flooder["acked"] - DEFAULT_BURST)
            held = after_burst / flooder["elapsed_s"] if flooder["elapsed_s"] else None
            put(
                "flood",
                "flooder_ops_per_s",
                sys_.name,
                held,
                label=f"flooder's acked ops/s after its burst (limit {DEFAULT_RATE:.0f})",
                unit="op/s",
                better="lower",
                compare=False,
            )
            put(
                "flood",
                "refused",
                sys_.name,
                flooder["refused"] + quiet["refused"] + loaded["refused"],
                label="ops refused (flooder and calm writer; target 0)",
                unit="ops",
                better="lower",
                compare=False,
            )
            ctx.results.raw.setdefault("flood", {})[sys_.name] = {
                "flooder": flooder,
                "calm_sent": [quiet["sent"], loaded["sent"]],
            }

        ctx.guard("flood", sys_, run)
