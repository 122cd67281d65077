"""Chaos: clients record a history while a nemesis cycles faults; checkers judge it (Jepsen-style).

    python jobs/chaos.py --minutes 5                 # N=3 R=2 W=2, siblings + union: 0 lost
    python jobs/chaos.py --minutes 5 --conflict lww  # last-write-wins: the set checker finds losses
    python jobs/chaos.py --minutes 5 --cluster       # also removes and re-adds whole Ray nodes

Workloads (threads, each a "process" of the history):
- set: adds of unique elements to 5 shopping carts, read-modify-write with the read's context
  and a union merge, each process through its home node's coordinator (so adds land on both
  sides of a partition) but one, which coordinates in this process (routing "client");
  checked by `testing.check_set` on a final read after healing;
- register: single-writer integer registers on a strict table (R + W > N), read by others
  (one of them with routing "client");
  checked by `testing.check_register` (no stale read);
- siblings: three writers share two keys on a strict table and resolve now and then;
  checked by `testing.check_siblings`.
The nemesis cycles: a node crash and recovery, partitions into random halves, one node
isolated, a slow node (200 ms a request), clock skew on a node (versions stamped minutes off),
and with --cluster a Ray node removed and a new one added. Bounded in time and operations.
Prints a table and writes chaos.json into --out. Exits 1 when a checker fails (or, with
--expect-loss, when the set checker finds nothing lost: the negative control).
"""

import argparse
import json
import os
import random
import sys
import threading
import time
import uuid

import dynamo_ray as dr
from dynamo_ray.runtime import placement
from dynamo_ray.core import merges
from dynamo_ray.sim.history import History, check_register, check_set, check_siblings


def _outcome(error: Exception, write: bool) -> str:
    """Jepsen's classes: a definite failure, or unknown (a write that may have been stored)."""
    if isinstance(error, dr.Unavailable) and write:
        return "info"
    return "fail"


class Clients:
    def __init__(self, store, history: History, stop: threading.Event, seed: int, max_ops: int):
        self.store, self.history, self.stop = store, history, stop
        self.rng = random.Random(seed)
        self.max_ops = max_ops
        self.ops = 0
        self.threads: list[threading.Thread] = []
        self.registers: dict[str, int] = {}
        self.carts = [f"cart-{i}" for i in range(5)]
        self.nodes = store.nodes()

    def _running(self) -> bool:
        self.ops += 1
        return not self.stop.is_set() and self.ops < self.max_ops

    def _home(self, process: int, tries: int) -> str:
        return self.nodes[(process + tries) % len(self.nodes)]

    def _route(self, process: int, tries: int, routing: str) -> dict:
        """Through the process's home coordinator, or coordinated in this process."""
        if routing == "client":
            return {"routing": "client"}
        return {"via": self._home(process, tries)}

    def spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    # --- set: the shopping cart -----------------------------------------------------------------
    def adder(self, process: int, table_name: str = "cart", routing: str = "coordinator") -> None:
        rng = random.Random(process)
        tries = 0
        carts = [f"{table_name}:{c}" for c in self.carts]
        while self._running():
            cart = rng.choice(carts)
            element = f"p{process}-{uuid.uuid4().hex[:8]}"
            op = self.history.invoke(process, "add", cart, element)
            try:
                table = self.store.table(table_name, merge=merges.union,
                                         **self._route(process, tries, routing))
                got = table.get(cart)
                table.put(cart, (got.value or []) + [element], context=got.context)
                self.history.complete(op, "ok")
            except dr.DynamoError as e:
                self.history.complete(op, _outcome(e, True), error=type(e).__name__)
                tries += 1  # try another node's coordinator next time
                time.sleep(0.05)

    # --- register: single writer, many readers ----------------------------------------------------
    def writer(self, process: int, keys: list) -> None:
        contexts: dict = {}
        values = {k: 0 for k in keys}
        tries = 0
        while self._running():
            key = random.choice(keys)
            values[key] += 1
            op = self.history.invoke(process, "write", key, values[key])
            try:
                t = self.store.table("register", via=self._home(process, tries))
                contexts[key] = t.put(key, values[key], context=contexts.get(key))
                self.history.complete(op, "ok")
            except dr.DynamoError as e:
                self.history.complete(op, _outcome(e, True), error=type(e).__name__)
                tries += 1
                time.sleep(0.05)

    def reader(self, process: int, keys: list, routing: str = "coordinator") -> None:
        tries = 0
        while self._running():
            key = random.choice(keys)
            op = self.history.invoke(process, "read", key)
            try:
                got = self.store.table("register", **self._route(process, tries, routing)).get(key)
                self.history.complete(op, "ok", value=got.values)
            except dr.DynamoError as e:
                self.history.complete(op, "fail", error=type(e).__name__)
                tries += 1
                time.sleep(0.05)

    # --- siblings: shared keys, resolved now and then ---------------------------------------------
    def sharer(self, process: int, keys: list) -> None:
        rng = random.Random(process)
        n = 0
        while self._running():
            key = rng.choice(keys)
            n += 1
            t = self.store.table("sib", via=self._home(process, n))
            read = self.history.invoke(process, "read", key)
            try:
                got = t.get(key)
                self.history.complete(read, "ok", value=max(1, len(got.values)))
            except dr.DynamoError as e:
                self.history.complete(read, "fail", error=type(e).__name__)
                continue
            kind = "resolve" if n % 5 == 0 else "write"
            op = self.history.invoke(process, kind, key, f"{process}-{n}")
            try:
                t.put(key, f"{process}-{n}", context=got.context)
                self.history.complete(op, "ok")
            except dr.DynamoError as e:
                self.history.complete(op, _outcome(e, True), error=type(e).__name__)
                continue
            if kind == "resolve":
                check = self.history.invoke(process, "read", key)
                try:
                    self.history.complete(check, "ok", value=max(1, len(t.get(key).values)))
                except dr.DynamoError as e:
                    self.history.complete(check, "fail", error=type(e).__name__)


class Nemesis:
    """Cycles faults, one at a time, each held for ``hold_s``; logs what it did."""

    def __init__(self, store, history: History, stop: threading.Event, hold_s: float, seed: int,
                 cluster=None):
        self.store, self.history, self.stop, self.hold_s = store, history, stop, hold_s
        self.rng = random.Random(seed)
        self.cluster = cluster
        self.log: list = []
        self.nodes = store.nodes()

    def _hold(self) -> None:
        self.stop.wait(self.hold_s)

    def crash(self) -> None:
        node = self.rng.choice(self.nodes)
        self.store.fail_node(node)
        self._hold()
        self.store.recover_node(node)
        return f"crashed and recovered {node}"

    def halves(self) -> None:
        nodes = self.nodes[:]
        self.rng.shuffle(nodes)
        half = len(nodes) // 2
        self.store.partition(nodes[:half], nodes[half:])
        self._hold()
        self.store.heal()
        return f"partitioned {sorted(nodes[:half])} | {sorted(nodes[half:])}"

    def isolate(self) -> None:
        node = self.rng.choice(self.nodes)
        self.store.partition([node])
        self._hold()
        self.store.heal()
        return f"isolated {node}"

    def slow(self) -> None:
        node = self.rng.choice(self.nodes)
        self.store.slow_node(node, 200)
        self._hold()
        self.store.slow_node(node, 0)
        return f"slowed {node} by 200 ms"

    def skew(self) -> None:
        node = self.rng.choice(self.nodes)
        skew_ms = self.rng.choice([-1, 1]) * self.rng.randint(60_000, 600_000)
        self.store.slow_node(node, 0, clock_skew_ms=skew_ms)
        self._hold()
        self.store.slow_node(node, 0, clock_skew_ms=0)
        return f"skewed {node}'s clock by {skew_ms / 1000:+.0f} s"

    def machine(self) -> None:
        import ray

        node = self.rng.choice(self.nodes[1:])  # not the head's
        handle = placement.lookup(placement.node_actor_name(self.store.name, node))
        ray_node = ray.get(handle.describe.remote())["ray_node"]
        victim = next(n for n in self.cluster.list_all_nodes() if n.node_id == ray_node)
        self.cluster.remove_node(victim)
        self._hold()
        self.cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        self.cluster.wait_for_nodes()
        self.store.recover_node(node)
        return f"removed the Ray node of {node}, added one, recovered {node} on it"

    def run(self) -> None:
        faults = [self.crash, self.halves, self.isolate, self.slow, self.skew]
        if self.cluster is not None:
            faults.append(self.machine)
        while not self.stop.is_set():
            fault = faults[len(self.log) % len(faults)]
            op = self.history.invoke(-1, "fault", fault.__name__)
            try:
                what = fault()
                self.history.complete(op, "ok", value=what)
            except Exception as e:  # the nemesis must not stop the run
                what = f"{fault.__name__} failed: {e!r}"
                self.history.complete(op, "fail", value=what)
            self.log.append({"at_s": round(op.time_s, 1), "fault": what})
            self.stop.wait(self.hold_s / 2)


def settle(store) -> None:
    """Heal every fault and let the repairs run: hints delivered, anti-entropy twice."""
    store.heal()
    for node in store.nodes():
        try:
            store.slow_node(node, 0)
        except dr.DynamoError:
            pass
    for node in store.nodes():  # a crash the nemesis did not get to recover
        if placement.lookup(placement.node_actor_name(store.name, node)) is None:
            store.recover_node(node)
    deadline = time.monotonic() + 60
    while store.status()["hints_pending"].sum() and time.monotonic() < deadline:
        time.sleep(0.5)
    store.run_antientropy()
    store.run_antientropy()


def run(store, seconds: float, *, seed: int = 7, hold_s: float = 4.0, max_ops: int = 200_000,
        cluster=None, control: bool = False, say=print) -> dict:
    """Run the workloads and the nemesis for ``seconds``, heal, check. ``control``: also run
    the set workload on table "cart_lww" (last-write-wins), the checker's negative control."""
    history = History()
    stop = threading.Event()
    clients = Clients(store, history, stop, seed, max_ops)
    registers = [f"reg-{i}" for i in range(6)]
    for process in range(4):
        clients.spawn(clients.adder, process)
    clients.spawn(clients.adder, 4, "cart", "client")  # the Router in this process, too
    if control:
        for process in (30, 31):
            clients.spawn(clients.adder, process, "cart_lww")
    clients.spawn(clients.writer, 10, registers[:3])
    clients.spawn(clients.writer, 11, registers[3:])
    clients.spawn(clients.reader, 12, registers)
    clients.spawn(clients.reader, 13, registers)
    clients.spawn(clients.reader, 14, registers, "client")
    for process in (20, 21, 22):
        clients.spawn(clients.sharer, process, ["shared-0", "shared-1"])
    nemesis = Nemesis(store, history, stop, hold_s, seed, cluster)
    nemesis_thread = threading.Thread(target=nemesis.run, daemon=True)
    nemesis_thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in clients.threads:
        thread.join(timeout=60)
    nemesis_thread.join(timeout=120)
    settle(store)
    repair_s = 2 * store.config.antientropy.interval_s + hold_s  # a replica back empty refills
    def final_read(table_name):
        carts = [f"{table_name}:{c}" for c in clients.carts]
        return {cart: [e for sibling in g.values for e in (sibling or [])]
                for cart, g in store.table(table_name).get_many(carts, r=3).items()}

    def adds_to(table_name):
        picked = History()
        picked.ops = [op for op in history.ops if op.f != "add" or
                      str(op.key).startswith(table_name + ":")]
        return picked

    result = {
        "seconds": seconds,
        "operations": len(history.pairs()),
        "faults": nemesis.log,
        "set": check_set(adds_to("cart"), final_read("cart")),
        "register": check_register(history, registers, repair_s),
        "siblings": check_siblings(history, ["shared-0", "shared-1"], repair_s),
    }
    counts = {t: sum(1 for i, d in history.pairs() if d is not None and d.type == t)
              for t in ("ok", "fail", "info")}
    result["outcomes"] = counts
    if control:
        result["set_lww_control"] = check_set(adds_to("cart_lww"), final_read("cart_lww"))
    s, r, sib = result["set"], result["register"], result["siblings"]
    say(f"\nchaos: {seconds:.0f} s, {result['operations']:,} operations "
        f"(ok {counts['ok']:,}, fail {counts['fail']:,}, info {counts['info']:,}), "
        f"{len(nemesis.log)} faults")
    say(f"  {'checker':10s} {'result':8s} details")
    say(f"  {'set':10s} {'valid' if s.valid else 'INVALID':8s} attempted {s.attempted}, "
        f"acknowledged {s.acknowledged}, lost {len(s.lost)}, unexpected {len(s.unexpected)}, "
        f"recovered {len(s.recovered)}")
    say(f"  {'register':10s} {'valid' if r.valid else 'INVALID':8s} reads {r.reads}, "
        f"stale {len(r.stale)} (reads across a crash, not judged: {r.skipped})")
    say(f"  {'siblings':10s} {'valid' if sib.valid else 'INVALID':8s} reads {sib.reads}, "
        f"max siblings {sib.max_siblings}, over the bound {len(sib.too_many)}; resolves "
        f"checked {sib.resolves_checked}, not resolved {len(sib.unresolved)} (across a crash, "
        f"not judged: {sib.resolves_skipped})")
    if control:
        c = result["set_lww_control"]
        say(f"  {'set (lww)':10s} {'valid' if c.valid else 'INVALID':8s} the negative control: "
            f"acknowledged {c.acknowledged}, lost {len(c.lost)}, unexpected {len(c.unexpected)}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--conflict", choices=["siblings", "lww"], default="siblings")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--hold", type=float, default=4.0, help="seconds each fault lasts")
    parser.add_argument("--cluster", action="store_true",
                        help="run on a ray.cluster_utils.Cluster and remove whole Ray nodes")
    parser.add_argument("--expect-loss", action="store_true",
                        help="negative control: exit 1 unless the set checker finds losses")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()

    cluster = None
    if args.cluster:
        import ray
        from ray.cluster_utils import Cluster

        from dynamo_ray.runtime.localray import keep_ray_on_loopback

        keep_ray_on_loopback()
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
        for _ in range(args.nodes - 1):
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="warning", log_to_driver=False)
    tables = {
        "cart": {"n": 3, "r": 2, "w": 2, "conflict": args.conflict},
        "cart_lww": {"n": 3, "r": 2, "w": 2, "conflict": "lww"},
        "register": {"n": 3, "r": 2, "w": 2, "strict": True},
        "sib": {"n": 3, "r": 2, "w": 2, "strict": True},
    }
    store = dr.start({"nodes": args.nodes, "partitions": 16, "tables": tables,
                      "placement": "spread" if args.cluster else "local"},
                     name=f"chaos-{uuid.uuid4().hex[:6]}", handoff={"interval_s": 0.5},
                     antientropy={"interval_s": 5.0}, timeouts={"request_ms": 1500},
                     failure_detection={"backoff_ms": 200, "max_backoff_ms": 2000})
    try:
        result = run(store, args.minutes * 60, hold_s=args.hold, cluster=cluster)
    finally:
        store.stop()
        if cluster is not None:
            import ray

            ray.shutdown()
            cluster.shutdown()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"chaos-{args.conflict}.json")
    with open(path, "w") as f:
        json.dump({k: (v.__dict__ if hasattr(v, "__dict__") else v) for k, v in result.items()},
                  f, indent=2, default=str)
    print(f"  wrote {path}")
    checks_ok = result["register"].valid and result["siblings"].valid
    if args.expect_loss:
        return 0 if result["set"].lost else 1
    return 0 if checks_ok and result["set"].valid else 1


if __name__ == "__main__":
    sys.exit(main())
