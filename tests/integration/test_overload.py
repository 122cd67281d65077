"""Bounded queues: past them requests are shed with Overloaded, at once, and the rest succeed.
(The load at twice saturation with its latency figures is `python jobs/overload.py`.)"""

import asyncio
import threading
import time

import dynamo_ray as dr


def test_requests_past_the_bounded_queues_are_shed_and_the_rest_served(new_store):
    s = new_store(nodes=3, partitions=4, overload={"max_pending_calls": 1, "max_queue_ms": 250})
    t = s.table()
    t.put_many({f"o{i}": i for i in range(100)})
    for node in s.nodes():
        s.slow_node(node, 20)  # every vnode call takes 20 ms: the store, not the client, saturates
    route = t._route
    outcomes = {"ok": 0, "shed": 0, "other": 0}
    latencies = []

    async def one(i):
        started = time.perf_counter()
        try:
            got = await route.acall("get_many", (t.name, [f"o{i % 100}"], None, None))
            assert dr.GetResult(f"o{i % 100}", got[0]).value == i % 100
            outcomes["ok"] += 1
            latencies.append(time.perf_counter() - started)
        except dr.Overloaded:
            outcomes["shed"] += 1
        except dr.DynamoError:
            outcomes["other"] += 1

    async def burst():
        await asyncio.gather(*(one(i) for i in range(200)))  # 200 at once, far past the queues

    asyncio.run(burst())
    assert outcomes["shed"] > 0 and outcomes["ok"] > 0 and outcomes["other"] == 0, outcomes
    assert max(latencies) < 5.0  # accepted ones were not stuck behind the shed ones
    for node in s.nodes():
        s.slow_node(node, 0)
    assert _get_once_drained(t, "o1") == 1  # served normally once the burst is over


def _get_once_drained(table, key, within_s=5.0):
    """The value read once the queues behind the burst have drained. The replies the client
    no longer waited for still run for a moment, and a 30 ms queue allowance on a shared 2-core
    machine can shed one more request, so this retries as the Overloaded message advises."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return table.get(key).value
        except dr.Overloaded:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_coordinator_sheds_past_its_inflight_limit(new_store):
    # The queue-time bound is out of reach, so only the in-flight bound can shed (a loaded
    # machine queues a burst past the default bound before a coordinator takes it).
    s = new_store(nodes=3, partitions=4, overload={"max_inflight_requests": 2, "max_queue_ms": 60000})
    for node in s.nodes():
        s.slow_node(node, 50)
    route = s.table()._route
    errors = []

    def one(i):
        try:  # synchronous calls from many threads: only the coordinator bounds them
            route.call("get_many", ("default", [f"x{i}"], None, None), None, "node-1")
        except dr.Overloaded as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors and all("at this coordinator" in str(e) for e in errors), errors[:3]


def test_a_client_process_sheds_its_own_coroutines_past_the_inflight_limit(new_store):
    s = new_store(nodes=3, partitions=4, overload={"max_inflight_requests": 3})
    for node in s.nodes():
        s.slow_node(node, 50)
    route = s.table()._route
    outcomes = {"ok": 0, "here": 0, "other": 0}

    async def one(i):
        try:
            await route.acall("get_many", ("default", [f"y{i}"], None, None))
            outcomes["ok"] += 1
        except dr.Overloaded as e:
            outcomes["here" if "from this process" in str(e) else "other"] += 1

    async def burst():
        await asyncio.gather(*(one(i) for i in range(12)))

    asyncio.run(burst())
    # three went to the store; the other nine were refused in this process, costing it nothing
    assert outcomes == {"ok": 3, "here": 9, "other": 0}, outcomes
