"""The store as a cache for Ray workloads: values of any kind (codec pickle), expiry (TTL),
LRU eviction, and bulk read-modify-write (put_many with contexts), on real actors."""

import asyncio
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from helpers import primaries_of, wait_for

import dynamo_ray as dr

TABLES = {
    "ttl": {"n": 3, "r": 2, "w": 2, "ttl_s": 3.0},
    "pickled": {"n": 3, "r": 2, "w": 2, "codec": "pickle"},
    "lru": {"n": 2, "r": 1, "w": 1, "conflict": "lww", "codec": "pickle",
            "max_memory_mb": 0.5, "eviction": "lru"},
}


@pytest.fixture(scope="module")
def cache_store(start_store):
    return start_store(nodes=4, tables=TABLES, antientropy={"tombstone_grace_s": 0.5})


def _values():
    return {
        "array": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        "frame": pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", None], "z": [0.5, 1.5, 2.5]}),
        "arrow": pa.table({"k": ["a", "b"], "v": [1.0, 2.0]}),
        "object": {"tags": {"a", "b"}, "when": (1, 2), "blob": b"\x00\x01"},
        "big": np.random.default_rng(1).random(50_000),  # 400 KB: travels by reference
    }


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b))
    if isinstance(a, pd.DataFrame):
        return a.equals(b) and list(a.dtypes) == list(b.dtypes)
    if isinstance(a, pa.Table):
        return a.equals(b)
    return a == b


@pytest.mark.parametrize("routing", ["coordinator", "client"])
def test_numpy_pandas_and_arrow_values_round_trip_through_a_pickle_table(cache_store, routing):
    t = cache_store.table("pickled", routing=routing)
    values = _values()
    for name, value in values.items():
        t.put(f"{routing}-{name}", value)
    for name, value in values.items():
        assert _same(value, t.get(f"{routing}-{name}").value), name
    t.put_many({f"{routing}-many-{name}": value for name, value in values.items()})
    got = t.get_many([f"{routing}-many-{name}" for name in values])
    for name, value in values.items():
        assert _same(value, got[f"{routing}-many-{name}"].value), name


def test_values_round_trip_through_the_async_table(cache_store):
    values = _values()

    async def main():
        t = cache_store.async_table("pickled")
        await asyncio.gather(*(t.put(f"async-{n}", v) for n, v in values.items()))
        got = await asyncio.gather(*(t.get(f"async-{n}") for n in values))
        return [g.value for g in got]

    for (name, value), back in zip(values.items(), asyncio.run(main())):
        assert _same(value, back), name


def test_a_msgpack_table_rejects_them_with_invalid_value_naming_the_codec(cache_store, key):
    t = cache_store.table()
    for value in [np.arange(3), pd.DataFrame({"x": [1]}), pa.table({"x": [1]}), {1, 2}]:
        with pytest.raises(dr.InvalidValue, match="codec 'msgpack'"):
            t.put(key, value)
        with pytest.raises(dr.InvalidValue, match="codec 'msgpack'"):
            t.put_many({key: 1, key + "-2": value})
    with pytest.raises(dr.InvalidValue, match="codec 'pickle'"):
        cache_store.table("pickled").put(key, lambda x: x)
    assert not t.get(key).exists and not t.get(key + "-2").exists


@pytest.mark.parametrize("routing", ["coordinator", "client"])
def test_table_and_write_ttls_expire_on_time(cache_store, routing, key):
    ttl = cache_store.table("ttl", routing=routing)
    plain = cache_store.table(routing=routing)
    table_ttl_s = TABLES["ttl"]["ttl_s"]
    written_at = time.monotonic()
    ttl.put(key, "table ttl")
    acked_at = time.monotonic()
    ttl.put(key + "-long", "own ttl", ttl_s=30)  # the write's own wins
    plain.put(key + "-write", "write ttl", ttl_s=0.5)
    ttl.put_many({key + "-many": 1}, ttl_s=0.5)
    assert ttl.get(key).value == "table ttl" and plain.get(key + "-write").exists
    time.sleep(0.6)
    assert plain.get(key + "-write").values == [] and not plain.get(key + "-write").exists
    assert not ttl.get(key + "-many").exists
    # the table's TTL has not run out yet (its clock started after written_at)
    assert time.monotonic() - written_at < table_ttl_s, "too slow to test: raise the table TTL"
    assert ttl.get(key).exists
    time.sleep(max(0.0, acked_at + table_ttl_s + 0.1 - time.monotonic()))
    for got in (ttl.get(key), ttl.get_many([key])[key]):
        assert (got.exists, got.values, got.value) == (False, [], None)
    assert ttl.get(key + "-long").value == "own ttl"
    assert cache_store.inspect("ttl", key) == {label: [] for label in primaries_of(cache_store, key)}


def test_an_expired_write_does_not_come_back_through_handoff(cache_store, key):
    t = cache_store.table()
    t.put(key, "old")  # everywhere, no TTL
    primary = cache_store.ring.owners[cache_store.ring.preference_list(
        cache_store.ring.partition_of(key), 3)[0]]
    cache_store.fail_node(primary)
    try:
        t.put(key, "new", context=t.get(key).context, ttl_s=0.5)  # a fallback holds a hint
        assert any("hint" in label for label in cache_store.inspect("default", key))
        time.sleep(0.7)
        assert not t.get(key).exists
    finally:
        cache_store.recover_node(primary)
    assert wait_for(lambda: cache_store.status()["hints_pending"].sum() == 0, 20)
    assert not t.get(key).exists and not t.get(key, r=3).exists
    assert all(v == [] for v in cache_store.inspect("default", key).values())


def test_an_expired_write_stays_expired_through_antientropy(cache_store, key):
    """A replica cut off during the TTL'd overwrite keeps the old value: after the heal,
    anti-entropy spreads the expired version's clock, which covers the old one."""
    t = cache_store.table()
    t.put(key, "old")
    stale = cache_store.ring.owners[cache_store.ring.preference_list(
        cache_store.ring.partition_of(key), 3)[2]]
    rest = [n for n in cache_store.ring.nodes if n != stale]
    cache_store.partition(rest, [stale])
    try:
        t = cache_store.table(via=rest[0])  # primaries only: no hint reaches the stale one
        t.put(key, "new", context=t.get(key).context, ttl_s=0.5, sloppy=False)
        time.sleep(0.7)
    finally:
        cache_store.heal()
    assert any(v == ["old"] for v in cache_store.inspect("default", key).values())
    for _ in range(3):
        cache_store.run_antientropy()
    assert all(v == [] for v in cache_store.inspect("default", key).values())
    assert not t.get(key, r=3).exists


def test_maintenance_turns_expired_values_into_tombstones_and_reaps_them(cache_store):
    t = cache_store.table("ttl")
    keys = [f"reap-{i}" for i in range(300)]
    # a node an earlier test recovered empty is refilled first, so that the bytes below move by
    # expiry alone: a refill during the wait can offset the drop (the margin is about 10 %)
    cache_store.run_antientropy()
    t.put_many({k: "x" * 500 for k in keys}, ttl_s=0.3)
    held = cache_store.status()["bytes"].sum()
    time.sleep(0.5)
    # the vnodes' 5-second maintenance turns them into tombstones (the values' bytes go) ...
    assert wait_for(lambda: cache_store.status()["bytes"].sum() < held - 300 * 3 * 400, 15)
    # ... and anti-entropy's reaper removes them once every primary holds the same tombstone

    def reaped() -> bool:
        cache_store.run_antientropy()
        return not any(cache_store.inspect_many("ttl", keys).values())

    assert wait_for(reaped, 40, 1.0)
    assert not any(g.exists for g in t.get_many(keys).values())


def test_eviction_keeps_each_vnode_within_its_limit_and_the_newest_keys_readable(cache_store):
    t = cache_store.table("lru")
    limit = TABLES["lru"]["max_memory_mb"] * 2**20
    vnodes = len(cache_store.status())
    value = np.ones(256, dtype=np.float32)  # ~1.2 KB pickled
    # ten times what the table may hold over all vnodes (each key on N=2 of them)
    total = int(10 * limit * vnodes / 2 / 1200)
    keys = [f"lru-{i:06d}" for i in range(total)]
    peak = 0
    for start in range(0, total, 500):
        t.put_many({k: value for k in keys[start:start + 500]})
        peak = max(peak, cache_store.status()["cache_bytes"].max())
    status = cache_store.status()
    assert peak <= limit, (peak, limit)
    assert status["evicted"].sum() > total  # most of 2 x total copies were dropped
    newest = keys[-200:]
    got = t.get_many(newest)
    assert sum(g.exists for g in got.values()) == len(newest)
    assert all(_same(value, g.value) for g in got.values())
    oldest = t.get_many(keys[:200])
    assert sum(g.exists for g in oldest.values()) == 0


def test_reads_keep_a_key_in_the_lru(cache_store):
    t = cache_store.table("lru")
    t.put("hot-key", "keep me")
    value = b"v" * 1000
    for start in range(0, 6000, 250):  # each round about a quarter of a vnode's limit
        t.put_many({f"cold-{start + i}": value for i in range(250)})
        assert t.get("hot-key").value == "keep me", start  # each read makes it the newest


def test_put_many_with_contexts_collapses_siblings(cache_store):
    t = cache_store.table()
    keys = [f"rmw-{i}" for i in range(200)]
    for round_ in range(3):
        t.put_many({k: [f"{k}-{round_}"] for k in keys})  # blind: three siblings a key
    got = t.get_many(keys)
    assert all(len(g.values) == 3 for g in got.values())
    merged = {k: sorted(x for v in g.values for x in v) for k, g in got.items()}
    t.put_many(merged, contexts={k: g.context for k, g in got.items()})
    after = t.get_many(keys)
    assert all(g.values == [merged[k]] for k, g in after.items())


def test_put_many_rejects_a_context_of_another_key_and_stores_nothing(cache_store, key):
    t = cache_store.table()
    other = t.get(key + "-other").context
    with pytest.raises(dr.InvalidContext):
        t.put_many({key: 1, key + "-b": 2}, contexts={key: other})
    with pytest.raises(dr.InvalidContext):
        t.put_many({key: 1}, contexts={key + "-not-written": other})
    with pytest.raises(dr.InvalidContext):
        t.put_many({key: 1}, contexts=[other])
    assert not t.get(key).exists and not t.get(key + "-b").exists


def test_equal_blind_writes_do_not_grow_stored_state(cache_store):
    t = cache_store.table()
    keys = [f"eq-{i}" for i in range(1000)]
    before = cache_store.status()["bytes"].sum()
    sizes = []
    for _ in range(5):
        t.put_many({k: "same value" for k in keys})
        sizes.append(cache_store.status()["bytes"].sum() - before)
    assert sizes[-1] <= 1.5 * sizes[0], sizes
    assert all(g.values == ["same value"] for g in t.get_many(keys).values())
    # a distinct value written blind is still kept beside it: nothing acknowledged is dropped
    t.put_many({k: "other" for k in keys[:10]})
    assert all(sorted(g.values) == ["other", "same value"] for g in t.get_many(keys[:10]).values())


def test_a_blind_write_replaces_on_an_lww_table(cache_store, key):
    t = cache_store.table("lww")
    for i in range(5):
        t.put_many({key: i})
    assert t.get(key).values == [4]


@pytest.mark.parametrize("ttl", [-1, 0, "soon", float("nan"), float("inf"), True, [1]])
def test_a_bad_ttl_is_an_invalid_argument_and_stores_nothing(cache_store, key, ttl):
    t = cache_store.table()
    for call in (lambda: t.put(key, 1, ttl_s=ttl), lambda: t.put_many({key: 1}, ttl_s=ttl),
                 lambda: asyncio.run(cache_store.async_table().put(key, 1, ttl_s=ttl))):
        with pytest.raises(dr.InvalidArgument, match="ttl_s"):
            call()
    assert not t.get(key).exists
