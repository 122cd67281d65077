"""`dynamo_ray.cached`: results memoized cluster-wide, shared by tasks, batched lookups."""

import ray

import dynamo_ray as dr


def test_cached_computes_once_and_serves_every_caller(store):
    calls = []
    table = store.table()

    @dr.cached(table)
    def square(x):
        calls.append(x)
        return {"x": x, "square": x * x}

    assert square(7) == {"x": 7, "square": 49}
    assert square(7) == {"x": 7, "square": 49}
    assert calls == [7]

    @ray.remote
    def in_a_task(fn, x):
        return fn(x)  # the wrapper pickles with its table handle

    assert ray.get(in_a_task.remote(square, 7)) == {"x": 7, "square": 49}
    assert calls == [7]  # the task's call hit the cache

    results = square.many([(1,), (7,), (2,), (1,)])
    assert [r["square"] for r in results] == [1, 49, 4, 1]
    assert sorted(calls) == [1, 2, 7]


def test_an_unstorable_result_is_returned_uncached(store):
    @dr.cached(store.table(), key=lambda x: f"unstorable-{x}")
    def make_set(x):
        return {x}

    assert make_set(3) == {3}
    assert not store.table().get("unstorable-3").exists


def test_cached_keeps_numpy_results_in_the_cache_table(store):
    import numpy as np

    calls = []

    @dr.cached(store.table("cache"))
    def embed(text):
        calls.append(text)
        return np.full((2, 3), len(text), dtype=np.float32)

    first = embed("hello")
    again = embed("hello")
    assert calls == ["hello"]
    assert again.dtype == np.float32 and again.shape == (2, 3) and np.array_equal(first, again)
    assert [r[0, 0] for r in embed.many([("a",), ("hello",), ("abc",)])] == [1, 5, 3]
    assert calls == ["hello", "a", "abc"]


def test_a_cached_result_with_a_ttl_is_computed_again_once_it_expires(store):
    import time

    calls = []

    @dr.cached(store.table("cache"), ttl_s=0.3, key=lambda x: f"ttl-cached-{x}")
    def twice(x):
        calls.append(x)
        return 2 * x

    assert twice(4) == 8 and twice(4) == 8 and calls == [4]
    time.sleep(0.4)
    assert twice(4) == 8 and calls == [4, 4]
