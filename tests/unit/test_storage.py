"""The per-range store (DESIGN §5): memory first, Parquet segments when memory runs out.

The oracle is a plain dict of the live entries (``model``) and a second dict of what the
segment files hold (``disk``: what a restart on the same directory must see again). Whatever
mix of puts, pops, spills, flushes, compactions and restarts runs, the store answers like the
dict, its counters (``count``, ``data_bytes``, ``hot_bytes``, ``maybe_tombstones``) and Merkle
tree equal those recomputed from the dict, and a reload gives back exactly ``disk``. Broken
files are set aside (``*.corrupt``) without an exception; the write-ahead log keeps every
complete record of a torn file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from dynamo_ray.storage import segments
from dynamo_ray.core.merkle import MerkleTree, item_hash
from dynamo_ray.storage.segments import Segment
from dynamo_ray.storage.memtable import ENTRY_OVERHEAD_BYTES, key_bytes
from dynamo_ray.protocol.transport import OsFiles
from dynamo_ray.storage.range_store import RangeStore
from dynamo_ray.storage.wal import WriteAheadLog

SHAPE = (4, 2)
FAST = settings(deadline=None, max_examples=40,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# A few short names as str or as bytes, so keys repeat and "a" sits next to b"a".
names = st.text(alphabet="abcé", max_size=2)
keys = st.one_of(names, names.map(str.encode))
# Real blobs are never empty (b"" is the removal marker); some end in msgpack nil (0xC0).
blobs = st.one_of(st.binary(min_size=1, max_size=12),
                  st.binary(max_size=8).map(lambda b: b + b"\xc0"))


# --- helpers ----------------------------------------------------------------------------------


def twin(key):
    """The other type's key with the same text (a different key)."""
    if isinstance(key, str):
        return key.encode()
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


def levels(tree: MerkleTree) -> list[list[int]]:
    return [tree.level(d) for d in range(tree.depth + 1)]


def hot_entry_bytes(store: RangeStore) -> int:
    return sum(key_bytes(k) + ENTRY_OVERHEAD_BYTES for k in store.hot.keys())


def hot_blob_bytes(store: RangeStore) -> int:
    return sum(len(b or b"") for _, b in store.hot.items())


def assert_matches(store: RangeStore, model: dict, absent=()) -> None:
    """The store answers like ``model`` and its counters and tree are those of ``model``."""
    probes = list(model) + [k for k in absent if k not in model]
    probes += [t for k in list(probes) if (t := twin(k)) is not None and t not in model]
    for k in probes:
        assert store.get(k) == model.get(k), k
    assert store.get_many(probes) == [model.get(k) for k in probes]
    assert store.get_many(probes[::-1] + probes[:3]) == [
        model.get(k) for k in probes[::-1] + probes[:3]]
    items = store.items()
    assert len(items) == len(model)  # no key twice
    assert dict(items) == model
    assert sorted(store.keys(), key=repr) == sorted(model, key=repr)
    assert len(store) == store.count == len(model)
    assert store.data_bytes == store.nbytes == sum(len(b) + key_bytes(k) for k, b in model.items())
    assert store.maybe_tombstones == {k for k, b in model.items() if b[-1] == 0xC0}
    if store.tree is not None:
        assert len(store.tree) == len(model)
        assert levels(store.tree) == levels(MerkleTree.build(model.items(), *store.tree.shape))


def assert_memory_accounted(store: RangeStore) -> None:
    """Hot memory is the entries plus their slabs, which hold every blob and exist only for
    blobs (the slab bound itself is `test_memtable`'s)."""
    slabs = store.hot_bytes - hot_entry_bytes(store)
    assert slabs >= hot_blob_bytes(store)
    assert (slabs == 0) == (hot_blob_bytes(store) == 0)
    assert store.memory_bytes() == store.hot_bytes + sum(s.memory_bytes() for s in store.segments)


def segment_files(directory: str) -> set[str]:
    return set(os.listdir(directory)) if os.path.isdir(directory) else set()


def reloaded(directory: str) -> RangeStore:
    store = RangeStore(SHAPE, directory)
    store.load()
    return store


# --- the model-based test ---------------------------------------------------------------------


class RangeStoreMachine(RuleBasedStateMachine):
    """A RangeStore with a directory and a tree against a dict (live) and a dict (on disk)."""

    base: Path  # set by the test

    def __init__(self):
        super().__init__()
        self.directory = str(self.base / uuid.uuid4().hex)
        self.store = RangeStore(SHAPE, self.directory)
        self.model: dict = {}  # live entries
        self.disk: dict = {}  # what a reload of the directory must give
        self.dirty: set = set()  # keys put or popped since they were last flushed or spilled
        self.gone: set = set()  # keys once written: probed when absent

    @initialize(entries=st.lists(st.tuples(keys, blobs), max_size=30))
    def fill(self, entries):
        for key, blob in entries:
            self.put(key, blob, False)

    @rule(key=keys, blob=blobs, pass_old=st.booleans())
    def put(self, key, blob, pass_old):
        if pass_old:
            self.store.put(key, blob, self.model.get(key))
        else:
            self.store.put(key, blob)
        self.model[key] = blob
        self.dirty.add(key)
        self.gone.add(key)

    @rule(entries=st.lists(st.tuples(keys, blobs), min_size=5, max_size=40))
    def put_many(self, entries):
        for key, blob in entries:
            self.put(key, blob, True)

    @rule(key=keys)
    def pop(self, key):
        assert self.store.pop(key) == self.model.pop(key, None)
        self.dirty.add(key)

    @precondition(lambda self: self.disk)
    @rule(data=st.data())
    def pop_spilled(self, data):  # a removal marker over a row on disk
        self.pop(data.draw(st.sampled_from(sorted(self.disk, key=repr)), label="key"))

    @rule(free_bytes=st.one_of(st.sampled_from([0, 1, 10**9]), st.integers(1, 2000)))
    def spill(self, free_bytes):
        store = self.store
        before = list(store.hot.items())
        memory_before, hot_before = store.memory_bytes(), store.hot_bytes
        segments_before = len(store.segments)
        freed = store.spill(free_bytes)
        after = list(store.hot.items())
        victims = before[: len(before) - len(after)]
        assert after == before[len(victims):]  # the coldest (oldest) went, in order
        sizes = [key_bytes(k) + len(b or b"") + ENTRY_OVERHEAD_BYTES for k, b in victims]
        assert freed == hot_before - store.hot_bytes
        if free_bytes <= 0 or not before:
            assert victims == [] and len(store.segments) == segments_before
        else:
            assert victims and len(store.segments) == segments_before + 1
            assert sum(sizes) >= free_bytes or not after  # enough, or everything
            assert sum(sizes[:-1]) < free_bytes  # and no more entries than needed
            new = store.segments[-1].memory_bytes()
            assert memory_before - store.memory_bytes() == freed - new
        for key, blob in victims:
            if blob is None:
                self.disk.pop(key, None)
            else:
                self.disk[key] = blob
            self.dirty.discard(key)

    @rule()
    def spill_everything(self):
        self.spill(10**9)
        assert len(self.store.hot) == 0 and self.store.hot_bytes == 0

    @rule()
    def flush(self):
        n = self.store.flush()
        assert n <= len(self.dirty)
        for key in self.dirty:
            if key in self.model:
                self.disk[key] = self.model[key]
            else:
                self.disk.pop(key, None)
        self.dirty.clear()
        assert not self.store.unflushed

    @rule()
    def compact(self):
        before = len(self.store.segments)
        folded = self.store.compact()
        assert folded == (before if before >= 2 else 0)
        assert len(self.store.segments) <= (1 if before >= 2 else before)
        if folded and not self.store.segments:
            assert None not in dict(self.store.hot.items()).values()  # no marker left

    @precondition(lambda self: len(self.store.segments) >= 2)
    @rule()
    def compact_several(self):
        self.compact()

    @rule()
    def reload_gives_what_was_spilled_or_flushed(self):
        fresh = reloaded(self.directory)
        assert fresh.errors == []
        assert_matches(fresh, self.disk, self.gone)
        assert [s.seq for s in fresh.segments] == [s.seq for s in self.store.segments]

    @rule()
    def restart(self):
        for segment in self.store.segments:
            segment.close()
        self.store = reloaded(self.directory)
        self.model = dict(self.disk)
        self.dirty.clear()

    @rule(buckets=st.sets(st.integers(0, SHAPE[0] ** SHAPE[1] - 1), max_size=6))
    def digests_list_the_model_keys_of_the_buckets(self, buckets):
        bucket_of = self.store.tree.bucket_of
        expected = {(k, item_hash(k, b)) for k, b in self.model.items() if bucket_of(k) in buckets}
        got = self.store.digests(buckets)
        assert len(got) == len(expected) and set(got) == expected

    @invariant()
    def answers_like_the_model(self):
        assert_matches(self.store, self.model, self.gone)
        assert_memory_accounted(self.store)
        assert self.store.errors == []
        assert segment_files(self.directory) == {
            os.path.basename(s.path) for s in self.store.segments}
        seqs = [s.seq for s in self.store.segments]
        assert seqs == sorted(set(seqs))  # oldest first, each once
        if not self.store.segments:
            assert self.disk == {}


def test_range_store_behaves_like_a_dict_through_spills_flushes_compactions_and_restarts(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", 4)  # segments of many row groups
    RangeStoreMachine.base = tmp_path
    run_state_machine_as_test(
        RangeStoreMachine,
        settings=settings(deadline=None, max_examples=80, stateful_step_count=30,
                          suppress_health_check=[HealthCheck.function_scoped_fixture]),
    )


# --- put with the old blob ------------------------------------------------------------------


ops = st.lists(st.one_of(st.tuples(keys, blobs), st.tuples(keys, st.none())), max_size=60)


@FAST
@given(ops=ops, spill_at=st.integers(0, 60))
def test_put_with_the_old_blob_given_equals_put_without(tmp_path, ops, spill_at):
    stores = [RangeStore(SHAPE, str(tmp_path / uuid.uuid4().hex)) for _ in range(2)]
    for i, (key, blob) in enumerate(ops):
        if i == spill_at:
            for s in stores:
                s.spill(500)
        for given_old, s in enumerate(stores):
            if blob is None:
                s.pop(key)
            elif given_old:
                s.put(key, blob, s.get(key))
            else:
                s.put(key, blob)
    a, b = stores
    assert a.items() == b.items()
    assert list(a.hot.items()) == list(b.hot.items())
    assert (a.count, a.data_bytes, a.hot_bytes, a.maybe_tombstones) == (
        b.count, b.data_bytes, b.hot_bytes, b.maybe_tombstones)
    assert levels(a.tree) == levels(b.tree)


# --- reload ---------------------------------------------------------------------------------


def test_reload_keeps_spilled_and_flushed_entries_but_not_hot_only_ones(tmp_path):
    d = str(tmp_path / "r")
    store = RangeStore(SHAPE, d)
    store.put("spilled", b"1")
    store.put(b"spilled", b"2")  # the same text as bytes: another key
    store.spill(10**9)
    store.put("flushed", b"3\xc0")
    store.flush()
    store.put("hot-only", b"4")
    store.put("spilled", b"5")  # a newer version, hot only
    fresh = reloaded(d)
    expected = {"spilled": b"1", b"spilled": b"2", "flushed": b"3\xc0"}
    assert_matches(fresh, expected, ["hot-only"])
    assert fresh.maybe_tombstones == {"flushed"}
    assert len(fresh.hot) == 0 and fresh.hot_bytes == 0


def test_the_newest_version_wins_across_segments_on_reload(tmp_path):
    d = str(tmp_path / "r")
    store = RangeStore(SHAPE, d)
    for version in range(1, 5):
        for i in range(10):
            if (i + version) % 2:  # each key in some segments only
                store.put(f"k{i}", f"v{version}-{i}".encode())
        if version % 2:
            store.spill(10**9)
        else:
            store.flush()
    assert len(store.segments) == 4
    model = dict(store.items())
    assert model == {f"k{i}": f"v{4 if (i + 4) % 2 else 3}-{i}".encode() for i in range(10)}
    assert_matches(reloaded(d), model)


@pytest.mark.parametrize("persist", ["spill", "flush"])
def test_removal_markers_hide_older_rows_across_reload(tmp_path, persist):
    d = str(tmp_path / "r")
    store = RangeStore(SHAPE, d)
    for i in range(6):
        store.put(f"k{i}", b"old")
    store.spill(10**9)
    store.put("k0", b"new")
    store.flush()  # k0 on disk twice
    store.pop("k0")
    store.pop("k1")
    store.put("k2", b"back")
    store.pop("k2")
    if persist == "spill":
        store.spill(10**9)
    else:
        store.flush()
    expected = {f"k{i}": b"old" for i in range(3, 6)}
    assert_matches(store, expected, ["k0", "k1", "k2"])
    assert_matches(reloaded(d), expected, ["k0", "k1", "k2"])


def test_a_removal_is_flushed_like_a_write(tmp_path):
    """A checkpoint (flush, then the log truncated) must persist pops too, or a key removed
    after it was flushed comes back on restart."""
    d = str(tmp_path / "r")
    store = RangeStore(SHAPE, d)
    store.put("k", b"v")
    store.put("other", b"w")
    store.flush()
    assert store.pop("k") == b"v"
    assert store.flush() == 1
    assert_matches(reloaded(d), {"other": b"w"}, ["k"])


def test_new_segments_after_a_reload_are_newer_than_the_loaded_ones(tmp_path):
    d = str(tmp_path / "r")
    store = RangeStore(SHAPE, d)
    store.put("k", b"1")
    store.spill(10**9)
    store.put("k", b"2")
    store.spill(10**9)
    fresh = reloaded(d)
    fresh.put("k", b"3")
    fresh.spill(10**9)
    assert [s.seq for s in fresh.segments] == [1, 2, 3]
    assert_matches(reloaded(d), {"k": b"3"})


def test_loading_a_missing_directory_is_an_empty_store(tmp_path):
    store = reloaded(str(tmp_path / "never-written"))
    assert_matches(store, {}, ["k"])
    assert store.errors == []


# --- corruption -----------------------------------------------------------------------------


def three_segments(d: str) -> RangeStore:
    """Segments 1..3 holding keys a*, b*, c*; ``shared`` newest in segment 3. Written with
    the old blobs given, so no segment file has been opened for reading yet."""
    store = RangeStore(SHAPE, d)
    for seg, prefix in enumerate("abc", start=1):
        for i in range(40):
            store.put(f"{prefix}{i}", f"{prefix}{i}".encode(), None)
        store.put("shared", f"from {seg}".encode(), f"from {seg - 1}".encode() if seg > 1 else None)
        store.spill(10**9)
    assert all(s._file is None for s in store.segments)
    return store


def chop(path: str, keep: float = 0.5) -> None:
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


def without(items: dict, prefix: str) -> dict:
    return {k: b for k, b in items.items() if not k.startswith(prefix)}


@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_a_truncated_segment_is_set_aside_on_load(tmp_path, keep):
    d = str(tmp_path / "r")
    everything = dict(three_segments(d).items())
    bad = os.path.join(d, "seg-00000003.parquet")
    chop(bad, keep)
    store = reloaded(d)  # no exception
    assert os.path.exists(bad + ".corrupt") and not os.path.exists(bad)
    assert len(store.errors) == 1 and bad in store.errors[0]
    expected = without(everything, "c") | {"shared": b"from 2"}  # the older copy shows again
    assert_matches(store, expected, ["c0"])
    store.put("new", b"n")
    store.spill(10**9)
    assert store.segments[-1].seq == 4  # not the corrupt file's number again
    assert reloaded(d).errors == []


def test_a_deleted_segment_leaves_the_others_readable_on_load(tmp_path):
    d = str(tmp_path / "r")
    everything = dict(three_segments(d).items())
    os.remove(os.path.join(d, "seg-00000002.parquet"))
    store = reloaded(d)
    assert store.errors == []
    assert_matches(store, without(everything, "b"), ["b0"])


@pytest.mark.parametrize("damage", ["truncate", "delete", "truncate after a read"])
def test_a_segment_broken_after_it_was_indexed_is_set_aside_at_run_time(tmp_path, damage):
    d = str(tmp_path / "r")
    store = three_segments(d)  # indexed, no file open yet (an open file outlives its deletion)
    everything = dict(three_segments(str(tmp_path / "twin")).items())
    if damage == "truncate after a read":
        assert dict(store.items()) == everything  # every file is open now
    bad = os.path.join(d, "seg-00000002.parquet")
    if damage == "delete":
        os.remove(bad)
    else:
        chop(bad, 0.5)
    assert store.get("b5") is None  # no exception: the segment goes, its keys read as absent
    assert len(store.errors) == 1 and bad in store.errors[0]
    assert [s.seq for s in store.segments] == [1, 3]
    if damage != "delete":
        assert os.path.exists(bad + ".corrupt")
    assert_matches(store, without(everything, "b"), ["b0"])
    assert_memory_accounted(store)


def test_items_sets_a_broken_segment_aside(tmp_path):
    d = str(tmp_path / "r")
    store = three_segments(d)
    expected = without(dict(three_segments(str(tmp_path / "twin")).items()), "a")
    chop(os.path.join(d, "seg-00000001.parquet"), 0.3)
    assert dict(store.items()) == expected
    assert len(store.errors) == 1
    assert_matches(store, expected)


def test_put_over_a_key_of_a_broken_segment_counts_it_as_new(tmp_path):
    d = str(tmp_path / "r")
    store = three_segments(d)
    chop(os.path.join(d, "seg-00000001.parquet"), 0.5)
    store.put("a1", b"rewritten")  # reads the old blob first: the segment is set aside then
    expected = without(dict(three_segments(str(tmp_path / "twin")).items()), "a")
    assert_matches(store, expected | {"a1": b"rewritten"})


def test_compaction_sets_a_broken_input_aside_and_keeps_the_rest(tmp_path):
    d = str(tmp_path / "r")
    store = three_segments(d)
    expected = without(dict(three_segments(str(tmp_path / "twin")).items()), "b")
    expected["shared"] = b"from 3"
    chop(os.path.join(d, "seg-00000002.parquet"), 0.5)
    assert store.compact() == 0
    assert len(store.errors) == 1 and [s.seq for s in store.segments] == [1, 3]
    assert segment_files(d) == {"seg-00000001.parquet", "seg-00000002.parquet.corrupt",
                                "seg-00000003.parquet"}  # no half-written output left
    assert_matches(store, expected)
    assert store.compact() == 2
    assert len(store.segments) == 1
    assert_matches(store, expected)
    assert_matches(reloaded(d), expected)


# --- compaction -----------------------------------------------------------------------------


def test_compaction_streams_and_keeps_the_newest_row_of_each_key(tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", 4)
    d = str(tmp_path / "r")
    store = RangeStore(SHAPE, d)
    for version in range(4):
        for i in range(version, 100, 2):
            store.put(f"k{i:03d}", f"v{version}".encode())
        store.pop(f"k{version * 10:03d}")
        store.spill(10**9)
    store.put("k001", b"hot")
    store.pop("k003")  # a marker in memory over a spilled row
    model = dict(store.items())
    total_rows = sum(s.rows for s in store.segments)

    scanned = [0]
    first_output_after = []
    scan, write = Segment.scan, Segment.write.__func__

    def counting_scan(self):
        for row in scan(self):
            scanned[0] += 1
            yield row

    def watching_write(cls, path, seq, rows):
        assert not isinstance(rows, (list, tuple))  # an iterator, not the rows in memory

        def watch():
            for row in rows:
                if not first_output_after:
                    first_output_after.append(scanned[0])
                yield row
        return write(cls, path, seq, watch())

    monkeypatch.setattr(Segment, "scan", counting_scan)
    monkeypatch.setattr(Segment, "write", classmethod(watching_write))
    assert store.compact() == 4
    # the first output row left before much more than one row per input segment was read
    assert first_output_after[0] <= 2 * 4 < total_rows
    assert len(store.segments) == 1
    assert_matches(store, model, ["k000", "k010", "k003"])
    folded = dict(store.segments[0].scan())
    assert b"" not in folded.values()  # no removal marker is left in the folded segment
    assert "k003" in store.hot and store.hot.get("k003", b"?") is None  # hides the folded row
    assert_matches(reloaded(d), model | {"k001": b"v1", "k003": b"v3"}, ["k000", "k010"])


def test_compacting_segments_of_removed_keys_only_leaves_no_segment(tmp_path):
    d = str(tmp_path / "r")
    store = RangeStore(SHAPE, d)
    store.put("a", b"1")
    store.put(b"a", b"2")
    store.spill(10**9)
    store.pop("a")
    store.pop(b"a")
    store.spill(10**9)
    assert store.compact() == 2
    assert store.segments == [] and segment_files(d) == set()
    assert len(store.hot) == 0 and store.hot_bytes == 0  # markers: nothing left to hide
    assert_matches(store, {}, ["a", b"a"])
    assert_matches(reloaded(d), {}, ["a", b"a"])


def test_compaction_of_fewer_than_two_segments_does_nothing(tmp_path):
    d = str(tmp_path / "r")
    store = RangeStore(SHAPE, d)
    assert store.compact() == 0
    store.put("a", b"1")
    store.spill(10**9)
    files = segment_files(d)
    assert store.compact() == 0 and segment_files(d) == files


# --- memory ---------------------------------------------------------------------------------


def test_spill_frees_memory_and_everything_spilled_leaves_no_hot_bytes(tmp_path):
    store = RangeStore(SHAPE, str(tmp_path / "r"))
    for i in range(200):
        store.put(f"key-{i}", bytes(100))
    assert_memory_accounted(store)
    before = store.memory_bytes()
    freed = store.spill(5000)
    victims = 200 - len(store.hot)
    entry = 100 + 7 + ENTRY_OVERHEAD_BYTES
    assert 5000 <= victims * entry < 5000 + entry
    # their entries, not yet their slab, which still holds the entries that stay
    assert freed == victims * ENTRY_OVERHEAD_BYTES + sum(
        key_bytes(f"key-{i}") for i in range(victims))
    after = store.memory_bytes()
    assert before - after == freed - store.segments[-1].memory_bytes()
    store.spill(10**9)
    assert len(store.hot) == 0 and store.hot_bytes == 0
    assert_memory_accounted(store)


def test_hot_bytes_return_to_zero_after_a_key_is_written_over_its_removal_marker(tmp_path):
    store = RangeStore(SHAPE, str(tmp_path / "r"))
    store.put("k", b"v1")
    store.spill(10**9)
    store.pop("k")  # a marker in memory
    assert_memory_accounted(store)
    store.put("k", b"v2")  # written over the marker
    assert_memory_accounted(store)
    store.spill(10**9)
    assert store.hot_bytes == 0
    assert_memory_accounted(store)


def test_spilling_nothing_writes_no_segment(tmp_path):
    d = str(tmp_path / "r")
    store = RangeStore(SHAPE, d)
    assert store.spill(10**9) == 0  # nothing hot
    store.put("k", b"v")
    assert store.spill(0) == 0
    assert store.segments == [] and segment_files(d) == set()
    assert store.hot_bytes > hot_entry_bytes(store) > 0
    assert_memory_accounted(store)


def test_a_store_without_a_directory_never_spills_or_flushes():
    store = RangeStore(SHAPE)
    store.put("k", b"v")
    assert store.spill(10**9) == 0 and store.flush() == 0 and store.compact() == 0
    assert not store.unflushed
    store.load()
    assert_matches(store, {"k": b"v"})


# --- maybe_tombstones -----------------------------------------------------------------------


def test_maybe_tombstones_are_the_keys_whose_blob_ends_in_msgpack_nil(tmp_path):
    d = str(tmp_path / "r")
    store = RangeStore(SHAPE, d)
    store.put("t", b"\x93\xc0")
    store.put(b"t", b"\xc0")
    store.put("v", b"\xc0\x01")  # 0xC0 not last: not a candidate
    assert store.maybe_tombstones == {"t", b"t"}
    store.put(b"t", b"value")  # rewritten with a value
    assert store.maybe_tombstones == {"t"}
    store.put("v", b"x\xc0")
    store.spill(10**9)
    assert store.maybe_tombstones == {"t", "v"}  # spilled keys stay candidates
    assert reloaded(d).maybe_tombstones == {"t", "v"}
    store.pop("t")
    assert store.maybe_tombstones == {"v"}
    store.flush()
    assert reloaded(d).maybe_tombstones == {"v"}


# --- destroy --------------------------------------------------------------------------------


def test_destroy_removes_the_directory(tmp_path):
    d = str(tmp_path / "r")
    store = three_segments(d)
    store.destroy()
    assert not os.path.exists(d) and store.segments == []


# --- write-ahead log ------------------------------------------------------------------------


records = st.lists(
    st.tuples(st.sampled_from(["users", "carts"]), st.integers(0, 2**16),
              st.one_of(st.text(max_size=8), st.binary(max_size=8)),
              st.binary(min_size=1, max_size=40)).map(list),
    min_size=1, max_size=8)


def _replayed(records_: list) -> list:
    """What replay returns for records written as [table, kp, key, blob] (no hint, no dot)."""
    return [(*r, None, None) for r in records_]


@FAST
@given(batches=st.lists(records, min_size=1, max_size=4))
def test_wal_replays_appended_records_in_order(tmp_path, batches):
    wal = WriteAheadLog(str(tmp_path / uuid.uuid4().hex / "wal.log"), OsFiles())
    sizes = [wal.size_bytes]
    for batch in batches:
        wal.append(batch)
        sizes.append(wal.size_bytes)
    assert sizes == sorted(set(sizes))  # grows with every append
    assert sizes[-1] == os.path.getsize(wal.path)
    assert wal.replay() == _replayed([r for batch in batches for r in batch])
    wal.close()
    reopened = WriteAheadLog(wal.path, OsFiles())
    assert reopened.size_bytes == sizes[-1]
    assert reopened.replay() == _replayed([r for batch in batches for r in batch])
    reopened.close()


@FAST
@given(complete=records, last=records, cut=st.integers(1, 10**6), more=records)
def test_wal_replay_drops_a_torn_last_record_and_appends_go_on_after_it(
    tmp_path, complete, last, cut, more
):
    wal = WriteAheadLog(str(tmp_path / uuid.uuid4().hex / "wal.log"), OsFiles())
    wal.append(complete)
    good = wal.size_bytes
    wal.append(last[:1])
    torn = good + (cut % (wal.size_bytes - good))  # somewhere inside the last record
    wal.close()
    with open(wal.path, "r+b") as f:
        f.truncate(torn)
    wal = WriteAheadLog(wal.path, OsFiles())  # a restart after the crash
    assert wal.replay() == _replayed(complete)  # no exception
    wal.append(more)  # writes go on after the restart
    assert wal.replay() == _replayed(complete + more)
    wal.close()
    assert WriteAheadLog(wal.path, OsFiles()).replay() == _replayed(complete + more)


def test_wal_rewrite_replaces_its_records_and_keeps_hints(tmp_path):
    wal = WriteAheadLog(str(tmp_path / "v" / "wal.log"), OsFiles())
    wal.append([["t", 1, "k", b"v"], ["t", 1, b"k", b"w"]])
    assert wal.size_bytes > 0
    wal.rewrite([("t", 3, "h", b"x", 5), ("t", 3, "g", None, None, [[1, 2], 7, 9])])
    assert wal.replay() == [("t", 3, "h", b"x", 5, None), ("t", 3, "g", None, None, [[1, 2], 7, 9])]
    wal.rewrite([])
    assert wal.size_bytes == 0 and os.path.getsize(wal.path) == 0
    assert wal.replay() == []
    wal.append([["t", 2, "k2", b"x"]])
    assert wal.replay() == [("t", 2, "k2", b"x", None, None)]
    assert wal.size_bytes == os.path.getsize(wal.path)
    wal.close()


def test_wal_of_a_new_file_is_empty(tmp_path):
    wal = WriteAheadLog(str(tmp_path / "deep" / "dir" / "wal.log"), OsFiles())
    assert wal.size_bytes == 0 and wal.replay() == []
    wal.close()
