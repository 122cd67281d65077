"""Spill to Parquet: a store holding 10x its memory limit, measured against an in-memory twin.

    python jobs/spill_bench.py [--keys 100000] [--value-bytes 1024] [--limit-mb 8]
    ray job submit --working-dir . -- python jobs/spill_bench.py

Two stores in one run, same data: `memory` (no limit) and `spilled` (storage.memory_limit_mb per
vnode, sized so the data is about 10x the limit). Prints:
- every key reads back from the spilled store;
- each vnode's private resident memory (USS: its heap, not Ray's shared object store or the
  page cache of the files it reads) against base + limit + 10 % (base: its USS before loading);
- get_many of 1,000 random keys: spilled rate / in-memory rate (goal >= 20 %);
- to_pandas() and scan() of the whole table agree with get_many.
Exits 1 if a goal is missed.
"""

import argparse
import random
import shutil
import sys
import tempfile
import time

from tqdm import tqdm

import dynamo_ray as dr

parser = argparse.ArgumentParser()
parser.add_argument("--keys", type=int, default=100_000)
parser.add_argument("--value-bytes", type=int, default=1024)
parser.add_argument("--limit-mb", type=float, default=None,
                    help="per vnode (default: a tenth of the data a vnode holds)")
parser.add_argument("--batches", type=int, default=20)
args = parser.parse_args()

NODES, PARTITIONS, N = 3, 8, 3
keys = [f"key-{i:07d}" for i in range(args.keys)]
pad = "x" * (args.value_bytes - 24)
per_vnode_mb = args.keys * (args.value_bytes + 60) * N / PARTITIONS / 2**20
limit_mb = args.limit_mb or round(per_vnode_mb / 10, 2)
spill_dir = tempfile.mkdtemp(prefix="dynamo-spill-")
common = dict(nodes=NODES, partitions=PARTITIONS, timeouts={"request_ms": 10_000},
              tables={"default": {"n": N, "r": 2, "w": 2}},
              antientropy={"interval_s": 60.0}, handoff={"interval_s": 5.0})


def load(store, label):
    t = store.table()
    for start in tqdm(range(0, len(keys), 2000), desc=f"loading {label}", unit="batch"):
        t.put_many({k: {"k": k, "pad": pad} for k in keys[start:start + 2000]})


def get_rate(store, rounds):
    t = store.table()
    rng = random.Random(7)
    batches = [rng.sample(keys, 1000) for _ in range(rounds)]
    t.get_many(batches[0])  # warm the path
    started = time.perf_counter()
    for batch in batches:
        got = t.get_many(batch)
        assert all(got[k].exists for k in batch)
    return rounds * 1000 / (time.perf_counter() - started)


failures = []
memory = dr.start(name="bench-memory", **common)
try:
    load(memory, "in-memory store")
    memory_rate = get_rate(memory, args.batches)
finally:
    memory.stop()

spilled = dr.start(name="bench-spilled", storage={"spill_dir": spill_dir, "memory_limit_mb": limit_mb},
                   **common)
try:
    base = spilled.status().set_index("partition")["uss_bytes"]
    load(spilled, "spilled store")
    frame = spilled.status().set_index("partition")
    t = spilled.table()
    missing = 0
    for start in tqdm(range(0, len(keys), 5000), desc="reading every key back", unit="batch"):
        got = t.get_many(keys[start:start + 5000])
        missing += sum(1 for k in keys[start:start + 5000] if got[k].value != {"k": k, "pad": pad})
    spilled_rate = get_rate(spilled, args.batches)
    frame = spilled.status().set_index("partition")
    allowance = base + limit_mb * 2**20 * 1.1
    over = frame[frame["uss_bytes"] > allowance]

    started = time.perf_counter()
    exported = t.to_pandas()
    export_s = time.perf_counter() - started
    scanned = sum(len(b) for b in t.scan(batch_size=5000))
    reference = {}
    for start in range(0, len(keys), 5000):
        reference.update(t.get_many(keys[start:start + 5000]))
    by_key = dict(zip(exported["key"], exported["values"]))
    disagree = sum(1 for k, g in reference.items() if by_key.get(k) != g.values)

    data_mb = frame["bytes"].sum() / 2**20
    print(f"\nSpill to Parquet: {args.keys:,} keys of {args.value_bytes} B, {NODES} nodes, "
          f"{PARTITIONS} vnodes, N={N}; memory limit {limit_mb} MB a vnode")
    print(f"  data held per vnode         {data_mb / len(frame):8.1f} MB  "
          f"({data_mb / len(frame) / limit_mb:.1f}x the limit)")
    print(f"  segments                    {int(frame['segments'].sum()):8d}")
    print(f"  keys not read back          {missing:8d}   (goal 0)")
    print("  private resident memory (USS) a vnode: base + growth (allowance: base + limit + 10 %)")
    for p, row in frame.iterrows():
        growth = (row["uss_bytes"] - base[p]) / 2**20
        print(f"    vnode {p}: {base[p] / 2**20:6.1f} MB + {growth:6.1f} MB  "
              f"(accounted {row['memory_bytes'] / 2**20:5.2f} MB)"
              f"{'  OVER' if p in over.index else ''}")
    print(f"  get_many, in memory         {memory_rate:8.0f} keys/s")
    print(f"  get_many, spilled           {spilled_rate:8.0f} keys/s   ratio "
          f"{spilled_rate / memory_rate:.2f} (goal >= 0.20)")
    print(f"  to_pandas rows              {len(exported):8d} in {export_s:.1f}s; scan rows "
          f"{scanned}; disagreeing with get_many: {disagree} (goal 0)")
    if missing:
        failures.append("keys not read back")
    if len(over):
        failures.append(f"{len(over)} vnodes over their memory allowance")
    if spilled_rate < 0.2 * memory_rate:
        failures.append("spilled reads under 20 % of in-memory")
    if disagree or len(exported) != args.keys or scanned != args.keys:
        failures.append("export disagrees with get_many")
finally:
    spilled.stop()
    shutil.rmtree(spill_dir, ignore_errors=True)

print("goals: " + ("all met" if not failures else "MISSED: " + "; ".join(failures)))
sys.exit(1 if failures else 0)
