"""Node: one physical node of the store (DESIGN §1).

Role: own the vnodes of the partitions this node serves and its coordinator (a node's death
takes them with it, as a crashed host takes its processes: its `NodeHost` creates them where
the node runs); gossip membership and heartbeats with its peers; answer for its vnodes when the
store is inspected or changes membership; and run the maintenance loop that launches hinted
handoff and anti-entropy as background work (`Transport.launch`: a Ray task pinned to this
node in the runtime) and has every vnode expire and compact.

Must not: sit on the request path (requests go to coordinators and vnodes directly), or wait
on a call without a deadline. Reaches its vnodes and peers only through its transport.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional, Protocol

from ..config import StoreConfig
from ..core.gossip import View
from ..core.ring import Ring
from . import antientropy, handoff, membership
from .transport import Address, Transport, coordinator_at, node_at, vnode_at

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 5.0  # each vnode: expire what is due, compact, trim the heap
FULL_ROUND_S = 60.0  # handoff, maintenance and anti-entropy ask every vnode at least this often
START_TIMEOUT_S = 180.0
RING_PUSH_TIMEOUT_S = 30.0
STALE_WORK_WAIT_CALLS = 3  # a cut waits this many call deadlines for work that predates it


class NodeHost(Protocol):
    """Where a node's vnodes and coordinator live: the runtime spawns actors pinned to the
    node's Ray node; the simulator creates objects on its network."""

    place: str  # where this node runs (a Ray node id; a simulated host)

    def spawn_vnode(self, node: str, partition: int, ring: Ring) -> Any:
        """Start the vnode; returns what the transport may `adopt` to reach it."""

    def spawn_coordinator(self, node: str, ring: Ring) -> Any: ...

    def kill(self, address: Address) -> None: ...


class Node:
    def __init__(self, store: str, name: str, config: StoreConfig, ring: Ring,
                 transport: Transport, host: NodeHost, partitions: Optional[list[int]] = None):
        """``partitions``: the vnodes to create when they are not (yet) this node's in
        ``ring`` (a node joining: it receives data before the new ring commits)."""
        self.store = store
        self.name = name
        self.config = config
        self.transport = transport
        self.clock = transport.clock
        self.host = host
        self.view = View(name, ring, incarnation=int(self.clock.time() * 1e9),
                         now=self.clock.monotonic())
        self.vnodes: dict[int, Address] = {}
        # What the vnodes said they have (`vnode_noted`), so that an idle node asks nothing:
        # partition -> times told of hints (handoff asks these), partition -> when its
        # maintenance is due (monotonic s), and whether anything changed since anti-entropy.
        self.hint_watch: dict[int, int] = {}
        self.maintenance_due: dict[int, float] = {}
        self.changed_since_antientropy = True
        self.full_round_at = {"handoff": 0.0, "maintenance": 0.0, "antientropy": 0.0}
        self._spawn_vnodes(ring.partitions_of(name) if partitions is None else partitions)
        self.coordinator = coordinator_at(name)
        transport.adopt(self.coordinator, host.spawn_coordinator(name, ring))
        self.unreachable: frozenset = frozenset()  # nodes cut off by Store.partition
        self._delivery: Optional[asyncio.Future] = None  # the handoff work in flight
        self._exchange: Optional[asyncio.Future] = None  # the anti-entropy work in flight
        self._maintenance: Optional[asyncio.Task] = None
        self.antientropy_rounds = {"done": 0, "paused": 0, "idle": 0, "last": {}}

    @property
    def ring(self) -> Ring:
        return self.view.ring

    def _deadline_s(self) -> float:
        return self.config.timeouts.request_ms / 1000

    def _call(self, to: Address, method: str, *args: Any,
              timeout_s: Optional[float] = None) -> asyncio.Future:
        return self.transport.call(to, method, *args, timeout_s=timeout_s or self._deadline_s())

    def _spawn_vnodes(self, partitions: list[int]) -> list[Address]:
        spawned = []
        for p in partitions:
            if p not in self.vnodes:
                self.vnodes[p] = vnode_at(self.name, p)
                self.hint_watch[p] = 1  # a restarted vnode may hold logged hints
                self.transport.adopt(self.vnodes[p], self.host.spawn_vnode(self.name, p, self.ring))
                spawned.append(self.vnodes[p])
        return spawned

    async def ready(self) -> str:
        """Returns once every vnode and the coordinator of this node answer."""
        await asyncio.gather(*(self._call(a, "ready", timeout_s=START_TIMEOUT_S)
                               for a in [*self.vnodes.values(), self.coordinator]))
        if self._maintenance is None:
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain())
        return self.name

    def describe(self) -> dict:
        return {"node": self.name, "config": self.config, "ring": self.ring,
                "ray_node": self.host.place}

    def stop(self) -> None:
        """Stop the maintenance loop (the simulator's crash; the runtime kills the actor)."""
        if self._maintenance is not None:
            self._maintenance.cancel()

    # --- maintenance loop --------------------------------------------------------------------
    async def _maintain(self) -> None:
        """Gossip every ``gossip.interval_s``, launch hinted handoff every
        ``handoff.interval_s`` and anti-entropy every ``antientropy.interval_s``, and have
        every vnode expire and compact every `MAINTENANCE_INTERVAL_S`."""
        cfg = self.config
        due = {name: self.clock.monotonic()
               for name in ("gossip", "handoff", "antientropy", "maintenance")}
        every = {"gossip": cfg.gossip.interval_s, "handoff": cfg.handoff.interval_s,
                 "antientropy": cfg.antientropy.interval_s, "maintenance": MAINTENANCE_INTERVAL_S}
        enabled = {"gossip": True, "handoff": cfg.handoff.enabled,
                   "antientropy": cfg.antientropy.enabled, "maintenance": True}
        rounds = {"gossip": self._gossip_round, "handoff": self._handoff_round,
                  "antientropy": self._antientropy_round, "maintenance": self._maintenance_round}
        while True:
            await self.clock.sleep(min(0.5, *every.values()))
            for activity, run in rounds.items():
                now = self.clock.monotonic()
                if not enabled[activity] or now < due[activity]:
                    continue
                due[activity] = now + every[activity]
                try:
                    await run()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the loop must outlive any one bad round
                    log.exception("%s round failed on %s", activity, self.name)

    def vnode_noted(self, partition: int, what: str) -> None:
        """A vnode's one-way word (`VNode._note`): it has hints, or it changed."""
        if what == "hinted":
            self.hint_watch[partition] = self.hint_watch.get(partition, 0) + 1
        else:
            self.maintenance_due[partition] = 0.0
            self.changed_since_antientropy = True

    def _full_round(self, activity: str) -> bool:
        """Whether this round of ``activity`` asks every vnode: a told word may be lost (a
        restarting node), so at least every `FULL_ROUND_S`."""
        now = self.clock.monotonic()
        if now - self.full_round_at[activity] < FULL_ROUND_S:
            return False
        self.full_round_at[activity] = now
        return True

    async def _maintenance_round(self) -> None:
        """Each vnode that changed, or has an expiry due, expires what is due and compacts
        (`VNode.maintain`); an idle vnode is asked only by the full round."""
        full = self._full_round("maintenance")
        for partition, address in list(self.vnodes.items()):
            now = self.clock.monotonic()
            if not full and self.maintenance_due.get(partition, 0.0) > now:
                continue
            self.maintenance_due[partition] = float("inf")
            try:
                done = await self._call(address, "maintain", timeout_s=60)
            except Exception:
                self.maintenance_due[partition] = 0.0
                log.exception("maintenance failed on %s", address)
                continue
            if done.get("changed"):
                self.changed_since_antientropy = True
            if done.get("hinted"):
                self.hint_watch.setdefault(partition, 1)
            if done.get("next_expiry_ms") is not None:
                wait_s = max(0.0, done["next_expiry_ms"] / 1000 - self.clock.time())
                self.maintenance_due[partition] = min(self.maintenance_due[partition],
                                                      now + wait_s)

    # --- gossip (Dynamo §4.8) ----------------------------------------------------------------
    async def _gossip_round(self) -> None:
        self.view.beat(self.clock.monotonic())
        peers = [n for n in self.ring.nodes if n != self.name and n not in self.unreachable]
        if not peers:
            return
        rng = self.transport.rng
        targets = [rng.choice(peers)]
        seeds = [s for s in (self.config.gossip.seeds or self.ring.nodes[:1]) if s in peers]
        if seeds and self.name not in seeds:
            seed = rng.choice(seeds)  # seeds keep the views from forming two rings
            if seed not in targets:
                targets.append(seed)
        ring, heartbeats = self.view.snapshot()
        for peer in targets:
            try:
                their_ring, theirs = await self._call(node_at(peer), "gossip", ring, heartbeats)
            except Exception:
                continue
            await self._merge_view(their_ring, theirs)

    async def gossip(self, ring: Ring, heartbeats: dict) -> tuple[Ring, dict]:
        """A peer's view in, ours out."""
        await self._merge_view(ring, heartbeats)
        return self.view.snapshot()

    async def _merge_view(self, ring: Ring, heartbeats: dict) -> None:
        newer = self.view.merge(ring, heartbeats, self.clock.monotonic())
        if newer is not None:
            await self._push_ring(newer)

    def view_status(self) -> dict[str, bool]:
        """Which nodes this node's gossip view holds up (fresh heartbeats)."""
        g = self.config.gossip
        return self.view.up(self.clock.monotonic(), g.interval_s * g.suspect_after)

    # --- membership changes (driven by membership.change) ----------------------------------
    async def set_ring(self, ring: Ring) -> int:
        """Adopt ``ring`` if it is newer; returns the version now held."""
        if self.view.adopt(ring):
            await self._push_ring(ring)
        return self.ring.version

    async def _push_ring(self, ring: Ring) -> None:
        """Returns once the coordinator and every vnode here hold ``ring`` (or failed): a
        membership change retires the old owners only after this, so no request is routed by
        the old ring for long. A busy actor answers late, not never: a long deadline."""
        self.changed_since_antientropy = True
        targets = [self.coordinator, *self.vnodes.values()]
        await asyncio.gather(*(self._call(t, "set_ring", ring, timeout_s=RING_PUSH_TIMEOUT_S)
                               for t in targets), return_exceptions=True)

    async def add_vnodes(self, partitions: list[int]) -> list[int]:
        """Create vnodes for partitions this node is about to own; returns when they answer."""
        await asyncio.gather(*(self._call(a, "ready", timeout_s=START_TIMEOUT_S)
                               for a in self._spawn_vnodes(partitions)))
        return sorted(self.vnodes)

    async def retire_vnodes(self, partitions: list[int]) -> None:
        """Kill the vnodes of partitions that moved away (after the final sync)."""
        for p in partitions:
            address = self.vnodes.pop(p, None)
            if address is not None:
                try:
                    await self._call(address, "destroy_storage")
                except Exception:
                    log.exception("could not delete the files of vnode %s on %s", p, self.name)
                self.host.kill(address)

    async def drop_ranges(self, partition: int, ranges: list[tuple]) -> int:
        address = self.vnodes.get(partition)
        if address is None:
            return 0
        return await self._call(address, "drop_ranges", ranges)

    async def stream_ranges(self, work: list, timeout_s: float) -> int:
        """Stream the ranges of ``work`` from this node's vnodes, as background work here."""
        return await self.transport.launch(membership.stream_ranges, work, timeout_s)

    async def catch_up_syncs(self, work: list, timeout_s: float) -> int:
        return await self.transport.launch(membership.catch_up_syncs, work, timeout_s)

    async def final_syncs(self, work: list, timeout_s: float) -> int:
        return await self.transport.launch(membership.final_syncs, work, timeout_s)

    async def handoff_now(self) -> int:
        """Deliver every hint held here, now; returns the keys handed off (a node leaving)."""
        total = 0
        for _ in range(5):
            if self._delivery is not None:
                await _quietly(self._delivery)
                self._delivery = None
            await self._handoff_round()
            if self._delivery is not None:
                total += await _quietly(self._delivery) or 0
                self._delivery = None
            pending = 0
            for address in self.vnodes.values():
                try:
                    pending += sum((await self._call(address, "hint_summary")).values())
                except Exception:
                    pass
            if not pending:
                break
        return total

    # --- hinted handoff -----------------------------------------------------------------------
    async def _handoff_round(self) -> None:
        """Launch one piece of work delivering every hint held here (unless one still runs)."""
        if self._delivery is not None and not self._delivery.done():
            return
        full = self._full_round("handoff")
        deliveries = []
        for partition, address in list(self.vnodes.items()):
            told = self.hint_watch.get(partition)
            if told is None and not full:
                continue  # it said nothing since it last had no hints
            try:
                hints = await self._call(address, "hint_summary")
            except Exception:
                continue
            if not hints and self.hint_watch.get(partition) == told:
                self.hint_watch.pop(partition, None)  # unless it told of a hint meanwhile
            for hint in hints:
                target_node = self.ring.owners[hint[2]]
                if target_node not in self.unreachable:
                    deliveries.append((address, hint, target_node))
        self._delivery = None
        if deliveries:
            self._delivery = self.transport.launch(
                handoff.deliver_all, deliveries, self.config.handoff.batch_keys, self._deadline_s())
            self._delivery.add_done_callback(_retrieve)

    # --- anti-entropy -------------------------------------------------------------------------
    async def antientropy_now(self) -> dict:
        """Run one anti-entropy round now, after the one in flight; returns its figures."""
        if self._exchange is not None:
            await _quietly(self._exchange)
            self._exchange = None
        jobs = self._antientropy_jobs()
        if not jobs:
            return {}
        return await self.transport.launch(antientropy.run_round, self.config, self.ring, jobs)

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
        if self._exchange is not None:
            if not self._exchange.done():
                return  # the previous round is still running
            if self._exchange.exception() is None:
                self.antientropy_rounds["last"] = self._exchange.result()
                self.antientropy_rounds["done"] += 1
            self._exchange = None
        if not self._full_round("antientropy") and not self.changed_since_antientropy:
            self.antientropy_rounds["idle"] += 1  # nothing here changed since the last round
            return
        try:
            p99_ms = await self._call(self.coordinator, "latency_p99_ms")
        except Exception:
            p99_ms = 0.0
        if p99_ms > self.config.antientropy.latency_goal_ms:
            self.antientropy_rounds["paused"] += 1  # foreground first
            return
        jobs = self._antientropy_jobs()
        self.changed_since_antientropy = False
        if jobs:
            self._exchange = self.transport.launch(antientropy.run_round, self.config, self.ring,
                                                   jobs)
            self._exchange.add_done_callback(_retrieve)

    def antientropy_figures(self) -> dict:
        return dict(self.antientropy_rounds)

    # --- inspection ---------------------------------------------------------------------------
    async def vnode_info(self) -> list[dict]:
        """One status row per vnode of this node; a vnode that does not answer in time is down."""
        async def one(partition: int, address: Address) -> dict:
            try:
                row = await self._call(address, "info")
                return {**row, "up": True}
            except Exception:
                return {"partition": partition, "node": self.name, "up": False}

        return list(await asyncio.gather(*(one(p, a) for p, a in self.vnodes.items())))

    async def inspect_many(self, table: str, keys: list) -> list:
        """Copies of ``keys`` held by this node's vnodes: [(key, partition, hint, blob)]."""
        async def one(partition: int, address: Address) -> list:
            try:
                copies = await self._call(address, "inspect", table, keys)
            except Exception:
                return []
            return [(key, partition, hint, blob) for key, hint, blob in copies]

        found = await asyncio.gather(*(one(p, a) for p, a in self.vnodes.items()))
        return [c for copies in found for c in copies]

    # --- fault injection ---------------------------------------------------------------------
    async def set_unreachable(self, nodes: list) -> None:
        """Cut this node off from ``nodes``. Returns once none of its calls crosses the cut:
        background work launched before it (an anti-entropy round, a hint delivery) still
        sees the old network, so it is let finish first (each of its calls has a deadline)."""
        cut_grew = bool(frozenset(nodes) - self.unreachable)
        self.unreachable = frozenset(nodes)
        self.changed_since_antientropy = True
        self.transport.set_unreachable(self.unreachable)
        await self._call(self.coordinator, "set_unreachable", list(nodes))
        running = [w for w in (self._exchange, self._delivery) if w is not None and not w.done()]
        if cut_grew and running:
            await asyncio.wait(running, timeout=STALE_WORK_WAIT_CALLS * self._deadline_s())

    async def set_faults(self, delay_ms: int = 0, clock_skew_ms: int = 0) -> None:
        await asyncio.gather(*(self._call(a, "set_faults", delay_ms, clock_skew_ms)
                               for a in self.vnodes.values()))


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


async def _quietly(future: asyncio.Future) -> Any:
    try:
        return await future
    except Exception:
        return None
