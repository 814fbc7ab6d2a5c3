"""The commit pipeline on its own: who hears a round during its commit and who after,
order per member across commits, group commit, and a failed commit.

PipelineCore is tested the h11 way (inputs in, the exact actions out); CommitPipeline,
its asyncio shell, with commits that end when the test says so."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from livewidgets.protocol import AckMessage, Broadcast, PresenceUpdate, SetOp
from livewidgets.protocol.codec import JSON_SUBPROTOCOL, client_codec, server_codec
from livewidgets.relay.fanout import Framed
from livewidgets.relay.hub import Command, Delivery, Submit
from livewidgets.relay.pipeline import (
    CommandsDone,
    CommitPipeline,
    Deliver,
    Fail,
    PipelineCore,
    StartCommit,
)
from livewidgets.relay.room import LogEntry
from livewidgets.relay.store import StoreError

DECODE = client_codec(JSON_SUBPROTOCOL).decode
OP = SetOp(path="x", value=1)


@dataclass(eq=False)
class Peer:
    """A member that keeps what it was sent, decoded, and counts finished commands."""

    client_id: str
    user: str = "u"
    codec: Any = field(default_factory=lambda: server_codec(JSON_SUBPROTOCOL))
    received: list[Any] = field(default_factory=list)
    done: int = 0

    def enqueue_frames(self, frames: list[Framed]) -> None:
        self.received += [DECODE(payload.decode()) for payload, _ in frames]

    def command_done(self) -> None:
        self.done += 1

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        raise AssertionError("the pipeline closes nobody")

    def versions(self) -> list[tuple[str, int]]:
        return [(message.__struct_config__.tag, message.version) for message in self.received]


class Disk:
    """Commits that finish when the test says so, in order."""

    def __init__(self) -> None:
        self.writes: list[list[int]] = []
        self.pending: list[asyncio.Future[None]] = []

    def write(self, entries: list[LogEntry]) -> asyncio.Future[None]:
        self.writes.append([entry.version for entry in entries])
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future

    async def finish(self, exc: BaseException | None = None) -> None:
        """End the oldest commit; return once the pipeline has handled its end."""
        future = self.pending.pop(0)
        handled = asyncio.Event()
        # Done callbacks run in the order they were added: the pipeline's comes first.
        future.add_done_callback(lambda _: handled.set())
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
        await handled.wait()


def accepted(
    version: int, author: Peer, others: tuple[Peer, ...]
) -> tuple[list[Delivery[Peer]], list[LogEntry], list[Command[Peer]]]:
    """One accepted op of ``author``: its ack (waits for the commit, as the hub marks
    it), the broadcast to ``others``, its entry."""
    sends = [Delivery((author,), AckMessage("r", version, version), after_commit=True)]
    if others:
        sends.append(Delivery(others, Broadcast("r", version, author.client_id, version, [OP])))
    entry = LogEntry(version, author.client_id, version, (OP,))
    return sends, [entry], [Submit(author, version, version - 1, (OP,))]


def to(*peers: Peer, message: Any) -> Delivery[Peer]:
    return Delivery(peers, message)


# --- PipelineCore: the exact actions ------------------------------------------------------


def test_core_a_round_that_accepted_nothing_and_waits_for_nothing_goes_out_at_once() -> None:
    core: PipelineCore[Peer] = PipelineCore()
    a, b = Peer("a"), Peer("b")
    presence = PresenceUpdate("r", {"a": {"x": 1}})
    commands: list[Command[Peer]] = [Submit(a, 1, 0, (OP,))]
    actions = core.add([to(b, message=presence)], [], commands)
    assert actions == [Deliver([to(b, message=presence)]), CommandsDone(commands)]
    assert core.idle and not core.committing


def test_core_one_commit_in_flight_what_comes_meanwhile_is_the_next_group() -> None:
    core: PipelineCore[Peer] = PipelineCore()
    a, b, c = Peer("a"), Peer("b"), Peer("c")
    s1, e1, c1 = accepted(1, a, (b, c))
    s2, e2, c2 = accepted(2, b, (a, c))
    s3, e3, c3 = accepted(3, c, (a, b))
    ack1, bc1 = s1[0].message, s1[1].message
    ack2, bc2 = s2[0].message, s2[1].message
    ack3, bc3 = s3[0].message, s3[1].message
    # The others hear of 1 now; a's ack waits for the commit, which starts.
    assert core.add(s1, e1, c1) == [Deliver([to(b, c, message=bc1)]), StartCommit(e1)]
    # a waits for its ack of 1, b for its ack of 2: only c hears of 2 now; no commit
    # starts while one is in flight.
    assert core.add(s2, e2, c2) == [Deliver([to(c, message=bc2)])]
    # Everyone waits now: nothing goes out.
    assert core.add(s3, e3, c3) == []
    assert core.committing and not core.idle
    # 1 is durable: a hears its ack, 2 and 3 are committed together (group commit).
    assert core.commit_done() == [
        Deliver([to(a, message=ack1)]),
        CommandsDone(c1),
        StartCommit([*e2, *e3]),
    ]
    # Each round's held sends go out after their commit, rounds in order.
    assert core.commit_done() == [
        Deliver([to(b, message=ack2), to(a, message=bc2)]),
        Deliver([to(c, message=ack3), to(a, b, message=bc3)]),
        CommandsDone([*c2, *c3]),
    ]
    assert core.idle and not core.committing


def test_core_a_member_behind_a_commit_gets_even_a_round_without_entries_after_it() -> None:
    core: PipelineCore[Peer] = PipelineCore()
    a, b = Peer("a"), Peer("b")
    s1, e1, c1 = accepted(1, a, (b,))
    presence = PresenceUpdate("r", {"b": {"cursor": 3}})
    core.add(s1, e1, c1)
    # a waits for its ack: the presence behind it waits too (no commit of its own),
    # while b, waiting for nothing, hears its share at once.
    assert core.add([to(a, b, message=presence)], [], []) == [Deliver([to(b, message=presence)])]
    assert core.commit_done() == [
        Deliver([to(a, message=s1[0].message)]),
        CommandsDone(c1),
        Deliver([to(a, message=presence)]),
    ]
    assert core.idle


def test_core_a_failed_commit_delivers_nothing_of_its_group_or_later_ones() -> None:
    core: PipelineCore[Peer] = PipelineCore()
    a, b, c = Peer("a"), Peer("b"), Peer("c")
    first, second, third = accepted(1, a, (b,)), accepted(2, b, (a,)), accepted(3, c, ())
    core.add(*first)
    core.add(*second)
    error = StoreError("disk on fire")
    assert core.commit_failed(error) == [Fail(error)]
    # No commit starts after a failure, and nothing held goes out; c's ack waits
    # for a commit that will never run.
    assert core.add(*third) == []
    assert core.idle and not core.committing
    # The room fails: every command not delivered comes back, in order.
    assert core.abandon() == [*first[2], *second[2], *third[2]]
    assert core.add([], [], []) == []


# --- CommitPipeline: the asyncio shell ---------------------------------------------------


async def test_others_hear_a_round_at_once_its_author_after_the_commit() -> None:
    disk = Disk()
    failures: list[BaseException] = []
    pipeline: CommitPipeline[Peer] = CommitPipeline(disk.write, failures.append)
    a, b = Peer("a"), Peer("b")
    pipeline.add(*accepted(1, a, (b,)))
    assert b.versions() == [("broadcast", 1)]
    assert a.received == [] and a.done == 0 and not pipeline.idle
    await disk.finish()
    assert a.versions() == [("ack", 1)] and a.done == 1
    assert pipeline.idle and failures == []


async def test_rounds_during_a_commit_are_committed_together_next() -> None:
    disk = Disk()
    pipeline: CommitPipeline[Peer] = CommitPipeline(disk.write, lambda exc: None)
    a, b, c = Peer("a"), Peer("b"), Peer("c")
    pipeline.add(*accepted(1, a, (b, c)))
    pipeline.add(*accepted(2, b, (a, c)))
    pipeline.add(*accepted(3, c, (a, b)))
    assert disk.writes == [[1]]  # one commit in flight
    await disk.finish()
    assert disk.writes == [[1], [2, 3]]  # what came meanwhile: one group
    await disk.finish()
    assert pipeline.idle
    # Nobody hears of an op out of order, and each author's ack follows its commit.
    assert a.versions() == [("ack", 1), ("broadcast", 2), ("broadcast", 3)]
    assert b.versions() == [("broadcast", 1), ("ack", 2), ("broadcast", 3)]
    assert c.versions() == [("broadcast", 1), ("broadcast", 2), ("ack", 3)]
    assert (a.done, b.done, c.done) == (1, 1, 1)


async def test_a_member_waiting_for_a_commit_gets_later_rounds_after_their_commits() -> None:
    disk = Disk()
    pipeline: CommitPipeline[Peer] = CommitPipeline(disk.write, lambda exc: None)
    a, b = Peer("a"), Peer("b")
    pipeline.add(*accepted(1, a, (b,)))
    pipeline.add(*accepted(2, b, (a,)))
    # a waits for its ack of 1, so the broadcast of 2 waits too, with round 2's commit
    # (commits are delivered in the order they ran); b heard of 1 at once.
    assert a.received == []
    assert b.versions() == [("broadcast", 1)]
    await disk.finish()
    assert a.versions() == [("ack", 1)]
    await disk.finish()
    assert a.versions() == [("ack", 1), ("broadcast", 2)]
    assert b.versions() == [("broadcast", 1), ("ack", 2)]


async def test_a_failed_commit_delivers_nothing_it_held_and_hands_back_its_commands() -> None:
    disk = Disk()
    failures: list[BaseException] = []
    pipeline: CommitPipeline[Peer] = CommitPipeline(disk.write, failures.append)
    a, b = Peer("a"), Peer("b")
    first, second = accepted(1, a, (b,)), accepted(2, b, (a,))
    pipeline.add(*first)
    pipeline.add(*second)
    await disk.finish(StoreError("disk on fire"))
    assert [str(exc) for exc in failures] == ["disk on fire"]
    assert disk.writes == [[1]]  # the next group was never written
    assert a.received == [] and b.versions() == [("broadcast", 1)]
    assert pipeline.idle
    # The room fails: its task frees every command not delivered (both rounds).
    assert pipeline.abandon() == [*first[2], *second[2]]
    assert a.done == b.done == 0
