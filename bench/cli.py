"""``python -m bench [--quick | --smoke] [--scenarios ...] [--systems ...] [--out DIR]``"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import report
from .experiments import EXPERIMENTS
from .results import Results
from .scenarios import SCENARIOS, Config, Context
from .servers import REPO, raise_fd_limit
from .systems import SYSTEMS

__all__ = ["main"]

_PACKAGES = (
    "livewidgets",
    "websockets",
    "msgspec",
    "pycrdt",
    "pycrdt-websocket",
    "pycrdt-store",
    "anyio",
    "matplotlib",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="livewidgets relay benchmarks against a floor relay and pycrdt-websocket "
        "(without and with its SQLite store).",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small counts (< ~60 s)")
    size.add_argument("--smoke", action="store_true", help="minimal counts (CI: it still runs)")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=list(SCENARIOS),
        default=list(SCENARIOS),
        metavar="NAME",
        help=f"subset, in this order: {' '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=[s.name for s in SYSTEMS],
        default=[s.name for s in SYSTEMS],
        metavar="NAME",
        help=f"subset of: {' '.join(s.name for s in SYSTEMS)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench" / "results",
        help="where JSON, Markdown and PNG go (default: %(default)s)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--lw-experiment",
        action="append",
        default=[],
        metavar="NAME",
        choices=sorted(EXPERIMENTS),
        help="patch every livewidgets relay with a what-if change (bench.experiments: "
        f"{', '.join(sorted(EXPERIMENTS))}); for measuring proposals, not for reporting",
    )
    parser.add_argument(
        "--pin-server",
        action="store_true",
        help="run every server on the first CPU and the harness and its clients on the "
        "others: a diagnostic that takes the load generators out of the server's run "
        "queue (the default shares every CPU, as a notebook machine does)",
    )
    parser.add_argument(
        "--server-nice",
        type=int,
        metavar="N",
        help="start every server with this nice value (negative: more CPU weight than "
        "its clients; needs root): a diagnostic for how the scheduler's CPU shares "
        'shape the latencies (docs/benchmarks.md "What limits us")',
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="attach py-spy to each livewidgets relay; collapsed stacks go to DIR",
    )
    return parser


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), ""
            )
    except OSError:
        pass
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "commit": commit + ("+dirty src" if dirty else ""),
    }


def _burn(seconds: float, out: Any) -> None:
    started, n = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        n += 1
    out.put(n)


def effective_cores(seconds: float = 0.4) -> float:
    """How many cores' worth of pure-Python work the machine does at once.

    nproc can overstate it (shared or throttled vCPUs): one busy process is timed
    alone, then one per CPU together; the ratio of total work is the answer.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    totals = []
    for n in (1, os.cpu_count() or 1):
        queue = ctx.Queue()
        procs = [ctx.Process(target=_burn, args=(seconds, queue)) for _ in range(n)]
        for p in procs:
            p.start()
        work = sum(queue.get(timeout=30) for _ in procs)
        for p in procs:
            p.join()
        totals.append(work)
    return round(totals[1] / totals[0], 2)


def _available(names: Sequence[str]) -> list[str]:
    chosen = []
    for name in names:
        if name in ("pycrdt", "pycrdt-sqlite"):
            # pycrdt-store comes with pycrdt-websocket (0.16); pycrdt-sqlite needs it.
            modules = ["pycrdt", "pycrdt.websocket"]
            if name == "pycrdt-sqlite":
                modules.append("pycrdt.store")
            try:
                for module in modules:
                    importlib.import_module(module)
            except ImportError:
                print(
                    f"pycrdt / pycrdt-websocket / pycrdt-store not installed: skipping the "
                    f"{name} system (pip install pycrdt-websocket)"
                )
                continue
        chosen.append(name)
    return chosen


def _pin_harness() -> tuple[int, ...]:
    """Keep the first CPU for the servers and move this process (and so every client
    it starts) to the others; the servers' CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin-server needs at least 2 CPUs")
    os.sched_setaffinity(0, cpus[1:])
    return (cpus[0],)


def _verdict(met: bool | None) -> str:
    return "n/m" if met is None else "met" if met else "NOT met"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = Config.smoke() if args.smoke else Config.quick_() if args.quick else Config.full()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.profile:
        config.profile_dir = str(args.profile)
    config.lw_experiments = tuple(args.lw_experiment)
    if args.pin_server:
        config.server_cpus = _pin_harness()
    config.server_nice = args.server_nice
    names = _available(args.systems)
    systems = [s for s in SYSTEMS if s.name in names]
    raise_fd_limit()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = machine()
    meta["effective_cores"] = None if args.smoke else effective_cores()
    results = Results(meta, config.as_dict())
    meta["lw_experiments"] = list(config.lw_experiments)
    meta["server_cpus"] = config.server_cpus
    meta["server_nice"] = config.server_nice
    print(
        f"bench ({mode}): {meta['nproc']} x {meta['cpu']} "
        f"(effective cores: {meta['effective_cores']}), Python {meta['python']}, "
        f"livewidgets {meta['packages']['livewidgets']} @ {meta['commit']}",
        flush=True,
    )
    if config.lw_experiments:
        print(f"EXPERIMENT: livewidgets relays patched with {', '.join(config.lw_experiments)}")
    if config.server_cpus:
        print(f"PINNED: servers on CPU {config.server_cpus}, the harness and clients on the rest")
    if config.server_nice is not None:
        print(f"NICE: servers at nice {config.server_nice}, the harness and clients at 0")
    ctx = Context(config, results, lambda line: print(line, flush=True))
    started = time.monotonic()
    for name in args.scenarios:
        t = time.monotonic()
        SCENARIOS[name](ctx, systems)
        results.timings[name] = round(time.monotonic() - t, 1)
    results.timings["total"] = round(time.monotonic() - started, 1)
    # The VM's CPU share can change during a run: measure again at the end.
    meta["effective_cores_end"] = None if args.smoke else effective_cores()

    shown = [s.name for s in systems]
    text = "\n".join(
        [
            report.table(results, shown),
            "",
            report.ratio_tables(results, shown),
            "Targets:",
            *(
                f"- [{_verdict(met)}] {label}: {evidence}"
                for label, met, evidence in report.targets(
                    results, config.fanout_subscribers, config.history
                )
            ),
        ]
    )
    print()
    print(text)
    json_path = args.out / f"{mode}.json"
    results.write(json_path)
    (args.out / f"{mode}.md").write_text(text + "\n")
    written = [] if args.no_plots else report.plots(results, shown, args.out, mode)
    print(f"\nwrote {json_path}, {args.out / f'{mode}.md'}" + "".join(f", {p}" for p in written))
    if results.errors:
        print(f"{len(results.errors)} error(s); details in {json_path} (errors)", file=sys.stderr)
    print(
        f"total {results.timings['total']:.1f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in results.timings.items() if k != 'total')})"
    )
    return 1 if results.errors else 0
