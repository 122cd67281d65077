"""The systems the benchmark runs, each with the same calls: put, get, put_many, get_many and,
for the concurrent rows, the coroutines aput and aget.

Role (`bench.py` measures them): `DynamoSystem` (a table of a running store, one routing),
`ReplicatedSystem` (`ray-replicated`, the fair peer: Q dict actors, N copies, one round
waiting for W or R answers, batched per actor), `RayActorSystem` (a dict in one actor) and
`RedisSystem` (a `redis-server` this module starts on 127.0.0.1 and stops).

Must not: leave an actor or a server running after `close()`, or wait without a timeout.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Callable, Optional

import mmh3
import ray

BASELINE = "ray-replicated"  # the system the speed goals are ratios to
INFLIGHT = 16  # calls in flight in the concurrent rows (and Redis's async connections)
TIMEOUT_S = 10.0  # every wait of ray-replicated for its answers
START_TIMEOUT_S = 120.0  # for its Q actors to start (worker processes, on 2 cores)


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


class ReplicatedSystem:
    """The replicated store a Ray user writes in an afternoon: Q actors each holding a dict, every
    key copied to N of them (partitions p, p+1, ..., p+N-1 mod Q of its stable hash), blind
    writes in one round, waiting for W (or R) answers. No versions, no repair, no hints."""

    name, routing = BASELINE, "-"

    def __init__(self, partitions: int, n: int, r: int, w: int, timeout_s: float = TIMEOUT_S):
        self.q, self.n, self.r, self.w, self.timeout_s = partitions, n, r, w, timeout_s
        actor = ray.remote(DictActor).options(num_cpus=0)
        self.actors = [actor.remote() for _ in range(partitions)]
        # partition p lives on actors p .. p+N-1, so actor a holds partitions a-N+1 .. a
        self.replicas = [[(p + i) % partitions for i in range(n)] for p in range(partitions)]
        self.holds = [[(a - i) % partitions for i in range(n)] for a in range(partitions)]
        try:
            ray.get([a.get.remote("warm") for a in self.actors], timeout=START_TIMEOUT_S)
        except Exception:
            self.close()
            raise

    def partition(self, key: str) -> int:
        return mmh3.hash(key, signed=False) % self.q

    def _short(self, got: int, need: int) -> TimeoutError:
        return TimeoutError(f"{self.name}: {got} of {need} answers within {self.timeout_s} s")

    def _quorum(self, refs: list, need: int) -> list:
        ready, _ = ray.wait(refs, num_returns=need, timeout=self.timeout_s)
        if len(ready) < need:
            raise self._short(len(ready), need)
        return ray.get(ready, timeout=self.timeout_s)  # an answer that is an error raises

    def put(self, k, v):
        self._quorum([self.actors[a].put.remote(k, v) for a in self.replicas[self.partition(k)]],
                     self.w)

    def get(self, k):
        return self._quorum([self.actors[a].get.remote(k)
                             for a in self.replicas[self.partition(k)]], self.r)[0]

    def _group(self, keys) -> tuple[dict, dict]:
        """({partition: its keys}, {actor: the keys of every partition it holds})."""
        by_partition: dict = {}
        for k in keys:
            by_partition.setdefault(self.partition(k), []).append(k)
        by_actor: dict = {}
        for p, ks in by_partition.items():
            for a in self.replicas[p]:
                by_actor.setdefault(a, []).extend(ks)
        return by_partition, by_actor

    def _batch_quorum(self, calls: dict, partitions, need: int,
                      on_answer: Optional[Callable] = None) -> None:
        """Wait until every partition of ``partitions`` has ``need`` answers among ``calls``
        ({ref: actor}; an actor's answer covers every key of the partitions it holds, so this is
        every key having ``need`` answers), handing each answer to ``on_answer(actor, answer)``."""
        short = dict.fromkeys(partitions, need)
        pending = list(calls)
        deadline = time.monotonic() + self.timeout_s
        while short:
            ready, pending = ray.wait(pending, num_returns=1,
                                      timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                raise self._short(len(calls) - len(pending), len(calls))
            if pending:  # the answers already in, in the same pass
                more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                ready += more
            for ref, answer in zip(ready, ray.get(ready, timeout=self.timeout_s)):
                actor = calls[ref]
                if on_answer is not None:
                    on_answer(actor, answer)
                for p in self.holds[actor]:
                    if p in short:
                        short[p] -= 1
                        if not short[p]:
                            del short[p]

    def put_many(self, items):
        by_partition, by_actor = self._group(items)
        calls = {self.actors[a].put_many.remote({k: items[k] for k in ks}): a
                 for a, ks in by_actor.items()}  # one call per actor
        self._batch_quorum(calls, by_partition, self.w)

    def get_many(self, keys):
        by_partition, by_actor = self._group(keys)
        calls = {self.actors[a].get_many.remote(ks): a for a, ks in by_actor.items()}
        found: dict = {}

        def take(actor, values):
            for k, v in zip(by_actor[actor], values):
                found.setdefault(k, v)

        self._batch_quorum(calls, by_partition, self.r, take)
        return [found[k] for k in keys]

    async def _aquorum(self, refs: list, need: int) -> list:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        pending = {asyncio.wrap_future(ref.future()) for ref in refs}
        answers: list = []
        while len(answers) < need:
            done, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise self._short(len(answers), need)
            answers += [f.result() for f in done]  # an answer that is an error raises
        for f in pending:  # answers past the quorum are dropped, their errors too
            f.add_done_callback(_drop)
        return answers

    async def aput(self, k, v):
        await self._aquorum([self.actors[a].put.remote(k, v)
                             for a in self.replicas[self.partition(k)]], self.w)

    async def aget(self, k):
        return (await self._aquorum([self.actors[a].get.remote(k)
                                     for a in self.replicas[self.partition(k)]], self.r))[0]

    def close(self):
        for a in self.actors:
            ray.kill(a)


def _drop(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class DynamoSystem:
    def __init__(self, store, routing: str, table: str = "default", name: str = "dynamo",
                 combos: Optional[list] = None):
        self.name, self.routing = name, routing
        self.combos = combos  # (distribution, value bytes) it runs; None: every combo of the plan
        self.table = store.table(table, routing=routing)
        self.atable = store.async_table(table, routing=routing)

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
