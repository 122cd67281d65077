"""Node: one physical node of the store, pinned to one Ray node (DESIGN §1).

Role: create and own the vnodes of the partitions this node serves and its coordinator (a
node's death takes them with it, as a crashed host takes its processes); gossip membership and
heartbeats with its peers; answer for its vnodes when the store is inspected or changes
membership; and run the maintenance loop that launches hinted handoff and anti-entropy as Ray
tasks pinned to this node.

Must not: sit on the request path (requests go to coordinators and vnodes directly), or block
its event loop on a call without a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Optional

import ray

from . import antientropy, handoff, placement
from .config import StoreConfig
from .coordinator import Coordinator
from .gossip import View
from .ring import Ring
from .vnode import VNode

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 5.0  # each vnode: expire what is due, compact, trim the heap


class Node:
    def __init__(self, store: str, name: str, config: StoreConfig, ring: Ring,
                 host: Optional[list[int]] = None):
        """``host``: the partitions to create vnodes for when they are not (yet) this node's in
        ``ring`` (a node joining: it receives data before the new ring commits)."""
        self.store = store
        self.name = name
        self.config = config
        self.ray_node = placement.current_ray_node()
        self.view = View(name, ring, incarnation=time.time_ns(), now=time.monotonic())
        self.vnodes: dict[int, Any] = {}
        self._spawn_vnodes(ring.partitions_of(name) if host is None else host)
        self.coordinator = placement.spawn(
            Coordinator, placement.coordinator_actor_name(store, name), store, name, config, ring,
            ray_node_id=self.ray_node,
        )
        self.unreachable: frozenset = frozenset()  # nodes cut off by Store.partition
        self._delivery: Optional[Any] = None  # the handoff task in flight
        self._maintenance: Optional[asyncio.Task] = None
        pinned = dict(num_cpus=0, max_retries=0, scheduling_strategy=placement.pinned(self.ray_node))
        self._deliver = ray.remote(handoff.deliver_all).options(**pinned)
        self._exchange = ray.remote(antientropy.run_round).options(**pinned)
        self._exchange_task: Optional[Any] = None
        self.antientropy_rounds = {"done": 0, "paused": 0, "last": {}}

    @property
    def ring(self) -> Ring:
        return self.view.ring

    def _deadline_s(self) -> float:
        return self.config.timeouts.request_ms / 1000

    def _spawn_vnodes(self, partitions: list[int]) -> list[Any]:
        spawned = []
        for p in partitions:
            if p not in self.vnodes:
                self.vnodes[p] = placement.spawn(
                    VNode, placement.vnode_actor_name(self.store, self.name, p), self.store,
                    self.name, p, self.config, self.ring, ray_node_id=self.ray_node,
                    max_pending_calls=self.config.overload.max_pending_calls)
                spawned.append(self.vnodes[p])
        return spawned

    async def ready(self) -> str:
        """Returns once every vnode and the coordinator of this node answer."""
        await asyncio.gather(
            *(v.ready.remote() for v in self.vnodes.values()), self.coordinator.ready.remote()
        )
        if self._maintenance is None:
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain())
        return self.name

    def describe(self) -> dict:
        return {"node": self.name, "config": self.config, "ring": self.ring,
                "ray_node": self.ray_node}

    # --- maintenance loop --------------------------------------------------------------------
    async def _maintain(self) -> None:
        """Gossip every ``gossip.interval_s``, launch hinted handoff every
        ``handoff.interval_s`` and anti-entropy every ``antientropy.interval_s``."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        due = {name: loop.time() for name in ("gossip", "handoff", "antientropy", "maintenance")}
        every = {"gossip": cfg.gossip.interval_s, "handoff": cfg.handoff.interval_s,
                 "antientropy": cfg.antientropy.interval_s, "maintenance": MAINTENANCE_INTERVAL_S}
        enabled = {"gossip": True, "handoff": cfg.handoff.enabled,
                   "antientropy": cfg.antientropy.enabled, "maintenance": True}
        rounds = {"gossip": self._gossip_round, "handoff": self._handoff_round,
                  "antientropy": self._antientropy_round, "maintenance": self._maintenance_round}
        while True:
            await asyncio.sleep(min(0.5, *every.values()))
            for activity, run in rounds.items():
                now = loop.time()
                if not enabled[activity] or now < due[activity]:
                    continue
                due[activity] = now + every[activity]
                try:
                    await run()
                except Exception:  # the loop must outlive any one bad round
                    log.exception("%s round failed on %s", activity, self.name)

    async def _maintenance_round(self) -> None:
        """Each vnode in turn expires what is due and compacts (`VNode.maintain`)."""
        for vnode in list(self.vnodes.values()):
            try:
                await asyncio.wait_for(vnode.maintain.remote(), 60)
            except Exception:
                log.exception("maintenance failed on %s", self.name)

    # --- gossip (Dynamo §4.8) ----------------------------------------------------------------
    async def _gossip_round(self) -> None:
        self.view.beat(time.monotonic())
        peers = [n for n in self.ring.nodes if n != self.name and n not in self.unreachable]
        if not peers:
            return
        targets = {random.choice(peers)}
        seeds = [s for s in (self.config.gossip.seeds or self.ring.nodes[:1])
                 if s in peers]
        if seeds and self.name not in seeds:
            targets.add(random.choice(seeds))  # seeds keep the views from forming two rings
        ring, heartbeats = self.view.snapshot()
        for peer in targets:
            handle = placement.lookup(placement.node_actor_name(self.store, peer))
            if handle is None:
                continue
            try:
                their_ring, theirs = await asyncio.wait_for(
                    handle.gossip.remote(ring, heartbeats), self._deadline_s())
            except Exception:
                continue
            await self._merge_view(their_ring, theirs)

    async def gossip(self, ring: Ring, heartbeats: dict) -> tuple[Ring, dict]:
        """A peer's view in, ours out."""
        await self._merge_view(ring, heartbeats)
        return self.view.snapshot()

    async def _merge_view(self, ring: Ring, heartbeats: dict) -> None:
        newer = self.view.merge(ring, heartbeats, time.monotonic())
        if newer is not None:
            await self._push_ring(newer)

    def view_status(self) -> dict[str, bool]:
        """Which nodes this node's gossip view holds up (fresh heartbeats)."""
        g = self.config.gossip
        return self.view.up(time.monotonic(), g.interval_s * g.suspect_after)

    # --- membership changes (driven by membership.change) ----------------------------------
    async def set_ring(self, ring: Ring) -> int:
        """Adopt ``ring`` if it is newer; returns the version now held."""
        if self.view.adopt(ring):
            await self._push_ring(ring)
        return self.ring.version

    async def _push_ring(self, ring: Ring) -> None:
        targets = [self.coordinator, *self.vnodes.values()]
        await asyncio.gather(*(asyncio.wait_for(t.set_ring.remote(ring), self._deadline_s())
                               for t in targets), return_exceptions=True)

    async def add_vnodes(self, partitions: list[int]) -> list[int]:
        """Create vnodes for partitions this node is about to own; returns when they answer."""
        await asyncio.gather(*(v.ready.remote() for v in self._spawn_vnodes(partitions)))
        return sorted(self.vnodes)

    async def retire_vnodes(self, partitions: list[int]) -> None:
        """Kill the vnodes of partitions that moved away (after the final sync)."""
        for p in partitions:
            handle = self.vnodes.pop(p, None)
            if handle is not None:
                try:
                    await asyncio.wait_for(handle.destroy_storage.remote(), self._deadline_s())
                except Exception:
                    log.exception("could not delete the files of vnode %s on %s", p, self.name)
                ray.kill(handle, no_restart=True)

    async def drop_ranges(self, partition: int, ranges: list[tuple]) -> int:
        handle = self.vnodes.get(partition)
        if handle is None:
            return 0
        return await asyncio.wait_for(handle.drop_ranges.remote(ranges), self._deadline_s())

    async def handoff_now(self) -> int:
        """Deliver every hint held here, now; returns the keys handed off (a node leaving)."""
        total = 0
        for _ in range(5):
            if self._delivery is not None:
                try:
                    await self._delivery
                except Exception:
                    pass
                self._delivery = None
            await self._handoff_round()
            if self._delivery is not None:
                try:
                    total += await self._delivery
                except Exception:
                    pass
                self._delivery = None
            pending = 0
            for vnode in self.vnodes.values():
                try:
                    pending += sum((await vnode.hint_summary.remote()).values())
                except Exception:
                    pass
            if not pending:
                break
        return total

    # --- hinted handoff -----------------------------------------------------------------------
    async def _handoff_round(self) -> None:
        """Launch one task delivering every hint held here (unless one is still running)."""
        if self._delivery is not None and not _finished(self._delivery):
            return
        deliveries = []
        for vnode in list(self.vnodes.values()):
            try:
                hints = await asyncio.wait_for(vnode.hint_summary.remote(), self._deadline_s())
            except Exception:
                continue
            for hint in hints:
                target_node = self.ring.owners[hint[2]]
                if target_node not in self.unreachable:
                    deliveries.append((vnode, hint, target_node))
        self._delivery = None
        if deliveries:
            self._delivery = self._deliver.remote(
                self.store, deliveries, self.config.handoff.batch_keys, self._deadline_s())

    # --- anti-entropy -------------------------------------------------------------------------
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
        return await self._exchange.remote(self.store, self.config, self.ring, jobs,
                                           self.unreachable)

    def _antientropy_jobs(self) -> list:
        """Each range a vnode here replicates, paired with the next replica of that range."""
        jobs = []
        for partition in self.ring.partitions_of(self.name):
            if partition not in self.vnodes:
                continue
            for table, tcfg in self.config.tables.items():
                if tcfg.evicts:
                    continue  # a cache: repairing would only bring evicted keys back
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

    # --- inspection ---------------------------------------------------------------------------
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

    # --- fault injection ---------------------------------------------------------------------
    async def set_unreachable(self, nodes: list) -> None:
        self.unreachable = frozenset(nodes)
        await asyncio.wait_for(self.coordinator.set_unreachable.remote(list(nodes)), self._deadline_s())

    async def set_faults(self, delay_ms: int = 0, clock_skew_ms: int = 0) -> None:
        await asyncio.gather(*(
            asyncio.wait_for(v.set_faults.remote(delay_ms, clock_skew_ms), self._deadline_s())
            for v in self.vnodes.values()
        ))


def _finished(ref: Any) -> bool:
    ready, _ = ray.wait([ref], timeout=0)
    return bool(ready)
