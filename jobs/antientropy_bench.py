"""Anti-entropy efficiency: two replicas of 100,000 keys that differ in 100 keys converge by
moving about those 100 keys and a small fraction of a full (key, version) listing.

    python jobs/antientropy_bench.py [--keys 100000] [--differ 100] [--depth 4]
    ray job submit --working-dir . -- python jobs/antientropy_bench.py

Two nodes, two partitions, one table with N=2: each node's vnode holds both ranges, so the
two replicas of every key are the two nodes. node-2 is cut off while 100 keys change on node-1
(half rewritten, a quarter deleted, a quarter new), then one anti-entropy round runs from
node-1. Prints the figures beside the goals: keys transferred <= 2 x differing + one leaf
bucket's worth; tree bytes <= 5 % of a full listing of (key, version) pairs.
"""

import argparse
import time

from tqdm import tqdm

import dynamo_ray as dr
from dynamo_ray.core.merkle import NODE_HASH_BYTES

parser = argparse.ArgumentParser()
parser.add_argument("--keys", type=int, default=100_000)
parser.add_argument("--differ", type=int, default=100)
parser.add_argument("--fanout", type=int, default=16)
parser.add_argument("--depth", type=int, default=4)
args = parser.parse_args()

config = {
    "nodes": 2, "partitions": 2, "read_repair": False, "handoff": {"enabled": False},
    "tables": {"bench": {"n": 2, "r": 1, "w": 2}},
    "antientropy": {"interval_s": 3600.0, "fanout": args.fanout, "depth": args.depth},
}
store = dr.start(config, name="antientropy-bench")
try:
    t = store.table("bench")
    keys = [f"bench-{i:07d}" for i in range(args.keys)]
    batch = 5000
    for start in tqdm(range(0, len(keys), batch), desc="loading both replicas", unit="batch"):
        t.put_many({k: {"i": i, "pad": "x" * 64} for i, k in enumerate(keys[start:start + batch],
                                                                      start)})
    store.run_antientropy(["node-1"])  # settle: the replicas start identical

    store.partition(["node-2"])
    side = store.table("bench", via="node-1")
    rewritten = keys[: args.differ // 2]
    deleted = keys[args.differ // 2: args.differ // 2 + args.differ // 4]
    added = [f"new-{i:07d}" for i in range(args.differ - len(rewritten) - len(deleted))]
    for k in rewritten:
        side.put(k, {"changed": True}, context=side.get(k, r=1).context, w=1, sloppy=False)
    for k in deleted:
        side.delete(k, context=side.get(k, r=1).context, w=1, sloppy=False)
    for k in added:
        side.put(k, "added", w=1, sloppy=False)
    store.heal()

    started = time.perf_counter()
    figures = store.run_antientropy(["node-1"])
    elapsed = time.perf_counter() - started
    differing = len(rewritten) + len(deleted) + len(added)
    leaves = args.fanout ** args.depth
    bucket_keys = args.keys / (2 * leaves)  # keys per leaf bucket (two ranges of keys/2 each)
    listing = sum(len(k) + NODE_HASH_BYTES for k in keys)
    copies = store.inspect_many("bench", rewritten + deleted + added)
    converged = all(len({repr(v) for v in c.values()}) == 1 and len(c) == 2 for c in copies.values())
    quiet = store.run_antientropy(["node-1"])

    keys_goal = 2 * differing + bucket_keys
    tree_share = figures.get("tree_bytes", 0) / listing
    print(f"\nAnti-entropy of two replicas of {args.keys:,} keys differing in {differing} keys "
          f"(tree: fanout {args.fanout}, depth {args.depth}, {leaves:,} leaf buckets)")
    print(f"  round time                 {elapsed * 1000:9.1f} ms")
    print(f"  ranges compared            {figures.get('ae_ranges', 0):9d}")
    print(f"  tree nodes sent            {figures.get('ae_nodes', 0):9d}")
    print(f"  keys transferred           {figures.get('ae_keys', 0):9d}   goal <= {keys_goal:.0f} "
          f"(2 x {differing} + {bucket_keys:.1f} per bucket): "
          f"{'MET' if figures.get('ae_keys', 0) <= keys_goal else 'MISSED'}")
    print(f"  tree bytes                 {figures.get('tree_bytes', 0):9d}   full listing "
          f"{listing:,} B: {tree_share:.2%} (goal <= 5 %): "
          f"{'MET' if tree_share <= 0.05 else 'MISSED'}")
    print(f"  state bytes                {figures.get('state_bytes', 0):9d}")
    print(f"  converged                  {converged}")
    print(f"  next round repairs         {quiet.get('repaired', 0):9d}   (a quiet store: 0)")
    if not converged or figures.get("ae_keys", 0) > keys_goal or tree_share > 0.05:
        raise SystemExit(1)
finally:
    store.stop()
