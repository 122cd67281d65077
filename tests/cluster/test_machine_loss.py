"""Placement `spread` on several Ray nodes: losing a machine under write load loses nothing."""

import threading
import time
import uuid

import ray

import dynamo_ray as dr
from dynamo_ray.runtime import placement
from conftest import add_ray_node


def test_spread_puts_each_node_on_its_own_ray_node(cluster):
    s = dr.start(name=f"spread-{uuid.uuid4().hex[:6]}", placement="spread", nodes=4, partitions=4)
    try:
        where = {n: _ray_node_of(s, n) for n in s.nodes()}
        assert len(set(where.values())) == 4
        assert set(where.values()) <= {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        s.stop()


def _ray_node_of(store, node):
    handle = placement.lookup(placement.node_actor_name(store.name, node))
    return ray.get(handle.describe.remote())["ray_node"]


def test_a_ray_node_removed_during_writes_and_recovered_loses_no_acknowledged_write(cluster):
    s = dr.start(name=f"loss-{uuid.uuid4().hex[:6]}", placement="spread", nodes=4, partitions=4,
                 handoff={"interval_s": 0.3}, timeouts={"request_ms": 1000},
                 failure_detection={"backoff_ms": 200, "max_backoff_ms": 1000})
    try:
        t = s.table()
        acked: dict = {}
        failed: list = []
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                key = f"w-{i}"
                try:
                    t.put(key, i)
                    acked[key] = i
                except dr.DynamoError as e:
                    failed.append((key, e))
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(2)
        victim_id = _ray_node_of(s, "node-3")
        victim = next(n for n in cluster.list_all_nodes() if n.node_id == victim_id)
        cluster.remove_node(victim)  # the machine hosting node-3 is gone
        time.sleep(3)
        new_ray_node = add_ray_node(cluster)
        s.recover_node("node-3")
        assert _ray_node_of(s, "node-3") == new_ray_node.node_id
        time.sleep(2)
        stop.set()
        thread.join()
        deadline = time.monotonic() + 30
        while s.status()["hints_pending"].sum() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert len(acked) > 100, (len(acked), failed[:3])
        got = t.get_many(list(acked))
        lost = [k for k, v in acked.items() if v not in got[k].values]
        assert lost == [], f"{len(lost)} of {len(acked)} acknowledged writes lost"
    finally:
        s.stop()
