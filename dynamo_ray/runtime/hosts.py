"""The store's actors: the protocol's plain classes wrapped by ``ray.remote`` at spawn.

Role (DESIGN §1, §7): start a store node as a detached `protocol.node.Node` actor pinned to a
Ray node, given a `RayTransport` and a `RayNodeHost`, through which it creates its vnodes
(`protocol.vnode.VNode`) and its coordinator (`protocol.router.Coordinator`) as actors pinned
beside it and owned by it, so that a node's death takes them with it. Each actor builds its own
transport when it unpickles the one it is given.

Must not: hold state of its own; everything here is a recipe for where an actor goes.
"""

from __future__ import annotations

from typing import Mapping, Optional

import ray

from . import placement
from ..config import StoreConfig
from ..errors import DynamoError
from ..protocol.node import START_TIMEOUT_S, Node
from ..protocol.router import Coordinator
from ..protocol.transport import Address
from ..protocol.vnode import VNode
from ..core.ring import Ring
from .transport import RayTransport, actor_name


class RayNodeHost:
    """Where one node's vnodes and coordinator go: actors pinned to the node's Ray node."""

    def __init__(self, store: str, config: StoreConfig):
        self.store = store
        self.config = config
        self._place: Optional[str] = None

    def __reduce__(self):
        return (RayNodeHost, (self.store, self.config))

    @property
    def place(self) -> str:
        if self._place is None:
            self._place = placement.current_ray_node()
        return self._place

    def _transport(self) -> RayTransport:
        return RayTransport(self.store, self.config.overload.max_pending_calls)

    def spawn_vnode(self, node: str, partition: int, ring: Ring) -> ray.actor.ActorHandle:
        return placement.spawn(VNode, placement.vnode_actor_name(self.store, node, partition),
                        self.store, node, partition, self.config, ring, self._transport(),
                        ray_node_id=self.place,
                        max_pending_calls=self.config.overload.max_pending_calls)

    def spawn_coordinator(self, node: str, ring: Ring) -> ray.actor.ActorHandle:
        return placement.spawn(Coordinator, placement.coordinator_actor_name(self.store, node), node,
                        self.config, ring, self._transport(), ray_node_id=self.place)

    def kill(self, address: Address) -> None:
        handle = placement.lookup(actor_name(self.store, address))
        if handle is not None:
            ray.kill(handle, no_restart=True)


def spawn_nodes(store: str, config: StoreConfig, ring: Ring, where: Mapping[str, str],
                partitions: Optional[Mapping[str, list]] = None) -> None:
    """Start node actors {node: Ray node id} and wait until each has its vnodes up;
    ``partitions`` names the vnodes of a node joining under a ring it is not yet in."""
    partitions = partitions or {}
    handles = [
        placement.spawn(Node, placement.node_actor_name(store, node), store, node, config, ring,
                        RayTransport(store), RayNodeHost(store, config), partitions.get(node),
                        ray_node_id=ray_node, detached=True)
        for node, ray_node in where.items()
    ]
    try:
        ray.get([h.ready.remote() for h in handles], timeout=START_TIMEOUT_S)
    except Exception as e:
        raise DynamoError(f"store {store!r}: nodes {sorted(where)} failed to start: {e}") from None
