"""`Router.direct_read`, the plan of a client's synchronous read, on the simulated store: it
sends what `get_many` would send (one call per vnode, each range to its N primaries), gives
up when a primary is in back-off, answers what `get_many` answers, and names for repair
exactly the replicas that replied stale, whatever the order of the replies."""

import asyncio
import random

from hypothesis import given, settings, strategies as st

from dynamo_ray.core import versioning
from dynamo_ray.protocol.router import Router
from dynamo_ray.sim.cluster import SimCluster
from dynamo_ray.sim.loop import SimLoop
from dynamo_ray.sim.run import sim_config
from dynamo_ray.sim.workload import KV

KEYS = [f"k{i}" for i in range(40)]


def _run(scenario):
    loop = SimLoop()
    try:
        return loop.run_until_complete(scenario(loop))
    finally:  # the nodes' maintenance loops run until cancelled
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


async def _store_with_a_stale_node(loop):
    """Four nodes; every key written twice, the second time while node-4 was cut off: its
    replicas of the keys it holds are one version behind."""
    cluster = SimCluster(loop, random.Random(1), sim_config(nodes=4))
    await cluster.start()
    router = Router(cluster.config, cluster.ring, cluster.admin)
    await router.put_many(KV, [(k, None, b"old") for k in KEYS])
    await router.settle()
    cluster.network.partition([["node-4"], ["node-1", "node-2", "node-3", "admin"]])
    states = await router.get_many(KV, KEYS)
    await router.put_many(KV, [(k, versioning.context(versioning.decode(s)), b"new")
                               for k, s in zip(KEYS, states)], sloppy=False)
    await router.settle()
    cluster.network.heal()
    return cluster


async def _replies(cluster, read):
    """{vnode: reply} of every call the read plans, sent on the simulated network."""
    calls = read.calls()
    answers = await asyncio.gather(*(cluster.admin.call(address, "get", KV, groups, timeout_s=1.0)
                                     for _, address, groups in calls))
    return {vnode: answer for (vnode, _, _), answer in zip(calls, answers)}


@settings(max_examples=20, deadline=None)
@given(order_seed=st.integers(0, 2**32 - 1))
def test_a_direct_read_answers_and_repairs_as_get_many_does(order_seed):
    async def scenario(loop):
        cluster = await _store_with_a_stale_node(loop)
        reader = Router(cluster.config, cluster.ring, cluster.admin)
        read = reader.direct_read(KV, KEYS, r=3)
        assert read is not None
        calls = read.calls()
        assert len({vnode for vnode, _, _ in calls}) == len(calls)  # one call per vnode
        sent = {(kp, k) for vnode, _, groups in calls for kp, keys in groups for k in keys}
        for k in KEYS:  # each key goes to exactly its N primaries
            kp = cluster.ring.partition_of(k)
            to = {v for v, _, groups in calls for p, keys in groups if p == kp and k in keys}
            assert to == set(cluster.ring.preference_list(kp, 3)) and (kp, k) in sent
        replies = list((await _replies(cluster, read)).items())
        random.Random(order_seed).shuffle(replies)
        for vnode, reply in replies:
            assert read.take(vnode, reply)
        assert read.quorate()
        answer = read.answer()
        assert answer == await reader.get_many(KV, KEYS, r=3)
        assert all(versioning.values(versioning.decode(s)) == [b"new"] for s in answer)
        stale_vnodes = {p for p, owner in enumerate(cluster.ring.owners) if owner == "node-4"}
        repairs = read.repairs()
        assert repairs  # node-4 holds replicas of some keys, all stale
        assert set(repairs) == stale_vnodes & {v for v, _, _ in calls}
        for vnode, groups in repairs.items():
            for kp, hint, entries in groups:
                assert hint is None and kp in cluster.ring.ranges_held(vnode, 3)
                assert all(versioning.values(versioning.decode(s)) == [b"new"] for _, s in entries)

    _run(scenario)


def test_a_direct_read_gives_up_when_a_primary_is_in_back_off():
    async def scenario(loop):
        cluster = SimCluster(loop, random.Random(2), sim_config(nodes=4))
        await cluster.start()
        reader = Router(cluster.config, cluster.ring, cluster.admin)
        key = KEYS[0]
        assert reader.direct_read(KV, [key]) is not None
        primary = cluster.ring.preference_list(cluster.ring.partition_of(key), 3)[1]
        reader.mark_down(primary)
        assert reader.direct_read(KV, [key]) is None  # get_many plans the fallback
        assert reader.direct_read(KV, [k for k in KEYS if primary not in cluster.ring
                                       .preference_list(cluster.ring.partition_of(k), 3)])

    _run(scenario)
