"""A cache table's memory: writing 10x its max_memory_mb, each vnode stays within the limit.

    python jobs/cache_memory.py [--limit-mb 4] [--times 10] [--value-floats 256]
    ray job submit --working-dir . -- python jobs/cache_memory.py

Two stores in one run serve the same requests: `cache` (a cache table: codec pickle, LRU past
``--limit-mb`` per vnode) and `control` (the same table with the smallest limit, 0.01 MB: its
vnodes hold almost nothing). The load writes ``--times`` x what the table may hold (numpy
arrays), reading the newest keys back as it goes. Measured as the spill bench measures (issue
6): each vnode's private resident memory (USS) against its allowance, cold + own + limit +
10 %, where "own" is what the control's vnode of the same partition gained serving the same
requests beyond what it holds (Ray's call buffers, the allocator's fragments). Prints per vnode
the growth, its own part and the rest, the keys evicted, and that the newest keys read back.
Exits 1 if a vnode is over; ``--expect-over`` (the cache configured with 3x the limit it is
judged against) is the negative control.
"""

import argparse
import sys
import time

import numpy as np
from tqdm import tqdm

import dynamo_ray as dr

parser = argparse.ArgumentParser()
parser.add_argument("--limit-mb", type=float, default=4.0, help="max_memory_mb per vnode")
parser.add_argument("--times", type=float, default=10.0, help="data written / what fits")
parser.add_argument("--value-floats", type=int, default=256, help="float32s a value")
parser.add_argument("--expect-over", action="store_true",
                    help="negative control: the cache holds 3x the limit it is judged against")
args = parser.parse_args()

NODES, PARTITIONS, N, BATCH = 3, 8, 2, 2000
value = np.arange(args.value_floats, dtype=np.float32)
entry_bytes = args.value_floats * 4 + 120 + 240  # pickle frame, state, key and entry overhead
keys_total = int(args.times * args.limit_mb * 2**20 * PARTITIONS / N / entry_bytes)
keys = [f"emb-{i:08d}" for i in range(keys_total)]


def start(name: str, limit_mb: float):
    table = {"n": N, "r": 1, "w": 1, "conflict": "lww", "codec": "pickle",
             "max_memory_mb": limit_mb, "eviction": "lru"}
    return dr.start(name=name, nodes=NODES, partitions=PARTITIONS,
                    tables={"default": {"n": N, "r": 1, "w": 1}, "cache": table},
                    timeouts={"request_ms": 10_000})


def serve(store, label: str) -> int:
    """Write every key, reading the newest batch back after each write; returns the newest
    keys that did not read back."""
    t = store.table("cache")
    missing = 0
    for start in tqdm(range(0, keys_total, BATCH), desc=f"writing {label}", unit="batch"):
        batch = keys[start:start + BATCH]
        t.put_many({k: value for k in batch})
        got = t.get_many(batch[-200:])
        missing += sum(1 for g in got.values() if not g.exists)
    return missing


def at_rest(store):
    """USS, cache bytes and evictions per partition after the next maintenance round (every
    5 s, which hands freed heap pages back)."""
    time.sleep(6)
    return store.status().set_index("partition")


control = start("cache-control", 0.01)
try:
    cold_control = at_rest(control)["uss_bytes"]
    serve(control, "control")
    rest = at_rest(control)
    own = (rest["uss_bytes"] - cold_control - rest["cache_bytes"]).clip(lower=0)
finally:
    control.stop()

cache = start("cache-bench", args.limit_mb * (3 if args.expect_over else 1))
try:
    cold = at_rest(cache)["uss_bytes"]
    missing = serve(cache, "cache")
    frame = at_rest(cache)
finally:
    cache.stop()

limit_bytes = args.limit_mb * 2**20
allowance = cold + own + limit_bytes * 1.1
over = frame[frame["uss_bytes"] > allowance]
print(f"\nCache table memory: {keys_total:,} keys of {args.value_floats} float32 written "
      f"({args.times:g}x what fits), {NODES} nodes, {PARTITIONS} vnodes, N={N}; limit "
      f"{args.limit_mb} MB a vnode")
print(f"  keys evicted                {int(frame['evicted'].sum()):10,d}")
print(f"  newest keys not read back   {missing:10d}   (goal 0)")
print(f"  private resident memory (USS) a vnode, MB: growth over its USS before loading, the "
      f"actor's own part (measured on the control), the rest (allowance: limit + 10 % = "
      f"{args.limit_mb * 1.1:.2f})")
for p, row in frame.iterrows():
    growth = (row["uss_bytes"] - cold[p]) / 2**20
    print(f"    vnode {p}: cold {cold[p] / 2**20:6.1f} + growth {growth:5.1f}  (own "
          f"{own[p] / 2**20:4.1f}, the rest {growth - own[p] / 2**20:5.2f}; accounted "
          f"{row['cache_bytes'] / 2**20:4.2f}){'  OVER' if p in over.index else ''}")
failures = []
if missing:
    failures.append("newest keys not read back")
if args.expect_over and not len(over):
    failures.append("negative control: vnodes holding 3x the limit passed the memory check")
elif len(over) and not args.expect_over:
    failures.append(f"{len(over)} vnodes over their memory allowance")
print("goals: " + ("all met" if not failures else "MISSED: " + "; ".join(failures)))
sys.exit(1 if failures else 0)
