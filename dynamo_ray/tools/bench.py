"""The benchmark: dynamo beside what a Ray user would pick instead, in one run.

Role (DESIGN §8; `dynamo-ray bench`, `jobs/bench.py`): measure single-key sync calls, batches of
1,000 and 16 concurrent single-key calls, for uniform and zipfian keys and 100 B and 1 KiB
values, on three systems started here on 127.0.0.1: `dynamo` (routing coordinator and client),
`ray-actor` (one actor holding a dict: one hop, no replication) and `redis` (redis-py against a
`redis-server` this module starts and stops; skipped with a note when there is none). Latency is
recorded per operation (per batch for batches) and reported as p50/p99/p99.9; throughput in keys
per second. Ratios against the goals of issue 7 are computed from the same run.

Must not: leave a server or Ray running, or listen beyond loopback.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import ray

BATCH = 1000
INFLIGHT = 16


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

    def __init__(self, space: int, distribution: str, seed: int = 1):
        self.names = [f"user{i:08d}" for i in range(space)]
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


# --- systems -------------------------------------------------------------------------------------
class DictActor:
    """The baseline a Ray user writes: a dict in one actor."""

    def __init__(self):
        self.data: dict = {}

    def put(self, key, value):
        self.data[key] = value

    def get(self, key):
        return self.data.get(key)

    def put_many(self, items: dict):
        self.data.update(items)

    def get_many(self, keys: list):
        data = self.data
        return [data.get(k) for k in keys]

    def memory_bytes(self) -> int:
        import psutil

        return psutil.Process().memory_full_info().uss


class RayActorSystem:
    name, routing = "ray-actor", "-"

    def __init__(self):
        self.actor = ray.remote(DictActor).options(num_cpus=0).remote()
        ray.get(self.actor.get.remote("warm"))

    def put(self, k, v):
        ray.get(self.actor.put.remote(k, v))

    def get(self, k):
        return ray.get(self.actor.get.remote(k))

    def put_many(self, items):
        ray.get(self.actor.put_many.remote(items))

    def get_many(self, keys):
        return ray.get(self.actor.get_many.remote(keys))

    async def aput(self, k, v):
        await self.actor.put.remote(k, v)

    async def aget(self, k):
        return await self.actor.get.remote(k)

    def close(self):
        ray.kill(self.actor)


class DynamoSystem:
    name = "dynamo"

    def __init__(self, store, routing: str):
        self.routing = routing
        self.table = store.table("default", routing=routing)
        self.atable = store.async_table("default", routing=routing)

    def put(self, k, v):
        self.table.put(k, v)

    def get(self, k):
        return self.table.get(k)

    def put_many(self, items):
        self.table.put_many(items)

    def get_many(self, keys):
        return self.table.get_many(keys)

    async def aput(self, k, v):
        await self.atable.put(k, v)

    async def aget(self, k):
        return await self.atable.get(k)

    def close(self):
        pass


class RedisSystem:
    name, routing = "redis", "-"

    def __init__(self):
        import redis

        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="dynamo-bench-redis-")
        self.server = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        import redis.asyncio as aioredis

        self._aio = {}
        self._aioredis = aioredis

    def put(self, k, v):
        self.client.set(k, v)

    def get(self, k):
        return self.client.get(k)

    def put_many(self, items):
        self.client.mset(items)

    def get_many(self, keys):
        return self.client.mget(keys)

    def _aclient(self):
        loop = asyncio.get_running_loop()
        if id(loop) not in self._aio:
            self._aio[id(loop)] = self._aioredis.Redis(host="127.0.0.1", port=self.port,
                                                       max_connections=INFLIGHT)
        return self._aio[id(loop)]

    async def aput(self, k, v):
        await self._aclient().set(k, v)

    async def aget(self, k):
        return await self._aclient().get(k)

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def close(self):
        self.server.terminate()
        self.server.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_available() -> bool:
    try:
        import redis  # noqa: F401
    except ImportError:
        return False
    return shutil.which("redis-server") is not None


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
        chunk = keys.many(BATCH)
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


def run_matrix(systems: list, plan: dict, say: Callable = print, progress=None) -> list[Row]:
    """Every system through every (distribution, value size) combination of ``plan``."""
    rows = []
    combos = plan["combos"]
    total = len(systems) * len(combos)
    bar = progress(total, "bench", "config") if progress else None
    for system in systems:
        for dist, value_bytes in combos:
            keys = Keys(plan["keyspace"], dist)
            value = os.urandom(value_bytes)
            preload(system, keys, value)
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
    "smoke": {"keyspace": 1000, "single": 20, "batches": 2, "concurrent": 64,
              "combos": [("uniform", 100)]},
}


# --- goals ---------------------------------------------------------------------------------------
def goals(rows: list[Row], memory: Optional[dict] = None) -> list[tuple[str, float, float, bool]]:
    """(goal, measured ratio, target, met) for the configuration the goals name: uniform keys,
    100 B values."""
    def rate(system, routing, op, batch, concurrency):
        for r in rows:
            if (r.system, r.op, r.batch, r.concurrency, r.value_bytes, r.keys) == (
                    system, op, batch, concurrency, 100, "uniform") and r.routing in routing:
                return r
        return None

    out = []

    def ratio(label, a, b, target):
        if a is not None and b is not None and b.ops_per_s:
            value = a.ops_per_s / b.ops_per_s
            out.append((label, round(value, 2), target, value >= target))

    for op, vs_actor, vs_redis in (("put", 0.33, 2.0), ("get", 0.5, 1.0)):
        best = max((rate("dynamo", (r,), op, BATCH, 1) for r in ("client", "coordinator")),
                   key=lambda r: r.ops_per_s if r else 0)
        ratio(f"batched {op} vs ray-actor", best, rate("ray-actor", ("-",), op, BATCH, 1), vs_actor)
        ratio(f"batched {op} vs redis", best, rate("redis", ("-",), op, BATCH, 1), vs_redis)
    for op in ("put", "get"):
        actor = rate("ray-actor", ("-",), op, 1, 1)
        ratio(f"single {op}, routing client vs ray-actor", rate("dynamo", ("client",), op, 1, 1),
              actor, 0.5)
        ratio(f"single {op}, routing coordinator vs ray-actor",
              rate("dynamo", ("coordinator",), op, 1, 1), actor, 0.33)
        for routing in ("client", "coordinator"):
            ratio(f"16 concurrent {op} vs single sync ({routing})",
                  rate("dynamo", (routing,), op, 1, INFLIGHT), rate("dynamo", (routing,), op, 1, 1), 3.0)
            single_row = rate("dynamo", (routing,), op, 1, 1)
            if single_row:
                tail = single_row.p999_ms / single_row.p50_ms
                out.append((f"single {op} p99.9 / p50 ({routing})", round(tail, 2), 5.0, tail <= 5.0))
    if memory and memory.get("redis_bytes_per_key"):
        value = memory["dynamo_bytes_per_key_replica"] / memory["redis_bytes_per_key"]
        out.append(("bytes per key replica vs redis (lower is better)", round(value, 2), 2.0,
                    value <= 2.0))
    return out


def format_goals(results: list) -> str:
    lines = ["goal                                                    ratio   target  result"]
    for label, value, target, met in results:
        sign = "<=" if "lower is better" in label or "p99.9" in label else ">="
        lines.append(f"{label:54s} {value:6.2f}  {sign}{target:<5}  {'met' if met else 'MISSED'}")
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
            label = _label(asdict(r)) + (f", {r.concurrency} in flight" if r.concurrency > 1 else "")
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
        say(f"  {nodes} nodes, {nodes} clients: {rate:10.0f} keys/s, efficiency {row['efficiency']:.2f}")
        results.append(row)
    return results


def run(mode: str = "quick", out_dir: str = "bench-out", memory: bool = False,
        scale: bool = False, say: Callable = print) -> dict:
    """The whole benchmark: start Ray (loopback) if needed, run the matrix on every system,
    write results.json and the plots, print the table and the goals."""
    import dynamo_ray as dr

    from ..runtime.localray import start_local_ray
    from ..client.progress import bar

    started_ray = not ray.is_initialized()
    if started_ray:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], logging_level="warning", log_to_driver=False)
        else:
            start_local_ray()
    plan = PLANS[mode]
    extra: dict = {"mode": mode, "machine": machine()}
    store = None
    systems: list = []
    try:
        store = dr.start(name="bench", nodes=4, partitions=16,
                         tables={"default": {"n": 3, "r": 2, "w": 2}},
                         antientropy={"interval_s": 60.0}, timeouts={"request_ms": 10000})
        systems = [DynamoSystem(store, "coordinator"), DynamoSystem(store, "client"),
                   RayActorSystem()]
        if redis_available():
            systems.append(RedisSystem())
        else:
            extra["redis"] = "skipped: redis-server or redis-py is not installed"
            say("note: redis skipped (redis-server or the redis package is missing)")
        rows = run_matrix(systems, plan, say, progress=bar)
    finally:
        for system in systems:
            system.close()
        if store is not None:
            store.stop()
    if memory:
        say("memory: loading 200,000 keys of 100 B into each system ...")
        extra["memory"] = memory_figure(say=say)
    if scale:
        say("scaling: 1, 2, 4, 8 nodes, as many client tasks ...")
        extra["scale"] = scale_figure(say=say)
    results = goals(rows, extra.get("memory"))
    extra["goals"] = [dict(goal=g, ratio=v, target=t, met=m) for g, v, t, m in results]
    paths = write_outputs(rows, out_dir, extra)
    say(format_table(rows))
    if "memory" in extra:
        say(f"\nmemory: {extra['memory']}")
    say("\n" + format_goals(results))
    say(f"\nwrote {', '.join(paths.values())}")
    if started_ray:
        ray.shutdown()
    return {"rows": rows, **extra, "paths": paths}


def machine() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "ray": ray.__version__, "platform": platform.platform()}
