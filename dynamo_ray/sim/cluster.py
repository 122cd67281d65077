"""A simulated store: the real nodes, vnodes and coordinators on a `SimNetwork`.

Role: build a store of real protocol objects, one `SimTransport` and one `SimFiles` disk per
host, and change it the ways the nemesis asks: crash a node (its objects, tasks and unsynced
bytes are gone), restart it (new objects reloading its disk), join and leave (the real
`membership.change`, driven from a client host). Checkers read the vnodes' state directly:
the simulator may look where no client can.

Invariants: every random choice comes from the cluster's seeded rng or an rng derived from
it by name; the rings of running nodes only move forward.
"""

from __future__ import annotations

import asyncio
import random
from typing import Optional

from ..config import StoreConfig
from ..protocol import membership
from ..protocol.node import Node
from ..protocol.router import Coordinator
from ..protocol.switches import NONE, Switches
from ..protocol.transport import Address, coordinator_at, node_at, vnode_at
from ..protocol.vnode import VNode
from ..core.ring import Ring, claim
from .disk import SimFiles
from .loop import SimClock
from .network import SimNetwork, SimTransport

STORE = "sim"


class SimNodeHost:
    """`NodeHost` of one simulated node: its vnodes and coordinator are objects on the network."""

    def __init__(self, cluster: "SimCluster", node: str):
        self.cluster = cluster
        self.place = node

    def spawn_vnode(self, node: str, partition: int, ring: Ring) -> None:
        c = self.cluster
        vnode = VNode(STORE, node, partition, c.config, ring, c.transport_of(node), c.switches)
        c.network.register(vnode_at(node, partition), vnode)

    def spawn_coordinator(self, node: str, ring: Ring) -> None:
        c = self.cluster
        c.network.register(coordinator_at(node),
                           Coordinator(node, c.config, ring, c.transport_of(node), c.switches))

    def kill(self, address: Address) -> None:
        self.cluster.network.unregister(address)


class SimCluster:
    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random, config: StoreConfig,
                 switches: Switches = NONE, loss: float = 0.0):
        self.loop = loop
        self.rng = rng
        self.config = config
        self.switches = switches
        self.clock = SimClock(loop)
        self.network = SimNetwork(loop, random.Random(rng.getrandbits(64)), loss=loss)
        self.names = [f"node-{i + 1}" for i in range(config.nodes)]
        self.ring = claim(config.partitions, self.names, max(t.n for t in config.tables.values()))
        self.disks: dict[str, SimFiles] = {}
        self.nodes: dict[str, Node] = {}
        self.incarnations: dict[str, int] = {}
        self.crashes = 0
        self.admin = self.transport_of("admin")

    def transport_of(self, host: str) -> SimTransport:
        """A fresh transport for a host (each incarnation draws its own ids)."""
        serial = self.incarnations[host] = self.incarnations.get(host, 0) + 1
        rng = random.Random(f"{self.rng.getrandbits(32)}:{host}:{serial}")
        return SimTransport(self.network, host, self.clock, rng,
                            self.disks.setdefault(host, SimFiles()))

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.gather(*(self.start_node(n, self.ring) for n in self.names))

    async def start_node(self, name: str, ring: Ring, partitions: Optional[list] = None) -> None:
        self.network.revive(name)
        node = Node(STORE, name, self.config, ring, self.transport_of(name),
                    SimNodeHost(self, name), partitions)
        self.nodes[name] = node
        self.network.register(node_at(name), node)
        await node.ready()

    def crash(self, name: str) -> None:
        node = self.nodes.pop(name, None)
        if node is not None:
            node.stop()
        self.network.crash(name)
        self.disks[name].crash()
        self.crashes += 1

    async def restart(self, name: str) -> None:
        """A crashed node comes back on the same disk, under the newest committed ring."""
        await self.start_node(name, self.ring)

    def running(self) -> list[str]:
        return [n for n in self.ring.nodes if n in self.nodes]

    # --- membership -----------------------------------------------------------------------
    async def _change(self, new: Ring, joining: dict, leaving: list) -> dict:
        async def spawn(node, ring, partitions, where):
            await self.start_node(node, ring, partitions)

        old, self.ring = self.ring, new
        try:
            return await membership.change(self.admin, self.config, old, new, joining, leaving,
                                           spawn)
        finally:
            for name in leaving:
                self.crash(name)
                self.crashes -= 1  # a graceful leave, not a fault

    async def join(self, name: str) -> dict:
        n = max(t.n for t in self.config.tables.values())
        new = claim(self.ring.partitions, [*self.ring.nodes, name], n, previous=self.ring)
        return await self._change(new, {name: name}, [])

    async def leave(self, name: str) -> dict:
        n = max(t.n for t in self.config.tables.values())
        rest = [x for x in self.ring.nodes if x != name]
        return await self._change(claim(self.ring.partitions, rest, n, previous=self.ring), {},
                                  [name])

    # --- what checkers read ---------------------------------------------------------------
    def vnodes(self) -> dict[Address, VNode]:
        return {a: t for a, t in self.network.targets.items() if isinstance(t, VNode)}

    def copies(self, table: str, keys: list) -> dict:
        """{key: {node: [state blobs its vnodes hold, own and hinted]}}."""
        found: dict = {k: {} for k in keys}
        for address, vnode in self.vnodes().items():
            for key, _, blob in vnode.inspect(table, keys):
                found[key].setdefault(address.node, []).append(blob)
        return found
