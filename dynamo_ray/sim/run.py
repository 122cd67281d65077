"""One seed of the simulation, end to end; many seeds; the report.

Role: `run_seed` builds a simulated store (4 or 5 nodes, Q=8, every table durable, N=3 R=2
W=2: carts, strict registers, a kv table for deletes), runs three clients and the nemesis for
``duration_s`` of simulated time, heals everything, then checks, in this order:
1. quiescence (hints delivered, no anti-entropy): `checkers.n_copies`;
2. anti-entropy rounds until the replicas agree: `checkers.merkle_converged`;
3. final reads at R = N: the set checker (0 lost, 0 unexpected), deleted keys stay deleted,
   the register checker, the sibling bound, `checkers.no_dot_reused`;
4. every node restarted at once (memory gone, unsynced bytes gone), then reads at the
   tables' own R with no repair first: every acknowledged add reads back, deletes stay.
The run is a pure function of (seed, faults, switches, conflict policy): `SeedResult.digest`
(a hash of the history and the fault trace) is equal whenever they are.

Must not: import Ray, or read a real clock or random source inside the simulation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import traceback
from dataclasses import dataclass, field

from .. import config as config_mod
from ..protocol.router import Router
from ..protocol.switches import NONE, Switches
from .history import History, check_register, check_set, check_siblings
from . import checkers
from .cluster import SimCluster
from .loop import SimLoop
from .nemesis import FAULTS, Nemesis
from .workload import CARTS, KV, REGISTERS, Client

CLIENTS = 3
CART_KEYS = [f"cart-{i}" for i in range(6)]
REQUEST_MS = 200


def sim_config(conflict: str = "siblings", nodes: int = 5):
    table = {"n": 3, "r": 2, "w": 2}
    return config_mod.load(None, name="sim", nodes=nodes, partitions=8, tables={
        CARTS: {**table, "conflict": conflict, "durable": True},
        REGISTERS: {**table, "strict": True, "durable": True},
        KV: {**table, "durable": True},
    }, timeouts={"request_ms": REQUEST_MS}, handoff={"interval_s": 0.5, "batch_keys": 50},
        antientropy={"enabled": False, "fanout": 4, "depth": 2, "tombstone_grace_s": 1.0},
        gossip={"interval_s": 1.0}, failure_detection={"backoff_ms": 100, "max_backoff_ms": 1600},
        storage={"spill_dir": "/sim", "wal_checkpoint_mb": 0.05})


@dataclass
class SeedResult:
    seed: int
    ops: int = 0
    faults: list = field(default_factory=list)
    violations: list = field(default_factory=list)
    trace: list = field(default_factory=list)
    digest: str = ""
    messages: int = 0
    simulated_s: float = 0.0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations


async def _quiesce(cluster, clients: list, limit_s: float = 60.0) -> None:
    """Until every router's background work ended and no hint is pending anywhere."""
    for client in clients:
        await client.router.settle()
    deadline = cluster.clock.monotonic() + limit_s
    while cluster.clock.monotonic() < deadline:
        pending = sum(len(s) for v in cluster.vnodes().values() for s in v.hinted.values())
        if not pending:
            return
        await cluster.clock.sleep(0.5)


async def _read_all(cluster, keys: list, table: str, r=None) -> dict:
    """States of ``keys`` read by a fresh client-side router at ``r`` (default: the table's)."""
    router = Router(cluster.config, cluster.ring, cluster.admin)
    for attempt in range(10):
        try:
            return dict(zip(keys, await router.get_many(table, keys, r)))
        except Exception:
            await cluster.clock.sleep(1.0)
    return dict(zip(keys, await router.get_many(table, keys, r)))


async def _scenario(result: SeedResult, loop: SimLoop, faults: tuple, switches: Switches,
                    conflict: str, duration_s: float) -> None:
    rng = random.Random(result.seed)
    nodes = rng.choice([4, 5])  # four: every fallback is precious
    cluster = SimCluster(loop, random.Random(rng.getrandbits(64)), sim_config(conflict, nodes),
                         switches)
    clock = cluster.clock
    await cluster.start()
    history = History(now=clock.monotonic)
    clients = [Client(i, cluster, history, random.Random(rng.getrandbits(64)),
                      rng.choice(["client", "coordinator"]), CART_KEYS) for i in range(CLIENTS)]
    nemesis = Nemesis(cluster, history, random.Random(rng.getrandbits(64)), CLIENTS, faults)
    end_s = clock.monotonic() + duration_s
    await asyncio.gather(*(c.run_until(end_s, think_s=0.05) for c in clients),
                         nemesis.run_until(end_s, mean_gap_s=2.0, hold_s=(0.5, 3.0)))
    await nemesis.heal_all()
    await _quiesce(cluster, clients)
    v = result.violations
    background_s = 12 * REQUEST_MS / 1000
    v += checkers.n_copies(cluster, history, clients, background_s)

    for _ in range(8):  # anti-entropy until the replicas agree
        for node in list(cluster.nodes.values()):
            await node.antientropy_now()
        if not checkers.merkle_converged(cluster):
            break
    v += checkers.merkle_converged(cluster)

    n = cluster.config.tables[CARTS].n
    carts = await _read_all(cluster, CART_KEYS, CARTS, n)
    from .workload import values_of
    final = {k: {x for s in values_of(b) for x in s} for k, b in carts.items()}
    outcome = check_set(history, final)
    v += [f"set: lost {x}" for x in outcome.lost] + [f"set: unexpected {x}"
                                                      for x in outcome.unexpected]
    deleted = [k for c in clients for k in c.deleted]
    v += checkers.deleted_stay_deleted(await _read_all(cluster, deleted, KV, n))
    registers = check_register(history, [k for c in clients for k in c.registers], repair_s=5.0)
    v += [f"register: stale read {s}" for s in registers.stale]
    register_keys = [k for c in clients for k in c.registers]
    for keys in (CART_KEYS, register_keys):  # a register has one writer: one sibling
        siblings = check_siblings(history, keys, repair_s=5.0)
        v += [f"siblings: {s}" for s in siblings.too_many + siblings.unresolved]
    v += checkers.no_dot_reused(cluster, clients)

    for node in cluster.running():  # every node at once: only what was fsynced survives
        cluster.crash(node)
    for node in cluster.ring.nodes:
        await cluster.restart(node)
    v += checkers.reads_back(clients, await _read_all(cluster, CART_KEYS, CARTS),
                             "after a full restart")
    v += checkers.deleted_stay_deleted(await _read_all(cluster, deleted, KV))

    result.ops = sum(c.ops for c in clients)
    result.faults = nemesis.done
    result.trace = nemesis.trace
    result.messages = cluster.network.messages
    result.simulated_s = clock.monotonic()
    ops = [(o.index, o.process, o.type, o.f, o.key, o.value, round(o.time_s, 9), o.error)
           for o in history.ops]
    record = json.dumps([ops, nemesis.trace, v], default=str)
    result.digest = hashlib.sha256(record.encode()).hexdigest()[:16]


def run_seed(seed: int, faults: tuple = FAULTS, switches: Switches = NONE,
             conflict: str = "siblings", duration_s: float = 10.0) -> SeedResult:
    """Run one seed in a fresh simulated world; never raises for what the store does (an
    exception escaping the protocol is a violation too)."""
    result = SeedResult(seed)
    started = time.perf_counter()
    loop = SimLoop()
    try:
        loop.run_until_complete(_scenario(result, loop, faults, switches, conflict, duration_s))
    except Exception as e:  # a bug the simulation found: report it as the seed's failure
        where = traceback.extract_tb(e.__traceback__)[-1]
        result.violations.append(f"exception: {type(e).__name__}: {e} (at {where.filename}:"
                                 f"{where.lineno})")
    finally:
        _close(loop)
    result.wall_s = time.perf_counter() - started
    return result


def _close(loop: SimLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


# --- many seeds -----------------------------------------------------------------------------------
SWITCHES = {  # the negative controls, by their command-line names
    "stop-at-w": Switches(stop_at_w=True),
    "log-at-coordinator-only": Switches(log_at_coordinator_only=True),
    "reuse-ids-after-restart": Switches(reuse_ids_after_restart=True),
    "prune-without-age-floor": Switches(prune_without_age_floor=True),
}
CHAOS_OPS_PER_MINUTE = 46_951 / 5  # the chaos job's 5-minute run on real Ray (README)


def _one(args: tuple) -> SeedResult:
    import logging

    logging.disable(logging.CRITICAL)  # a simulated crash logs like a real one: not here
    seed, faults, switches, conflict, duration_s = args
    return run_seed(seed, faults, switches, conflict, duration_s)


def run_many(seeds, faults: tuple = FAULTS, switches: Switches = NONE,
             conflict: str = "siblings", duration_s: float = 10.0, workers: int = 1,
             progress=None):
    """Yield a `SeedResult` for every seed, in seed order, on ``workers`` processes."""
    jobs = [(seed, faults, switches, conflict, duration_s) for seed in seeds]
    if workers <= 1:
        for job in jobs:
            yield _one(job)
        return
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_one, jobs, chunksize=4)


def replay_command(seed: int, faults: tuple, switch: str, conflict: str) -> str:
    parts = ["dynamo-ray simulate", f"--seed {seed}"]
    if tuple(faults) != FAULTS:
        parts.append(f"--faults {','.join(faults)}")
    if switch:
        parts.append(f"--break {switch}")
    if conflict != "siblings":
        parts.append(f"--conflict {conflict}")
    return " ".join(parts)
