"""Deterministic simulation: clients typing into one text under faults converge.

Every keystroke inserts one character never used before (Private Use Area code
points, BMP U+E000.. and astral U+F0000.., so surrogate pairs are exercised), so
the final text can be checked character by character: what survives, how often,
and in which order. Each client types at its own cursor, moved through every
visible change with ``transform_position`` (its own inserts push it along, peers'
edits come from the Changed events' exact ops), and sometimes backspaces its own
last surviving character. Clients go offline mid-typing (cut connections and
partitions), resend on ack timeouts, and catch up by delta or snapshot.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from livewidgets.client.core import Acked, Changed, Failed
from livewidgets.state import text as text_ot
from livewidgets.state.ops import IncrementOp, Op, TextOp, get_path

from .network import SimClient, Simulation

SEEDS = int(os.environ.get("LIVEWIDGETS_SIM_SEEDS", "1000"))
CHUNKS = 10
STEPS = 150
CLIENTS = 6
PATH = "t"


@dataclass
class Typist:
    """What one client typed, and where its cursor is (UTF-16 offset in its visible text)."""

    # Characters in the order this client typed them.
    typed: list[str] = field(default_factory=list)
    # char -> handle of the write that inserted it / that backspaced it.
    insert_handle: dict[str, int] = field(default_factory=dict)
    delete_handle: dict[str, int] = field(default_factory=dict)
    cursor: int = 0


@dataclass
class Stats:
    keystrokes: int = 0
    astral: int = 0
    backspaces: int = 0
    failed: int = 0
    exact_changes: int = 0
    recomputed_changes: int = 0
    survivors: int = 0


class TypingSimulation(Simulation):
    """The generic simulation with clients that type instead of writing random ops."""

    def __init__(self, seed: int, clients: int = CLIENTS, **options: Any) -> None:
        super().__init__(seed, clients, **options)
        self.typists = {client.name: Typist() for client in self.clients}
        # char -> name of the client that typed it.
        self.owner: dict[str, str] = {}
        self.stats = Stats()
        self._next_char = 0

    # --- helpers ------------------------------------------------------------------

    def text_of(self, client: SimClient) -> str:
        value = get_path(client.core.visible, PATH, "")
        assert isinstance(value, str)
        return value

    def fresh_char(self) -> str:
        """A character nobody typed before; about a third are astral (two UTF-16 units)."""
        self._next_char += 1
        if self.rng.random() < 0.35:
            self.stats.astral += 1
            return chr(0xF0000 + self._next_char)
        return chr(0xE000 + self._next_char)

    def last_surviving(self, client: SimClient, text: str) -> str | None:
        """The most recently typed character of ``client`` still in its visible text."""
        for char in reversed(self.typists[client.name].typed):
            if char in text:
                return char
        return None

    @staticmethod
    def end_of(text: str, char: str) -> int:
        """UTF-16 offset just after ``char`` in ``text``."""
        return text_ot.to_utf16(text, text.index(char) + 1)

    # --- typing -------------------------------------------------------------------

    def client_writes(self, client: SimClient) -> None:
        """One keystroke (or, rarely, an unrelated write) by ``client``."""
        rng = self.rng
        if rng.random() < 0.08:
            # Writes on another path interleave with the text ops in the pending queue.
            self._submit(client, [IncrementOp(path="n", by=1)])
            return
        typist = self.typists[client.name]
        text = self.text_of(client)
        last = self.last_surviving(client, text)
        if last is not None:
            # The cursor followed every change, so it still sits right after our last char.
            expected = self.end_of(text, last)
            assert typist.cursor == expected, (
                f"{client.name}'s cursor at {typist.cursor}, expected {expected} after "
                f"{last!r} in {text!r}"
            )
        else:
            typist.cursor = rng.choice([text_ot.to_utf16(text, i) for i in range(len(text) + 1)])
        length = text_ot.utf16_len(text)
        if last is not None and rng.random() < 0.25:
            size = text_ot.utf16_len(last)
            delta = text_ot.edit(length, typist.cursor - size, size)
            handle = self._submit(client, [TextOp(path=PATH, delta=delta)])
            typist.delete_handle[last] = handle
            self.stats.backspaces += 1
            # A backspace leaves the cursor by a peer's char: put it back after ours.
            after = self.text_of(client)
            new_last = self.last_surviving(client, after)
            if new_last is not None:
                typist.cursor = self.end_of(after, new_last)
            return
        char = self.fresh_char()
        delta = text_ot.edit(length, typist.cursor, 0, char)
        self.owner[char] = client.name
        typist.typed.append(char)
        typist.insert_handle[char] = self._submit(client, [TextOp(path=PATH, delta=delta)])
        self.stats.keystrokes += 1
        after = self.text_of(client)
        assert typist.cursor == self.end_of(after, char), "own insert did not move the cursor"

    def _submit(self, client: SimClient, ops: list[Op]) -> int:
        self._handle += 1
        handle = self._handle
        events = client.core.submit(ops, handle=handle, now=self.now)
        client.issued.append(handle)
        self.handle_seq[handle] = (client.name, client.core.pending[-1].seq)
        self._client_events(client, events)
        return handle

    # --- following visible changes --------------------------------------------------

    def _client_events(self, client: SimClient, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, Changed):
                self._follow(client, event)
            elif isinstance(event, Failed):
                self.stats.failed += 1
        super()._client_events(client, events)

    def _follow(self, client: SimClient, event: Changed) -> None:
        """Move the client's cursor through one visible change."""
        typist = self.typists[client.name]
        old = get_path(event.before, PATH, "")
        new = get_path(event.after, PATH, "")
        assert isinstance(old, str) and isinstance(new, str)
        if event.ops is None:
            # A recomputation (snapshot, rollback): a diff cannot say where text moved.
            self.stats.recomputed_changes += 1
            last = self.last_surviving(client, new)
            if last is not None:
                typist.cursor = self.end_of(new, last)
            else:
                typist.cursor = min(typist.cursor, text_ot.utf16_len(new))
            return
        delta: list[int | str] | None = None
        for op in event.ops:
            if isinstance(op, TextOp) and op.path == PATH:
                delta = op.delta if delta is None else text_ot.compose(delta, op.delta)
        if delta is None:
            assert old == new, "the text changed but the event's ops do not say how"
            return
        self.stats.exact_changes += 1
        # Changed.ops must turn ``before`` into ``after`` exactly.
        assert text_ot.apply(old, delta) == new, (old, delta, new)
        typist.cursor = text_ot.transform_position(typist.cursor, delta, own=event.local)

    # --- the checks -----------------------------------------------------------------

    def check(self) -> None:
        relay_text = get_path(self.relay.state, PATH, "")
        assert isinstance(relay_text, str)
        for client in self.clients:
            assert client.core.version == self.relay.version, client.name
            assert client.core.visible == self.relay.state, client.name
            assert client.core.confirmed == self.relay.state, client.name
            assert not client.core.pending, client.name
        outcomes = {h: o for client in self.clients for h, o in client.outcomes.items()}
        for client in self.clients:
            for handle in client.issued:
                assert handle in outcomes, f"{client.name}: write {handle} never resolved"
        counts = Counter(relay_text)
        assert set(counts) <= set(self.owner), "the text has characters nobody typed"
        twice = [c for c, n in counts.items() if n > 1]
        assert not twice, f"characters appear more than once: {twice!r}"
        for name, typist in self.typists.items():
            for char in typist.typed:
                inserted = outcomes[typist.insert_handle[char]] == "acked"
                handle = typist.delete_handle.get(char)
                deleted = handle is not None and outcomes[handle] == "acked"
                expected = int(inserted and not deleted)
                assert counts[char] == expected, (
                    f"{name}'s char U+{ord(char):X}: inserted={inserted} deleted={deleted} "
                    f"but it appears {counts[char]} times"
                )
            mine = [c for c in relay_text if self.owner[c] == name]
            assert mine == [c for c in typist.typed if c in counts], (
                f"{name}'s surviving characters are out of typing order"
            )
        self.stats.survivors = len(relay_text)


def run_seed(seed: int) -> Stats:
    sim = TypingSimulation(seed)
    try:
        sim.run(steps=STEPS)
        sim.check()
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}: {exc}") from exc
    return sim.stats


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_concurrent_typing_converges(chunk: int) -> None:
    """Typing and backspacing under cuts, partitions and resends: one text, nothing lost."""
    per_chunk = max(1, SEEDS // CHUNKS)
    total = Stats()
    for seed in range(chunk * per_chunk, (chunk + 1) * per_chunk):
        stats = run_seed(seed)
        for name in vars(total):
            setattr(total, name, getattr(total, name) + getattr(stats, name))
    # The schedules really exercised what the checks are about.
    assert total.keystrokes > 10 * per_chunk
    assert total.astral > 0 and total.backspaces > 0
    assert total.exact_changes > total.keystrokes
    assert total.survivors > 0


def test_simulation_is_deterministic() -> None:
    """The same seed replays the same run (a failing seed can be debugged)."""
    a, b = TypingSimulation(7), TypingSimulation(7)
    a.run(steps=STEPS)
    b.run(steps=STEPS)
    assert a.relay.state == b.relay.state and a.stats == b.stats
    assert get_path(a.relay.state, PATH, "")
