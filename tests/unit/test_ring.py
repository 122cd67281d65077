"""The ring (DESIGN §2; Dynamo §4.2-4.3, strategy 3 of §6.2): balance, preference lists,
key placement and minimal movement on membership change."""

from __future__ import annotations

import math
from collections import Counter

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_ray.core.ring import (
    Ring,
    claim,
    clashing_windows,
    distinct_nodes,
    key_hash,
    moved_partitions,
)

FAST = settings(deadline=None, max_examples=100)

POWERS = (8, 16, 32, 64, 128, 256)
MAX_NODES = 20


def names(count: int, prefix: str = "node") -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def assert_balanced(ring: Ring, nodes: list[str]) -> None:
    q, s = ring.partitions, len(nodes)
    held = Counter(ring.owners)
    assert set(held) == set(nodes), "every node owns a partition and no one else does"
    low, high = q // s, math.ceil(q / s)
    assert all(low <= c <= high for c in held.values()), (q, s, sorted(held.values()))


@st.composite
def shapes(draw, min_nodes: int = 1, spare: int = 0):
    """(Q, S, N): Q a power of two 8..256, S nodes (at most Q - spare, capped), N 1..5."""
    q = draw(st.sampled_from(POWERS))
    s = draw(st.integers(min_nodes, min(q - spare, MAX_NODES)))
    n = draw(st.integers(1, 5))
    return q, s, n


@st.composite
def rings_with_partition(draw):
    q, s, n = draw(shapes())
    ring = claim(q, names(s), n)
    return ring, s, n, draw(st.integers(0, q - 1))


# --- balance ----------------------------------------------------------------------------------


@pytest.mark.parametrize("q", POWERS)
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_claim_gives_every_node_floor_or_ceil_of_q_over_s_partitions(q, n):
    for s in range(1, min(q, MAX_NODES) + 1):
        nodes = names(s)
        ring = claim(q, nodes, n)
        assert ring.partitions == q
        assert ring.version == 1
        assert_balanced(ring, nodes)


@st.composite
def named_nodes(draw):
    q = draw(st.sampled_from(POWERS))
    nodes = draw(
        st.lists(
            st.text(min_size=1, max_size=6), min_size=1, max_size=min(q, MAX_NODES), unique=True
        )
    )
    return q, nodes


@FAST
@given(case=named_nodes(), n=st.integers(1, 5))
def test_claim_is_balanced_whatever_the_node_names_and_their_order(case, n):
    q, nodes = case
    ring = claim(q, nodes, n)
    assert_balanced(ring, nodes)
    assert set(ring.nodes) == set(nodes)


def test_claim_ignores_repeated_node_names():
    ring = claim(16, ["a", "b", "a", "c", "b"], 3)
    assert_balanced(ring, ["a", "b", "c"])


def test_claim_rejects_no_nodes_and_more_nodes_than_partitions():
    with pytest.raises(ValueError):
        claim(8, [], 3)
    with pytest.raises(ValueError):
        claim(8, names(9), 3)


@pytest.mark.parametrize("q", [0, 3, 6, 12, 100])
def test_ring_rejects_a_partition_count_that_is_not_a_power_of_two(q):
    with pytest.raises(ValueError):
        Ring(tuple("a" for _ in range(q)))


# --- preference lists and fallbacks -----------------------------------------------------------


@FAST
@given(rings_with_partition())
def test_preference_list_has_min_n_s_distinct_nodes(case):
    ring, s, n, p = case
    pref = ring.preference_list(p, n)
    assert len(pref) == min(n, s)
    assert distinct_nodes(ring, pref) == len(pref)


@FAST
@given(rings_with_partition())
def test_preference_list_starts_at_the_keys_own_partition(case):
    ring, _, n, p = case
    assert ring.preference_list(p, n)[0] == p


@FAST
@given(rings_with_partition())
def test_preference_list_and_fallbacks_take_each_node_once_in_clockwise_walk_order(case):
    ring, s, n, p = case
    q = ring.partitions
    pref, spare = ring.preference_list(p, n), ring.fallbacks(p, n)
    walk = pref + spare
    owners = [ring.owners[v] for v in walk]
    # one vnode per node, every node named, fallbacks only on nodes not in the preference list
    assert len(owners) == len(set(owners)) == s
    assert not {ring.owners[v] for v in spare} & {ring.owners[v] for v in pref}
    assert len(spare) == s - min(n, s)
    # in clockwise order from p, and each is the first partition met on its node
    steps = [(v - p) % q for v in walk]
    assert steps == sorted(steps)
    for v, step in zip(walk, steps):
        earlier = {ring.owners[(p + i) % q] for i in range(step)}
        assert ring.owners[v] not in earlier


@FAST
@given(rings_with_partition())
def test_preference_list_of_a_clash_free_ring_is_n_consecutive_partitions(case):
    ring, s, n, p = case
    if clashing_windows(ring, n) == 0 and s >= n:
        q = ring.partitions
        assert ring.preference_list(p, n) == tuple((p + i) % q for i in range(n))


def test_preference_list_with_fewer_nodes_than_n_names_every_node_and_no_fallback():
    ring = claim(8, ["a", "b"], 3)
    for p in range(8):
        assert {ring.owners[v] for v in ring.preference_list(p, 3)} == {"a", "b"}
        assert ring.fallbacks(p, 3) == ()


@FAST
@given(rings_with_partition())
def test_ranges_held_is_consistent_with_preference_lists(case):
    ring, s, n, v = case
    q = ring.partitions
    held = ring.ranges_held(v, n)
    assert set(held) == {k for k in range(q) if v in ring.preference_list(k, n)}
    assert v in held, "a vnode replicates its own partition"
    total = sum(len(ring.ranges_held(u, n)) for u in range(q))
    assert total == q * min(n, s), "every range is held by exactly min(N, S) vnodes"
    if clashing_windows(ring, n) == 0 and s >= n:
        assert set(held) == {(v - i) % q for i in range(n)}


# --- key placement ----------------------------------------------------------------------------

keys = st.one_of(st.text(max_size=40), st.binary(max_size=40))


@FAST
@given(key=keys, bits=st.integers(0, 16))
def test_partition_of_is_the_top_bits_of_the_unsigned_mmh3_hash128(key, bits):
    q = 1 << bits
    ring = Ring(("a",) * q)
    p = ring.partition_of(key)
    assert 0 <= p < q
    assert key_hash(key) == mmh3.hash128(key, signed=False)
    assert p == mmh3.hash128(key, signed=False) >> (128 - bits)


@FAST
@given(key=st.text(max_size=40))
def test_a_str_key_and_its_utf8_bytes_land_on_the_same_partition(key):
    ring = Ring(("a",) * 64)
    assert ring.partition_of(key) == ring.partition_of(key.encode("utf-8"))


def test_keys_spread_roughly_evenly_over_partitions():
    q, count = 16, 20_000
    ring = Ring(("a",) * q)
    hits = Counter(ring.partition_of(f"user:{i}") for i in range(count))
    fair = count / q
    assert set(hits) == set(range(q))
    assert all(fair / 2 <= c <= fair * 2 for c in hits.values()), hits


# --- membership change ------------------------------------------------------------------------


def check_join(ring: Ring, nodes: list[str], new: str, n: int) -> Ring:
    q, s = ring.partitions, len(nodes)
    after = claim(q, nodes + [new], n, previous=ring)
    assert after.version == ring.version + 1
    assert_balanced(after, nodes + [new])
    moved = moved_partitions(ring, after)
    assert len(moved) <= math.ceil(q / (s + 1))
    assert all(after.owners[p] == new for p in moved), "a join moves partitions only to the joiner"
    assert set(moved) == set(after.partitions_of(new))
    return after


def check_leave(ring: Ring, nodes: list[str], gone: str, n: int) -> Ring:
    q = ring.partitions
    rest = [x for x in nodes if x != gone]
    after = claim(q, rest, n, previous=ring)
    assert after.version == ring.version + 1
    assert_balanced(after, rest)
    assert set(moved_partitions(ring, after)) == set(ring.partitions_of(gone)), (
        "a leave moves only the leaving node's partitions"
    )
    return after


@pytest.mark.parametrize("q", POWERS)
@pytest.mark.parametrize("n", [1, 3])
def test_a_join_moves_at_most_ceil_q_over_s_plus_1_partitions_all_to_the_new_node(q, n):
    for s in range(1, min(q - 1, MAX_NODES) + 1):
        nodes = names(s)
        check_join(claim(q, nodes, n), nodes, "newcomer", n)


@pytest.mark.parametrize("q", POWERS)
@pytest.mark.parametrize("n", [1, 3])
def test_a_leave_moves_only_the_leaving_nodes_partitions(q, n):
    for s in range(2, min(q, MAX_NODES) + 1):
        nodes = names(s)
        ring = claim(q, nodes, n)
        for gone in (nodes[0], nodes[s // 2], nodes[-1]):
            check_leave(ring, nodes, gone, n)


@FAST
@given(
    shape=shapes(min_nodes=1),
    changes=st.lists(st.tuples(st.booleans(), st.integers(0, 10**6)), min_size=1, max_size=8),
)
def test_any_sequence_of_joins_and_leaves_stays_balanced_and_moves_minimally(shape, changes):
    q, s, n = shape
    nodes = names(s)
    ring = claim(q, nodes, n)
    fresh = iter(names(len(changes), prefix="joiner"))
    for join, pick in changes:
        if join and len(nodes) < q:
            new = next(fresh)
            ring = check_join(ring, nodes, new, n)
            nodes = nodes + [new]
        elif len(nodes) > 1:
            gone = nodes[pick % len(nodes)]
            ring = check_leave(ring, nodes, gone, n)
            nodes = [x for x in nodes if x != gone]


def test_claim_with_the_same_nodes_moves_nothing_and_bumps_the_version():
    ring = claim(32, names(5), 3)
    again = claim(32, names(5), 3, previous=ring)
    assert again.owners == ring.owners
    assert again.version == ring.version + 1


def test_with_owners_bumps_the_version():
    ring = claim(8, names(2), 2)
    assert ring.with_owners(ring.owners).version == ring.version + 1


# --- clash avoidance --------------------------------------------------------------------------


@pytest.mark.parametrize("q, s, n", [(16, 4, 3), (8, 4, 3)])
def test_initial_claim_puts_any_n_consecutive_partitions_on_distinct_nodes(q, s, n):
    ring = claim(q, names(s), n)
    assert clashing_windows(ring, n) == 0
    for p in range(q):
        assert distinct_nodes(ring, ring.preference_list(p, n)) == n


@pytest.mark.parametrize("q", POWERS)
@pytest.mark.parametrize("n", [2, 3, 4])
def test_initial_claim_is_clash_free_whenever_there_are_more_nodes_than_n(q, n):
    # S = N = 3 cannot be clash-free on a power-of-two ring (it needs 3 | Q): hence S > N.
    for s in range(n + 1, min(q, MAX_NODES) + 1):
        assert clashing_windows(claim(q, names(s), n), n) == 0, (q, s, n)


def test_clashing_windows_counts_windows_naming_a_node_twice():
    assert clashing_windows(Ring(("a", "b", "c", "d")), 3) == 0
    # windows (a,a,b) (a,b,b) (b,b,a) (b,a,a): all clash
    assert clashing_windows(Ring(("a", "a", "b", "b")), 3) == 4
    # windows of 3 starting at each partition of a b a c: (a,b,a) (b,a,c) (a,c,a) (c,a,b)
    assert clashing_windows(Ring(("a", "b", "a", "c")), 3) == 2
