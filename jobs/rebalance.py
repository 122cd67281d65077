"""Elastic membership under load: grow 3 -> 4 -> 5 nodes and shrink back to 3 while one client
writes and another reads without pause.

    python jobs/rebalance.py [--keys 20000] [--placement local|spread]
    ray job submit --working-dir . -- python jobs/rebalance.py --placement spread

Prints, per step, the keys moved beside the ideal (adding a node to S moves 1/(S+1) of the key
replicas; removing one moves its share), and at the end the writer's and reader's tallies:
acknowledged writes lost (must be 0) and failed reads (must be 0). Exits 1 if a goal is missed.
With placement spread each new node goes on a Ray node hosting none (run it on a cluster with
five Ray nodes, or let --add-ray-nodes start them in a local ray.cluster_utils.Cluster).
"""

import argparse
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dynamo_ray as dr  # noqa: E402

GOAL_RATIO = 1.25


def load(store, table, keys):
    t = store.table(table)
    for start in range(0, len(keys), 2000):
        t.put_many({k: k for k in keys[start:start + 2000]})


def run(store, keys_count=20000, table="default", steps=None, make_room=None, say=print) -> dict:
    """Load, then change membership step by step under a writer and a reader; returns tallies.
    ``make_room(node)`` may return the Ray node for a new node (placement spread)."""
    steps = steps or [("add", "node-4"), ("add", "node-5"), ("remove", "node-5"),
                      ("remove", "node-4")]
    t = store.table(table)
    base = [f"base-{i}" for i in range(keys_count)]
    load(store, table, base)
    acked: dict = {}
    failures = {"writes": [], "reads": []}
    reads = [0]
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            key = f"live-{i}"
            try:
                t.put(key, i)
                acked[key] = i
            except dr.DynamoError as e:
                failures["writes"].append((key, repr(e)))
            i += 1

    def reader():
        i = 0
        while not stop.is_set():
            key = base[(i * 7919) % len(base)]
            try:
                got = t.get(key)
                if key not in got.values:
                    failures["reads"].append((key, got.values))
                reads[0] += 1
            except dr.DynamoError as e:
                failures["reads"].append((key, repr(e)))
            i += 1

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for th in threads:
        th.start()
    rows = []
    try:
        for action, node in steps:
            before = store.status()
            replicas = int(before["keys"].sum())
            nodes_before = len(store.nodes())
            if action == "add":
                ray_node = make_room(node) if make_room else None
                report = store.add_node(node, ray_node=ray_node, progress=False)
                ideal = replicas / (nodes_before + 1)
            else:
                ideal = int(before.query("node == @node")["keys"].sum())
                report = store.remove_node(node, progress=False)
            ratio = report["keys_moved"] / ideal if ideal else 0.0
            rows.append((action, node, nodes_before, len(store.nodes()), report, ideal, ratio))
            say(f"{action:6s} {node}: {nodes_before} -> {len(store.nodes())} nodes, "
                f"{report['partitions_moved']} partitions, keys moved {report['keys_moved']:,} "
                f"(streamed {report['keys_streamed']:,} + synced {report['keys_synced']:,}), "
                f"ideal {ideal:,.0f}, ratio {ratio:.2f}, {report['seconds']:.1f}s")
    finally:
        stop.set()
        for th in threads:
            th.join()
    # every acknowledged write and every base key reads back
    check = t.get_many(list(acked) + base)
    lost = [k for k, v in acked.items() if v not in check[k].values]
    lost += [k for k in base if k not in check[k].values]
    return {"rows": rows, "acked": len(acked), "lost": len(lost), "write_errors":
            len(failures["writes"]), "reads": reads[0], "failed_reads": len(failures["reads"]),
            "examples": failures["reads"][:3] + failures["writes"][:3] + lost[:3],
            "worst_ratio": max((r[-1] for r in rows), default=0.0)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--placement", choices=["local", "spread"], default="local")
    args = parser.parse_args()
    store = dr.start(name="rebalance", nodes=3, partitions=args.partitions,
                     placement=args.placement, tables={"default": {"n": 3, "r": 2, "w": 2}},
                     timeouts={"request_ms": 1000})
    try:
        result = run(store, args.keys)
    finally:
        store.stop()
    print(f"\nwrites acknowledged {result['acked']:,}, lost {result['lost']}, write errors "
          f"{result['write_errors']}; reads {result['reads']:,}, failed {result['failed_reads']}; "
          f"worst keys-moved ratio {result['worst_ratio']:.2f} (goal <= {GOAL_RATIO})")
    ok = result["lost"] == 0 and result["failed_reads"] == 0 and result["worst_ratio"] <= GOAL_RATIO
    if not ok:
        print("examples:", result["examples"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
