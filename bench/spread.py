"""Run-to-run spread of several full runs: ``python -m bench.spread A.json B.json C.json``.

Prints, for every metric with numbers in every run, each system's min-max over the
runs, and the ratio to the floor (and to pycrdt-websocket) computed per run, as
min-max: a ratio is only meaningful between systems measured in the same run
(docs/benchmarks.md "Run-to-run spread").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["main", "spread"]

DASH, TIMES = "\u2013", "\u00d7"


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _range(values: list[float], suffix: str = "") -> str:
    lo, hi = min(values), max(values)
    if _fmt(lo) == _fmt(hi):
        return f"{_fmt(lo)}{suffix}"
    return f"{_fmt(lo)}{DASH}{_fmt(hi)}{suffix}"


def spread(runs: list[dict[str, Any]], baselines: tuple[str, ...] = ("floor",)) -> str:
    """A Markdown table: per metric and system, min-max over ``runs``; per baseline,
    the per-run ratio's min-max."""
    keyed = [{(m["scenario"], m["key"]): m for m in run["metrics"]} for run in runs]
    systems: list[str] = []
    for run in runs:
        for metric in run["metrics"]:
            for name in metric["values"]:
                if name not in systems:
                    systems.append(name)
    lines = [
        f"| scenario | metric | unit | {' | '.join(systems)} |",
        f"|---|---|---|{'---|' * len(systems)}",
    ]
    ratio_lines: list[str] = []
    for key, first in keyed[0].items():
        cells = []
        for name in systems:
            values = [k[key]["values"].get(name) for k in keyed if key in k]
            numbers = [v for v in values if isinstance(v, (int, float))]
            cells.append(_range(numbers) if len(numbers) == len(runs) else "-")
        if all(c == "-" for c in cells):
            continue
        lines.append(f"| {key[0]} | {first['label']} | {first['unit']} | {' | '.join(cells)} |")
        if not first.get("compare", True) and "cpu" not in key[1]:
            continue
        for base in baselines:
            ratios = []
            for name in systems:
                if name == base or not name.startswith("lw-"):
                    continue
                per_run = []
                for k in keyed:
                    metric = k.get(key)
                    a = metric["values"].get(name) if metric else None
                    b = metric["values"].get(base) if metric else None
                    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                        per_run.append(a / b)
                if len(per_run) == len(runs):
                    ratios.append(f"{name} {_range(per_run, TIMES)}")
            if ratios:
                ratio_lines.append(f"| {first['label']} ÷ {base} | {'; '.join(ratios)} |")
    out = "\n".join(lines)
    if ratio_lines:
        head = f"| ratio (per run, min{DASH}max) | livewidgets |\n|---|---|\n"
        out += "\n\n" + head + "\n".join(ratio_lines)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spread", description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="full.json of each run")
    parser.add_argument("--baseline", action="append", default=None)
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) for path in args.runs]
    print(spread(runs, tuple(args.baseline or ("floor", "pycrdt"))))


if __name__ == "__main__":
    main()
