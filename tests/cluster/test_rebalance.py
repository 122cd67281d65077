"""Elastic membership on several Ray nodes (placement spread): each new store node goes on a
newly added Ray node; growing 3 -> 5 and shrinking back under load loses nothing and moves
keys near the ideal (the suite's one grow-and-shrink run; `jobs/rebalance.py` is the long one)."""

import os
import sys
import uuid

import ray

import dynamo_ray as dr
from dynamo_ray.runtime import placement
from conftest import add_ray_node

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "jobs"))
import rebalance  # noqa: E402


def test_grow_and_shrink_on_new_ray_nodes_loses_nothing(cluster):
    # membership, not admission control, is under test: a loaded 2-core machine queues a
    # request past the default max_queue_ms (1 s) and it would be shed as Overloaded
    s = dr.start(name=f"grow-{uuid.uuid4().hex[:6]}", placement="spread", nodes=3, partitions=8,
                 tables={"default": {"n": 3, "r": 2, "w": 2}}, timeouts={"request_ms": 1500},
                 overload={"max_queue_ms": 30000})
    added = {}

    def make_room(node):
        added[node] = add_ray_node(cluster).node_id
        return added[node]

    try:
        result = rebalance.run(s, keys_count=3000, make_room=make_room)
        print(result["rows"])
        print("examples:", result["examples"])
        assert (result["lost"], result["failed_reads"], result["write_errors"]) == (0, 0, 0), \
            result["examples"]
        assert result["worst_ratio"] <= rebalance.GOAL_RATIO
        assert len(added) == 2
        # while they were members, node-4 and node-5 ran on the Ray nodes added for them
        assert s.nodes() == ["node-1", "node-2", "node-3"]
        assert placement.store_node_names(s.name) == ["node-1", "node-2", "node-3"]
        assert len(s.status()) == s.ring.partitions
        hosts = {n: ray.get(placement.lookup(placement.node_actor_name(s.name, n))
                            .describe.remote())["ray_node"] for n in s.nodes()}
        assert len(set(hosts.values())) == 3 and not set(hosts.values()) & set(added.values())
    finally:
        s.stop()
