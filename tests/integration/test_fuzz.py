"""10,000 fuzzed bad inputs through the public API: every one a typed DynamoError, nothing
stored, no actor restarted, every vnode up afterwards."""

import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dynamo_ray as dr
from dynamo_ray import config

LIMITS = {"max_key_bytes": 64, "max_value_bytes": 256, "max_batch_keys": 20}

good_keys = st.text(min_size=1, max_size=8).filter(lambda k: "\ud800" > k or True).map(lambda k: "fz-" + k)
bad_keys = st.one_of(
    st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(),
    st.lists(st.text(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.tuples(st.text(max_size=2)), st.just(""), st.just(b""),
    st.text(min_size=65, max_size=80), st.binary(min_size=65, max_size=80),
    st.just("bad-\ud800-surrogate"), st.builds(object), st.sets(st.integers(), max_size=2),
)
bad_values = st.one_of(
    st.sets(st.integers(), max_size=3), st.frozensets(st.integers(), max_size=2), st.builds(object),
    st.complex_numbers(allow_nan=False), st.integers(min_value=2**64, max_value=2**70),
    st.integers(max_value=-(2**63) - 1, min_value=-(2**70)),
    st.lists(st.sets(st.integers(), max_size=1), min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=2), st.builds(object), min_size=1, max_size=2),
    st.binary(min_size=300, max_size=400), st.text(min_size=300, max_size=400),
    st.just({(1, 2): [1]}),
)
bad_quorums = st.one_of(st.integers(max_value=0), st.integers(min_value=4), st.floats(),
                        st.text(max_size=2), st.booleans())
bad_ttls = st.one_of(st.floats(max_value=0), st.integers(max_value=0), st.text(max_size=3),
                     st.booleans(), st.just(float("nan")), st.just(float("inf")),
                     st.lists(st.integers(), max_size=2))
bad_contexts = st.one_of(st.integers(), st.text(max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                         st.builds(object))


def _calls():
    """One bad call: (description, function taking (store, foreign_context))."""
    return st.one_of(
        bad_keys.map(lambda k: ("get bad key", lambda s, c: s.table().get(k))),
        bad_keys.map(lambda k: ("put bad key", lambda s, c: s.table().put(k, 1))),
        bad_keys.map(lambda k: ("delete bad key", lambda s, c: s.table().delete(k))),
        st.tuples(good_keys, bad_values).map(
            lambda kv: ("put bad value", lambda s, c: s.table().put(kv[0], kv[1]))),
        st.tuples(good_keys, bad_values).map(
            lambda kv: ("put_many bad value", lambda s, c: s.table().put_many({kv[0]: 1, kv[0] + "x": kv[1]}))),
        st.tuples(good_keys, bad_quorums).map(
            lambda kq: ("put bad w", lambda s, c: s.table().put(kq[0], 1, w=kq[1]))),
        st.tuples(good_keys, bad_quorums).map(
            lambda kq: ("get bad r", lambda s, c: s.table().get(kq[0], r=kq[1]))),
        st.tuples(good_keys, bad_contexts).map(
            lambda kc: ("put bad context", lambda s, c: s.table().put(kc[0], 1, context=kc[1]))),
        good_keys.map(lambda k: ("put foreign context", lambda s, c: s.table().put(k, 1, context=c))),
        good_keys.map(lambda k: ("put_many foreign context", lambda s, c: s.table().put_many(
            {k: 1, k + "y": 2}, contexts={k: c}))),
        st.tuples(good_keys, bad_contexts).map(lambda kc: ("put_many bad context", lambda s, c: (
            s.table().put_many({kc[0]: 1}, contexts={kc[0]: kc[1]})))),
        good_keys.map(lambda k: ("put_many context of an unwritten key", lambda s, c: (
            s.table().put_many({k: 1}, contexts={k + "-absent": c})))),
        st.tuples(good_keys, bad_ttls).map(
            lambda kt: ("put bad ttl", lambda s, c: s.table().put(kt[0], 1, ttl_s=kt[1]))),
        st.tuples(good_keys, bad_ttls).map(
            lambda kt: ("put_many bad ttl", lambda s, c: s.table().put_many({kt[0]: 1}, ttl_s=kt[1]))),
        st.tuples(good_keys, st.sampled_from([lambda: 1, threading.Lock(), (x for x in [])])).map(
            lambda kv: ("pickle unpicklable", lambda s, c: s.table("cache").put(kv[0], kv[1]))),
        st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)).map(
            lambda m: ("put_many not a mapping", lambda s, c: s.table().put_many(m))),
        st.one_of(st.integers(), st.text(min_size=1, max_size=3), st.none()).map(
            lambda ks: ("get_many not keys", lambda s, c: s.table().get_many(ks))),
        st.lists(bad_keys, min_size=1, max_size=3).map(
            lambda ks: ("get_many bad keys", lambda s, c: s.table().get_many(["fz-ok"] + ks))),
        st.integers(min_value=21, max_value=40).map(
            lambda n: ("put_many too big", lambda s, c: s.table().put_many({f"fz-{i}": i for i in range(n)}))),
        st.integers(min_value=21, max_value=40).map(
            lambda n: ("get_many too big", lambda s, c: s.table().get_many([f"fz-{i}" for i in range(n)]))),
        st.one_of(st.text(max_size=5).filter(lambda t: t not in ("default", "carts", "lww", "strict")),
                  st.integers(), st.none()).map(
            lambda t: ("unknown table", lambda s, c: s.table(t))),
        st.text(max_size=4).filter(lambda r: r not in ("coordinator", "client")).map(
            lambda r: ("bad routing", lambda s, c: s.table(routing=r))),
        st.text(max_size=4).filter(lambda v: not v.startswith("node-")).map(
            lambda v: ("bad via", lambda s, c: s.table(via=v))),
    )


@pytest.fixture(scope="module")
def fuzz_store(start_store):
    return start_store(limits=LIMITS)


def test_ten_thousand_bad_inputs_are_typed_errors_and_change_nothing(fuzz_store):
    s = fuzz_store
    foreign = s.table().get("fz-foreign-key").context
    before = s.status()
    seen = {}

    @settings(max_examples=10_000, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_calls())
    def one(call):
        description, fn = call
        with pytest.raises(dr.DynamoError) as err:
            fn(s, foreign)
        seen[description] = seen.get(description, 0) + 1
        assert not isinstance(err.value, (dr.Unavailable, dr.Overloaded)), (description, err.value)

    one()
    assert sum(seen.values()) >= 10_000 and len(seen) >= 22, seen
    after = s.status()
    assert after["up"].all()
    assert list(after["actor"]) == list(before["actor"])  # no vnode restarted
    assert after["keys"].sum() == before["keys"].sum()  # nothing stored
    assert after["calls"].sum() == before["calls"].sum() + 0  # rejected at the edge: no vnode call


not_int = st.one_of(st.text(max_size=3), st.floats(), st.none(), st.booleans())
BAD_CONFIG = {
    "nodes": st.one_of(st.integers(max_value=0), not_int),
    "partitions": st.one_of(st.sampled_from([3, 5, 6, 7, 12, 24, 100]), st.integers(max_value=0),
                            not_int),
    "placement": st.text(max_size=6).filter(lambda t: t not in ("local", "spread")),
    "read_repair": st.one_of(st.integers(), st.text(max_size=3), st.none()),
    "name": st.one_of(st.just(""), st.text(max_size=3).map(lambda t: t + ":x"), st.integers()),
    "timeouts": st.one_of(st.integers(max_value=0), not_int).map(lambda v: {"request_ms": v}),
    "limits": st.one_of(st.integers(max_value=0), not_int).map(lambda v: {"max_key_bytes": v}),
    "tables": st.one_of(st.integers(min_value=4, max_value=9).map(lambda r: {"t": {"n": 3, "r": r}}),
                        st.text(max_size=4).filter(lambda c: c not in ("siblings", "lww"))
                        .map(lambda c: {"t": {"conflict": c}}),
                        st.text(max_size=6).filter(lambda c: c not in ("msgpack", "pickle"))
                        .map(lambda c: {"t": {"codec": c}}),
                        bad_ttls.map(lambda t: {"t": {"ttl_s": t}}),
                        st.just({"t": {"eviction": "lru"}}),
                        st.just({"t": {"max_memory_mb": 4}}),
                        st.text(max_size=4).filter(lambda e: e != "lru")
                        .map(lambda e: {"t": {"eviction": e, "max_memory_mb": 4}})),
    "bogus": st.integers(),
}


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(sorted(BAD_CONFIG)), min_size=1, max_size=3, unique=True)
       .flatmap(lambda fields: st.fixed_dictionaries({f: BAD_CONFIG[f] for f in fields})))
def test_bad_configs_raise_config_error_and_start_nothing(overrides):
    with pytest.raises(dr.ConfigError):
        config.load(None, **overrides)


@settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(column=st.text(min_size=1, max_size=6).filter(lambda c: c not in ("id", "n")),
       as_value=st.booleans())
def test_a_missing_datasink_column_is_invalid_argument_and_stores_nothing(fuzz_store, column,
                                                                          as_value):
    import ray

    from dynamo_ray.data import TableDatasink

    table = fuzz_store.table()
    before = fuzz_store.status()["keys"].sum()
    rows = ray.data.from_items([{"id": f"fz-sink-{i}", "n": i} for i in range(20)])
    sink = TableDatasink(table, "id", column) if as_value else TableDatasink(table, column)
    with pytest.raises(dr.InvalidArgument, match=re.escape(repr(column))):
        rows.write_datasink(sink)
    assert fuzz_store.status()["keys"].sum() == before
