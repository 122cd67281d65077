"""Segments (DESIGN §5): immutable sorted Parquet files whose small index finds every key.

A segment is written once, from (encoded key, blob) rows sorted by key; in memory it keeps a
Bloom filter and the first key of each row group. The properties: a lookup returns exactly the
rows present (a Bloom false positive never becomes a hit), over however many row groups; a
reload rebuilds the same index; a file that breaks raises `StorageError` naming it, never
anything else; and the key encoding keeps ``"a"`` and ``b"a"`` apart.
"""

from __future__ import annotations

import os
import uuid

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamo_ray.storage import segments
from dynamo_ray.errors import StorageError
from dynamo_ray.storage.segments import REMOVED, Bloom, Segment, decode_key, encode_key

FAST = settings(deadline=None, max_examples=40,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

texts = st.text(max_size=6)  # any code points but lone surrogates (not UTF-8 encodable)
keys = st.one_of(texts, st.binary(max_size=6))


def fresh(tmp_path) -> str:
    """A new segment path per hypothesis example (tmp_path is shared by the examples)."""
    return str(tmp_path / f"seg-{uuid.uuid4().hex}.parquet")


# --- key encoding -----------------------------------------------------------------------------


@FAST
@given(key=keys)
def test_decode_key_inverts_encode_key_and_keeps_the_type(key):
    back = decode_key(encode_key(key))
    assert back == key
    assert type(back) is type(key)


@FAST
@given(a=keys, b=keys)
def test_encoded_keys_sort_bytes_before_str_and_each_kind_in_its_own_order(a, b):
    ea, eb = encode_key(a), encode_key(b)
    assert (ea == eb) == (type(a) is type(b) and a == b)
    if type(a) is type(b):
        plain = (lambda k: k.encode()) if isinstance(a, str) else (lambda k: k)
        assert (ea < eb) == (plain(a) < plain(b))
        if isinstance(a, str):  # UTF-8 order is code-point order
            assert (ea < eb) == (a < b)
    else:
        assert (ea < eb) == isinstance(a, bytes)


def test_a_str_key_and_the_bytes_of_its_text_are_different_keys():
    assert encode_key("a") != encode_key(b"a")
    assert encode_key("") != encode_key(b"")
    assert decode_key(encode_key(b"sa")) == b"sa"  # a bytes key that looks like a str tag
    assert decode_key(encode_key("ba")) == "ba"


# --- Bloom filter -----------------------------------------------------------------------------


def test_bloom_has_no_false_negatives_and_few_false_positives():
    bloom = Bloom(2000)
    present = [f"in-{i}".encode() for i in range(2000)]
    for k in present:
        bloom.add(k)
    assert all(k in bloom for k in present)
    false = sum(f"out-{i}".encode() in bloom for i in range(5000))
    assert false < 5000 * 0.03  # ~1 % at 10 bits a key


def test_bloom_of_no_keys_holds_nothing():
    bloom = Bloom(0)
    assert bloom.memory_bytes() == 8  # the 64-bit floor
    assert b"x" not in bloom


# --- write, lookup, scan, load ----------------------------------------------------------------


def rows_of(raw_keys) -> list[tuple[bytes, bytes]]:
    """Sorted rows; each blob names its key, and some keys carry the removal marker."""
    return [(k, REMOVED if i % 7 == 3 else b"v" + k) for i, k in enumerate(sorted(raw_keys))]


@FAST
@given(
    present=st.sets(keys.map(encode_key), max_size=120),
    absent=st.sets(keys.map(encode_key), max_size=40),
    row_group_rows=st.sampled_from([1, 3, 8, 64]),
)
def test_lookup_finds_exactly_the_keys_present_over_many_row_groups(
    tmp_path, monkeypatch, present, absent, row_group_rows
):
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", row_group_rows)
    absent -= present
    rows = rows_of(present)
    path = fresh(tmp_path)
    seg = Segment.write(path, 7, iter(rows))
    assert (seg.path, seg.seq, seg.rows) == (path, 7, len(rows))
    groups = -(-len(rows) // row_group_rows)
    assert len(seg.first_keys) == groups
    # the index assumes every row group but the last holds exactly ROW_GROUP_ROWS rows
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == groups
    assert [meta.row_group(g).num_rows for g in range(groups)] == [
        min(row_group_rows, len(rows) - g * row_group_rows) for g in range(groups)
    ]
    assert list(seg.scan()) == rows
    assert seg.lookup(list(absent)) == {}
    assert seg.lookup([k for k, _ in rows] + list(absent)) == dict(rows)
    for k, blob in rows[:: max(1, len(rows) // 10)]:  # one at a time too
        assert seg.lookup([k]) == {k: blob}

    loaded = Segment.load(path, 7)
    assert (loaded.first_keys, loaded.rows, loaded.bloom.bits) == (seg.first_keys, seg.rows,
                                                                    seg.bloom.bits)
    assert loaded.lookup([k for k, _ in rows] + list(absent)) == dict(rows)
    assert loaded.memory_bytes() == seg.memory_bytes()


@pytest.mark.parametrize("written, loaded", [(64, 32), (8, 64), (32, 5)])
def test_a_segment_written_under_another_row_group_size_loads_readable(
    tmp_path, monkeypatch, written, loaded
):
    """The index follows the file's row groups, so changing ROW_GROUP_ROWS between a spill
    and a restart loses nothing (with the constant assumed, most lookups missed)."""
    rows = rows_of(encode_key(f"k{i:03d}") for i in range(200))
    path = fresh(tmp_path)
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", written)
    seg = Segment.write(path, 1, rows)
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", loaded)
    again = Segment.load(path, 1)
    assert again.first_keys == seg.first_keys == [k for k, _ in rows][::written]
    assert again.lookup([k for k, _ in rows]) == dict(rows)


def test_lookup_ignores_a_bloom_false_positive(tmp_path):
    path = fresh(tmp_path)
    seg = Segment.write(path, 1, [(b"bk", b"v")])
    seg.bloom.bits[:] = b"\xff" * len(seg.bloom.bits)  # every key now passes the filter
    assert seg.lookup([b"a", b"bj", b"bkk", b"z"]) == {}
    assert seg.lookup([b"bk"]) == {b"bk": b"v"}


def test_write_streams_rows_larger_than_one_write_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "ROW_GROUP_ROWS", 2)  # write chunks of 64 * 2 rows
    rows = rows_of(encode_key(f"k{i:04d}") for i in range(301))
    seg = Segment.write(fresh(tmp_path), 1, (r for r in rows))
    assert seg.rows == 301 and len(seg.first_keys) == 151
    assert list(seg.scan()) == rows
    assert seg.lookup([k for k, _ in rows]) == dict(rows)


def test_writing_no_rows_gives_an_empty_readable_segment(tmp_path):
    path = fresh(tmp_path)
    seg = Segment.write(path, 3, iter(()))
    assert os.path.exists(path) and not os.path.exists(path + ".tmp")
    assert (seg.rows, seg.first_keys) == (0, [])
    assert seg.lookup([b"sa", b"ba"]) == {}
    assert list(seg.scan()) == []
    loaded = Segment.load(path, 3)
    assert (loaded.rows, loaded.first_keys) == (0, [])
    assert list(loaded.scan()) == []


def test_write_leaves_no_temporary_file(tmp_path):
    Segment.write(fresh(tmp_path), 1, rows_of([b"sa", b"sb"]))
    assert [p.suffix for p in tmp_path.iterdir()] == [".parquet"]


# --- broken files -----------------------------------------------------------------------------


def chop(path: str, keep: float = 0.5) -> None:
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.9])
def test_loading_a_truncated_segment_raises_storage_error_naming_the_file(tmp_path, keep):
    path = fresh(tmp_path)
    Segment.write(path, 1, rows_of(encode_key(f"k{i}") for i in range(200)))
    chop(path, keep)
    with pytest.raises(StorageError, match=path):
        Segment.load(path, 1)


def test_loading_a_missing_segment_raises_storage_error_naming_the_file(tmp_path):
    path = fresh(tmp_path)
    with pytest.raises(StorageError, match=path):
        Segment.load(path, 1)


@pytest.mark.parametrize("read_first", [False, True])
def test_a_segment_truncated_after_it_was_indexed_raises_storage_error(tmp_path, read_first):
    """Whether or not the file was already open: a read of a truncated file must raise, not
    crash the process (a memory-mapped file cut short faults with SIGBUS)."""
    path = fresh(tmp_path)
    rows = rows_of(encode_key(f"k{i:04d}") for i in range(1000))
    seg = Segment.write(path, 1, rows)
    if read_first:
        assert seg.lookup([rows[0][0]]) == dict(rows[:1])
    chop(path, 0.5)
    with pytest.raises(StorageError, match=path):
        seg.lookup([rows[-1][0]])
    with pytest.raises(StorageError, match=path):
        list(seg.scan())


def test_a_segment_deleted_before_it_was_read_raises_storage_error(tmp_path):
    path = fresh(tmp_path)
    seg = Segment.write(path, 1, rows_of([b"sa"]))
    os.remove(path)
    with pytest.raises(StorageError, match=path):
        seg.lookup([b"sa"])
    with pytest.raises(StorageError, match=path):
        list(seg.scan())


# --- direct page reads (`pages`) ---------------------------------------------------------------


@FAST
@given(sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=80), big=st.booleans())
def test_direct_page_reads_agree_with_pyarrow(tmp_path, sizes, big):
    """Segments are written in the layout `pages` reads; its answers equal pyarrow's, also for
    row groups split into several data pages (values past Parquet's 1 MiB page size)."""
    rows = [(encode_key(f"k{i:03d}"), (b"x" * (300_000 if big and i % 7 == 0 else n)) + b"!")
            for i, n in enumerate(sizes)]
    seg = Segment.write(fresh(tmp_path), 1, rows)
    assert seg.spans is not None
    wanted = [k for k, _ in rows] + [encode_key("absent")]
    direct = seg.lookup(wanted)
    seg.spans = None  # the same lookups through pyarrow
    assert direct == seg.lookup(wanted) == dict(rows)


def test_a_segment_in_another_layout_is_read_through_pyarrow(tmp_path):
    import pyarrow as pa

    path = fresh(tmp_path)  # nullable columns, snappy, dictionary pages: not ours to parse
    rows = rows_of(encode_key(f"k{i:03d}") for i in range(100))
    pq.write_table(pa.table({"key": [k for k, _ in rows], "blob": [b for _, b in rows]}), path,
                   row_group_size=segments.ROW_GROUP_ROWS)
    seg = Segment.load(path, 1)
    assert seg.spans is None
    assert seg.lookup([k for k, _ in rows]) == dict(rows)


def test_a_page_header_damaged_on_disk_falls_back_to_pyarrow(tmp_path):
    """Bytes that do not parse as the promised pages never become an answer: the group is read
    through pyarrow, which raises StorageError for a file it cannot read either."""
    path = fresh(tmp_path)
    rows = rows_of(encode_key(f"k{i:03d}") for i in range(100))
    seg = Segment.write(path, 1, rows)
    with open(path, "r+b") as f:  # the first page header's first byte: a Thrift field header
        f.seek(seg.spans[0])
        f.write(b"\x00")
    try:
        found = seg.lookup([rows[0][0]])
    except StorageError as e:
        assert path in str(e)
    else:
        assert found == dict(rows[:1])  # pyarrow could still read it


def test_writing_a_segment_leaves_no_reference_cycle(tmp_path):
    """pyarrow's `FileMetaData.schema` makes a cycle that holds the file's parsed footer until a
    full collection, which a vnode almost never runs: writing must not build one (a vnode that
    held nothing grew ~3 MB per 100,000 keys it served)."""
    import gc

    def write(seq):
        rows = [(encode_key(f"k{i:05d}"), b"v" * 50) for i in range(500)]
        Segment.write(str(tmp_path / f"seg-{seq}.parquet"), seq, rows)

    write(1)  # first use: pyarrow's lazy imports make cycles of their own, once
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.garbage.clear()
        write(2)
        gc.collect()
        leaked = sorted({type(o).__name__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert leaked == []
