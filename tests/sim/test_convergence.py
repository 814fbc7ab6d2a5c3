"""Deterministic simulation: N clients + the relay core under network faults converge."""

from __future__ import annotations

import os

import pytest

from .network import Simulation

SEEDS = int(os.environ.get("LIVEWIDGETS_SIM_SEEDS", "1000"))


def check_invariants(sim: Simulation) -> None:
    relay = sim.relay
    for client in sim.clients:
        assert client.core.version == relay.version, client.name
        assert client.core.confirmed == relay.state, client.name
        assert client.core.visible == relay.state, client.name
        assert not client.core.pending
    # Every acked write is in the log exactly once; a client's writes keep its order.
    keys = [(e.client_id, e.client_seq) for e in sim.log]
    assert len(keys) == len(set(keys)), "an op was applied twice"
    assert [e.version for e in sim.log] == list(range(1, len(sim.log) + 1))
    for client in sim.clients:
        seqs = [seq for cid, seq in keys if cid == client.name]
        assert seqs == sorted(seqs), f"{client.name}'s ops out of order"
        for handle in client.issued:
            outcome = client.outcomes.get(handle)
            assert outcome in ("acked", "failed"), "a write was never resolved"
            if outcome == "acked":
                assert sim.handle_seq[handle] in keys, "an acknowledged write is not in the log"


@pytest.mark.parametrize("chunk", range(10))
def test_replicas_converge_under_faults(chunk: int) -> None:
    """Random ops, delays, disconnects, partitions, resends: all replicas equal the relay."""
    per_chunk = max(1, SEEDS // 10)
    for seed in range(chunk * per_chunk, (chunk + 1) * per_chunk):
        sim = Simulation(seed, clients=5)
        try:
            sim.run(steps=300)
            check_invariants(sim)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc


@pytest.mark.parametrize("chunk", range(5))
def test_replicas_converge_when_the_relay_crashes_mid_commit(chunk: int) -> None:
    """Members hear of an op while it is committed; the relay may die before the commit
    returns. Resuming clients must drop what they saw of the lost op (a snapshot: the
    epoch changed after it) and converge; no acknowledged op is lost or applied twice."""
    per_chunk = max(1, SEEDS // 10)
    crashes = 0
    for seed in range(chunk * per_chunk, (chunk + 1) * per_chunk):
        # A window holding every run's log: a crash loses the relay's memory of refusals,
        # and a resend of an op refused before the window is answered as applied (the
        # documented limit, docs/protocol.md "Dedupe"); within it, the log tells.
        sim = Simulation(seed, clients=5, window=1000, crashes=True)
        try:
            sim.run(steps=300)
            check_invariants(sim)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc
        crashes += sim.crash_count
    assert crashes >= per_chunk  # the scenario really happened, about once per run or more
