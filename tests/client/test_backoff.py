"""Reconnect delays: capped exponential backoff with full jitter (pure)."""

from __future__ import annotations

import itertools
import random
import statistics

from hypothesis import given
from hypothesis import strategies as st

from livewidgets.client import Backoff


def take(policy: Backoff, n: int, seed: int = 0) -> list[float]:
    return list(itertools.islice(policy.delays(random.Random(seed)), n))


@given(
    initial=st.floats(0.001, 5.0),
    factor=st.floats(1.0, 4.0),
    cap=st.floats(0.001, 60.0),
    minimum=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
)
def test_each_delay_is_within_minimum_and_the_capped_ceiling(
    initial: float, factor: float, cap: float, minimum: float, seed: int
) -> None:
    """Attempt n waits between minimum and max(minimum, min(cap, initial * factor**n))."""
    policy = Backoff(initial=initial, factor=factor, cap=cap, minimum=minimum)
    for n, delay in enumerate(take(policy, 30, seed)):
        ceiling = max(minimum, min(cap, initial * factor**n))
        assert minimum <= delay <= ceiling * (1 + 1e-12)


def test_delays_grow_until_the_cap() -> None:
    """Averaged over many seeds, each attempt waits longer than the one before, up to the cap."""
    policy = Backoff(initial=0.1, factor=2.0, cap=1.6, minimum=0.0)
    runs = [take(policy, 8, seed) for seed in range(400)]
    means = [statistics.fmean(run[n] for run in runs) for n in range(8)]
    assert all(later > earlier * 1.5 for earlier, later in itertools.pairwise(means[:5]))
    # From attempt 4 on the ceiling is the cap (1.6): the mean settles near cap / 2.
    assert all(abs(mean - 0.8) < 0.1 for mean in means[4:])
    assert max(max(run) for run in runs) <= 1.6


def test_delays_are_jittered() -> None:
    """Two clients (seeds) get different delays, and one client's delays are not constant."""
    policy = Backoff(initial=0.1, cap=0.1)
    a, b = take(policy, 10, seed=1), take(policy, 10, seed=2)
    assert a != b
    assert len(set(a)) == len(a)


def test_same_seed_same_delays() -> None:
    """With a seeded random source the sequence is reproducible."""
    policy = Backoff(initial=0.02, cap=0.2)
    assert take(policy, 20, seed=42) == take(policy, 20, seed=42)


def test_minimum_wins_over_a_tiny_ceiling() -> None:
    """A ceiling below the minimum still waits the minimum (a flapping relay is not hammered)."""
    policy = Backoff(initial=0.001, factor=1.0, cap=0.001, minimum=0.05)
    assert take(policy, 5) == [0.05] * 5


def test_default_random_source_works() -> None:
    """Without an rng the policy draws from a fresh Random (still bounded)."""
    delays = list(itertools.islice(Backoff(initial=0.1, cap=0.4).delays(), 10))
    assert all(0.01 <= d <= 0.4 for d in delays)
