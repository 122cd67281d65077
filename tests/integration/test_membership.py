"""Membership on a local Ray: gossip spreads views, coordinators learn rings from replies, bad
membership calls are typed errors (growing and shrinking under load: tests/cluster)."""

import time

import ray

import dynamo_ray as dr
from dynamo_ray.runtime import placement
from dynamo_ray.core.ring import Ring


def test_every_view_marks_a_failed_node_down_within_five_gossip_intervals(start_store):
    s = start_store(nodes=4, partitions=4, gossip={"interval_s": 0.5, "suspect_after": 3})
    time.sleep(2)  # a few rounds: every view has heard every heartbeat
    for view in s.nodes():
        assert s.status(view=view)["up"].all()
    s.fail_node("node-4")
    failed_at = time.monotonic()
    others = ["node-1", "node-2", "node-3"]
    deadline = failed_at + 5 * s.config.gossip.interval_s
    marked = {}
    while len(marked) < len(others) and time.monotonic() < deadline + 1:
        for view in others:
            if view not in marked:
                frame = s.status(view=view)
                if not frame.query("node == 'node-4'")["up"].any():
                    marked[view] = time.monotonic() - failed_at
        time.sleep(0.1)
    assert set(marked) == set(others), marked
    assert max(marked.values()) <= 5 * s.config.gossip.interval_s, marked
    assert s.status(view="node-1").query("node != 'node-4'")["up"].all()


def test_a_coordinator_learns_a_newer_ring_from_a_vnode_reply(store, key):
    vnode_partition = store.ring.preference_list(store.ring.partition_of(key), 3)[1]
    owner = store.ring.owners[vnode_partition]
    vnode = placement.lookup(placement.vnode_actor_name(store.name, owner, vnode_partition))
    newer = Ring(store.ring.owners, store.ring.version + 7)
    ray.get(vnode.set_ring.remote(newer))  # only this vnode knows it: no push, no gossip yet
    via = next(n for n in store.nodes() if n != owner)
    coordinator = placement.lookup(placement.coordinator_actor_name(store.name, via))
    assert ray.get(coordinator.ring_version.remote()) < newer.version
    store.table(via=via).put(key, "hello", w=3)
    deadline = time.monotonic() + 5
    while ray.get(coordinator.ring_version.remote()) < newer.version and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ray.get(coordinator.ring_version.remote()) == newer.version


def test_adding_an_existing_or_bad_node_is_an_invalid_argument(store):
    for bad in ["node-1", "", "a:b", 7]:
        try:
            store.add_node(bad)
        except dr.InvalidArgument:
            continue
        raise AssertionError(f"add_node({bad!r}) was accepted")
    try:
        store.remove_node("node-9")
    except dr.InvalidArgument:
        pass
    else:
        raise AssertionError("remove_node of an unknown node was accepted")
