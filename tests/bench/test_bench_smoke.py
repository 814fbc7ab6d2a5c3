"""The benchmark suite still runs end to end (minimal counts; no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = (
    "fanout",
    "throughput",
    "idle",
    "join",
    "e2e",
    "text",
    "durability",
    "flood",
    "lesson",
    "rules",
    "scaleout",
    "many",
)
# One livewidgets variant per codec and store, the floor, and pycrdt-websocket without
# and with its SQLite store when it is installed (the bench skips it otherwise).
SYSTEMS = ("lw-json-mem", "lw-msgpack-sqlite", "floor", "pycrdt", "pycrdt-sqlite")
# What pycrdt-sqlite runs (all but idle), when installed.
YSTORE_SCENARIOS = ("fanout", "throughput", "join", "e2e", "text", "durability")


def _run_smoke(tmp_path: Path, *args: str, timeout: float) -> tuple[dict[str, Any], str]:
    """Run ``python -m bench --smoke --no-plots`` with ``args``; its JSON and the output
    (asserting it exited 0 and recorded no error)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-plots", "--out", str(tmp_path), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, output
    data: dict[str, Any] = json.loads((tmp_path / "smoke.json").read_text())
    assert data["errors"] == [], output
    return data, output


@pytest.mark.timeout(150)
def test_bench_smoke_runs_every_scenario(tmp_path: Path) -> None:
    """`python -m bench --smoke` runs every scenario and writes JSON and Markdown."""
    data, output = _run_smoke(tmp_path, "--systems", *SYSTEMS, timeout=140)
    reported = {m["scenario"] for m in data["metrics"]}
    assert reported == set(SCENARIOS)
    # Two relays on one Redis: measured when the machine's Redis answers (else the
    # scenario records why not); no acknowledged write lost when relay A is killed.
    scaleout = data["raw"]["scaleout"]["lw-json-mem"]
    expected = set(SCENARIOS) - ({"scaleout"} if "skipped" in scaleout else set())
    if "skipped" not in scaleout:
        failover = scaleout["failover"]
        assert failover["lost_acked"] == {} and failover["acked"] == failover["written"]
        assert failover["reconnected_via_b"] == 2 and failover["reach_missing"] == 0
        assert scaleout["redis_keys_deleted"] > 0
    measured = {
        m["scenario"]
        for m in data["metrics"]
        if isinstance(m["values"].get("lw-json-mem"), (int, float))
        or isinstance(m["values"].get("lw-msgpack-sqlite"), (int, float))
    }
    assert measured == expected
    if any("pycrdt-sqlite" in m["values"] for m in data["metrics"]):
        ystore = {
            m["scenario"]
            for m in data["metrics"]
            if isinstance(m["values"].get("pycrdt-sqlite"), (int, float))
        }
        assert ystore == set(YSTORE_SCENARIOS), output
        # The join from the store ran, and the store had every update of the history.
        join = {
            m["key"]: m["values"].get("pycrdt-sqlite")
            for m in data["metrics"]
            if m["scenario"] == "join"
        }
        assert isinstance(join["ms@100-unloaded"], (int, float))
        build = data["raw"]["join_build"]["pycrdt-sqlite@100"]
        assert build["committed"] >= build["ops"] and build["store_errors"] == 0
    assert "| scenario | metric |" in (tmp_path / "smoke.md").read_text()


@pytest.mark.timeout(90)
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="--pin-server needs 2 CPUs")
def test_bench_pins_servers_apart_from_their_clients(tmp_path: Path) -> None:
    """`--pin-server` runs the servers on one CPU and the clients on the others (and
    `--server-nice` at a nice value), and the fan-out reports each server's CPU and
    preemptions per write beside the latencies."""
    data, _ = _run_smoke(
        tmp_path,
        "--pin-server",
        "--server-nice",
        "1",
        "--scenarios",
        "fanout",
        "--systems",
        "lw-json-mem",
        "floor",
        timeout=80,
    )
    first = min(os.sched_getaffinity(0))
    assert data["meta"]["server_cpus"] == [first]
    assert data["meta"]["server_nice"] == 1
    context = {m["key"]: m for m in data["metrics"] if not m["compare"]}
    for key in ("cpu_us@2", "preempted@2"):
        assert all(isinstance(context[key]["values"][s], float) for s in ("lw-json-mem", "floor"))


@pytest.mark.timeout(60)
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs 2 CPUs")
def test_a_pinned_server_runs_only_on_its_cpus() -> None:
    from bench.servers import ServerProcess
    from bench.systems import system

    cpu = max(os.sched_getaffinity(0))
    with ServerProcess(system("floor"), cpus=frozenset({cpu})) as server:
        assert os.sched_getaffinity(server.pid) == {cpu}


@pytest.mark.timeout(60)
def test_a_server_started_nice_runs_at_that_nice_value() -> None:
    """`--server-nice` (a positive value needs no privilege, so the test uses one)."""
    from bench.servers import ServerProcess
    from bench.systems import system

    with ServerProcess(system("floor"), nice=5) as server:
        assert os.getpriority(os.PRIO_PROCESS, server.pid) == 5
