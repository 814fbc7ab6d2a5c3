"""What room rules cost the relay: the fan-out at 10 subscribers, without and with a
room of 20 rules (docs/rules.md), on one relay process per run.

Every bench client introduces itself with its own user name, so each subscriber is a
different reader to the rules: the relay decides each broadcast per reader, as in a
class where everyone is someone else. Reported: server CPU per write without and
with rules, their ratio (target: at most 1.10), and the p99 of both runs.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .results import percentile
from .systems import System

__all__ = ["CLASSROOM_RULES", "rules_cost"]

# A lesson's rules: the fan-out's path, then what a classroom notebook also has.
CLASSROOM_RULES: list[dict[str, Any]] = [
    {"path": "fan/**", "read": "anyone", "write": "writer"},
    {"path": "lesson/slide", "read": "anyone", "write": "admin", "type": "integer"},
    {"path": "lesson/notes/**", "read": "anyone", "write": "admin"},
    {"path": "poll/{poll}/question", "read": "anyone", "write": "admin"},
    {"path": "poll/{poll}/options", "read": "anyone", "write": "admin", "type": "list"},
    {
        "path": "poll/{poll}/voters/{user}",
        "read": "anyone",
        "write": "{user} or admin",
        "type": "string",
        "max_bytes": 100,
    },
    {"path": "poll/{poll}/open", "read": "anyone", "write": "admin", "type": "boolean"},
    {
        "path": "quiz/{q}/{user}",
        "read": "{user} or admin",
        "write": "{user}",
        "create_only": True,
    },
    {"path": "quiz/{q}/text", "read": "anyone", "write": "admin"},
    {"path": "answers/{user}/**", "read": "{user} or admin", "write": "{user}"},
    {"path": "drafts/{user}/**", "read": "{user}", "write": "{user}"},
    {
        "path": "chat/messages",
        "read": "anyone",
        "write": "writer",
        "ops": ["push", "remove"],
        "field_is_user": "author",
    },
    {"path": "chat/pinned", "read": "anyone", "write": "admin"},
    {"path": "claps", "read": "anyone", "write": "writer", "step": 1},
    {"path": "names/{user}", "read": "anyone", "write": "{user}", "value_is_user": True},
    {"path": "hands/{user}", "read": "anyone", "write": "{user} or admin", "type": "boolean"},
    {"path": "groups/{g}/members/{user}", "read": "anyone", "write": "{user} or admin"},
    {"path": "groups/{g}/board/**", "read": "anyone", "write": "writer"},
    {"path": "grades/{user}", "read": "{user} or admin", "write": "admin"},
    {"path": "staff/**", "read": "group:teachers", "write": "group:teachers"},
]


def rules_cost(ctx: Any, systems: Sequence[System]) -> None:
    """The fan-out at 10 subscribers without and with CLASSROOM_RULES."""
    from .scenarios import fanout_once

    cfg = ctx.config
    subs = 10
    count = int(cfg.fanout_rate * cfg.fanout_seconds)
    with tempfile.TemporaryDirectory(prefix="lwbench-rules-") as folder:
        rules_file = Path(folder) / "rules.json"
        rules_file.write_text(json.dumps(CLASSROOM_RULES))
        for sys_ in systems:
            if not sys_.is_livewidgets or sys_.name not in cfg.rules_systems:
                continue

            def run(sys_: System = sys_) -> None:
                cpu_per_write = []
                for label, args in (("without", ()), ("with", ("--rules", str(rules_file)))):
                    with ctx.server(sys_, "rules", relay_args=args) as server:
                        results, cpu, _ = fanout_once(cfg, sys_, server, "rules", subs, count)
                    lat = [x for r in results[:-1] for x in r["latencies_ns"]]
                    received = sum(r["received"] for r in results[:-1])
                    note = None if received >= count * subs else f"{received}/{count * subs}"
                    cpu_per_write.append(cpu / count * 1e6)
                    ctx.results.put(
                        "rules",
                        f"cpu_us_{label}",
                        sys_.name,
                        round(cpu_per_write[-1], 1),
                        label=f"fan-out to 10, server CPU per write, {label} 20 rules",
                        unit="µs",
                        better="lower",
                        note=note,
                    )
                    p99 = percentile(lat, 99)
                    ctx.results.put(
                        "rules",
                        f"p99_ms_{label}",
                        sys_.name,
                        None if p99 is None else p99 / 1e6,
                        label=f"fan-out to 10, p99, {label} 20 rules",
                        unit="ms",
                        better="lower",
                    )
                ratio = cpu_per_write[1] / cpu_per_write[0] if cpu_per_write[0] else None
                ctx.results.put(
                    "rules",
                    "cpu_ratio",
                    sys_.name,
                    ratio,
                    label="server CPU per write, with rules / without (target <= 1.10)",
                    unit="x",
                    better="lower",
                    compare=False,
                )

            ctx.guard("rules", sys_, run)
