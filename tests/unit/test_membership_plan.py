"""The transfer plan of a membership change, computed purely from (old ring, new ring)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_ray.core.ring import claim, clashing_windows, ranges_dropped, transfer_plan

Q = st.sampled_from([8, 16, 32, 64])


def names(count, start=1):
    return [f"node-{i}" for i in range(start, start + count)]


@settings(max_examples=60, deadline=None)
@given(q=Q, s=st.integers(3, 7), n=st.integers(1, 3), grow=st.booleans())
def test_after_the_plan_every_new_replica_holds_its_range(q, s, n, grow):
    old = claim(q, names(s), n)
    new = claim(q, names(s + 1) if grow else names(s - 1), n, previous=old)
    plan = transfer_plan(old, new, [n])
    received = {(t.kp, t.target, t.target_node) for t in plan}
    assert len(received) == len(plan)  # no range is streamed twice to one vnode
    for kp in range(q):
        old_replicas = {(p, old.owners[p]) for p in old.preference_list(kp, n)}
        for p in new.preference_list(kp, n):
            holds = (p, new.owners[p]) in old_replicas or (kp, p, new.owners[p]) in received
            assert holds, (kp, p)
    for t in plan:  # every source held the range in the old ring
        assert t.source in old.preference_list(t.kp, n)
        assert old.owners[t.source] == t.source_node


@settings(max_examples=60, deadline=None)
@given(q=Q, s=st.integers(3, 7))
def test_growing_by_one_node_streams_about_its_fair_share(q, s):
    n = 3
    old = claim(q, names(s), n)
    new = claim(q, names(s + 1), n, previous=old)
    plan = transfer_plan(old, new, [n])
    fair = n * q / (s + 1)  # range copies the new node should hold
    assert len(plan) <= 1.5 * fair + n, (len(plan), fair)
    assert sum(1 for t in plan if t.target_node == f"node-{s + 1}") >= n * (q // (s + 1))


def test_removing_a_node_streams_only_what_it_held_when_the_ring_has_no_clashes():
    four = claim(16, names(4), 3)
    old = claim(16, names(5), 3, previous=four)
    new = claim(16, names(4), 3, previous=old)  # node-5 leaves
    assert clashing_windows(new, 3) == 0
    plan = transfer_plan(old, new, [3])
    assert all(t.kp in _ranges_of(old, "node-5") for t in plan)  # only what node-5 held moves
    assert len(plan) == 3 * len(old.partitions_of("node-5"))  # its partitions x N ranges each


def _ranges_of(ring, node, n=3):
    return {kp for p in ring.partitions_of(node) for kp in ring.ranges_held(p, n)}


def test_staying_vnodes_drop_only_ranges_they_no_longer_replicate():
    old = claim(16, names(3), 3)
    new = claim(16, names(4), 3, previous=old)
    for n, vnode, kp in ranges_dropped(old, new, [3]):
        assert old.owners[vnode] == new.owners[vnode]
        assert vnode in old.preference_list(kp, n) and vnode not in new.preference_list(kp, n)
