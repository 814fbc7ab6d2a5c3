"""Real-network convergence: several clients, random ops, random link faults, one truth."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

from livewidgets.client import Ack, AsyncSession
from livewidgets.relay import Relay

from .conftest import Connect
from .helpers import MS, abandon, eventually
from .proxy import Proxy

CLIENTS = 5
OPS = 300
FAULTS = 10
SEED = 8128

# Heal fast: a stall is declared dead in ~300 ms, a refused attempt retried in <= 100 ms.
OPTIONS: dict[str, Any] = {
    "heartbeat_interval": 100 * MS,
    "heartbeat_timeout": 200 * MS,
    "open_timeout": 300 * MS,
    "ack_timeout": 500 * MS,
}


def random_write(rng: random.Random, client: AsyncSession, who: int, i: int) -> tuple[str, Ack]:
    """One random op: (its kind, its Ack)."""
    kind = rng.random()
    if kind < 0.35:
        return "increment", client.increment("counter")
    if kind < 0.6:
        return "set", client.set(f"settings/k{rng.randrange(5)}", rng.randrange(1000))
    if kind < 0.8:
        return "push", client.push("log", {"who": who, "i": i})
    doc = client.text("doc")
    return "text", doc.insert(rng.randint(0, len(doc)), rng.choice("abcxyz"))


class Faults:
    """Random faults on the clients' proxies; each stall/refusal heals a few ops later."""

    def __init__(self, rng: random.Random, proxies: list[Proxy]) -> None:
        self.rng = rng
        self.proxies = proxies
        # op index -> healing actions to run then
        self.heals: dict[int, list[Any]] = {}
        self.log: list[tuple[int, str, int]] = []

    def inject(self, i: int) -> None:
        index = self.rng.randrange(len(self.proxies))
        proxy = self.proxies[index]
        kind = self.rng.choice(["cut", "stall", "refuse"])
        self.log.append((i, kind, index))
        if kind == "cut":
            proxy.cut()
        elif kind == "stall":
            proxy.stall()
            self.heals.setdefault(i + self.rng.randint(5, 40), []).append(proxy.resume)
        else:
            proxy.refuse(True)
            proxy.cut()
            heal = lambda p=proxy: p.refuse(False)  # noqa: E731
            self.heals.setdefault(i + self.rng.randint(5, 40), []).append(heal)

    def heal_due(self, i: int) -> None:
        for heal in self.heals.pop(i, []):
            heal()

    def heal_all(self) -> None:
        for heals in self.heals.values():
            for heal in heals:
                heal()
        self.heals.clear()
        for proxy in self.proxies:
            proxy.resume()
            proxy.refuse(False)


async def test_clients_converge_under_random_faults(relay: Relay, connect: Connect) -> None:
    """5 clients, 300 random ops, 10 cuts/stalls/refusals: all equal a fresh client's state."""
    rng = random.Random(SEED)
    async with AsyncExitStack() as stack:
        proxies = [
            await stack.enter_async_context(Proxy(relay.host, relay.port)) for _ in range(CLIENTS)
        ]
        clients = [
            await connect(proxy.url, user=f"u{n}", rng=random.Random(SEED + n), **OPTIONS)
            for n, proxy in enumerate(proxies)
        ]
        try:
            await run_schedule(rng, proxies, clients, relay, connect)
        finally:
            for client in clients:
                await abandon(client)


async def run_schedule(
    rng: random.Random,
    proxies: list[Proxy],
    clients: list[AsyncSession],
    relay: Relay,
    connect: Connect,
) -> None:
    faults = Faults(rng, proxies)
    fault_at = set(rng.sample(range(10, OPS - 20), FAULTS))
    writes: list[tuple[str, Ack]] = []
    for i in range(OPS):
        faults.heal_due(i)
        if i in fault_at:
            faults.inject(i)
        who = rng.randrange(CLIENTS)
        writes.append(random_write(rng, clients[who], who, i))
        if rng.random() < 0.2:
            await asyncio.sleep(rng.uniform(0, 5) * MS)  # let the network move
    faults.heal_all()
    for client in clients:
        await client.flush(3000 * MS)
    assert sum(c.metrics["disconnections"] for c in clients) >= 1, faults.log
    # Nothing here can be refused: every write is acknowledged. Keystrokes composed into
    # one op share its version; otherwise each write has its own, and nothing else is there.
    versions = [ack.result(0) for _, ack in writes]
    fresh = await connect(relay.url)
    assert set(versions) == set(range(1, fresh.version + 1))
    non_text = [v for (kind, _), v in zip(writes, versions, strict=True) if kind != "text"]
    assert len(set(non_text)) == len(non_text)
    for client in clients:
        await eventually(lambda c=client: c.version == fresh.version, what="caught up")
        assert client.state == fresh.state, faults.log
    count = Counter(kind for kind, _ in writes)
    assert fresh.get("counter") == count["increment"]
    log = fresh.get("log")
    assert len(log) == count["push"]
    assert len({(item["who"], item["i"]) for item in log}) == len(log)
    assert len(fresh.get("doc")) == count["text"]
