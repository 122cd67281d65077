"""The in-memory part of a range (`memtable.MemTable`): a dict in recency order whose blobs live
in slabs.

The oracle is a plain dict with the same operations (a write moves the key to the end). Whatever
the writes, overwrites, removal markers and pops, the table answers like the dict in the same
order, counts exactly the slabs it holds, holds no empty slab, and keeps dead bytes within the
live bytes plus four slabs. Small slabs (64 bytes) so that a few writes cross many slabs and some
blobs are larger than a slab.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_ray.storage.memtable import ENTRY_OVERHEAD_BYTES, SLAB_BYTES, MemTable, key_bytes

SLAB = 64
keys = st.one_of(st.text(alphabet="abcd", min_size=1, max_size=2),
                 st.binary(min_size=1, max_size=2))
blobs = st.one_of(st.none(), st.binary(min_size=1, max_size=100))  # None: a removal marker
ops = st.lists(st.tuples(st.sampled_from(["put", "pop"]), keys, blobs), max_size=120)


def assert_consistent(table: MemTable, model: dict) -> None:
    assert list(table.items()) == list(model.items())
    assert table.keys() == list(model)
    assert len(table) == len(model)
    for key, blob in model.items():
        assert key in table and table.get(key, b"?") == blob
    slabs = table._slabs
    assert table._capacity == sum(len(s) for s in slabs.values())
    entries = sum(key_bytes(k) + ENTRY_OVERHEAD_BYTES for k in model)
    assert table.nbytes == table._capacity + entries
    live = {slab: 0 for slab in slabs}
    for where in table._where.values():
        if where is not None:
            live[where >> 64] += where & ((1 << 32) - 1)
    assert live == table._live
    assert all(n > 0 for n in live.values())  # no slab is held for nothing
    assert table._live_bytes == sum(len(b) for b in model.values() if b is not None)
    assert table._dead_bytes <= table._live_bytes + 4 * SLAB


@settings(deadline=None, max_examples=200)
@given(ops=ops)
def test_a_memtable_answers_like_a_recency_ordered_dict_and_counts_its_slabs(ops):
    table, model = MemTable(slab_bytes=SLAB), {}
    for op, key, blob in ops:
        if op == "put":
            table.put(key, blob)
            model.pop(key, None)
            model[key] = blob
        else:
            assert table.pop(key, "absent") == model.pop(key, "absent")
        assert_consistent(table, model)


def test_popping_the_coldest_entries_frees_their_slabs():
    table = MemTable()
    for i in range(400):
        table.put(f"key-{i:04d}", bytes([i % 255 + 1]) * 1000)
    full = table.nbytes
    assert full >= 400 * 1000
    for i in range(300):  # what a spill does: the front of the table, in order
        table.pop(f"key-{i:04d}")
    assert table.nbytes <= full / 4 + 2 * SLAB_BYTES  # memory goes back with the entries
    assert [k for k, _ in table.items()] == [f"key-{i:04d}" for i in range(300, 400)]


def test_overwrites_without_a_spill_are_repacked_and_keep_the_order():
    table = MemTable(slab_bytes=1024)
    for i in range(10):
        table.put(f"k{i}", b"x" * 100)
    for round_ in range(200):  # every key written again and again: dead bytes pile up
        table.put(f"k{round_ % 10}", bytes([round_ % 255 + 1]) * 100)
    assert table._dead_bytes <= table._live_bytes + 4 * 1024
    assert table._capacity <= 2 * (table._live_bytes + 4 * 1024)
    assert [k for k, _ in table.items()] == [f"k{(190 + i) % 10}" for i in range(10)]
