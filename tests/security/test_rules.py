"""Room rules enforced by a real relay against hostile clients on the raw protocol
(docs/rules.md): no overwriting what is not yours, no reading what is not yours
(asserted on the bytes received), batches all or nothing; rules survive restarts and
hold on both relays of a Redis deployment."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from livewidgets.auth import issue_token
from livewidgets.protocol import (
    AckMessage,
    Broadcast,
    DeleteOp,
    Hello,
    IncrementOp,
    PushOp,
    Reject,
    RemoveOp,
    SetOp,
    Snapshot,
)
from livewidgets.protocol.messages import PROTOCOL_VERSION, Join, Joined, Welcome
from livewidgets.relay import Relay
from livewidgets.relay.security import SecurityPolicy
from livewidgets.relay.store.redis import RedisStore
from livewidgets.rules import parse_rules

from ..relay.helpers import REDIS_URL, TIMEOUT, RawClient, redis_available
from .helpers import SECRET, token

CLASSROOM = [
    {"name": "question", "path": "poll/{poll}/question", "read": "anyone", "write": "admin"},
    {
        "name": "vote",
        "path": "poll/{poll}/voters/{user}",
        "read": "anyone",
        "write": "{user}",
        "type": "string",
    },
    {
        "name": "chat",
        "path": "chat",
        "read": "anyone",
        "write": "writer",
        "ops": ["push", "remove"],
        "field_is_user": "author",
    },
    {"name": "answers", "path": "answers/{user}/**", "read": "{user} or admin", "write": "{user}"},
]
SECRET_ANSWER = "the-answer-is-forty-two"


class Recorder:
    """A raw client that also keeps every frame it received, undecoded."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.frames: list[bytes | str] = []
        self.messages: list[Any] = []

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        frame = await asyncio.wait_for(self.client.ws.recv(), timeout)
        self.frames.append(frame)
        self.messages.append(self.client.codec.decode(frame))
        return self.messages[-1]

    def broadcasts(self) -> list[Broadcast]:
        return [m for m in self.messages if isinstance(m, Broadcast)]

    async def until(self, kind: type, timeout: float = TIMEOUT) -> tuple[list[Any], Any]:
        seen: list[Any] = []
        while True:
            message = await self.recv(timeout)
            if isinstance(message, kind):
                return seen, message
            seen.append(message)

    def saw(self, text: str) -> bool:
        return any(
            text.encode() in (f if isinstance(f, bytes) else f.encode()) for f in self.frames
        )


async def joined(
    url: str, user: str, role: str = "write", since: int | None = None, epoch: str | None = None
) -> tuple[Recorder, Snapshot]:
    """A member of room "class" (token for ``user`` with ``role``), and its snapshot
    (resuming from ``since`` of ``epoch`` if given: under rules, a snapshot all the same)."""
    client = await RawClient.connect(url, hello=False)
    await client.send(Hello(PROTOCOL_VERSION, user=user, token=token(role=role, user=user)))
    client.welcome = await client.expect(Welcome)
    recorder = Recorder(client)
    await client.send(Join("class", since, None, epoch))
    before, joined = await recorder.until(Joined)
    client.epochs["class"] = joined.epoch
    snapshot = next(m for m in before if isinstance(m, Snapshot))
    return recorder, snapshot


async def answer(recorder: Recorder, seq: int) -> AckMessage | Reject:
    """The ack or reject of ``seq`` (skipping broadcasts and presence)."""
    while True:
        message = await recorder.recv()
        if isinstance(message, (AckMessage, Reject)) and message.client_seq == seq:
            return message


async def op(recorder: Recorder, seq: int, *ops: Any, base: int = 0) -> AckMessage | Reject:
    if len(ops) == 1:
        await recorder.client.op("class", seq, ops[0], base)
    else:
        await recorder.client.batch("class", seq, list(ops), base)
    return await answer(recorder, seq)


@pytest.fixture
async def rules_relay(relay_factory: Any) -> Relay:
    policy = SecurityPolicy(SECRET)
    relay: Relay = await relay_factory(policy=policy, rules=parse_rules(CLASSROOM))
    return relay


async def test_a_hostile_client_cannot_overwrite_what_is_not_theirs(rules_relay: Relay) -> None:
    url = rules_relay.url
    teacher, _ = await joined(url, "teacher", "admin")
    bob, _ = await joined(url, "bob")
    mallory, _ = await joined(url, "mallory")
    assert isinstance(await op(teacher, 1, SetOp("poll/q1/question", value="Best?")), AckMessage)
    assert isinstance(await op(bob, 1, SetOp("poll/q1/voters/bob", value="tea")), AckMessage)
    chat = {"id": "m1", "author": "bob", "text": "hi"}
    assert isinstance(await op(bob, 2, PushOp("chat", value=chat)), AckMessage)

    attacks = [
        SetOp("poll/q1/question", value="Pwned?"),
        SetOp("poll/q1/voters/bob", value="coffee"),
        DeleteOp("poll/q1/voters/bob"),
        SetOp("poll", value={}),
        IncrementOp("poll/q1/votes/coffee", by=100),
        RemoveOp("chat", id="m1"),
        PushOp("chat", value={"id": "m2", "author": "bob", "text": "I quit"}),
        SetOp("answers/bob/q1", value="wrong"),
        SetOp("$rules", value=[]),
    ]
    for seq, attack in enumerate(attacks, start=1):
        reply = await op(mallory, seq, attack)
        assert isinstance(reply, Reject) and reply.code == "forbidden", (attack, reply)
        assert reply.current is None  # a denial never carries the state
    # Nothing changed: a fresh admin join sees exactly the legitimate writes.
    _, snapshot = await joined(url, "teacher2", "admin")
    assert snapshot.state["poll"] == {"q1": {"question": "Best?", "voters": {"bob": "tea"}}}
    assert snapshot.state["chat"] == [chat]
    assert "answers" not in snapshot.state


async def test_a_batch_with_one_forbidden_op_is_refused_whole(rules_relay: Relay) -> None:
    bob, _ = await joined(rules_relay.url, "bob")
    reply = await op(
        bob, 1, SetOp("poll/q1/voters/bob", value="tea"), SetOp("poll/q1/question", value="?")
    )
    assert isinstance(reply, Reject) and reply.code == "forbidden"
    assert "poll/q1/question" in reply.message and "question" in reply.message
    _, snapshot = await joined(rules_relay.url, "t", "admin")
    assert "poll" not in snapshot.state


async def test_private_paths_never_reach_other_readers(rules_relay: Relay) -> None:
    """Alice's answer is not in Bob's bytes: not live, not in a snapshot, not on resume."""
    url = rules_relay.url
    alice, _ = await joined(url, "alice")
    bob, _ = await joined(url, "bob")
    teacher, _ = await joined(url, "teacher", "admin")
    assert isinstance(
        await op(alice, 1, SetOp("answers/alice/q1", value=SECRET_ANSWER)), AckMessage
    )
    assert isinstance(await op(bob, 1, SetOp("answers/bob/q1", value="41")), AckMessage)
    # Live: Bob gets an empty broadcast for version 1 (his version advances), the
    # teacher gets the op.
    assert [(b.version, b.ops) for b in bob.broadcasts()] == [(1, [])]
    await teacher.until(Broadcast)
    await teacher.until(Broadcast)
    assert [(b.version, b.ops) for b in teacher.broadcasts()] == [
        (1, [SetOp("answers/alice/q1", value=SECRET_ANSWER)]),
        (2, [SetOp("answers/bob/q1", value="41")]),
    ]
    # A fresh join and a resume from version 0 both get what Bob may see.
    late, snapshot = await joined(url, "bob")
    assert snapshot.state == {"answers": {"bob": {"q1": "41"}}}
    resumed, snapshot = await joined(url, "bob", since=0, epoch=bob.client.epochs["class"])
    assert snapshot.state == {"answers": {"bob": {"q1": "41"}}}
    for reader in (bob, late, resumed):
        assert not reader.saw(SECRET_ANSWER)
    assert teacher.saw(SECRET_ANSWER)


async def test_only_admins_set_rules_and_bad_rules_are_refused(relay_factory: Any) -> None:
    relay: Relay = await relay_factory(policy=SecurityPolicy(SECRET))
    teacher, _ = await joined(relay.url, "teacher", "admin")
    bob, _ = await joined(relay.url, "bob")
    reply = await op(bob, 1, SetOp("$rules", value=CLASSROOM))
    assert isinstance(reply, Reject) and reply.code == "forbidden"
    reply = await op(teacher, 1, SetOp("$rules", value=[{"path": "a", "read": "everyone"}]))
    assert isinstance(reply, Reject) and reply.code == "invalid_op"
    assert "unknown term 'everyone'" in reply.message
    # No rules yet: anything goes; once set, Bob is held to them at once.
    assert isinstance(await op(bob, 2, SetOp("poll/q1/question", value="?")), AckMessage)
    assert isinstance(await op(teacher, 2, SetOp("$rules", value=CLASSROOM)), AckMessage)
    # Everyone gets the room as they may now see it (a snapshot at the new version).
    _, fresh = await bob.until(Snapshot)
    assert fresh.state["poll"] == {"q1": {"question": "?"}}
    reply = await op(bob, 3, SetOp("poll/q1/question", value="!"))
    assert isinstance(reply, Reject) and reply.code == "forbidden"


async def test_rules_survive_a_restart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'rooms.db'}"
    async with Relay(store=store, policy=SecurityPolicy(SECRET)) as relay:
        teacher, _ = await joined(relay.url, "teacher", "admin")
        assert isinstance(await op(teacher, 1, SetOp("$rules", value=CLASSROOM)), AckMessage)
        await teacher.client.close()
    async with Relay(store=store, policy=SecurityPolicy(SECRET)) as relay:
        bob, _ = await joined(relay.url, "bob")
        reply = await op(bob, 1, SetOp("poll/q1/question", value="!"))
        assert isinstance(reply, Reject) and reply.code == "forbidden"
        await bob.client.close()


@pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")
async def test_rules_hold_on_both_relays_of_a_redis_deployment(prefix: str) -> None:
    first, second = RedisStore(REDIS_URL, prefix=prefix), RedisStore(REDIS_URL, prefix=prefix)
    policy_one, policy_two = SecurityPolicy(SECRET), SecurityPolicy(SECRET)
    async with (
        Relay(store=first, policy=policy_one) as one,
        Relay(store=second, policy=policy_two) as two,
    ):
        teacher, _ = await joined(one.url, "teacher", "admin")
        bob_there, _ = await joined(two.url, "bob")
        assert isinstance(await op(teacher, 1, SetOp("$rules", value=CLASSROOM)), AckMessage)
        # The other relay learns the rules from the log (Bob gets his fresh view)...
        _, fresh = await bob_there.until(Snapshot)
        assert fresh.version == 1
        # ...and enforces them.
        reply = await op(bob_there, 1, SetOp("poll/q1/question", value="!"))
        assert isinstance(reply, Reject) and reply.code == "forbidden"
        assert isinstance(
            await op(bob_there, 2, SetOp("poll/q1/voters/bob", value="x")), AckMessage
        )
        await teacher.client.close()
        await bob_there.client.close()
    await first.close()
    await second.close()


async def test_reloading_the_relays_rules_reconnects_everyone(rules_relay: Relay) -> None:
    bob, _ = await joined(rules_relay.url, "bob")
    rules_relay.reload_rules(parse_rules([{"path": "**", "read": "anyone", "write": "anyone"}]))
    assert await bob.client.closed() == 1012
    bob, _ = await joined(rules_relay.url, "bob")
    assert isinstance(await op(bob, 1, SetOp("poll/q1/question", value="mine")), AckMessage)


async def test_groups_in_the_token_open_group_rules(relay_factory: Any) -> None:
    """A token's groups claim is what group:NAME rules see (livewidgets token --group)."""
    staff = [{"path": "staff/**", "read": "group:teachers", "write": "group:teachers"}]
    relay: Relay = await relay_factory(policy=SecurityPolicy(SECRET), rules=parse_rules(staff))
    client = await RawClient.connect(relay.url, hello=False)
    teacher_token = issue_token(SECRET, user="tess", room="*", groups=["teachers"])
    await client.send(Hello(PROTOCOL_VERSION, token=teacher_token))
    client.welcome = await client.expect(Welcome)
    tess = Recorder(client)
    await client.send(Join("class"))
    await tess.until(Joined)
    assert isinstance(await op(tess, 1, SetOp("staff/plan", value="quiz")), AckMessage)
    student, snapshot = await joined(relay.url, "sam")
    assert snapshot.state == {}
    reply = await op(student, 1, SetOp("staff/plan", value="none"))
    assert isinstance(reply, Reject) and reply.code == "forbidden"


async def test_a_conflict_does_not_show_what_the_rules_hide(rules_relay: Relay) -> None:
    """A stale if_version on a path the writer may not read: refused, and the answer
    carries no current value (it would leak what the rules hide)."""
    url = rules_relay.url
    alice, _ = await joined(url, "alice")
    bob, _ = await joined(url, "bob")
    secret = SetOp("answers/alice/q1", value=SECRET_ANSWER)
    assert isinstance(await op(alice, 1, secret), AckMessage)
    stale = SetOp("answers/alice/q1", value="x", if_version=0)
    reply = await op(bob, 1, stale, base=1)
    assert isinstance(reply, Reject) and reply.current is None
    assert not bob.saw(SECRET_ANSWER)
    # Alice, who may read it, gets her current value with her own conflict.
    mine = await op(alice, 2, stale, base=1)
    assert isinstance(mine, Reject) and mine.code == "conflict"
    assert mine.current == SECRET_ANSWER
