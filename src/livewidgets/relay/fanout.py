"""Fan-out: a round's messages, encoded and framed once, written once per peer.

Relay frames are unmasked and uncompressed, so a message's wire bytes are the same
for every receiver with the same codec: :func:`deliver` builds them once
(relay.framing) and hands each peer all its frames of a round in one call.
:func:`split` divides a round's messages between the peers that get them now and
the ones that wait (for a commit, relay.pipeline), keeping each peer's order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

from ..protocol.codec import Codec
from ..protocol.messages import AckMessage, Reject
from .framing import data_frame
from .hub import Command, Delivery, Member

__all__ = ["Encoded", "Framed", "Peer", "answered", "commands_done", "deliver", "split"]

# An encoded message and the same as a ready WebSocket frame (relay.framing).
Framed = tuple[bytes, bytes]


class Peer(Member, Protocol):
    """A room member as the runner sees it: something to enqueue encoded frames on."""

    @property
    def codec(self) -> Codec[Any]: ...

    def enqueue_frames(self, frames: list[Framed]) -> None:
        """Send a round's messages to this peer, in order, as one write if it can;
        never blocks (overflow closes the peer)."""
        ...

    def command_done(self) -> None:
        """One of the peer's commands was processed (frees room for its next one)."""
        ...

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None: ...


P = TypeVar("P", bound=Peer)


def commands_done(commands: Iterable[Command[P]]) -> None:
    """Return the reader credits of ``commands``: the one place the runners do it, once
    each command is delivered, dropped (its room stopped) or failed with its room."""
    for command in commands:
        command.member.command_done()


# Frames already built in this round: (id(message), codec) -> framed. A round's
# messages live until it is delivered, so their ids are stable keys.
Encoded = dict[tuple[int, Codec[Any]], Framed]


def deliver(sends: Iterable[Delivery[P]], encoded: Encoded | None = None) -> None:
    """Fan-out: encode and frame each message once per codec among its recipients
    (once per round, when ``encoded`` is shared by its calls), then hand every peer
    its frames, in order, in one call.

    Peers answered with an ack or reject go last: their client already shows its
    own change (optimistic), the others have not seen it, and each socket write
    costs a syscall that can wake the receiver (~0.1 ms on a busy VM).
    """
    outbox: dict[P, list[Framed]] = {}
    answered: list[P] = []
    for send in sends:
        message = send.message
        if isinstance(message, (AckMessage, Reject)):
            answered.extend(send.to)
        # Per receiver only a lookup by codec; the round's cache once per codec.
        built: dict[Codec[Any], Framed] = {}
        for peer in send.to:
            codec = peer.codec
            framed = built.get(codec)
            if framed is None:
                framed = built[codec] = _framed(message, codec, encoded)
            frames = outbox.get(peer)
            if frames is None:
                outbox[peer] = [framed]
            else:
                frames.append(framed)
    for peer in answered:  # move to the end, keeping their order
        frames = outbox.pop(peer, None)
        if frames is not None:
            outbox[peer] = frames
    for peer, frames in outbox.items():
        peer.enqueue_frames(frames)


def _framed(message: Any, codec: Codec[Any], encoded: Encoded | None) -> Framed:
    """``message`` encoded and framed for ``codec``, from the round's cache if built."""
    key = (id(message), codec)
    framed = encoded.get(key) if encoded is not None else None
    if framed is None:
        payload = codec.encode(message)
        framed = (payload, data_frame(payload, binary=codec.binary))
        if encoded is not None:
            encoded[key] = framed
    return framed


def answered(sends: Iterable[Delivery[P]]) -> set[P]:
    """The peers that get an ack or a reject among ``sends`` (the round's authors)."""
    return {
        peer for send in sends if isinstance(send.message, (AckMessage, Reject)) for peer in send.to
    }


def split(sends: list[Delivery[P]], hold: set[P]) -> tuple[list[Delivery[P]], list[Delivery[P]]]:
    """(the sends to peers not in ``hold``, the sends to those in it): each peer's
    messages stay together, in order, on one side."""
    if not hold:
        return sends, []
    now: list[Delivery[P]] = []
    later: list[Delivery[P]] = []
    for send in sends:
        if hold.isdisjoint(send.to):
            now.append(send)
            continue
        others = tuple(peer for peer in send.to if peer not in hold)
        if others:
            now.append(Delivery(others, send.message))
        later.append(Delivery(tuple(peer for peer in send.to if peer in hold), send.message))
    return now, later
