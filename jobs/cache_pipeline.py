"""A Ray Data pipeline that uses the store as a cluster-wide cache of a slow function.

    python jobs/cache_pipeline.py [--rows 1000] [--cost-ms 10]
    ray job submit --working-dir . -- python jobs/cache_pipeline.py --name dynamo

The `map_batches` step looks a batch's keys up with one `get_many`, computes only the misses
with the (artificially) slow function, and stores them with one `put_many`. The pipeline runs
twice: the first run fills the cache, the second should hit it for (nearly) every row and run
several times faster. Prints both runs and exits 1 unless the second hits >= 95 % of rows and is
>= 3x faster. Uses the store named --name if one is running, else starts a local one.
"""

import argparse
import sys
import time

import ray

import dynamo_ray as dr


def slow_square(x: int, cost_ms: float) -> dict:
    time.sleep(cost_ms / 1000)  # stands for a model call, a remote fetch, a heavy computation
    return {"x": x, "square": x * x}


class CachedStep:
    """The map_batches step: read the cache, compute the misses, fill the cache."""

    def __init__(self, table, cost_ms: float, namespace: str):
        self.table, self.cost_ms, self.namespace = table, cost_ms, namespace

    def __call__(self, batch: dict) -> dict:
        ids = [int(i) for i in batch["id"]]
        keys = [f"{self.namespace}:{i}" for i in ids]
        found = self.table.get_many(keys)
        values, hits, fresh = [], [], {}
        for i, k in zip(ids, keys):
            got = found[k]
            if got.exists:
                values.append(got.values[0]["square"])
                hits.append(True)
            else:
                result = slow_square(i, self.cost_ms)
                fresh[k] = result
                values.append(result["square"])
                hits.append(False)
        if fresh:
            self.table.put_many(fresh)
        return {"id": ids, "square": values, "hit": hits}


def run_pipeline(table, rows: int, cost_ms: float, namespace: str) -> tuple[float, float, bool]:
    started = time.perf_counter()
    ds = ray.data.range(rows).map_batches(CachedStep(table, cost_ms, namespace), batch_size=100,
                                          batch_format="numpy")
    out = ds.to_pandas()
    elapsed = time.perf_counter() - started
    correct = len(out) == rows and bool((out["square"] == out["id"] ** 2).all())
    return elapsed, float(out["hit"].mean()), correct


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--cost-ms", type=float, default=10.0)
    parser.add_argument("--name", default="dynamo")
    args = parser.parse_args(argv)
    started_here = None
    try:
        store = dr.connect(args.name)
    except dr.ClusterNotFound:
        store = started_here = dr.start(name=args.name)
    try:
        table = store.table("default")
        namespace = f"square-{time.time_ns()}"  # a fresh cache for this run of the job
        first = run_pipeline(table, args.rows, args.cost_ms, namespace)
        second = run_pipeline(table, args.rows, args.cost_ms, namespace)
    finally:
        if started_here is not None:
            started_here.stop()
    speedup = first[0] / second[0]
    print(f"\nRay Data pipeline, {args.rows} rows, a {args.cost_ms:g} ms function, cached in "
          f"store {args.name!r}")
    print(f"  first run   {first[0]:6.2f} s   cache hits {first[1]:6.1%}   correct {first[2]}")
    print(f"  second run  {second[0]:6.2f} s   cache hits {second[1]:6.1%}   correct {second[2]}")
    print(f"  speed-up    {speedup:6.2f}x   (goal: >= 95 % hits and >= 3x)")
    ok = first[2] and second[2] and second[1] >= 0.95 and speedup >= 3
    print("goals: " + ("met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
