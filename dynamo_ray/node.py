"""Node: one physical node of the store, pinned to one Ray node (DESIGN §1).

Role: create and own the vnodes of the partitions this node claims and its coordinator (a node's
death takes them with it, as a crashed host takes its processes), answer for them when the store
is inspected, and run the maintenance loop that launches background repair as Ray tasks.

Must not: sit on the request path (requests go to coordinators and vnodes directly), or block
its event loop on a call without a deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from . import placement
from .config import StoreConfig
from .coordinator import Coordinator
from .ring import Ring
from .vnode import VNode


class Node:
    def __init__(self, store: str, name: str, config: StoreConfig, ring: Ring):
        self.store = store
        self.name = name
        self.config = config
        self.ring = ring
        self.ray_node = placement.current_ray_node()
        self.vnodes: dict[int, Any] = {
            p: placement.spawn(
                VNode, placement.vnode_actor_name(store, name, p), store, name, p, config,
                ray_node_id=self.ray_node,
            )
            for p in ring.partitions_of(name)
        }
        self.coordinator = placement.spawn(
            Coordinator, placement.coordinator_actor_name(store, name), store, name, config, ring,
            ray_node_id=self.ray_node,
        )

    def _deadline_s(self) -> float:
        return self.config.timeouts.request_ms / 1000

    async def ready(self) -> str:
        """Returns once every vnode and the coordinator of this node answer."""
        await asyncio.gather(
            *(v.ready.remote() for v in self.vnodes.values()), self.coordinator.ready.remote()
        )
        return self.name

    def describe(self) -> dict:
        return {"node": self.name, "config": self.config, "ring": self.ring,
                "ray_node": self.ray_node}

    async def vnode_info(self) -> list[dict]:
        """One status row per vnode of this node; a vnode that does not answer in time is down."""
        async def one(partition: int, handle: Any) -> dict:
            try:
                row = await asyncio.wait_for(handle.info.remote(), self._deadline_s())
                return {**row, "up": True}
            except Exception:
                return {"partition": partition, "node": self.name, "up": False}

        return list(await asyncio.gather(*(one(p, v) for p, v in self.vnodes.items())))

    async def inspect(self, table: str, kp: int, key: Any, partitions: list[int]) -> list:
        """Copies of one key held by this node's vnodes: [(partition, hint, blob)]."""
        async def one(partition: int) -> list:
            handle = self.vnodes.get(partition)
            if handle is None:
                return []
            try:
                copies = await asyncio.wait_for(
                    handle.inspect.remote(table, kp, key), self._deadline_s()
                )
            except Exception:
                return []
            return [(partition, hint, blob) for hint, blob in copies]

        found = await asyncio.gather(*(one(p) for p in partitions))
        return [c for copies in found for c in copies]

    def vnode_handles(self) -> dict[int, Any]:
        return dict(self.vnodes)

    def coordinator_handle(self) -> Optional[Any]:
        return self.coordinator
