"""Simulated clients: what users do to the store, recorded as a history.

Role: each client is a host of its own (it never crashes) that runs a `Router` (client-driven
coordination) or sends its requests to a node's coordinator, and does, until told to stop:
- ``add``: the shopping cart: read a cart, merge its siblings by set union, add an element no
  one else adds, write it back with the read's context (the chaos job's set workload);
- ``write``/``read`` of registers it alone writes, increasing integers, on a strict table;
- ``delete``: write a key of its own, then delete it with the context the put returned; once
  the delete is acknowledged nobody writes the key again, so it must stay deleted.
Every operation is an invoke and a completion in the `History` (ok: it happened; fail: it
certainly did not; info: unknown). Every state a put returns is kept for the dot checker.

Invariants: every choice is drawn from the client's seeded rng; no two clients add the same
element; a client has one operation in flight at a time.
"""

from __future__ import annotations

import random
from typing import Any, Optional

from ..core import codec, versioning
from ..errors import DynamoError, Overloaded, Unavailable
from ..protocol.router import Router
from ..protocol.transport import CallFailed, coordinator_at
from .history import History

CARTS, REGISTERS, KV = "carts", "registers", "kv"


def values_of(blob: Optional[bytes]) -> list:
    if blob is None:
        return []
    return [codec.decode(v, "msgpack") for v in versioning.values(versioning.decode(blob))]


def context_of(blob: Optional[bytes]) -> Optional[dict]:
    return None if blob is None else versioning.context(versioning.decode(blob))


class Client:
    def __init__(self, index: int, cluster, history: History, rng: random.Random,
                 routing: str, carts: list[str]):
        self.index = index
        self.cluster = cluster
        self.history = history
        self.rng = rng
        self.routing = routing
        self.carts = carts
        self.transport = cluster.transport_of(f"client-{index}")
        self.router = Router(cluster.config, cluster.ring, self.transport,
                             switches=cluster.switches)
        self.added = 0
        self.registers = {f"reg-{index}-{i}": [0, None] for i in range(2)}  # last value, context
        self.deleted: list[str] = []  # keys whose delete was acknowledged
        self.states: list[bytes] = []  # every state a put returned (the dot checker's)
        self.acked: list[tuple] = []  # (key, element, coordinator node or None, invoked, done s)
        self.via: Optional[str] = None  # the node whose coordinator the last request went to
        self.ops = 0

    # --- requests -------------------------------------------------------------------------
    def _rpc_s(self) -> float:
        return 3 * self.cluster.config.timeouts.request_ms / 1000 + 1.0

    async def _request(self, method: str, table: str, *args: Any) -> Any:
        if self.routing == "client":
            self.via = None
            self.router.set_ring(self.cluster.ring)
            return await getattr(self.router, method)(table, *args)
        running = self.cluster.running()
        if not running:
            raise Unavailable("no node is running", needed=1, got=0)
        node = self.via = self.rng.choice(running)
        return await self.transport.call(coordinator_at(node), method, table, *args,
                                         timeout_s=self._rpc_s())

    async def get(self, table: str, key: str, r: Optional[int] = None) -> Optional[bytes]:
        (blob,) = await self._request("get_many", table, [key], r)
        return blob

    async def put(self, table: str, key: str, value: Any, context: Optional[dict]) -> bytes:
        blob = None if value is None else codec.encode(value, "msgpack", 1 << 20)
        (state,) = await self._request("put_many", table, [(key, context, blob)])
        self.states.append(state)
        return state

    # --- operations -----------------------------------------------------------------------
    async def run_until(self, end_s: float, think_s: float) -> None:
        clock = self.cluster.clock
        while clock.monotonic() < end_s:
            kind = self.rng.choices(["add", "register", "delete"], [5, 3, 1])[0]
            self.ops += 1
            await getattr(self, kind)()
            await clock.sleep(self.rng.expovariate(1 / think_s))

    async def add(self) -> None:
        key = self.rng.choice(self.carts)
        element = f"{self.index}-{self.added}"
        self.added += 1
        read = self.history.invoke(self.index, "read", key)
        try:
            blob = await self.get(CARTS, key)
        except (DynamoError, CallFailed) as e:
            self.history.complete(read, "fail", error=type(e).__name__)
            return
        siblings = values_of(blob)
        self.history.complete(read, "ok", value=len(siblings))
        cart = sorted({x for s in siblings for x in s} | {element})
        invoked = self.history.invoke(self.index, "add", key, element)
        if await self._write(invoked, CARTS, key, cart, context_of(blob)) is not None:
            self.acked.append((key, element, self.via, invoked.time_s,
                               self.history.ops[-1].time_s))

    async def register(self) -> None:
        key = self.rng.choice(sorted(self.registers))
        if self.rng.random() < 0.5:
            invoked = self.history.invoke(self.index, "read", key)
            try:
                blob = await self.get(REGISTERS, key)
            except (DynamoError, CallFailed) as e:
                self.history.complete(invoked, "fail", error=type(e).__name__)
                return
            self.registers[key][1] = context_of(blob) or self.registers[key][1]
            self.history.complete(invoked, "ok", value=values_of(blob))
            return
        value, context = self.registers[key]
        invoked = self.history.invoke(self.index, "write", key, value + 1)
        state = await self._write(invoked, REGISTERS, key, value + 1, context)
        self.registers[key][0] = value + 1  # a failed write's value is never written again
        if state is not None:
            self.registers[key][1] = context_of(state)

    async def delete(self) -> None:
        key = f"del-{self.index}-{self.ops}"
        invoked = self.history.invoke(self.index, "write", key, "x")
        state = await self._write(invoked, KV, key, "x", None)
        if state is None:
            return
        # with the context the put returned (a read may miss it under a sloppy quorum, and a
        # delete removes only what its context saw)
        invoked = self.history.invoke(self.index, "delete", key)
        if await self._write(invoked, KV, key, None, context_of(state)) is not None:
            self.deleted.append(key)

    async def _write(self, invoked, table: str, key: str, value: Any,
                     context: Optional[dict]) -> Optional[bytes]:
        """The put, its completion recorded: ok, fail (nothing stored) or info (unknown)."""
        try:
            state = await self.put(table, key, value, context)
        except Overloaded as e:
            self.history.complete(invoked, "fail", error=type(e).__name__)
            return None
        except (DynamoError, CallFailed) as e:
            self.history.complete(invoked, "info", error=type(e).__name__)
            return None
        self.history.complete(invoked, "ok")
        return state
