"""Ray Data in and out of tables (dynamo_ray.data), on real actors and real Ray Data tasks:
TableDatasink writes every row once, read_table reads every live value back, lookup adds cached
values; a bad column or argument is a DynamoError the caller sees as one, and stores nothing."""

import pickle
import sys
import time

import numpy as np
import pandas as pd
import pytest
import ray
from ray.data.expressions import col

import dynamo_ray as dr
from dynamo_ray.client.data import TableDatasink, lookup, read_table

# The row functions below run in Ray Data's tasks, whose workers cannot import this module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROWS = 10_000
VEC_LEN = 16

TABLES = {
    "rows": {"n": 3, "r": 2, "w": 2},  # msgpack
    "scan": {"n": 3, "r": 2, "w": 2},
    "scan_arrays": {"n": 2, "r": 1, "w": 1, "codec": "pickle"},
    "scan_gone": {"n": 3, "r": 2, "w": 2},
    "scan_siblings": {"n": 3, "r": 2, "w": 2},
    "objects": {"n": 2, "r": 1, "w": 1, "codec": "pickle"},
    "untouched": {"n": 3, "r": 2, "w": 2},
}


@pytest.fixture(scope="module")
def data_store(start_store):
    ray.data.DataContext.get_current().enable_progress_bars = False
    return start_store(tables=TABLES)


def _vec(i: int) -> np.ndarray:
    return np.arange(VEC_LEN, dtype=np.float32) + i


def _row(r: dict) -> dict:
    i = int(r["id"])
    return {"id": i, "text": f"text-{i}", "vec": _vec(i)}


def _plain_row(r: dict) -> dict:
    i = int(r["id"])
    return {"id": i, "text": f"text-{i}", "score": i / 2, "tags": [i % 3, i % 5]}


def _keys(n: int = ROWS) -> list:
    return [str(i) for i in range(n)]


# --- TableDatasink -------------------------------------------------------------------------------
def test_datasink_writes_every_row_of_a_column_into_the_cache_table(data_store):
    cache = data_store.table("cache")
    sink = TableDatasink(cache, "id", "vec")
    ray.data.range(ROWS).map(_row).write_datasink(sink)
    assert sink.rows_written == ROWS
    got = cache.get_many(_keys())
    lost = [k for k, g in got.items() if not g.exists]
    assert lost == []
    for k, g in got.items():
        value = g.value
        assert isinstance(value, np.ndarray) and value.dtype == np.float32
        assert np.array_equal(value, _vec(int(k))), k


def test_datasink_writes_whole_rows_as_plain_dicts_into_a_msgpack_table(data_store):
    rows = data_store.table("rows")
    sink = TableDatasink(rows, "id")
    ray.data.range(ROWS).map(_plain_row).write_datasink(sink)
    assert sink.rows_written == ROWS
    got = rows.get_many(_keys())
    wrong = [k for k, g in got.items() if g.value != _plain_row({"id": int(k)})]
    assert wrong == []
    assert type(got["7"].value["id"]) is int and type(got["7"].value["score"]) is float


def test_datasink_keeps_numpy_arrays_of_whole_rows_and_takes_an_async_handle(data_store):
    objects = data_store.async_table("objects")
    sink = TableDatasink(objects, "text", batch_keys=300)
    ray.data.range(1000).map(_row).write_datasink(sink)
    assert sink.rows_written == 1000
    got = data_store.table("objects").get_many([f"text-{i}" for i in range(1000)])
    for i in range(1000):
        value = got[f"text-{i}"].value
        assert value["id"] == i and type(value["id"]) is int and value["text"] == f"text-{i}"
        assert isinstance(value["vec"], np.ndarray) and np.array_equal(value["vec"], _vec(i))


def test_an_empty_dataset_writes_nothing_and_is_no_error(data_store):
    sink = TableDatasink(data_store.table("untouched"), "id", "text")
    ray.data.range(100).map(_row).filter(expr=col("id") < 0).write_datasink(sink)
    assert sink.rows_written == 0


def test_a_missing_key_column_raises_invalid_argument_naming_it_and_stores_nothing(data_store):
    untouched = data_store.table("untouched")
    ds = ray.data.range(500).map(_row)
    with pytest.raises(dr.InvalidArgument) as raised:
        ds.write_datasink(TableDatasink(untouched, "idx"))
    error = raised.value
    assert type(error) is dr.InvalidArgument and not isinstance(error, ray.exceptions.RayError)
    assert "'idx'" in str(error) and all(f"'{c}'" in str(error) for c in ("id", "text", "vec"))
    assert error.__cause__ is None  # Ray Data's SystemException is not chained to it
    with pytest.raises(dr.InvalidArgument, match="value_column 'nope'"):
        ds.write_datasink(TableDatasink(untouched, "id", "nope"))
    assert not any(g.exists for g in untouched.get_many(_keys(500)).values())
    assert not any(g.exists for g in untouched.get_many([f"text-{i}" for i in range(500)]).values())


def test_a_block_without_the_column_ends_its_write_task_with_the_error_on_the_driver(data_store):
    """Without a schema up front (on_write_start(None)) each write task checks its blocks; its
    error is handed back as its result and raised by on_write_complete, unwrapped."""
    sink = TableDatasink(data_store.table("untouched"), "key")
    sink.on_write_start(None)
    result = sink.write([pd.DataFrame({"id": [1, 2]})], None)
    assert result["rows"] == 0 and isinstance(result["error"], dr.InvalidArgument)
    from ray.data.datasource.datasink import WriteResult

    with pytest.raises(dr.InvalidArgument, match="key_column 'key'.*'id'"):
        sink.on_write_complete(WriteResult(num_rows=2, size_bytes=16, write_returns=[result]))
    assert not data_store.table("untouched").get("1").exists


def test_a_value_the_codec_cannot_encode_is_invalid_value_and_stores_nothing(data_store):
    untouched = data_store.table("untouched")
    with pytest.raises(dr.InvalidValue, match="codec 'msgpack'") as raised:
        ray.data.range(300).map(_row).write_datasink(TableDatasink(untouched, "id"))  # vec: numpy
    assert not isinstance(raised.value, ray.exceptions.RayError)
    assert not any(g.exists for g in untouched.get_many(_keys(300)).values())


@pytest.mark.parametrize("args, match", [
    (("cache", "id"), "table must be a Table"),
    ((None, "id"), "table must be a Table"),
    ((..., ""), "key_column"),
    ((..., 5), "key_column"),
    ((..., None), "key_column"),
    ((..., "id", ""), "value_column"),
    ((..., "id", 3), "value_column"),
])
def test_bad_datasink_arguments_raise_invalid_argument(data_store, args, match):
    args = tuple(data_store.table("untouched") if a is ... else a for a in args)
    with pytest.raises(dr.InvalidArgument, match=match):
        TableDatasink(*args)


def test_bad_options_raise_invalid_argument(data_store):
    t = data_store.table("untouched")
    for kwargs in [{"batch_keys": 0}, {"batch_keys": True}, {"ttl_s": -1}, {"ttl_s": "1"}]:
        with pytest.raises(dr.InvalidArgument):
            TableDatasink(t, "id", **kwargs)
    for bad in [{"parallelism": 0}, {"parallelism": 2.5}, {"batch_keys": -1}]:
        with pytest.raises(dr.InvalidArgument):
            read_table(t, **bad)
    with pytest.raises(dr.InvalidArgument):
        read_table(data_store)
    for args in [(data_store, "text"), (t, ""), (t, "text", None)]:
        with pytest.raises(dr.InvalidArgument):
            lookup(*args)


# --- read_table ----------------------------------------------------------------------------------
def test_read_table_reads_every_row_back(data_store):
    scan = data_store.table("scan")
    expected = {f"k{i}": {"i": i, "name": f"n{i}", "tags": [i] * (i % 4)} for i in range(ROWS)}
    scan.load(expected, progress=False)
    df = read_table(scan).to_pandas()
    assert list(df.columns) == ["key", "value"] and len(df) == ROWS
    assert set(df["key"]) == set(expected)
    wrong = [k for k, v in zip(df["key"], df["value"], strict=True) if v != expected[k]]
    assert wrong == []  # dicts with different keys stay as they were (no Arrow struct)


def test_read_table_keeps_numpy_values_and_takes_a_parallelism(data_store):
    arrays = data_store.table("scan_arrays")
    arrays.load({f"a{i}": _vec(i) for i in range(1000)}, progress=False)
    ds = read_table(arrays, parallelism=3, batch_keys=128)
    rows = ds.take_all()
    assert len(rows) == 1000
    for row in rows:
        assert isinstance(row["value"], np.ndarray)
        assert np.array_equal(row["value"], _vec(int(row["key"][1:])))


def test_read_table_skips_deleted_and_expired_keys(data_store):
    gone = data_store.table("scan_gone")
    gone.load({f"g{i}": i for i in range(200)}, progress=False)
    deleted = [f"g{i}" for i in range(0, 200, 10)]
    expiring = {f"g{i}": -i for i in range(5, 200, 10)}
    for key, got in gone.get_many(deleted).items():
        gone.delete(key, context=got.context)
    contexts = {k: g.context for k, g in gone.get_many(list(expiring)).items()}
    gone.put_many(expiring, contexts=contexts, ttl_s=0.5)
    time.sleep(0.7)
    rows = read_table(gone).take_all()
    assert len(rows) == 200 - len(deleted) - len(expiring)
    seen = {r["key"]: r["value"] for r in rows}
    assert not (set(seen) & (set(deleted) | set(expiring)))
    assert all(seen[k] == int(k[1:]) for k in seen)


def test_read_table_gives_a_row_per_sibling_unless_the_handle_merges(data_store):
    siblings = data_store.table("scan_siblings")
    siblings.put("cart", ["book"])
    siblings.put("cart", ["pen"])  # no context: a sibling
    siblings.put("solo", ["cup"])
    rows = read_table(siblings).take_all()
    assert sorted((r["key"], tuple(r["value"])) for r in rows) == [
        ("cart", ("book",)), ("cart", ("pen",)), ("solo", ("cup",))]
    merged = read_table(data_store.table("scan_siblings", merge=dr.merges.union)).take_all()
    assert {r["key"]: sorted(r["value"]) for r in merged} == {"cart": ["book", "pen"],
                                                              "solo": ["cup"]}


# --- lookup --------------------------------------------------------------------------------------
def test_lookup_adds_cached_values_and_none_for_misses(data_store):
    cache = data_store.table("cache")
    cache.put_many({f"word-{i}": _vec(i) for i in range(0, 400, 2)})  # even words are cached
    step = lookup(cache, "text", "emb")
    assert pickle.loads(pickle.dumps(step)) is not None
    words = ray.data.range(400).map(lambda r: {"n": r["id"], "text": f"word-{r['id']}"})
    for batch_format in ("pandas", "numpy"):
        rows = words.map_batches(step, batch_format=batch_format, batch_size=64).take_all()
        assert len(rows) == 400
        for row in rows:
            n = int(row["n"])
            if n % 2:
                assert row["emb"] is None, (batch_format, n)
            else:
                assert np.array_equal(row["emb"], _vec(n)), (batch_format, n)


def test_lookup_keys_numbers_like_the_datasink_and_sees_its_rows(data_store):
    rows = ray.data.range(50).map(_row)
    rows.write_datasink(TableDatasink(data_store.table("objects"), "id", "text"))
    step = lookup(data_store.table("objects"), "id", "stored")
    df = ray.data.range(60).map_batches(step, batch_format="pandas").to_pandas()
    got = dict(zip(df["id"], df["stored"], strict=True))
    assert all(got[i] == f"text-{i}" for i in range(50))
    assert all(got[i] is None for i in range(50, 60))
