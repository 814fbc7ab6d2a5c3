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

from livewidgets.client.core import Changed, Failed, RoomSync, Send
from livewidgets.protocol import Joined, Snapshot
from livewidgets.state import text as text_ot
from livewidgets.state.ops import IncrementOp, Op, SetOp, TextOp, get_path

from .network import ROOM, SimClient, Simulation

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
        handle = self.submit(client, ops)
        assert handle is not None, "a keystroke always applies locally"
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
            # A refused backspace brings its char back where it was; chars typed at that
            # spot meanwhile may land on either side of it, so it has no order to check.
            restored = {c for c, h in typist.delete_handle.items() if outcomes[h] == "failed"}
            mine = [c for c in relay_text if self.owner[c] == name and c not in restored]
            typed = [c for c in typist.typed if c in counts and c not in restored]
            assert mine == typed, f"{name}'s surviving characters are out of typing order"
        self.stats.survivors = len(relay_text)


def run_seeds(seeds: range, **options: Any) -> Stats:
    """Run and check one simulation per seed; the summed statistics."""
    total = Stats()
    for seed in seeds:
        sim = TypingSimulation(seed, **options)
        try:
            sim.run(steps=STEPS)
            sim.check()
        except AssertionError as exc:
            raise AssertionError(f"seed {seed} ({options or 'defaults'}): {exc}") from exc
        for name in vars(total):
            setattr(total, name, getattr(total, name) + getattr(sim.stats, name))
    return total


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_concurrent_typing_converges(chunk: int) -> None:
    """Typing and backspacing under cuts, partitions and resends: one text, nothing lost."""
    per_chunk = max(1, SEEDS // CHUNKS)
    total = run_seeds(range(chunk * per_chunk, (chunk + 1) * per_chunk))
    # The schedules really exercised what the checks are about.
    assert total.keystrokes > 10 * per_chunk
    assert total.astral > 0 and total.backspaces > 0
    assert total.exact_changes > total.keystrokes
    assert total.survivors > 0


@pytest.mark.parametrize("chunk", range(CHUNKS // 2))
def test_concurrent_typing_converges_across_snapshot_resyncs(chunk: int) -> None:
    """As above with a short relay window: rejoins get snapshots, stale text ops conflict."""
    per_chunk = max(1, SEEDS // CHUNKS // 2)
    seeds = range(10**6 + chunk * per_chunk, 10**6 + (chunk + 1) * per_chunk)
    total = run_seeds(seeds, window=5, max_delta=3)
    # Snapshots beyond each client's first join, and refused (rolled back) edits.
    assert total.recomputed_changes > CLIENTS * len(seeds)
    assert total.failed > 0
    assert total.survivors > 0


def test_simulation_is_deterministic() -> None:
    """The same seed replays the same run (a failing seed can be debugged)."""
    a, b = TypingSimulation(7), TypingSimulation(7)
    a.run(steps=STEPS)
    b.run(steps=STEPS)
    assert a.relay.state == b.relay.state and a.stats == b.stats
    assert get_path(a.relay.state, PATH, "")


# --- minimal repros of what the snapshot-resync simulation found (fixed in d7982eb) ---


def joined_core(text: str) -> RoomSync:
    """A client that joined a room whose text ``t`` is ``text`` at version 1."""
    core = RoomSync(ROOM, "me")
    core.connection_opened()
    core.receive(Snapshot(room=ROOM, version=1, state={PATH: text}, last_seq=0))
    core.receive(Joined(room=ROOM, version=1, mode="snapshot"))
    return core


def resync(core: RoomSync, text: str, version: int, last_seq: int = 0) -> str:
    """Reconnect ``core`` and hand it a snapshot; its visible text afterwards."""
    core.connection_opened()
    core.receive(Snapshot(room=ROOM, version=version, state={PATH: text}, last_seq=last_seq))
    core.receive(Joined(room=ROOM, version=version, mode="snapshot"))
    value = get_path(core.visible, PATH)
    assert isinstance(value, str)
    return value


def test_offline_backspace_survives_snapshot_resync() -> None:
    """A char deleted offline stays deleted when peers edited on both sides of it."""
    core = joined_core("ABCD")
    core.connection_lost()
    core.submit([TextOp(path=PATH, delta=text_ot.edit(4, 2, 1))])  # backspace "C"
    # Peers typed "y" after A and "z" after D; the relay's log no longer covers us.
    assert resync(core, "AyBCDz", version=3) == "AyBDz"


def test_offline_insert_keeps_its_place_across_snapshot_resync() -> None:
    """A char typed offline after C is still after C once the snapshot arrives."""
    core = joined_core("ABCD")
    core.connection_lost()
    core.submit([TextOp(path=PATH, delta=text_ot.edit(4, 3, 0, "x"))])  # type x after C
    assert resync(core, "AyBCDz", version=3) == "AyBCxDz"


def test_backspace_of_an_in_flight_char_survives_snapshot_resync() -> None:
    """Type x (sent, applied, ack lost), backspace it offline, resync by snapshot: no x."""
    core = joined_core("AB")
    sent = core.submit([TextOp(path=PATH, delta=text_ot.edit(2, 2, 0, "x"))])
    assert any(isinstance(e, Send) for e in sent)
    core.connection_lost()  # the relay applied it as version 2; the ack was lost
    core.submit([TextOp(path=PATH, delta=text_ot.edit(3, 2, 1))])  # backspace x
    assert get_path(core.visible, PATH) == "AB"
    assert resync(core, "ABx", version=2, last_seq=1) == "AB"


def test_applied_write_is_not_reported_failed_after_snapshot_resync() -> None:
    """Two writes applied while their acks were lost both resolve as acked."""
    sim = Simulation(0, clients=2, window=2)
    me, peer = sim.clients
    sim.settle()
    handles = [sim.submit(me, [SetOp(path=path, value=1)]) for path in ("x", "y")]
    link, relay = me.link, sim.relays[0]
    assert link is not None
    while link.to_relay:  # the relay applies and commits both ...
        sim._to_relay(link)
    while relay.inbox or relay.committing:
        relay.run_round(len(relay.inbox)) if relay.inbox else relay.commit()
    me.offline_until = float("inf")
    sim.cut(link)  # ... and the acks are lost
    for _ in range(3):  # the peer's writes push ours out of the relay's window
        sim.submit(peer, [IncrementOp(path="n", by=1)])
        sim.settle(ignore=frozenset({me.name}))
    me.offline_until = 0.0
    sim.settle()
    assert me.core.visible == sim.relay.state == {"x": 1, "y": 1, "n": 3}
    assert [me.outcomes.get(h) for h in handles] == ["acked", "acked"]
