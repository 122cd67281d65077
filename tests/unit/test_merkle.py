"""Merkle trees (Dynamo §4.7): incremental = rebuilt, and diff = set difference of the items."""

from __future__ import annotations

import time

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_ray.core.merkle import (
    MerkleTree,
    TopDownDiff,
    child_indexes,
    diff,
    diff_children,
    item_hash,
)

FAST = settings(deadline=None, max_examples=60)

# A few short names, as str or as bytes, so that keys repeat, collide in buckets and include
# "a" next to b"a" (two different keys with the same bytes).
names = st.text(alphabet="abcdef", min_size=0, max_size=3)
keys = st.one_of(names, names.map(str.encode))
blobs = st.binary(max_size=6)
shapes = st.tuples(st.integers(2, 5), st.integers(1, 3))
states = st.dictionaries(keys, blobs, max_size=40)


def levels(tree: MerkleTree) -> list[list[int]]:
    return [tree.level(d) for d in range(tree.depth + 1)]


def differing_buckets(tree: MerkleTree, a: dict, b: dict) -> set[int]:
    return {tree.bucket_of(k) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


# --- incremental updates ------------------------------------------------------------------


@FAST
@given(shape=shapes, ops=st.lists(st.tuples(keys, st.one_of(st.none(), blobs)), max_size=80))
def test_incremental_updates_equal_a_rebuild_of_the_final_items(shape, ops):
    fanout, depth = shape
    tree = MerkleTree(fanout, depth)
    model: dict = {}
    for key, new in ops:  # insert, change or delete (None), in any order
        tree.update(key, model.get(key), new)
        if new is None:
            model.pop(key, None)
        else:
            model[key] = new
    rebuilt = MerkleTree.build(model.items(), fanout, depth)
    assert tree.root() == rebuilt.root()
    assert levels(tree) == levels(rebuilt)
    assert len(tree) == len(rebuilt) == len(model)


@FAST
@given(shape=shapes, items=states, data=st.data())
def test_equal_item_sets_give_equal_trees_whatever_the_write_order(shape, items, data):
    order = data.draw(st.permutations(list(items.items())))
    tree = MerkleTree(*shape)
    for key, blob in order:
        tree.update(key, None, blob)
    assert levels(tree) == levels(MerkleTree.build(items.items(), *shape))


@FAST
@given(shape=shapes, items=states)
def test_every_inner_node_is_the_xor_of_its_children(shape, items):
    tree = MerkleTree.build(items.items(), *shape)
    for d in range(tree.depth):
        below = tree.level(d + 1)
        for i, node in enumerate(tree.level(d)):
            kids = tree.children(d, i)
            assert kids == below[i * tree.fanout : (i + 1) * tree.fanout]
            acc = 0
            for k in kids:
                acc ^= k
            assert acc == node
    leaves = tree.level(tree.depth)
    for b in range(tree.leaves):
        acc = 0
        for k, v in items.items():
            if tree.bucket_of(k) == b:
                acc ^= item_hash(k, v)
        assert acc == leaves[b]


def test_update_with_equal_sides_is_a_no_op():
    tree = MerkleTree.build([("a", b"1")])
    before = levels(tree)
    tree.update("a", b"1", b"1")
    tree.update("b", None, None)
    assert levels(tree) == before and len(tree) == 1


def test_an_empty_tree_is_all_zero_and_deleting_everything_returns_to_it():
    tree = MerkleTree(4, 2)
    assert levels(tree) == levels(MerkleTree.build([], 4, 2)) and tree.root() == 0
    for i in range(50):
        tree.update(f"k{i}", None, b"v")
    for i in range(50):
        tree.update(f"k{i}", b"v", None)
    assert all(h == 0 for lvl in levels(tree) for h in lvl) and len(tree) == 0


def test_build_rejects_a_key_given_twice_and_skips_absent_ones():
    with pytest.raises(ValueError, match="twice"):
        MerkleTree.build([("a", b"1"), ("a", b"2")])
    assert len(MerkleTree.build([("a", b"1"), ("b", None)])) == 1


def test_copy_is_independent():
    tree = MerkleTree.build([("a", b"1")])
    snap = tree.copy()
    tree.update("b", None, b"2")
    assert snap.root() != tree.root() and len(snap) == 1
    assert levels(snap) == levels(MerkleTree.build([("a", b"1")]))


# --- item hashes and buckets -------------------------------------------------------------


def test_str_and_bytes_keys_of_equal_bytes_do_not_cancel():
    tree = MerkleTree.build([("a", b"v"), (b"a", b"v")])
    assert tree.bucket_of("a") == tree.bucket_of(b"a")
    assert tree.root() != 0 and diff(tree, MerkleTree()) == [tree.bucket_of("a")]


def test_a_blob_is_bound_to_its_key():
    # Swapping the blobs of two keys of one bucket changes the tree (h(k) ^ h(v) would not).
    tree = MerkleTree(2, 1)
    k1 = "x"
    k2 = next(f"y{i}" for i in range(1000) if tree.bucket_of(f"y{i}") == tree.bucket_of(k1))
    a = MerkleTree.build([(k1, b"1"), (k2, b"2")], 2, 1)
    b = MerkleTree.build([(k1, b"2"), (k2, b"1")], 2, 1)
    assert a.root() != b.root()


def test_bucket_is_the_low_bits_of_the_key_hash():
    tree = MerkleTree(16, 3)
    for i in range(200):
        key = f"key-{i}"
        assert tree.bucket_of(key) == mmh3.hash128(key, 0, True, False) % 4096


def test_keys_of_one_ring_partition_spread_over_the_buckets():
    # Keys sharing the top 6 bits of the hash (one partition of a Q=64 ring).
    tree = MerkleTree(16, 2)
    same = [
        k for k in (f"k{i}" for i in range(40_000)) if mmh3.hash128(k, 0, True, False) >> 122 == 0
    ]
    used = {tree.bucket_of(k) for k in same}
    assert len(same) > 400 and len(used) > 0.8 * tree.leaves


# --- diff -------------------------------------------------------------------------------


@FAST
@given(shape=shapes, base=states, ours=states, theirs=states, dropped=st.lists(keys, max_size=5))
def test_diff_covers_exactly_the_buckets_of_differing_keys(shape, base, ours, theirs, dropped):
    a = {**base, **ours}
    b = {**base, **theirs}
    for k in dropped:
        b.pop(k, None)
    ta = MerkleTree.build(a.items(), *shape)
    tb = MerkleTree.build(b.items(), *shape)
    stats: dict = {}
    got = diff(ta, tb, stats)
    assert got == sorted(set(got))
    assert set(got) == differing_buckets(ta, a, b)
    assert diff(tb, ta) == got
    assert stats["nodes_compared"] == sum(stats["per_level"].values())
    assert stats["rounds"] == len(stats["per_level"])


@FAST
@given(shape=shapes, a=states, b=states, data=st.data())
def test_diff_from_any_starting_level_finds_the_same_leaves(shape, a, b, data):
    ta = MerkleTree.build(a.items(), *shape)
    tb = MerkleTree.build(b.items(), *shape)
    start = data.draw(st.integers(0, ta.depth))
    assert diff(ta, tb, level=start) == diff(ta, tb)


@FAST
@given(shape=shapes, items=states, data=st.data())
def test_equal_trees_have_an_empty_diff_that_compares_only_the_root(shape, items, data):
    a = MerkleTree.build(items.items(), *shape)
    b = MerkleTree(*shape)
    for key, blob in data.draw(st.permutations(list(items.items()))):
        b.update(key, None, blob)
    stats: dict = {}
    assert diff(a, b, stats) == []
    assert stats["nodes_compared"] == 1 and stats["rounds"] == 1


def test_a_remote_style_walk_counts_the_hashes_each_side_sends():
    a = MerkleTree.build([(f"k{i}", b"1") for i in range(1000)], 4, 3)
    b = a.copy()
    b.update("k7", b"1", b"2")
    walk = TopDownDiff(4, 3, [a.root()], [b.root()])
    sent = 1
    while not walk.done:
        theirs = b.children_of(walk.level, walk.frontier)  # "one Ray call" to the far side
        sent += len(theirs)
        walk.step(a.children_of(walk.level, walk.frontier), theirs)
    assert walk.leaves == [a.bucket_of("k7")]
    assert walk.nodes_compared == sent == 1 + 4 * 3
    assert walk.per_level == {0: 1, 1: 4, 2: 4, 3: 4} and walk.rounds == 4


def test_comparison_helpers():
    assert diff_children([1, 2, 3], [1, 5, 3]) == [1]
    assert child_indexes([0, 2], 3) == [0, 1, 2, 6, 7, 8]
    with pytest.raises(ValueError):
        diff_children([1], [1, 2])
    with pytest.raises(ValueError, match="shapes"):
        diff(MerkleTree(4, 2), MerkleTree(2, 4))
    with pytest.raises(IndexError):
        MerkleTree(4, 2).children(2, 0)
    with pytest.raises(IndexError):
        MerkleTree(4, 2).children(1, 4)


@pytest.fixture(scope="module")
def big_items() -> dict:
    return {f"user:{i:07d}": b"\x94\xcf" + i.to_bytes(8, "big") for i in range(100_000)}


def test_100k_keys_differing_in_100_compare_far_fewer_hashes(big_items):
    started = time.perf_counter()
    a = MerkleTree.build(big_items.items())
    b = a.copy()
    other = dict(big_items)
    for j, i in enumerate(range(0, 100_000, 2000)):  # 100 differing keys on b:
        key = f"user:{i:07d}"
        if j % 2 == 0:  # 25 deleted
            b.update(key, other.pop(key), None)
        else:  # 25 changed
            b.update(key, other[key], b"changed")
            other[key] = b"changed"
    for j in range(25):  # 25 changed elsewhere and 25 only b holds
        key = f"user:{j * 2000 + 1000:07d}"
        b.update(key, other[key], b"changed")
        other[key] = b"changed"
        b.update(f"new:{j}", None, b"x")
        other[f"new:{j}"] = b"x"
    differing = {k for k in big_items.keys() | other.keys() if big_items.get(k) != other.get(k)}
    assert len(differing) == 100
    stats: dict = {}
    got = diff(a, b, stats)
    elapsed = time.perf_counter() - started
    figure = (
        f"{len(got)} leaf buckets, {stats['nodes_compared']} node hashes compared "
        f"(per level {stats['per_level']}) for 100,000 keys differing in 100, {elapsed:.2f}s"
    )
    assert set(got) == {a.bucket_of(k) for k in differing}, figure
    assert len(got) <= 100, figure
    assert stats["nodes_compared"] < 100_000 // 20, figure
    assert elapsed < 5, figure
    print(figure)


# --- shape validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fanout, depth, named",
    [
        (1, 3, "fanout"),
        (0, 3, "fanout"),
        (-4, 2, "fanout"),
        (2.0, 3, "fanout"),
        (16, 0, "depth"),
        (16, -1, "depth"),
        (16, 1.5, "depth"),
        (2, 21, "fanout \\*\\* depth"),
        (16, 6, "fanout \\*\\* depth"),
        (1025, 2, "fanout \\*\\* depth"),
        (2, 10**9, "fanout \\*\\* depth"),
    ],
)
def test_bad_shapes_raise_value_error_naming_the_parameter(fanout, depth, named):
    with pytest.raises(ValueError, match=named):
        MerkleTree(fanout, depth)


def test_the_largest_allowed_shape_is_2_to_the_20_leaves():
    assert MerkleTree(2, 20).leaves == 1 << 20
    assert MerkleTree(1024, 2).leaves == 1 << 20
