"""Deterministic simulation: the real client and relay objects converge under faults.

Each test runs seeded schedules of one fault family on top of the common ones
(cuts, dead peers found by the heartbeat, partitions, ack-timeout resends) and
asserts, besides the invariants, that its faults really happened.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest

from livewidgets.client.protocol import State
from livewidgets.relay.room import RoomCore, RoomRecord

from .network import ROOM, Faults, Simulation

# Each test below runs a share of SEEDS (0.1 + 0.15 + 0.1 + 0.1 + 0.2 + 3 x 0.05 = 0.8);
# with test_text_convergence's 1.5 x SEEDS, a CI run checks 2,300 seeds by default.
SEEDS = int(os.environ.get("LIVEWIDGETS_SIM_SEEDS", "1000"))
STEPS = 300


def check_invariants(sim: Simulation) -> None:
    """Once quiet: every replica equals the log replayed; nothing acked lost or applied
    twice; each client's ops in its order; every write resolved."""
    replayed = RoomCore(RoomRecord(ROOM, log=list(sim.log)))
    for relay in sim.relays:
        assert relay.hub.core.version == replayed.version, relay.name
        assert relay.hub.core.state == replayed.state, relay.name
    for client in sim.clients:
        assert client.protocol.state is State.CONNECTED, client.name
        assert client.core.version == replayed.version, client.name
        assert client.core.confirmed == replayed.state, client.name
        assert client.core.visible == replayed.state, client.name
        assert not client.core.pending
    for relay in sim.relays:
        for link in relay.links:
            assert link.conn.inflight == 0 and not link.conn.stalled, "a reader credit was lost"
    keys = [(e.client_id, e.client_seq) for e in sim.log]
    assert len(keys) == len(set(keys)), "an op was applied twice"
    assert [e.version for e in sim.log] == list(range(1, len(sim.log) + 1))
    for client in sim.clients + sim.retired:
        seqs = [seq for cid, seq in keys if cid == client.name]
        assert seqs == sorted(seqs), f"{client.name}'s ops out of order"
        for handle in client.issued:
            outcome = client.outcomes.get(handle)
            assert outcome in ("acked", "failed"), "a write was never resolved"
            if outcome == "acked":
                assert sim.handle_seq[handle] in keys, "an acknowledged write is not in the log"


def run_seeds(seeds: range, **options: Any) -> Counter[str]:
    """Run and check one simulation per seed; the summed fault counts."""
    counts: Counter[str] = Counter()
    for seed in seeds:
        sim = Simulation(seed, **options)
        try:
            sim.run(steps=STEPS)
            check_invariants(sim)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed} ({options or 'defaults'}): {exc}") from exc
        counts += sim.counts
    return counts


def chunk_seeds(chunk: int, chunks: int, share: float, offset: int) -> range:
    """This chunk's seeds: ``share`` of SEEDS split over ``chunks`` chunks."""
    per_chunk = max(1, int(SEEDS * share) // chunks)
    return range(offset + chunk * per_chunk, offset + (chunk + 1) * per_chunk)


def assert_happened(counts: Counter[str], runs: int, *kinds: str) -> None:
    """Each fault kind happened (the schedules exercise what the checks are about)."""
    missing = [kind for kind in kinds if counts[kind] == 0]
    assert not missing, f"never happened in {runs} runs: {missing} ({dict(counts)})"


@pytest.mark.parametrize("chunk", range(4))
def test_replicas_converge_under_faults(chunk: int) -> None:
    """Random ops, delays, cuts, dead peers, partitions, resends: all replicas equal the log."""
    seeds = chunk_seeds(chunk, 4, 0.1, 0)
    counts = run_seeds(seeds)
    assert_happened(
        counts,
        len(seeds),
        "cut",
        "dead_peer",
        "abort_heartbeat",
        "partition",
        "resend",
        "connect_failed",
        "snapshot",
    )


@pytest.mark.parametrize("chunk", range(4))
def test_replicas_converge_when_the_relay_crashes_mid_commit(chunk: int) -> None:
    """Members hear of an op while it is committed; the relay may die before the commit
    returns and restarts from the committed log in a new epoch. Resuming clients drop
    what they saw of the lost ops and converge; no acknowledged op is lost or doubled."""
    seeds = chunk_seeds(chunk, 4, 0.15, 10**6)
    # A window holding every run's log: a crash loses the relay's memory of refusals,
    # and a resend of an op refused before the window is answered as applied (the
    # documented limit, docs/protocol.md "Dedupe"); within it, the log tells.
    counts = run_seeds(seeds, window=1000, faults=Faults(crashes=True))
    assert_happened(counts, len(seeds), "crash", "restart")
    assert counts["crash_mid_commit"] >= len(seeds) // 2


@pytest.mark.parametrize("chunk", range(2))
def test_replicas_converge_when_tokens_expire(chunk: int) -> None:
    """The relay ends sessions whose token expired (4004) or refuses them at hello;
    clients get a fresh token and resume; verifying clients check the relay's proof."""
    seeds = chunk_seeds(chunk, 2, 0.1, 2 * 10**6)
    counts = run_seeds(seeds, faults=Faults(expiry=True, verify=True))
    assert_happened(
        counts, len(seeds), "token_expired", "close_4004", "token_refresh", "proof_checked"
    )


@pytest.mark.parametrize("chunk", range(2))
def test_replicas_converge_when_consumers_are_slow(chunk: int) -> None:
    """A client that reads too slowly is closed with 4009 and resumes by delta."""
    seeds = chunk_seeds(chunk, 2, 0.1, 3 * 10**6)
    counts = run_seeds(seeds, max_delta=10, send_queue_limit=24, faults=Faults(slow=True))
    assert_happened(counts, len(seeds), "slow", "slow_consumer_close", "close_4009")


@pytest.mark.parametrize("chunk", range(4))
def test_replicas_converge_across_failover_between_two_relays(chunk: int) -> None:
    """Two relays on one shared store, clients with both URLs: relays crash after a
    commit, clients fail over, conflicting appends are redone; all converge."""
    seeds = chunk_seeds(chunk, 4, 0.2, 4 * 10**6)
    counts = run_seeds(seeds, relays=2, window=1000, faults=Faults(crashes=True))
    assert_happened(counts, len(seeds), "failover", "store_conflict", "crash", "restart")


@pytest.mark.parametrize("chunk", range(2))
def test_replicas_converge_when_admins_reset_and_kick(chunk: int) -> None:
    """Admins reset the room (one entry made by the relay) and kick members (4011,
    final): the kicked person comes back as a new session; all converge, and a write
    the kick cut off is failed, never left unresolved."""
    seeds = chunk_seeds(chunk, 2, 0.05, 5 * 10**6)
    counts = run_seeds(seeds, faults=Faults(admin=True))
    assert_happened(
        counts, len(seeds), "admin_reset", "admin_kick", "kick", "close_4011", "kicked_rejoin"
    )


@pytest.mark.parametrize("chunk", range(2))
def test_replicas_converge_when_hellos_are_late(chunk: int) -> None:
    """A client whose hello is held past the relay's hello timeout is closed with
    4000 and retries with backoff."""
    seeds = chunk_seeds(chunk, 2, 0.05, 6 * 10**6)
    counts = run_seeds(seeds, faults=Faults(hello_stall=True))
    assert_happened(counts, len(seeds), "hello_stall", "hello_timeout", "close_4000")


@pytest.mark.parametrize("chunk", range(2))
def test_replicas_converge_with_few_reader_credits(chunk: int) -> None:
    """With two reader credits per connection, a reader stops while its commands wait
    for rounds (and commits) and reads on as they are done; no credit is lost."""
    seeds = chunk_seeds(chunk, 2, 0.05, 7 * 10**6)
    counts = run_seeds(seeds, faults=Faults(inflight=True))
    assert_happened(counts, len(seeds), "inflight_wait")


def test_simulation_is_deterministic() -> None:
    """The same seed replays the same run (a failing seed can be debugged)."""
    runs = []
    for _ in range(2):
        sim = Simulation(11, relays=2, faults=Faults(crashes=True, expiry=True, verify=True))
        sim.run(steps=STEPS)
        runs.append((sim.relay.state, [(e.client_id, e.client_seq) for e in sim.log], sim.counts))
    assert runs[0] == runs[1]
    assert runs[0][1]
