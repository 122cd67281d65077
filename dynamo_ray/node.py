"""Node: one physical node of the store, pinned to one Ray node (DESIGN §1).

Role: create and own the vnodes of the partitions this node claims and its coordinator (a node's
death takes them with it, as a crashed host takes its processes), answer for them when the store
is inspected, and run the maintenance loop that launches background repair as Ray tasks.

Must not: sit on the request path (requests go to coordinators and vnodes directly), or block
its event loop on a call without a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

import ray

from . import antientropy, handoff, placement
from .config import StoreConfig
from .coordinator import Coordinator
from .ring import Ring
from .vnode import VNode

log = logging.getLogger(__name__)


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
        self.unreachable: frozenset = frozenset()  # nodes cut off by Store.partition
        self._deliveries: dict[tuple, Any] = {}  # (vnode, hint) -> in-flight handoff task
        self._maintenance: Optional[asyncio.Task] = None
        pinned = dict(num_cpus=0, max_retries=0, scheduling_strategy=placement.pinned(self.ray_node))
        self._deliver = ray.remote(handoff.deliver_hints).options(**pinned)
        self._exchange = ray.remote(antientropy.run_round).options(**pinned)
        self._exchange_task: Optional[Any] = None
        self.antientropy_rounds = {"done": 0, "paused": 0, "last": {}}

    def _deadline_s(self) -> float:
        return self.config.timeouts.request_ms / 1000

    async def ready(self) -> str:
        """Returns once every vnode and the coordinator of this node answer."""
        await asyncio.gather(
            *(v.ready.remote() for v in self.vnodes.values()), self.coordinator.ready.remote()
        )
        if self._maintenance is None:
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain())
        return self.name

    # --- maintenance loop --------------------------------------------------------------------
    async def _maintain(self) -> None:
        """Launch hinted handoff every ``handoff.interval_s`` and anti-entropy every
        ``antientropy.interval_s``, each as Ray tasks pinned to this node."""
        handoff_cfg, ae_cfg = self.config.handoff, self.config.antientropy
        loop = asyncio.get_running_loop()
        next_handoff = next_exchange = loop.time()
        while True:
            await asyncio.sleep(min(handoff_cfg.interval_s, ae_cfg.interval_s, 0.5))
            now = loop.time()
            try:
                if handoff_cfg.enabled and now >= next_handoff:
                    next_handoff = now + handoff_cfg.interval_s
                    await self._handoff_round()
                if ae_cfg.enabled and now >= next_exchange:
                    next_exchange = now + ae_cfg.interval_s
                    await self._antientropy_round()
            except Exception:  # the loop must outlive any one bad round
                log.exception("maintenance round failed on %s", self.name)

    async def _handoff_round(self) -> None:
        self._deliveries = {k: t for k, t in self._deliveries.items() if not _finished(t)}
        for partition, vnode in self.vnodes.items():
            try:
                hints = await asyncio.wait_for(vnode.hint_summary.remote(), self._deadline_s())
            except Exception:
                continue
            for hint in hints:
                target_node = self.ring.owners[hint[2]]
                if (partition, hint) in self._deliveries or target_node in self.unreachable:
                    continue
                self._deliveries[(partition, hint)] = self._deliver.remote(
                    self.store, vnode, hint, target_node, self.config.handoff.batch_keys,
                    self._deadline_s(),
                )

    async def antientropy_now(self) -> dict:
        """Run one anti-entropy round now, after the one in flight; returns its figures."""
        if self._exchange_task is not None:
            try:
                await self._exchange_task
            except Exception:
                pass
            self._exchange_task = None
        jobs = self._antientropy_jobs()
        if not jobs:
            return {}
        return await self._exchange.remote(self.store, self.config, self.ring, jobs, self.unreachable)

    def _antientropy_jobs(self) -> list:
        """Each range a vnode here replicates, paired with the next replica of that range."""
        jobs = []
        for partition in self.vnodes:
            for table, tcfg in self.config.tables.items():
                for kp in self.ring.ranges_held(partition, tcfg.n):
                    replicas = self.ring.preference_list(kp, tcfg.n)
                    peer = replicas[(replicas.index(partition) + 1) % len(replicas)]
                    if peer != partition and self.ring.owners[peer] not in self.unreachable:
                        jobs.append((partition, peer, table, kp, replicas[0] == partition))
        return jobs

    async def _antientropy_round(self) -> None:
        if self._exchange_task is not None:
            if not _finished(self._exchange_task):
                return  # the previous round is still running
            try:
                self.antientropy_rounds["last"] = await self._exchange_task
                self.antientropy_rounds["done"] += 1
            except Exception:
                pass
            self._exchange_task = None
        try:
            p99_ms = await asyncio.wait_for(self.coordinator.latency_p99_ms.remote(),
                                            self._deadline_s())
        except Exception:
            p99_ms = 0.0
        if p99_ms > self.config.antientropy.latency_goal_ms:
            self.antientropy_rounds["paused"] += 1  # foreground first
            return
        jobs = self._antientropy_jobs()
        if jobs:
            self._exchange_task = self._exchange.remote(
                self.store, self.config, self.ring, jobs, self.unreachable)

    def antientropy_figures(self) -> dict:
        return dict(self.antientropy_rounds)

    # --- fault injection ---------------------------------------------------------------------
    async def set_unreachable(self, nodes: list) -> None:
        self.unreachable = frozenset(nodes)
        await asyncio.wait_for(self.coordinator.set_unreachable.remote(list(nodes)), self._deadline_s())

    async def set_faults(self, delay_ms: int = 0, clock_skew_ms: int = 0) -> None:
        await asyncio.gather(*(
            asyncio.wait_for(v.set_faults.remote(delay_ms, clock_skew_ms), self._deadline_s())
            for v in self.vnodes.values()
        ))

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

    async def inspect_many(self, table: str, keys: list) -> list:
        """Copies of ``keys`` held by this node's vnodes: [(key, partition, hint, blob)]."""
        async def one(partition: int, handle: Any) -> list:
            try:
                copies = await asyncio.wait_for(handle.inspect.remote(table, keys), self._deadline_s())
            except Exception:
                return []
            return [(key, partition, hint, blob) for key, hint, blob in copies]

        found = await asyncio.gather(*(one(p, v) for p, v in self.vnodes.items()))
        return [c for copies in found for c in copies]



def _finished(ref: Any) -> bool:
    ready, _ = ray.wait([ref], timeout=0)
    return bool(ready)
