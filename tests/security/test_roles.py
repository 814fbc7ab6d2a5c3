"""Authorization: roles (read < write < admin) and what each may do in a room
(docs/security.md "Roles"). Every refusal leaves the room unchanged."""

from __future__ import annotations

from typing import Any

from livewidgets.client import connect_async
from livewidgets.protocol import (
    Admin,
    Broadcast,
    Error,
    IncrementOp,
    PresenceMessage,
    PresenceUpdate,
    Reject,
    SetOp,
    Snapshot,
)
from livewidgets.relay import Relay
from livewidgets.relay.hub import RESET_ORIGIN

from ..client.helpers import FAST, TIMEOUT, Recorder, eventually
from ..relay.helpers import RawClient
from .helpers import ack_for, admitted, assert_serves, hello, reply, token


async def room_state(relay: Relay, room: str) -> tuple[int, dict[str, Any]]:
    """(version, state) of ``room`` as a fresh admin client's snapshot shows it."""
    async with await admitted(relay.url, token(room, "admin", user="auditor")) as auditor:
        before, joined = await auditor.join(room)
        assert isinstance(before[0], Snapshot)
        return joined.version, before[0].state


async def writer_in(
    relay: Relay,
    room: str,
    role: str = "write",
    *,
    presence: dict[str, Any] | None = None,
    **opts: Any,
) -> RawClient:
    """A ``role`` client in ``room``: a listener, or announced with ``presence`` (opt-in)."""
    client = await admitted(relay.url, token(room, role, user=f"{role}-user"), **opts)
    await client.join(room, presence=presence)
    return client


async def test_reader_cannot_write(secure_relay: Relay) -> None:
    """A read token's op and batch get a forbidden reject; the state is unchanged."""
    teacher = await writer_in(secure_relay, "quiz")
    await teacher.op("quiz", 1, SetOp("answer", value="B"))
    await teacher.ack()
    student = await writer_in(secure_relay, "quiz", "read")
    await student.op("quiz", 1, SetOp("answer", value="A"), base=1)
    reject = await reply(student, Reject)
    assert (reject.code, reject.client_seq) == ("forbidden", 1)
    await student.batch("quiz", 2, [SetOp("answer", value="A"), IncrementOp("n")], base=1)
    assert (await reply(student, Reject)).code == "forbidden"
    assert await room_state(secure_relay, "quiz") == (1, {"answer": "B"})
    # The refusal consumed the seq: a resend gets the same answer, never an ack.
    await student.op("quiz", 1, SetOp("answer", value="A"), base=1)
    assert (await reply(student, Reject)).code == "forbidden"
    await assert_serves(secure_relay.url, token("probe"))


async def test_reader_presence_is_relayed(secure_relay: Relay) -> None:
    """Readers may publish presence (cursors, names): it reaches the other members."""
    teacher = await writer_in(secure_relay, "notes")
    student = await admitted(secure_relay.url, token("notes", "read", user="stu"))
    await student.join("notes", presence={"name": "Stu"})
    joined_update = await teacher.expect(PresenceUpdate)
    assert joined_update.states == {student.client_id: {"name": "Stu", "user": "stu"}}
    await student.send(PresenceMessage("notes", {"name": "Stu", "cursor": 3}))
    update = await teacher.expect(PresenceUpdate)
    assert update.states == {student.client_id: {"name": "Stu", "cursor": 3, "user": "stu"}}


async def test_writer_cannot_administer(secure_relay: Relay) -> None:
    """Reset and kick need the admin role: a writer gets forbidden errors, nothing happens."""
    victim = await writer_in(secure_relay, "lab")
    await victim.op("lab", 1, SetOp("work", value="precious"))
    await victim.ack()
    writer = await writer_in(secure_relay, "lab", presence={})
    await victim.expect(PresenceUpdate)  # the writer's join was processed
    for message in (Admin("lab", "reset"), Admin("lab", "kick", victim.client_id)):
        await writer.send(message)
        error = await reply(writer, Error)
        assert (error.code, error.ref, error.room) == ("forbidden", "admin", "lab")
    await victim.op("lab", 2, IncrementOp("n"), base=1)
    assert (await victim.ack()).version == 2  # still connected, still writing
    assert await room_state(secure_relay, "lab") == (2, {"work": "precious", "n": 1})


async def test_admin_reset_and_kick(secure_relay: Relay) -> None:
    """An admin's reset empties the room for everyone (one broadcast); kick closes 4011."""
    member = await writer_in(secure_relay, "lab", presence={})
    await member.op("lab", 1, SetOp("a", value=1))
    await member.ack()
    admin = await writer_in(secure_relay, "lab", "admin", presence={})
    await member.expect(PresenceUpdate)  # the admin's join was processed
    await admin.send(Admin("lab", "reset"))
    for client in (member, admin):
        reset = await reply(client, Broadcast)
        assert (reset.version, reset.origin) == (2, RESET_ORIGIN)
        assert [op.path for op in reset.ops] == ["a"]
    assert await room_state(secure_relay, "lab") == (2, {})
    await admin.send(Admin("lab", "kick", "nobody-here"))
    assert (await reply(admin, Error)).code == "invalid_message"
    await admin.send(Admin("lab", "kick", member.client_id))
    assert await member.closed() == 4011
    # The auditor of room_state joined as a listener: nothing told of it, only the kick.
    gone = await admin.expect(PresenceUpdate)
    assert gone.states == {member.client_id: None}
    await assert_serves(secure_relay.url, token("probe"))


async def test_session_admin_api(secure_relay: Relay) -> None:
    """session.reset_room() empties the room; session.kick() stops the kicked session for good."""
    url = secure_relay.url
    options: dict[str, Any] = {**FAST, "timeout": TIMEOUT}
    member = await connect_async(url, "class", token=token("class", user="m"), **options)
    admin = await connect_async(url, "class", token=token("class", "admin", user="t"), **options)
    try:
        await member.set("poll", {"yes": 1})
        member_events, admin_events = Recorder(member), Recorder(admin)
        admin.reset_room()
        await eventually(lambda: member.state == {} and admin.state == {}, what="reset")
        admin.kick(member.client_id)
        await eventually(lambda: member.connection_state == "closed", what="kicked")
        assert member_events.count("reconnecting") == 0
        assert member.metrics["attempts"] == 1
        await admin.set("after", True)  # the admin carries on
        assert admin_events.count("error") == 0
    finally:
        await member.close()
        await admin.close()


# --- found by this suite (fixed): client ids, the relay's own origin, room errors ------


async def test_client_id_cannot_be_taken_over_by_another_user(secure_relay: Relay) -> None:
    """A hello with another user's client_id neither disconnects nor impersonates them."""
    teacher = await admitted(
        secure_relay.url, token("class-*", "admin", user="teacher"), client_id="teacher-1"
    )
    await teacher.join("class-1")
    intruder, answer = await hello(
        secure_relay.url, token("class-2", "read", user="mallory"), client_id="teacher-1"
    )
    assert isinstance(answer, Error) or answer.client_id != teacher.client_id  # type: ignore[union-attr]
    await teacher.op("class-1", 1, IncrementOp("n"))
    assert (await ack_for(teacher, "class-1", 1)).version == 1
    await intruder.close()


async def test_reader_cannot_make_my_ops_look_applied(secure_relay: Relay) -> None:
    """A reader reusing my client_id while I am offline cannot swallow my next write."""
    bystander = await writer_in(secure_relay, "doc")  # keeps the room loaded, as in a class
    mine = token("doc", user="alice")
    alice = await admitted(secure_relay.url, mine, client_id="alice-1")
    _, first = await alice.join("doc")
    await alice.op("doc", 1, SetOp("para", value="v1"))
    await alice.ack()
    await alice.close()  # a network blip: Alice will reconnect with the same id
    reader, _ = await hello(secure_relay.url, token("doc", "read", user="eve"), client_id="alice-1")
    await reader.join("doc")
    await reader.op("doc", 10**15, SetOp("x", value=0), base=1)
    assert (await reply(reader, Reject)).code == "forbidden"
    await reader.close()
    alice = await admitted(secure_relay.url, mine, client_id="alice-1")
    await alice.join("doc", since=1, epoch=first.epoch)
    await alice.op("doc", 2, SetOp("para", value="v2"), base=1)
    ack = await ack_for(alice, "doc", 2)
    assert not ack.duplicate
    assert await room_state(secure_relay, "doc") == (2, {"para": "v2"})
    await bystander.close()


async def test_admin_reset_cannot_be_disabled_by_a_writer(secure_relay: Relay) -> None:
    """No client can act under the relay's reserved origin or block an admin reset."""
    writer, answer = await hello(secure_relay.url, token("lab"), client_id="relay:reset")
    if isinstance(answer, Error):  # fixed by refusing the reserved id: nothing to spoof
        await writer.close()
        writer = await admitted(secure_relay.url, token("lab"))
    await writer.join("lab")
    await writer.op("lab", 10**12, SetOp("planted", value=1))
    await writer.ack()
    admin = await writer_in(secure_relay, "lab", "admin")
    await admin.send(Admin("lab", "reset"))
    await admin.op("lab", 1, SetOp("after", value=1), base=1)
    await ack_for(admin, "lab", 1)
    _, state = await room_state(secure_relay, "lab")
    assert state == {"after": 1}, state


async def test_refused_admin_action_is_reported(secure_relay: Relay) -> None:
    """A writer's session.reset_room() ends in an 'error' event with code forbidden."""
    options: dict[str, Any] = {**FAST, "timeout": TIMEOUT}
    member = await connect_async(secure_relay.url, "class", token=token("class"), **options)
    try:
        await member.set("poll", {"yes": 1})
        events = Recorder(member)
        member.reset_room()
        member.kick("someone")
        await member.set("sync", 1)  # the relay answers in order: its errors came first
        errors = await eventually(lambda: events.of("error"), TIMEOUT / 5, "error events")
        assert [e["code"] for e in errors] == ["forbidden", "forbidden"]
        assert member.get("poll") == {"yes": 1}
    finally:
        await member.close()


async def test_refused_join_is_reported(secure_relay: Relay) -> None:
    """A session whose token does not admit the room learns 'forbidden' from an event."""
    options: dict[str, Any] = {**FAST, "timeout": TIMEOUT / 5, "wait": False}
    session = await connect_async(secure_relay.url, "class-2", token=token("class-1"), **options)
    try:
        events = Recorder(session)
        errors = await eventually(lambda: events.of("error"), TIMEOUT / 5, "error events")
        assert errors[0]["code"] == "forbidden"
    finally:
        await session.close()
