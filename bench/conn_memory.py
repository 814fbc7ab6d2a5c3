"""What one idle connection costs the relay, line by line (tracemalloc).

Runs a livewidgets relay (or the floor) in this process with tracemalloc on, joins
``--n`` listeners to one room from a forked client process (bench.team: their
allocations are not traced), and prints the Python memory the server holds per
connection, by file and by line, plus the process's RSS per connection. tracemalloc
sees Python allocations only: what RSS adds on top is pymalloc's and glibc's
overhead and fragmentation (kernel socket buffers are not in RSS at all).

Run: ``python -m bench.conn_memory [--n 2000] [--system lw-msgpack-mem|floor]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import linecache
import time
import tracemalloc
from collections import defaultdict
from typing import Any

from .many import storm_listeners
from .servers import raise_fd_limit, rss_kib
from .systems import system
from .team import Team


async def _serve(name: str, n: int, top: int) -> None:
    import os

    if system(name).is_livewidgets:
        from livewidgets.relay import Relay

        from .lwrelay import policy

        relay = Relay("127.0.0.1", 0, store="memory://", policy=policy("bench"))
        await relay.start()
        url = relay.url
    else:
        from websockets.asyncio.server import serve

        from . import floor

        server = await serve(floor._handle, "127.0.0.1", 0, compression=None, max_size=2**20)
        url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
    loop = asyncio.get_running_loop()
    gc.collect()
    await asyncio.sleep(0.2)
    rss0 = rss_kib(os.getpid())
    before = tracemalloc.take_snapshot()
    with Team() as team:
        params = {
            "system": name,
            "url": url,
            "room": "mem",
            "n": n,
            "start_at": time.monotonic() + 0.3,
            "timeout": 60.0,
            "expect": 0,
            "until": 0.1,
        }
        await loop.run_in_executor(None, team.spawn, storm_listeners, params)
        infos = await loop.run_in_executor(None, team.wait_ready, 180)
        await asyncio.sleep(1.0)
        gc.collect()
        after = tracemalloc.take_snapshot()
        rss1 = rss_kib(os.getpid())
        team.go(0.05)
        await loop.run_in_executor(None, team.results, 30)
    ok = infos[0]["outcomes"].get("ok", 0)
    stats = after.compare_to(before, "lineno")
    traced = sum(s.size_diff for s in stats)
    print(f"{name}: {ok} connections; RSS {(rss1 - rss0) / ok:.2f} KiB/conn (traced in-process)")
    print(f"  Python allocations (tracemalloc): {traced / ok / 1024:.2f} KiB/conn")
    by_file: dict[str, int] = defaultdict(int)
    for s in stats:
        path = s.traceback[0].filename
        short = path.split("site-packages/")[-1].split("/src/")[-1]
        by_file[short] += s.size_diff
    print("  by file (bytes per connection):")
    for path, size in sorted(by_file.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {size / ok:8.0f}  {path}")
    print("  by line (bytes per connection, allocations per connection):")
    for s in stats[:top]:
        frame = s.traceback[0]
        short = frame.filename.split("site-packages/")[-1].split("/src/")[-1]
        code = linecache.getline(frame.filename, frame.lineno).strip()[:70]
        print(
            f"    {s.size_diff / ok:8.0f} {s.count_diff / ok:5.1f}  {short}:{frame.lineno}  {code}"
        )


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--system", default="lw-msgpack-mem")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    raise_fd_limit()
    tracemalloc.start(1)
    asyncio.run(_serve(args.system, args.n, args.top))


if __name__ == "__main__":
    main()
