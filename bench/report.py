"""Turning results into a Markdown table, ratios, target verdicts and PNG plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .results import Metric, Results

__all__ = ["fmt", "plots", "ratio_tables", "table", "targets"]

LW = ("lw-json-mem", "lw-msgpack-mem", "lw-json-sqlite", "lw-msgpack-sqlite")
LW_MEMORY = ("lw-json-mem", "lw-msgpack-mem")
LW_SQLITE = ("lw-json-sqlite", "lw-msgpack-sqlite")
# Every system, in table order.
SYSTEM_ORDER = (*LW, "floor", "pycrdt", "pycrdt-sqlite")


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def table(results: Results, systems: Sequence[str]) -> str:
    """Every metric (rows) for every system (columns)."""
    head = ["scenario", "metric", "unit", *systems]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in results.metrics.values():
        cells = []
        for s in systems:
            cell = fmt(m.values.get(s))
            if s in m.notes:
                cell += f" ({m.notes[s]})"
            cells.append(cell)
        better = "↓" if m.better == "lower" else "↑"
        lines.append(
            f"| {m.scenario} | {m.label} {better} | {m.unit} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def ratio_tables(results: Results, systems: Sequence[str]) -> str:
    """livewidgets / floor, livewidgets / pycrdt and livewidgets-with-SQLite /
    pycrdt-sqlite (durable store against durable store) for every comparable metric.

    A ratio is always ``livewidgets value / other value``; ✓ marks livewidgets
    being better (higher throughput, lower latency, ...).
    """
    out = []
    for baseline, compared in (("floor", LW), ("pycrdt", LW), ("pycrdt-sqlite", LW_SQLITE)):
        lw = [s for s in compared if s in systems]
        if baseline not in systems or not lw:
            continue
        rows = []
        for m in results.metrics.values():
            if m.unit == "x" or not m.compare:
                continue
            ratios = [m.ratio(s, baseline) for s in lw]
            if all(r is None for r in ratios):
                continue
            cells = []
            for s, r in zip(lw, ratios, strict=True):
                if r is None:
                    cells.append("-")
                else:
                    cells.append(f"{r:.2f}x {'✓' if m.beats(s, baseline) else '✗'}")
            better = "↓" if m.better == "lower" else "↑"
            rows.append(f"| {m.label} {better} | " + " | ".join(cells) + " |")
        if rows:
            out.append(f"livewidgets ÷ {baseline} (✓ = livewidgets better)\n")
            out.append("| metric | " + " | ".join(lw) + " |")
            out.append("|---|" + "---|" * len(lw))
            out.extend(rows)
            out.append("")
    return "\n".join(out)


def targets(
    results: Results, fanout_subs: Sequence[int], history: Sequence[int] = (10_000, 100_000)
) -> list[tuple[str, bool | None, str]]:
    """The issue's targets: (target, met (None = not measured), evidence)."""
    verdicts: list[tuple[str, bool | None, str]] = []

    def check(
        label: str, metric: Metric | None, systems: Sequence[str], base: str, ok: Any
    ) -> None:
        if metric is None:
            verdicts.append((label, None, "not measured"))
            return
        parts: list[str] = []
        measured: list[bool] = []
        for s in systems:
            r = metric.ratio(s, base)
            if r is None:
                parts.append(f"{s}: -")
                continue
            good = bool(ok(r))
            measured.append(good)
            parts.append(f"{s}: {r:.2f}x {'✓' if good else '✗'}")
        met = all(measured) if measured else None
        verdicts.append((label, met, ", ".join(parts)))

    tput = results.metric("throughput", "delivered_per_s")
    check(
        "throughput >= 0.7x floor with SQLite",
        tput,
        ["lw-json-sqlite", "lw-msgpack-sqlite"],
        "floor",
        lambda r: r >= 0.7,
    )
    check(
        "throughput >= 0.85x floor with memory",
        tput,
        ["lw-json-mem", "lw-msgpack-mem"],
        "floor",
        lambda r: r >= 0.85,
    )
    per_cpu = results.metric("throughput", "delivered_per_core_s")
    check(
        "throughput per server CPU-second >= 0.7x floor with SQLite",
        per_cpu,
        ["lw-json-sqlite", "lw-msgpack-sqlite"],
        "floor",
        lambda r: r >= 0.7,
    )
    check(
        "throughput per server CPU-second >= 0.85x floor with memory",
        per_cpu,
        ["lw-json-mem", "lw-msgpack-mem"],
        "floor",
        lambda r: r >= 0.85,
    )
    for subs in fanout_subs:
        check(
            f"fan-out p99 <= 1.5x floor ({subs} subscriber{'s' if subs > 1 else ''})",
            results.metric("fanout", f"p99_ms@{subs}"),
            LW,
            "floor",
            lambda r: r <= 1.5,
        )
    # Better than pycrdt-websocket on every metric it supports, like for like: the
    # memory stores against pycrdt (in-memory rooms), the SQLite stores against
    # pycrdt-sqlite (a SQLiteYStore per room). Results without pycrdt-sqlite (older
    # runs, --systems) compare the SQLite stores with pycrdt, and say so.
    has_ystore = any(
        isinstance(m.values.get("pycrdt-sqlite"), (int, float)) for m in results.metrics.values()
    )
    sqlite_base = "pycrdt-sqlite" if has_ystore else "pycrdt"
    pairs = [(s, "pycrdt") for s in LW_MEMORY] + [(s, sqlite_base) for s in LW_SQLITE]
    losses, wins, total = [], 0, 0
    for m in results.metrics.values():
        if m.unit == "x" or not m.compare:
            continue
        for s, base in pairs:
            b = m.beats(s, base)
            if b is None:
                continue
            total += 1
            if b:
                wins += 1
            else:
                losses.append(f"{s} on '{m.label}' ({m.ratio(s, base):.2f}x)")
    if total:
        evidence = f"{wins}/{total} comparisons won (memory vs pycrdt, SQLite vs {sqlite_base})"
        if losses:
            evidence += "; lost: " + "; ".join(losses)
        verdicts.append(
            ("better than pycrdt-websocket on every scenario it supports", not losses, evidence)
        )
    else:
        verdicts.append(
            ("better than pycrdt-websocket on every scenario it supports", None, "not measured")
        )
    for mode in ("loaded", "unloaded"):
        m = results.metric("join", f"ratio-{mode}")
        if m is None:
            continue
        vals = {s: m.values.get(s) for s in LW if isinstance(m.values.get(s), float)}
        if not vals:
            continue
        met = all(v <= 2.0 for v in vals.values())
        evidence = ", ".join(f"{s}: {v:.2f}x" for s, v in vals.items())
        big, small = _k(history[-1]), _k(history[0])
        verdicts.append((f"join time {big} within 2x of {small} (room {mode})", met, evidence))
    return verdicts


def _k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 else str(n)


# --- plots -----------------------------------------------------------------------------

_COLORS = {
    "lw-json-mem": "#1f77b4",
    "lw-msgpack-mem": "#17becf",
    "lw-json-sqlite": "#2ca02c",
    "lw-msgpack-sqlite": "#98df8a",
    "floor": "#7f7f7f",
    "pycrdt": "#d62728",
    "pycrdt-sqlite": "#ff9896",
}


def plots(results: Results, systems: Sequence[str], out: Path, prefix: str) -> list[Path]:
    """One PNG per scenario that has numbers; returns the paths written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out / f"{prefix}-{name}.png"
        for ax in fig.axes:  # plain numbers on log axes, not 4x10^1
            for axis, scale in ((ax.yaxis, ax.get_yscale()), (ax.xaxis, ax.get_xscale())):
                if scale == "log":
                    axis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
                    axis.set_minor_formatter(NullFormatter())
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    def num(m: Metric | None, s: str) -> float | None:
        v = m.values.get(s) if m else None
        return float(v) if isinstance(v, (int, float)) else None

    def bars(ax: Any, metric: Metric | None, title: str, log: bool = False) -> None:
        names = [s for s in systems if num(metric, s) is not None]
        vals = [num(metric, s) for s in names]
        ax.bar(range(len(names)), vals, color=[_COLORS.get(s, "#333") for s in names])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        if log:
            ax.set_yscale("log")
        for i, v in enumerate(vals):
            ax.annotate(fmt(v), (i, v), ha="center", va="bottom", fontsize=7)

    subs = sorted({int(k.split("@")[1]) for (sc, k) in results.metrics if sc == "fanout"})
    if subs:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
        for ax, q in zip(axes, (50, 99), strict=True):
            for s in systems:
                ys = [num(results.metric("fanout", f"p{q}_ms@{n}"), s) for n in subs]
                if any(y is not None for y in ys):
                    ax.plot(subs, ys, marker="o", label=s, color=_COLORS.get(s))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("subscribers")
            ax.set_ylabel("ms")
            ax.set_title(f"fan-out latency p{q} (1 writer, fixed rate)", fontsize=9)
        axes[1].legend(fontsize=7)
        save(fig, "fanout")
    if results.metric("throughput", "delivered_per_s") or results.metric(
        "durability", "acked_per_s"
    ):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
        bars(
            axes[0],
            results.metric("throughput", "delivered_per_s"),
            "saturated: msgs/s delivered to 10 readers",
        )
        bars(axes[1], results.metric("durability", "acked_per_s"), "10 writers: acknowledged ops/s")
        save(fig, "throughput")
    if results.metric("idle", "rss_kib_per_conn"):
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
        bars(axes[0], results.metric("idle", "rss_kib_per_conn"), "server RSS per conn (KiB)")
        bars(axes[1], results.metric("idle", "broadcast_all_ms"), "one broadcast to all (ms)")
        bars(axes[2], results.metric("idle", "connect_all_s"), "connect + join all (s)")
        save(fig, "idle")
    join_metrics = [
        m for (sc, k), m in results.metrics.items() if sc == "join" and k.startswith("ms@")
    ]
    if join_metrics:
        fig, ax = plt.subplots(figsize=(8, 3.6))
        names = [s for s in systems if any(num(m, s) is not None for m in join_metrics)]
        width = 0.8 / max(1, len(join_metrics))
        for j, m in enumerate(join_metrics):
            xs = [i + j * width for i in range(len(names))]
            ys = [num(m, s) or 0 for s in names]
            ax.bar(xs, ys, width, label=m.label.replace("join, ", ""))
        ax.set_xticks(
            [i + 0.4 - width / 2 for i in range(len(names))],
            names,
            rotation=30,
            ha="right",
            fontsize=8,
        )
        ax.set_ylabel("ms (median)")
        ax.set_yscale("log")
        ax.set_title("join time with history", fontsize=9)
        ax.legend(fontsize=7)
        save(fig, "join")
    if results.metric("e2e", "p50_ms"):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
        bars(axes[0], results.metric("e2e", "p50_ms"), "end to end p50 (ms)")
        bars(axes[1], results.metric("e2e", "p99_ms"), "end to end p99 (ms)")
        save(fig, "e2e")
    if results.metric("text", "convergence_ms"):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
        bars(axes[0], results.metric("text", "convergence_ms"), "text: convergence (ms)")
        bars(axes[1], results.metric("text", "cpu_pct"), "text: relay CPU (%)")
        save(fig, "text")
    return written


def main() -> None:
    """``python -m bench.report RESULTS.json``: print the table again and redraw the plots."""
    import argparse
    import json

    from .results import Metric

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("json", type=Path)
    parser.add_argument("--prefix", help="PNG name prefix (default: the JSON's stem)")
    args = parser.parse_args()
    data = json.loads(args.json.read_text())
    results = Results(data["meta"], data["config"])
    for m in data["metrics"]:
        metric = Metric(**m)
        results.metrics[(metric.scenario, metric.key)] = metric
    systems = [s for s in SYSTEM_ORDER if any(s in m.values for m in results.metrics.values())]
    print(table(results, systems))
    print()
    print(ratio_tables(results, systems))
    history = data["config"].get("history", (10_000, 100_000))
    for label, met, evidence in targets(results, data["config"]["fanout_subscribers"], history):
        verdict = "n/m" if met is None else "met" if met else "NOT met"
        print(f"- [{verdict}] {label}: {evidence}")
    for path in plots(results, systems, args.json.parent, args.prefix or args.json.stem):
        print(path)


if __name__ == "__main__":
    main()
