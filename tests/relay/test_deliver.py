"""fanout.split: which of a round's messages go out now and which wait (for a commit)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from livewidgets.protocol import AckMessage, Broadcast, PresenceUpdate, Reject
from livewidgets.relay.fanout import answered, split
from livewidgets.relay.hub import Delivery


@dataclass(eq=False)
class Peer:
    name: str


PEERS = [Peer(name) for name in "abcde"]
MESSAGES = st.sampled_from(
    [
        AckMessage("r", 1, 1),
        Reject("r", 2, "conflict", "changed"),
        Broadcast("r", 1, "a", 1, []),
        PresenceUpdate("r", {"a": None}),
    ]
)
SENDS = st.lists(
    st.builds(
        Delivery,
        st.lists(st.sampled_from(PEERS), min_size=1, max_size=5, unique=True).map(tuple),
        MESSAGES,
    ),
    max_size=12,
)


def _per_peer(sends: list[Delivery[Peer]]) -> dict[str, list[object]]:
    received: dict[str, list[object]] = {}
    for send in sends:
        for peer in send.to:
            received.setdefault(peer.name, []).append(send.message)
    return received


@settings(max_examples=300, deadline=None, database=None)
@given(SENDS)
def test_each_peer_gets_all_its_messages_on_one_side_in_order(sends: list[Delivery[Peer]]) -> None:
    authors = answered(sends)
    assert authors == {
        p for s in sends if isinstance(s.message, (AckMessage, Reject)) for p in s.to
    }
    early, late = split(sends, authors)
    wanted = _per_peer(sends)
    before, after = _per_peer(early), _per_peer(late)
    assert before.keys().isdisjoint(after.keys())
    assert set(after) == {p.name for p in authors}  # authors wait for the commit
    assert {**before, **after} == wanted  # nothing lost, nothing added, order kept


def test_a_round_without_answers_goes_out_whole() -> None:
    sends = [Delivery((PEERS[0], PEERS[1]), Broadcast("r", 1, "c", 1, []))]
    assert split(sends, answered(sends)) == (sends, [])
