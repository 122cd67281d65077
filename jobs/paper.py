"""The Dynamo paper, reproduced on this store: Table 2, Figure 8 and §6.3, beside the paper.

    python jobs/paper.py [--out out/] [--ops 2000] [--quick]
    ray job submit --working-dir . -- python jobs/paper.py

- Table 2 (§6.4): client-driven against server-driven coordination, mean and p99.9 latency of
  reads and writes. Here: routing "client" (the caller runs the state machine and calls the
  vnodes) against routing "coordinator" (a request goes to a node's coordinator first).
- Figure 8 (§6.2): load-balancing efficiency of partitioning strategies 1, 2 and 3 against the
  membership metadata a node keeps (computed exactly, no store; see jobs/paper_figure8.py),
  plotted to ``figure8.png``.
- §6.3: the share of reads that see 1, 2, 3 and 4 versions while 8 writers update 1,000 carts
  concurrently (read-modify-write with the read's context, as a shopping cart does; two
  writers meet on one cart only by chance, as customers do).
The store: 4 nodes, Q=16, N=3, R=2, W=2, on this machine's Ray (127.0.0.1).
"""

import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dynamo_ray as dr  # noqa: E402
import paper_figure8  # noqa: E402

PAPER_TABLE2 = {  # DeCandia et al. 2007, Table 2 (ms)
    "coordinator": {"read_p999": 68.9, "write_p999": 68.5, "read_mean": 3.9, "write_mean": 4.02},
    "client": {"read_p999": 30.4, "write_p999": 30.4, "read_mean": 1.55, "write_mean": 1.9},
}
PAPER_VERSIONS = {1: 99.94, 2: 0.00057, 3: 0.00047, 4: 0.00009}  # §6.3, percent of requests


def p999(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.999 * len(ordered)))]


def table2(store, ops: int) -> dict:
    keys = [f"t2-{i}" for i in range(1000)]
    store.table().put_many({k: "v" * 100 for k in keys})
    out = {}
    for routing in ("coordinator", "client"):
        t = store.table(routing=routing)
        reads, writes = [], []
        rng = random.Random(2)
        for _ in range(ops):
            k = rng.choice(keys)
            t0 = time.perf_counter()
            got = t.get(k)
            reads.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            t.put(k, "w" * 100, context=got.context)
            writes.append((time.perf_counter() - t0) * 1000)
        out[routing] = {"read_p999": p999(reads), "write_p999": p999(writes),
                        "read_mean": statistics.mean(reads), "write_mean": statistics.mean(writes)}
    print("\nTable 2: client-driven vs server-driven coordination (ms)")
    print(f"{'':24s}{'read p99.9':>12s}{'write p99.9':>13s}{'read mean':>11s}{'write mean':>12s}"
          f"    paper: read p99.9, write p99.9, read mean, write mean")
    for routing, label in (("coordinator", "server-driven (coord.)"), ("client", "client-driven")):
        m, p = out[routing], PAPER_TABLE2[routing]
        print(f"{label:24s}{m['read_p999']:12.2f}{m['write_p999']:13.2f}{m['read_mean']:11.2f}"
              f"{m['write_mean']:12.2f}    {p['read_p999']}, {p['write_p999']}, {p['read_mean']}, "
              f"{p['write_mean']}")
    gain = out["coordinator"]["read_mean"] / out["client"]["read_mean"]
    print(f"client-driven reads are {gain:.2f}x faster on average here (paper: "
          f"{PAPER_TABLE2['coordinator']['read_mean'] / PAPER_TABLE2['client']['read_mean']:.2f}x)")
    return out


def versions_seen(store, writers: int, seconds: float, keys_count: int) -> Counter:
    """Writers do read-modify-write cycles on shared keys; every read's version count is
    recorded (siblings: concurrent writes that no context has merged yet)."""
    t = store.table("carts")
    keys = [f"cart-{i}" for i in range(keys_count)]
    t.put_many({k: [] for k in keys})
    seen: Counter = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def writer(i):
        rng = random.Random(i)
        counts: Counter = Counter()
        while time.monotonic() < stop:
            k = rng.choice(keys)  # customers' carts: writers meet on one only by chance
            got = t.get(k)
            counts[max(1, len(got.values))] += 1
            merged = dr.merges.union(got.values) + [f"item-{i}-{rng.randrange(10**6)}"]
            t.put(k, merged[-20:], context=got.context)
        with lock:
            seen.update(counts)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = sum(seen.values())
    print(f"\n§6.3: versions seen per read, {writers} concurrent writers on {keys_count} carts, "
          f"{total:,} reads")
    print(f"{'versions':>9s}{'here %':>12s}{'paper %':>12s}")
    for v in (1, 2, 3, 4):
        print(f"{v:9d}{100 * seen.get(v, 0) / total:12.4f}{PAPER_VERSIONS[v]:12.5f}")
    more = sum(c for v, c in seen.items() if v > 4)
    if more:
        print(f"{'>4':>9s}{100 * more / total:12.4f}")
    return seen


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="out")
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    ops = 300 if args.quick else args.ops

    print("Figure 8: load-balancing efficiency against membership metadata (exact, S=30, N=3)")
    paper_figure8.main(["--out", args.out] + (["--seeds", "5"] if args.quick else []))

    store = dr.start(name="paper", nodes=4, partitions=16,
                     tables={"default": {"n": 3, "r": 2, "w": 2}, "carts": {"n": 3, "r": 2, "w": 2}})
    try:
        table2(store, ops)
        versions_seen(store, writers=8, seconds=10 if args.quick else 60, keys_count=1000)
    finally:
        store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
