"""Summarise py-spy collapsed stacks (``python -m bench --profile DIR`` writes them).

``python -m bench.profile DIR/throughput-lw-json-mem.txt [--top 25] [--filter livewidgets]``
prints the functions with the most samples on-CPU *self* time and *inclusive* time.
Idle samples (the event loop waiting in ``select``/``epoll``) are counted apart.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

__all__ = ["load", "main", "summarise"]

_IDLE = re.compile(r"\b(select|poll|epoll_wait|_worker \(concurrent|wait \(threading)")


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    # py-spy frames look like "function (path/to/file.py:123)"; drop the line number.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3", "src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarise(path: Path, top: int = 25, contains: str = "") -> str:
    stacks = load(path)
    total = sum(c for _, c in stacks)
    idle = sum(c for s, c in stacks if s and _IDLE.search(s[-1]))
    busy = total - idle
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, count in stacks:
        if frames and _IDLE.search(frames[-1]):
            continue
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            incl[frame] += count
    lines = [f"{path.name}: {total} samples, {busy} on CPU ({100 * busy / max(total, 1):.0f}%)"]
    for title, counter in (("self", own), ("inclusive", incl)):
        lines.append(f"  top {title} (% of on-CPU samples):")
        shown = 0
        for frame, count in counter.most_common():
            if contains and contains not in frame:
                continue
            lines.append(f"    {100 * count / max(busy, 1):5.1f}%  {frame}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default="", help="only frames containing this text")
    args = parser.parse_args()
    for path in args.paths:
        print(summarise(path, args.top, args.filter))


if __name__ == "__main__":
    main()
