"""The core store on a real local Ray: quorum reads and writes, versions, batches, errors."""

import pickle
import subprocess
import sys
import textwrap

import pytest
import ray

import dynamo_ray as dr
from dynamo_ray.core import merges
from dynamo_ray.runtime import placement


def test_put_then_get_round_trips_values_of_every_msgpack_type(store, key):
    t = store.table()
    for i, value in enumerate([None, True, 7, -2.5, "text", b"\x00bytes", [1, "a"], {"k": [1, 2]}]):
        t.put(f"{key}-{i}", value)
        assert t.get(f"{key}-{i}").values == [value]


def test_absent_key_reads_no_values_and_value_none(store, key):
    got = store.table().get(key)
    assert got.values == [] and got.value is None and not got.exists


def test_blind_writes_become_siblings(store, key):
    t = store.table()
    t.put(key, "a")
    t.put(key, "b")
    got = t.get(key)
    assert sorted(got.values) == ["a", "b"]
    with pytest.raises(dr.ConflictError):
        got.value


def test_put_with_a_reads_context_replaces_exactly_what_was_read(store, key):
    t = store.table()
    t.put(key, "a")
    t.put(key, "b")
    seen = t.get(key)
    t.put(key, "c")  # written after the read: not covered by its context
    t.put(key, "merged", context=seen.context)
    assert sorted(t.get(key).values) == ["c", "merged"]


def test_two_puts_with_the_same_stale_context_become_two_siblings(store, key):
    t = store.table()
    t.put(key, "v1")
    stale = t.get(key).context
    t.put(key, "phone", context=stale)
    t.put(key, "laptop", context=stale)
    assert sorted(t.get(key).values) == ["laptop", "phone"]


def test_put_returns_a_context_that_replaces_the_value_it_wrote(store, key):
    t = store.table()
    ctx = t.put(key, 1)
    t.put(key, 2, context=ctx)
    assert t.get(key).values == [2]


def test_delete_then_put(store, key):
    t = store.table()
    t.put(key, "x")
    t.delete(key, context=t.get(key).context)
    gone = t.get(key)
    assert gone.values == [] and not gone.exists
    t.put(key, "y", context=gone.context)
    assert t.get(key).values == ["y"]
    t.delete(key, context=t.get(key).context)
    t.put(key, "z")  # a blind put after a delete: the tombstone is not a value
    assert t.get(key).values == ["z"]


def test_merge_function_reconciles_siblings_on_read(store, key):
    carts = store.table("carts", merge=merges.union)
    carts.put(key, ["book"])
    carts.put(key, ["lamp", "book"])
    got = carts.get(key)
    assert got.value == ["book", "lamp"]
    carts.put(key, got.value, context=got.context)
    assert store.table("carts").get(key).values == [["book", "lamp"]]


def test_lww_table_keeps_only_the_newest_write(store, key):
    t = store.table("lww")
    t.put(key, "first")
    t.put(key, "second")
    assert t.get(key).values == ["second"]


def test_per_request_quorums(store, key):
    t = store.table()
    t.put(key, "all", w=3)
    assert t.get(key, r=3).values == ["all"]
    assert t.get(key, r=1).values == ["all"]


def test_batches_round_trip_with_one_call_per_vnode(store):
    t = store.table()
    data = {f"batch-{i}": {"i": i} for i in range(1000)}
    calls_before = store.status()["calls"].sum()
    t.put_many(data)
    calls_put = store.status()["calls"].sum() - calls_before
    got = t.get_many(list(data))
    calls_get = store.status()["calls"].sum() - calls_before - calls_put
    assert {k: g.value for k, g in got.items()} == data
    partitions = store.ring.partitions
    # put: one coordinate and one merge call per vnode; get: one call per vnode
    assert calls_put <= 2 * partitions, calls_put
    assert calls_get <= partitions, calls_get
    assert t.get_many([]) == {}


def test_status_has_a_row_per_vnode(store):
    frame = store.status()
    assert len(frame) == store.ring.partitions
    assert {"node", "partition", "keys", "bytes", "up", "hints_pending"} <= set(frame.columns)
    assert frame["up"].all()
    assert sorted(frame["node"].unique()) == store.nodes()


# --- errors: each typed, each leaves the store unchanged --------------------------------------
@pytest.mark.parametrize("bad", [17, None, b"", "", "x" * 3000, ["list"], "\ud800"])
def test_bad_keys_raise_invalid_key(store, bad):
    with pytest.raises(dr.InvalidKey):
        store.table().put(bad, 1)
    with pytest.raises(dr.InvalidKey):
        store.table().get(bad)


def test_unencodable_value_raises_invalid_value_and_stores_nothing(store, key):
    t = store.table()
    for bad in [{1, 2}, object(), 2**70, {(1, 2): [3]}, [1, {2, 3}]]:
        with pytest.raises(dr.InvalidValue):
            t.put(key, bad)
    with pytest.raises(dr.InvalidValue):
        t.put_many({key: "fine", key + "-2": {1}})
    assert t.get(key).values == [] and t.get(key + "-2").values == []


def test_value_over_the_limit_raises_value_too_large(store, key):
    t = store.table()
    with pytest.raises(dr.ValueTooLarge):
        t.put(key, b"x" * (store.config.limits.max_value_bytes + 1))
    assert t.get(key).values == []


def test_unknown_table_raises_table_not_found(store):
    with pytest.raises(dr.TableNotFound):
        store.table("nope")


def test_quorum_out_of_range_raises_invalid_argument_not_config_error(store, key):
    t = store.table()
    for bad in [0, 4, -1, "2", 2.0, True]:
        for call in (lambda: t.put(key, 1, w=bad), lambda: t.get(key, r=bad)):
            with pytest.raises(dr.InvalidArgument) as err:
                call()
            assert not isinstance(err.value, dr.ConfigError)
    assert t.get(key).values == []


def test_context_of_another_key_or_type_raises_invalid_context(store, key):
    t = store.table()
    t.put(key, 1)
    other = t.get(key + "-other").context
    with pytest.raises(dr.InvalidContext):
        t.put(key, 2, context=other)
    with pytest.raises(dr.InvalidContext):
        t.put(key, 2, context={"clock": 1})
    assert t.get(key).values == [1]


def test_bad_configs_raise_config_error_naming_the_field(local_ray):
    cases = {
        "tables.t.r": dict(tables={"t": {"n": 3, "r": 4, "w": 2}}),
        "partitions": dict(partitions=12),
        "tables.default.n": dict(nodes=2),
        "bogus": dict(bogus=1),
        "timeouts.request_ms": dict(timeouts={"request_ms": 0}),
    }
    for field, overrides in cases.items():
        with pytest.raises(dr.ConfigError, match=field.replace(".", r"\.")):
            dr.start(name="never-started", **overrides)
    assert not placement.store_node_names("never-started")


def test_connect_to_a_missing_store_raises_cluster_not_found(local_ray):
    with pytest.raises(dr.ClusterNotFound):
        dr.connect("no-such-store")


def test_start_refuses_a_name_already_running(store):
    with pytest.raises(dr.StoreExists):
        dr.start(name=store.name, nodes=3, partitions=8)


# --- reaching the store from elsewhere -----------------------------------------------------------
def test_store_and_context_pickle_into_ray_tasks(store, key):
    @ray.remote
    def add_item(s, k, item, ctx):
        t = s.table("carts")
        new_ctx = t.put(k, [item], context=ctx)
        return new_ctx

    ctx = ray.get(add_item.remote(store, key, "book", None))
    assert pickle.loads(pickle.dumps(ctx)) == ctx
    ray.get(add_item.remote(store, key, "book+lamp", ctx))
    assert store.table("carts").get(key).values == [["book+lamp"]]


def test_connect_from_a_second_python_process(store, key):
    store.table().put(key, {"from": "driver"})
    address = ray.get_runtime_context().gcs_address
    script = textwrap.dedent(f"""
        import ray, dynamo_ray as dr
        ray.init(address={address!r}, logging_level="error")
        s = dr.connect({store.name!r})
        t = s.table()
        print("READ", t.get({key!r}).value)
        t.put({key!r} + "-back", "from child")
        ray.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "READ {'from': 'driver'}" in out.stdout, out.stderr[-2000:]
    assert store.table().get(key + "-back").value == "from child"
