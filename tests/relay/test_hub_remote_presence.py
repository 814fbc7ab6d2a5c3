"""RoomHub's presence from other relays (sans-I/O): ownership, precedence, expiry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livewidgets.protocol import Joined, PresenceUpdate
from livewidgets.relay.hub import Delivery, JoinRoom, LeaveRoom, RoomHub, SetPresence
from livewidgets.relay.room import RoomCore, RoomRecord

TTL = 6.0


@dataclass(eq=False)
class Peer:
    client_id: str
    user: str = ""


def hub() -> RoomHub[Peer]:
    return RoomHub(RoomCore(RoomRecord("r")), share_presence=True)


def told(sends: list[Delivery[Peer]], peer: Peer) -> dict[str, Any]:
    """The presence changes ``peer`` got in ``sends``, merged."""
    states: dict[str, Any] = {}
    for send in sends:
        if peer in send.to and isinstance(send.message, PresenceUpdate):
            states.update(send.message.states)
    return states


def joined_table(sends: list[Delivery[Peer]]) -> dict[str, Any]:
    (joined,) = [s.message for s in sends if isinstance(s.message, Joined)]
    return joined.presence


def test_remote_join_update_and_leave_reach_local_members() -> None:
    h, a = hub(), Peer("a")
    h.handle(JoinRoom(a, None, {}))
    h.flush_presence()
    h.apply_remote_presence("B", {"b": {"user": "bo"}}, 0.0, ttl=TTL)
    assert told(h.flush_presence(), a) == {"b": {"user": "bo"}}
    h.apply_remote_presence("B", {"b": {"user": "bo", "cursor": 3}}, 0.1, ttl=TTL)
    assert told(h.flush_presence(), a) == {"b": {"user": "bo", "cursor": 3}}
    # A joiner's table lists the remote member.
    c = Peer("c")
    assert joined_table(h.handle(JoinRoom(c, None))) == {
        "a": {"user": ""},
        "b": {"user": "bo", "cursor": 3},
    }
    h.apply_remote_presence("B", {"b": None}, 0.2, ttl=TTL)
    sends = h.flush_presence()
    assert told(sends, a)["b"] is None and told(sends, c) == {"b": None}
    assert "b" not in h.presence_table()


def test_a_heartbeat_with_the_same_state_tells_nothing() -> None:
    h, a = hub(), Peer("a")
    h.handle(JoinRoom(a, None))
    h.apply_remote_presence("B", {"b": {"v": 1}}, 0.0, ttl=TTL, full=True)
    h.flush_presence()
    h.take_outgoing()
    h.apply_remote_presence("B", {"b": {"v": 1}}, 5.0, ttl=TTL, full=True)
    assert h.flush_presence() == [] and not h.presence_waiting
    h.expire_remote_presence(7.0)  # refreshed at 5: lives until 11
    assert h.flush_presence() == []
    h.expire_remote_presence(11.0)
    assert told(h.flush_presence(), a) == {"b": None}


def test_a_full_table_drops_the_senders_missing_entries_only() -> None:
    h, a = hub(), Peer("a")
    h.handle(JoinRoom(a, None, {}))
    h.apply_remote_presence("B", {"b1": {"v": 1}, "b2": {"v": 2}}, 0.0, ttl=TTL)
    h.apply_remote_presence("C", {"c1": {"v": 3}}, 0.0, ttl=TTL)
    h.flush_presence()
    h.apply_remote_presence("B", {"b2": {"v": 2}}, 1.0, ttl=TTL, full=True)
    assert told(h.flush_presence(), a) == {"b1": None}
    h.apply_remote_presence("B", {}, 2.0, ttl=TTL, full=True)  # B's room unloaded
    assert told(h.flush_presence(), a) == {"b2": None}
    assert h.presence_table() == {"a": {"user": ""}, "c1": {"v": 3}}


def test_only_the_owner_removes_an_entry_and_the_latest_owner_shows() -> None:
    """A client moved from relay B to relay C: B's late leave keeps C's entry."""
    h, a = hub(), Peer("a")
    h.handle(JoinRoom(a, None))
    h.apply_remote_presence("B", {"m": {"at": "B"}}, 0.0, ttl=TTL)
    h.apply_remote_presence("C", {"m": {"at": "C"}}, 1.0, ttl=TTL)
    assert told(h.flush_presence(), a) == {"m": {"at": "C"}}
    h.apply_remote_presence("B", {"m": {"at": "B"}}, 1.5, ttl=TTL, full=True)  # B's heartbeat
    assert h.flush_presence() == []  # unchanged state: C's still the latest
    h.apply_remote_presence("B", {"m": None}, 2.0, ttl=TTL)
    assert h.flush_presence() == [] and h.presence_table()["m"] == {"at": "C"}
    h.apply_remote_presence("X", {"m": None}, 2.0, ttl=TTL)  # not an owner
    assert h.presence_table()["m"] == {"at": "C"}


def test_the_latest_entry_wins_and_the_old_local_leave_keeps_it() -> None:
    """The client moved from this relay to relay B: B's newer state shows here while
    its old connection lingers, and stays when that connection leaves."""
    h, a, old = hub(), Peer("a"), Peer("m")
    h.handle(JoinRoom(a, None, {}))
    h.handle(JoinRoom(old, None, {"at": "here"}))
    h.flush_presence()
    h.apply_remote_presence("B", {"m": {"at": "B", "user": ""}}, 0.0, ttl=TTL)
    sends = h.flush_presence()
    assert told(sends, a) == {"m": {"at": "B", "user": ""}}
    assert told(sends, old) == {}  # never its own client_id
    h.handle(LeaveRoom(old))
    assert h.flush_presence() == []
    assert h.presence_table()["m"] == {"at": "B", "user": ""}
    assert h.take_outgoing() == {"a": {"user": ""}, "m": None}


def test_local_changes_are_handed_out_for_publishing_only_when_shared() -> None:
    shared, plain, a, b = hub(), RoomHub[Peer](RoomCore(RoomRecord("r"))), Peer("a"), Peer("b")
    for h in (shared, plain):
        h.handle(JoinRoom(a, None, {"x": 1}))
        h.handle(JoinRoom(b, None, {}))
        h.handle(SetPresence(a, {"x": 2}))
        h.handle(LeaveRoom(b))
    assert shared.take_outgoing() == {"a": {"x": 2, "user": ""}, "b": None}
    assert shared.take_outgoing() == {} and shared.local_presence() == {"a": {"x": 2, "user": ""}}
    assert plain.take_outgoing() == {}


def test_a_listener_is_published_only_once_it_sets_presence() -> None:
    """A join without presence (a listener) hands nothing out for publishing, nor does
    its leave; it still hears the other relays' members. Once it sets a state, that
    state and its later leave are handed out."""
    h, a, lis = hub(), Peer("a"), Peer("l")
    h.handle(JoinRoom(a, None, {}))
    h.handle(JoinRoom(lis, None))
    assert h.take_outgoing() == {"a": {"user": ""}}
    h.apply_remote_presence("B", {"b": {"v": 1}}, 0.0, ttl=TTL)
    assert told(h.flush_presence(), lis) == {"b": {"v": 1}}
    h.handle(LeaveRoom(lis))
    assert h.take_outgoing() == {} and not h.presence_waiting
    assert h.local_presence() == {"a": {"user": ""}}
    again = Peer("l")
    h.handle(JoinRoom(again, None))
    assert h.take_outgoing() == {}
    h.handle(SetPresence(again, {"v": 2}))
    assert h.take_outgoing() == {"l": {"v": 2, "user": ""}}
    h.handle(LeaveRoom(again))
    assert h.take_outgoing() == {"l": None}


# --- any interleaving ------------------------------------------------------------------

CIDS = ["m", "n"]
RELAYS = ["B", "C"]

step = st.one_of(
    # A join with None as its state is a listener's (unlisted until it sets one).
    st.tuples(st.just("join"), st.sampled_from(CIDS), st.none() | st.integers(0, 3)),
    st.tuples(st.just("set"), st.sampled_from(CIDS), st.integers(0, 3)),
    st.tuples(st.just("leave"), st.sampled_from(CIDS), st.booleans()),
    st.tuples(st.just("rset"), st.sampled_from(RELAYS), st.sampled_from(CIDS), st.integers(0, 3)),
    st.tuples(st.just("rnull"), st.sampled_from(RELAYS), st.sampled_from(CIDS)),
    st.tuples(
        st.just("rfull"),
        st.sampled_from(RELAYS),
        st.dictionaries(st.sampled_from(CIDS), st.integers(0, 3), max_size=2),
    ),
    st.tuples(st.just("tick"), st.floats(0.0, 4.0)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("late")),
)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(step, max_size=40))
def test_local_members_see_local_else_the_latest_live_remote_state(steps: list[Any]) -> None:
    """Whatever the interleaving of local changes (listeners' joins among them), other
    relays' changes, full tables and expiries, every local member's view
    (joined.presence plus the presence messages it got) ends equal to: per client, the
    state of its live owner (this relay or another) that changed last. And what the
    hub hands out for publishing, applied in order, is its local table."""
    h = hub()
    listener = Peer("L")
    listeners: dict[Peer, dict[str, Any]] = {
        listener: joined_table(h.handle(JoinRoom(listener, None)))
    }
    connections: dict[str, list[Peer]] = {cid: [] for cid in CIDS}
    local: dict[str, tuple[Peer, dict[str, Any], int]] = {}
    remote: dict[str, dict[str, tuple[dict[str, Any], int, float]]] = {}
    stamp = 0
    now = 0.0
    published: dict[str, Any] = dict(h.take_outgoing())

    def deliver(sends: list[Delivery[Peer]]) -> None:
        for peer, view in listeners.items():
            for cid, state in told(sends, peer).items():
                if state is None:
                    view.pop(cid, None)
                else:
                    view[cid] = state

    def remote_set(relay: str, cid: str, state: dict[str, Any]) -> None:
        nonlocal stamp
        owners = remote.setdefault(cid, {})
        old = owners.get(relay)
        if old is not None and old[0] == state:
            owners[relay] = (state, old[1], now + TTL)
        else:
            stamp += 1
            owners[relay] = (state, stamp, now + TTL)

    for number, item in enumerate(steps):
        kind = item[0]
        if kind == "join":
            peer = Peer(item[1])
            connections[item[1]].append(peer)
            if item[2] is None:
                deliver(h.handle(JoinRoom(peer, None)))
            else:
                deliver(h.handle(JoinRoom(peer, None, {"v": item[2]})))
                stamp += 1
                local[item[1]] = (peer, {"v": item[2], "user": ""}, stamp)
        elif kind == "set" and connections[item[1]]:
            peer = connections[item[1]][-1]
            h.handle(SetPresence(peer, {"v": item[2]}))
            stamp += 1
            local[item[1]] = (peer, {"v": item[2], "user": ""}, stamp)
        elif kind == "leave" and connections[item[1]]:
            peer = connections[item[1]].pop(-1 if item[2] else 0)
            h.handle(LeaveRoom(peer))
            if local.get(item[1], (None,))[0] is peer:
                del local[item[1]]
        elif kind == "rset":
            h.apply_remote_presence(item[1], {item[2]: {"v": item[3]}}, now, ttl=TTL)
            remote_set(item[1], item[2], {"v": item[3]})
        elif kind == "rnull":
            h.apply_remote_presence(item[1], {item[2]: None}, now, ttl=TTL)
            remote.get(item[2], {}).pop(item[1], None)
        elif kind == "rfull":
            states = {cid: {"v": v} for cid, v in item[2].items()}
            h.apply_remote_presence(item[1], dict(states), now, ttl=TTL, full=True)
            for cid, owners in remote.items():
                if cid not in states:
                    owners.pop(item[1], None)
            for cid, state in states.items():
                remote_set(item[1], cid, state)
        elif kind == "tick":
            now += item[1]
            h.expire_remote_presence(now)
            for owners in remote.values():
                for relay in [r for r, entry in owners.items() if entry[2] <= now]:
                    del owners[relay]
        elif kind == "flush":
            deliver(h.flush_presence())
        elif kind == "late":
            late = Peer(f"L{number}")
            sends = h.handle(JoinRoom(late, None))
            deliver(sends)
            listeners[late] = joined_table(sends)
        for cid, state in h.take_outgoing().items():
            published[cid] = state
    deliver(h.flush_presence())

    expected: dict[str, Any] = {}
    for cid in CIDS:
        entries = [(s, state) for state, s, _ in remote.get(cid, {}).values()]
        if cid in local:
            entries.append((local[cid][2], local[cid][1]))
        if entries:
            expected[cid] = max(entries, key=lambda entry: entry[0])[1]
    for peer, view in listeners.items():
        others = {cid: state for cid, state in expected.items() if cid != peer.client_id}
        mine = {cid: state for cid, state in view.items() if cid in CIDS}
        assert mine == others, (peer.client_id, view)
    assert {c: s for c, s in published.items() if s is not None} == h.local_presence()
    table = {cid: state for cid, state in h.local_presence().items() if cid in CIDS}
    assert table == {cid: entry[1] for cid, entry in local.items()}
