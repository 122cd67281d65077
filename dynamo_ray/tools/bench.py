"""The benchmark: dynamo beside what a Ray user would pick instead, in one run.

Role (DESIGN §8; `dynamo-ray bench`, `jobs/bench.py`): measure single-key sync calls, batches of
1,000 keys and 16 concurrent single-key calls, for uniform and zipfian keys and 100 B and 1 KiB
values, on these systems (`bench_systems.py`), all started here on 127.0.0.1:
- `dynamo`, routing coordinator and routing client: a store of 4 nodes, Q = 16 (4 in the smoke
  run), N = 3, R = 2, W = 2;
- `dynamo-durable`: the same store's durable table (each write logged and fsynced before the
  ack), routing client, uniform keys and 100 B values only: what `durable: true` costs;
- `ray-replicated`, the baseline of the goals: the one a Ray user writes in an afternoon. Q
  actors each holding a dict, every key copied to N of them, blind writes in one round, waiting
  for W (or R) answers; no versions, no repair, no hints (Q, N, R, W read from the store);
- `ray-actor`: one actor holding a dict (one hop, no replication);
- `redis`: redis-py against a `redis-server` this module starts and stops (skipped with a note
  when there is none).
Each system and combination has a keyspace of its own, preloaded once; batched puts write keys
never written before, so no system pays for sibling growth; gets read the preloaded keys.
Latency is recorded per operation (per batch for batches) and reported as p50/p99/p99.9;
throughput in keys per second. The goals (issue 16) are ratios to `ray-replicated` from the
same run; the ratios to `ray-actor` and `redis` print as information.
`--memory` adds bytes per key replica beside Redis, `--scale` throughput over 1 to 8 nodes, and
`--footprint` the start time, memory and idle CPU of `dr.start()` over a bare Ray
(`footprint.py`, measured while this process has no Ray up).

Must not: leave a server, an actor, a directory or Ray running or behind, or listen beyond
loopback.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import ray

from .bench_systems import (BASELINE, INFLIGHT, DynamoSystem, RayActorSystem, RedisSystem,
                            ReplicatedSystem, redis_available)

BATCH = 1000
WARMUP = 20  # single puts and gets of each system before each combination's measured ones
ROUTINGS = ("client", "coordinator")
_FRESH = itertools.count()  # names of keys no system has seen, unique in this process


@dataclass
class Row:
    system: str
    routing: str
    op: str
    batch: int
    concurrency: int
    value_bytes: int
    keys: str
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    samples: int


def percentile(sorted_ms: list, q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


class Keys:
    """Key choice over a keyspace: uniform, or zipfian (s = 0.99, as YCSB)."""

    def __init__(self, space: int, distribution: str, seed: int = 1, prefix: str = "user"):
        width = max(1, 12 - len(prefix))  # every name 12 characters, as a fresh one
        self.names = [f"{prefix}{i:0{width}d}" for i in range(space)]
        self.rng = random.Random(seed)
        self.distribution = distribution
        if distribution == "zipfian":
            weights = [1.0 / (i + 1) ** 0.99 for i in range(space)]
            total, acc, cdf = sum(weights), 0.0, []
            for w in weights:
                acc += w
                cdf.append(acc / total)
            self.cdf = cdf
            self.rng.shuffle(self.names)  # hot keys spread over the ring, not one partition

    def one(self) -> str:
        if self.distribution == "uniform":
            return self.names[self.rng.randrange(len(self.names))]
        return self.names[min(bisect.bisect_left(self.cdf, self.rng.random()), len(self.names) - 1)]

    def many(self, n: int) -> list:
        return list(dict.fromkeys(self.one() for _ in range(n)))

    @staticmethod
    def fresh(n: int) -> list:
        """``n`` keys never written before (in this process), as long as the keyspace's."""
        return [f"fresh{next(_FRESH):07d}" for _ in range(n)]


# --- measurements --------------------------------------------------------------------------------
def _row(system, op, batch, concurrency, value_bytes, dist, seconds, keys_done, lat_ms) -> Row:
    lat = sorted(lat_ms)
    row = Row(system.name, system.routing, op, batch, concurrency, value_bytes, dist,
              round(keys_done / seconds, 1), round(percentile(lat, 0.5), 3),
              round(percentile(lat, 0.99), 3), round(percentile(lat, 0.999), 3), len(lat))
    row.latencies_ms = lat  # for the CDF plot; not a field, so not in results.json
    return row


def single(system, op: str, keys: Keys, value: bytes, n: int, dist: str) -> Row:
    call = system.put if op == "put" else system.get
    lat = []
    started = time.perf_counter()
    for _ in range(n):
        key = keys.one()
        t0 = time.perf_counter()
        call(key, value) if op == "put" else call(key)
        lat.append((time.perf_counter() - t0) * 1000)
    return _row(system, op, 1, 1, len(value), dist, time.perf_counter() - started, n, lat)


def batched(system, op: str, keys: Keys, value: bytes, batches: int, dist: str) -> Row:
    lat, done = [], 0
    started = time.perf_counter()
    for _ in range(batches):
        # puts go to fresh keys: a write of a key the store has is a sibling more (siblings table)
        chunk = keys.fresh(BATCH) if op == "put" else keys.many(BATCH)
        t0 = time.perf_counter()
        if op == "put":
            system.put_many({k: value for k in chunk})
        else:
            system.get_many(chunk)
        lat.append((time.perf_counter() - t0) * 1000)
        done += len(chunk)
    return _row(system, op, BATCH, 1, len(value), dist, time.perf_counter() - started, done, lat)


def concurrent(system, op: str, keys: Keys, value: bytes, n: int, dist: str) -> Row:
    lat: list = []

    async def worker(count):
        call = system.aput if op == "put" else system.aget
        for _ in range(count):
            key = keys.one()
            t0 = time.perf_counter()
            await (call(key, value) if op == "put" else call(key))
            lat.append((time.perf_counter() - t0) * 1000)

    async def main():
        await asyncio.gather(*(worker(n // INFLIGHT) for _ in range(INFLIGHT)))

    started = time.perf_counter()
    asyncio.run(main())
    return _row(system, op, 1, INFLIGHT, len(value), dist, time.perf_counter() - started,
                len(lat), lat)


def preload(system, keys: Keys, value: bytes) -> None:
    for start in range(0, len(keys.names), BATCH):
        system.put_many({k: value for k in keys.names[start:start + BATCH]})


def warm(system, keys: Keys, value: bytes, n: int = WARMUP) -> None:
    """A few single-key calls before the measured ones (puts to fresh keys: no siblings)."""
    for key in Keys.fresh(n):
        system.put(key, value)
    for _ in range(n):
        system.get(keys.one())


def run_matrix(systems: list, plan: dict, say: Callable = print, progress=None) -> list[Row]:
    """Every system through every (distribution, value size) combination of ``plan``."""
    rows = []

    def combos(system) -> list:
        only = getattr(system, "combos", None)
        return [c for c in plan["combos"] if only is None or c in only]

    total = sum(len(combos(s)) for s in systems)
    bar = progress(total, "bench", "config") if progress else None
    for si, system in enumerate(systems):
        for ci, (dist, value_bytes) in enumerate(combos(system)):
            # a keyspace of its own for each system and combination, written once: a blind write
            # of a key the store has is one sibling more (two dynamo systems share a table)
            keys = Keys(plan["keyspace"], dist, prefix=f"s{si}c{ci}-")
            value = os.urandom(value_bytes)
            preload(system, keys, value)
            warm(system, keys, value)
            for op in ("put", "get"):
                rows.append(single(system, op, keys, value, plan["single"], dist))
                rows.append(batched(system, op, keys, value, plan["batches"], dist))
                rows.append(concurrent(system, op, keys, value, plan["concurrent"], dist))
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return rows


PLANS = {
    "quick": {"keyspace": 10_000, "single": 300, "batches": 8, "concurrent": 960,
              "combos": [("uniform", 100), ("zipfian", 100), ("uniform", 1024)]},
    "full": {"keyspace": 100_000, "single": 2000, "batches": 30, "concurrent": 4000,
             "combos": [("uniform", 100), ("zipfian", 100), ("uniform", 1024), ("zipfian", 1024)]},
    # the suite's run: Q = 4, so a quarter of the vnodes and of ray-replicated's actors to start
    "smoke": {"keyspace": 1000, "single": 20, "batches": 2, "concurrent": 64,
              "combos": [("uniform", 100)], "partitions": 4},
}


# --- goals ---------------------------------------------------------------------------------------
# keys/s of dynamo over ray-replicated, uniform keys, 100 B values: {(kind, op): {routing: goal}}
GOALS = {("batched", "get"): {"client": 0.9, "coordinator": 0.7},
         ("batched", "put"): {"client": 0.5, "coordinator": 0.45},
         ("single", "get"): {"client": 0.9, "coordinator": 0.6},
         ("single", "put"): {"client": 0.45, "coordinator": 0.35}}
CONCURRENT_GOAL = 3.0  # 16 concurrent single-key calls over single sync ones, keys/s
TAIL_GOAL = 5.0  # p99.9 / p50 of every single-key row of dynamo
MEMORY_GOAL = 2.0  # bytes per key replica over Redis's bytes per key


def _finder(rows: list[Row]) -> Callable:
    """find(system, routing, op, batch, concurrency): the row of uniform keys and 100 B values."""
    index = {(r.system, r.routing, r.op, r.batch, r.concurrency): r for r in rows
             if (r.keys, r.value_bytes) == ("uniform", 100)}
    return lambda *key: index.get(key)


def _speed(a: Optional[Row], b: Optional[Row]) -> Optional[float]:
    if a is None or b is None or not b.ops_per_s:
        return None
    return a.ops_per_s / b.ops_per_s


def goals(rows: list[Row], memory: Optional[dict] = None) -> list[tuple[str, float, float, bool]]:
    """(goal, measured ratio, target, met) for the configuration the goals name: uniform keys,
    100 B values; a goal whose rows did not run is left out."""
    find = _finder(rows)
    out = []
    for (kind, op), targets in GOALS.items():
        batch = BATCH if kind == "batched" else 1
        for routing in ROUTINGS:
            value = _speed(find("dynamo", routing, op, batch, 1), find(BASELINE, "-", op, batch, 1))
            if value is not None:
                out.append((f"{kind} {op}, routing {routing} vs {BASELINE}", round(value, 2),
                            targets[routing], value >= targets[routing]))
    for op in ("put", "get"):
        for routing in ROUTINGS:
            value = _speed(find("dynamo", routing, op, 1, INFLIGHT),
                           find("dynamo", routing, op, 1, 1))
            if value is not None:
                out.append((f"{INFLIGHT} concurrent {op} vs single sync ({routing})",
                             round(value, 2), CONCURRENT_GOAL, value >= CONCURRENT_GOAL))
    for op in ("put", "get"):
        for routing in ROUTINGS:
            for concurrency, what in ((1, "single"), (INFLIGHT, f"{INFLIGHT} concurrent")):
                row = find("dynamo", routing, op, 1, concurrency)
                if row is not None and row.p50_ms:
                    tail = row.p999_ms / row.p50_ms
                    out.append((f"{what} {op} p99.9 / p50 ({routing})", round(tail, 2), TAIL_GOAL,
                                tail <= TAIL_GOAL))
    if memory and memory.get("redis_bytes_per_key"):
        value = memory["dynamo_bytes_per_key_replica"] / memory["redis_bytes_per_key"]
        out.append(("bytes per key replica vs redis (lower is better)", round(value, 2),
                    MEMORY_GOAL, value <= MEMORY_GOAL))
    return out


def _lower_is_better(label: str) -> bool:
    return "lower is better" in label or "p99.9" in label or label.startswith("footprint ")


def format_goals(results: list) -> str:
    lines = [f"{'goal':54s} {'value':>7s}  {'target':7s}  result"]
    for label, value, target, met in results:
        sign = "<=" if _lower_is_better(label) else ">="
        lines.append(f"{label:54s} {value:7.2f}  {sign + str(target):7s}  "
                     f"{'met' if met else 'MISSED'}")
    return "\n".join(lines)


def versus(rows: list[Row]) -> list[dict]:
    """Information beside the goals: dynamo's single and batched rows over ray-actor and redis
    (keys/s ratios), and the durable table's rows over the same rows of dynamo (routing
    client)."""
    find = _finder(rows)
    out = []
    for kind, batch in (("single", 1), ("batched", BATCH)):
        for op in ("get", "put"):
            for routing in ROUTINGS:
                row = find("dynamo", routing, op, batch, 1)
                if row is None:
                    continue
                out.append({"row": f"{kind} {op}, routing {routing}",
                            **{f"vs {other}": _round(_speed(row, find(other, "-", op, batch, 1)))
                               for other in ("ray-actor", "redis")}})
    for kind, batch, concurrency in (("single", 1, 1), ("batched", BATCH, 1),
                                     (f"{INFLIGHT} concurrent", 1, INFLIGHT)):
        for op in ("get", "put"):
            value = _speed(find("dynamo-durable", "client", op, batch, concurrency),
                           find("dynamo", "client", op, batch, concurrency))
            if value is not None:
                out.append({"row": f"durable {kind} {op}, routing client", "vs dynamo":
                            _round(value)})
    return out


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 2)


def format_versus(comparisons: list) -> str:
    def cell(value):
        return f"{value:10.2f}" if value is not None else f"{'-':>10s}"

    lines = ["dynamo beside ray-actor and redis (keys/s ratios; information, not goals)",
             f"{'':42s} {'vs ray-actor':>12s} {'vs redis':>10s}"]
    for c in comparisons:
        if "vs ray-actor" in c:
            lines.append(f"{c['row']:42s} {cell(c['vs ray-actor']):>12s} {cell(c['vs redis'])}")
    durable = [c for c in comparisons if "vs dynamo" in c]
    if durable:
        lines.append("what durable: true costs (dynamo-durable over dynamo, keys/s)")
        lines += [f"{c['row']:42s} {cell(c['vs dynamo']):>12s}" for c in durable]
    return "\n".join(lines)


# --- outputs -------------------------------------------------------------------------------------
def write_outputs(rows: list[Row], out_dir: str, extra: dict) -> dict:
    import pandas as pd

    os.makedirs(out_dir, exist_ok=True)
    frame = pd.DataFrame([asdict(r) for r in rows])
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        # numpy scalars (ratios, goal flags) as plain numbers
        json.dump({"rows": [asdict(r) for r in rows], **extra}, f, indent=2,
                  default=lambda o: o.item() if hasattr(o, "item") else str(o))
    paths = {"json": os.path.join(out_dir, "results.json")}
    if not frame.empty:
        paths["throughput"] = _plot_throughput(frame, os.path.join(out_dir, "throughput.png"))
        paths["latency"] = _plot_latency(rows, os.path.join(out_dir, "latency_cdf.png"))
    return paths


def _label(r) -> str:
    return r["system"] + (f" ({r['routing']})" if r["routing"] != "-" else "")


def _plot_throughput(frame, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = frame[(frame["keys"] == "uniform") & (frame["value_bytes"] == 100)].copy()
    base["who"] = base.apply(_label, axis=1)
    base["workload"] = base.apply(
        lambda r: f"{r['op']} " + ("x1000" if r["batch"] > 1 else
                                  (f"{r['concurrency']} in flight" if r["concurrency"] > 1
                                   else "sync")), axis=1)
    table = base.pivot_table(index="workload", columns="who", values="ops_per_s")
    ax = table.plot.bar(figsize=(11, 5.5), logy=True, rot=0)
    ax.set_ylabel("keys / s (log)")
    ax.set_title("Throughput, uniform keys, 100 B values (one run, same machine)")
    ax.grid(axis="y", alpha=0.3)
    plt.tight_layout()
    plt.savefig(path, dpi=110)
    plt.close()
    return path


def _plot_latency(rows: list[Row], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, op in zip(axes, ("get", "put")):
        for r in rows:
            if (r.op, r.batch, r.keys, r.value_bytes) != (op, 1, "uniform", 100):
                continue
            lat = getattr(r, "latencies_ms", None)
            if not lat:
                continue
            ys = [(i + 1) / len(lat) for i in range(len(lat))]
            label = _label(asdict(r)) + (f", {r.concurrency} in flight" if r.concurrency > 1
                                         else "")
            ax.plot(lat, ys, label=label, linestyle="-" if r.concurrency == 1 else "--")
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log)")
        ax.set_title(f"single-key {op}, uniform keys, 100 B")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of requests")
    axes[1].legend(fontsize=8, loc="lower right")
    plt.tight_layout()
    plt.savefig(path, dpi=110)
    plt.close()
    return path


def format_table(rows: list[Row]) -> str:
    import pandas as pd

    frame = pd.DataFrame([asdict(r) for r in rows])
    if frame.empty:
        return "(no rows)"
    frame = frame.drop(columns=["samples"])
    return frame.to_string(index=False)


# --- figures beyond the matrix -------------------------------------------------------------------
def memory_figure(keys: int = 200_000, value_bytes: int = 100, say: Callable = print) -> dict:
    """Bytes a key replica costs in dynamo (vnode private memory growth / (keys x N)), beside
    Redis (used_memory growth / keys) and a dict in one actor (its growth / keys)."""
    import dynamo_ray as dr

    value = os.urandom(value_bytes)
    names = [f"user{i:08d}" for i in range(keys)]
    out: dict = {"keys": keys, "value_bytes": value_bytes}
    store = dr.start(name="bench-memory", nodes=4, partitions=16,
                     tables={"default": {"n": 3, "r": 2, "w": 2}},
                     antientropy={"interval_s": 3600.0}, timeouts={"request_ms": 10000})
    try:
        n = store.config.tables["default"].n
        before = store.status()["uss_bytes"].sum()
        t = store.table()
        for start in range(0, keys, 2000):
            t.put_many({k: value for k in names[start:start + 2000]})
        after = store.status()["uss_bytes"].sum()
        out["dynamo_bytes_per_key_replica"] = round((after - before) / (keys * n), 1)
    finally:
        store.stop()
    actor = RayActorSystem()
    try:
        before = ray.get(actor.actor.memory_bytes.remote())
        for start in range(0, keys, 2000):
            actor.put_many({k: value for k in names[start:start + 2000]})
        out["ray_actor_bytes_per_key"] = round(
            (ray.get(actor.actor.memory_bytes.remote()) - before) / keys, 1)
    finally:
        actor.close()
    if redis_available():
        redis = RedisSystem()
        try:
            before = redis.used_memory()
            for start in range(0, keys, 2000):
                redis.put_many({k: value for k in names[start:start + 2000]})
            out["redis_bytes_per_key"] = round((redis.used_memory() - before) / keys, 1)
        finally:
            redis.close()
    return out


def _scale_client(store, seconds: float, seed: int) -> int:
    t = store.table()
    rng = random.Random(seed)
    value = os.urandom(100)
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        keys = [f"s{seed}-{rng.randrange(1_000_000)}" for _ in range(BATCH)]
        t.put_many({k: value for k in keys})
        t.get_many(keys)
        done += 2 * BATCH
    return done


def scale_figure(node_counts=(1, 2, 4, 8), seconds: float = 10.0, say: Callable = print) -> list:
    """Throughput of batched put+get with as many client tasks as nodes, and the efficiency
    against perfect scaling from one node. Meaningful only with a core per node and client."""
    import dynamo_ray as dr

    remote_client = ray.remote(_scale_client).options(num_cpus=0)
    results, single = [], None
    for nodes in node_counts:
        n = min(3, nodes)
        store = dr.start(name=f"bench-scale-{nodes}", nodes=nodes, partitions=max(16, nodes * 2),
                         tables={"default": {"n": n, "r": min(2, n), "w": min(2, n)}},
                         antientropy={"interval_s": 3600.0}, timeouts={"request_ms": 10000})
        try:
            done = ray.get([remote_client.remote(store, seconds, i) for i in range(nodes)])
            rate = sum(done) / seconds
        finally:
            store.stop()
        single = single or rate
        row = {"nodes": nodes, "clients": nodes, "keys_per_s": round(rate, 1),
               "efficiency": round(rate / (nodes * single), 2)}
        say(f"  {nodes} nodes, {nodes} clients: {rate:10.0f} keys/s, "
            f"efficiency {row['efficiency']:.2f}")
        results.append(row)
    return results


def run(mode: str = "quick", out_dir: str = "bench-out", memory: bool = False,
        scale: bool = False, say: Callable = print, footprint: bool = False,
        matrix: bool = True) -> dict:
    """The whole benchmark: start Ray (loopback) if needed, run the matrix on every system (unless
    ``matrix`` is false), the figures asked for, write results.json and the plots, print the
    table and the goals. ``footprint`` runs last, once this process has shut its Ray down."""
    from . import footprint as footprint_mod

    plan = PLANS[mode]
    extra: dict = {"mode": mode if matrix else None, "machine": machine()}
    rows: list[Row] = []
    started_ray = False
    try:
        if (matrix or memory or scale) and not ray.is_initialized():
            _start_ray()
            started_ray = True
        if matrix:
            rows = _run_systems(plan, extra, say)
        if memory:
            say("memory: loading 200,000 keys of 100 B into each system ...")
            extra["memory"] = memory_figure(say=say)
        if scale:
            say("scaling: 1, 2, 4, 8 nodes, as many client tasks ...")
            extra["scale"] = scale_figure(say=say)
    finally:
        if started_ray:
            ray.shutdown()
    if rows:
        say(format_table(rows))
    if "memory" in extra:
        say(f"\nmemory: {extra['memory']}")
    results = goals(rows, extra.get("memory"))
    extra["goals"] = [dict(goal=g, ratio=v, target=t, met=m) for g, v, t, m in results]
    failure = None
    if footprint:
        if ray.is_initialized():
            say("note: this process has a Ray up (not started here); the footprint's own Rays "
                "run beside it")
        say("")
        try:
            measured = footprint_mod.run(say=say)
        except Exception as e:  # the matrix's results are still written
            failure = e
            extra["footprint"] = {"error": str(e)}
            say(f"footprint failed: {e}")
        else:
            results += measured["goals"]
            extra["footprint"] = {**measured, "goals": [dict(goal=g, ratio=v, target=t, met=m)
                                                        for g, v, t, m in measured["goals"]]}
    extra["versus"] = versus(rows)
    paths = write_outputs(rows, out_dir, extra)
    if rows:
        say("\n" + format_versus(extra["versus"]))
    say("\n" + format_goals(results))
    say(f"\nwrote {', '.join(paths.values())}")
    if failure is not None:
        raise failure
    return {"rows": rows, **extra, "paths": paths}


def _start_ray() -> None:
    from ..runtime.localray import start_local_ray

    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], logging_level="warning", log_to_driver=False)
    else:
        start_local_ray()


def _run_systems(plan: dict, extra: dict, say: Callable) -> list[Row]:
    """The store (its default and durable tables), the baselines beside it, the matrix; every
    system, the store and the write-ahead log's directory are gone on return."""
    import dynamo_ray as dr

    from ..client.progress import bar

    wal_dir = tempfile.mkdtemp(prefix="dynamo-bench-wal-")
    store = None
    systems: list = []
    try:
        store = dr.start(name="bench", nodes=4, partitions=plan.get("partitions", 16),
                         tables={"default": {"n": 3, "r": 2, "w": 2},
                                 "durable": {"n": 3, "r": 2, "w": 2, "durable": True}},
                         storage={"spill_dir": wal_dir},
                         antientropy={"interval_s": 60.0}, timeouts={"request_ms": 10000})
        table = store.config.tables["default"]
        systems = [DynamoSystem(store, "coordinator"), DynamoSystem(store, "client"),
                   DynamoSystem(store, "client", table="durable", name="dynamo-durable",
                                combos=[("uniform", 100)])]
        systems.append(ReplicatedSystem(store.config.partitions, table.n, table.r, table.w))
        systems.append(RayActorSystem())
        if redis_available():
            systems.append(RedisSystem())
        else:
            extra["redis"] = "skipped: redis-server or redis-py is not installed"
            say("note: redis skipped (redis-server or the redis package is missing)")
        return run_matrix(systems, plan, say, progress=bar)
    finally:
        try:
            for system in systems:
                try:
                    system.close()
                except Exception as e:  # the others are still closed
                    say(f"note: closing {system.name} failed: {e}")
            if store is not None:
                store.stop()
        finally:
            shutil.rmtree(wal_dir, ignore_errors=True)


def machine() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "ray": ray.__version__, "platform": platform.platform()}
