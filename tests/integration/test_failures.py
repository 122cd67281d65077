"""Always writable (DESIGN §4): node crashes, sloppy quorum, hinted handoff, read repair and
partitions, on a real local Ray with four simulated nodes."""

import threading
import time
import uuid

import pytest

import dynamo_ray as dr
from dynamo_ray.core import merges
from helpers import primaries_of, wait_for

FOUR_NODES = dict(
    nodes=4,
    partitions=4,
    handoff={"interval_s": 0.2, "batch_keys": 20},
    failure_detection={"backoff_ms": 100, "max_backoff_ms": 400},
    timeouts={"request_ms": 1500},
)


@pytest.fixture(scope="module")
def store(start_store):
    return start_store(**FOUR_NODES)


@pytest.fixture(autouse=True)
def all_nodes_back(request):
    """After each test: heal and recover every failed node of the module store."""
    yield
    if "store" not in request.fixturenames:
        return
    s = request.getfixturevalue("store")
    s.heal()
    down = set(s.status().query("not up")["node"])
    for node in down:
        s.recover_node(node)
    if down:
        wait_for(lambda: s.status()["hints_pending"].sum() == 0, 30)




def test_one_node_of_four_down_every_put_and_get_succeeds(store):
    t = store.table()
    store.fail_node("node-2")
    keys = [f"one-down-{i}" for i in range(60)]
    for k in keys:
        t.put(k, k)
    for routing in ("coordinator", "client"):  # a client's synchronous reads fall back
        reader = store.table(routing=routing)
        for k in keys:
            assert reader.get(k).value == k
        assert all(g.value == k for k, g in reader.get_many(keys).items())


def test_three_of_four_down_a_put_is_unavailable_with_needed_2_got_1(store):
    for node in ("node-1", "node-2", "node-3"):
        store.fail_node(node)
    with pytest.raises(dr.Unavailable) as err:
        store.table().put("lonely", 1)
    assert (err.value.key, err.value.needed, err.value.got) == ("lonely", 2, 1)
    with pytest.raises(dr.Unavailable) as err:
        store.table(routing="client").get("lonely")
    assert (err.value.needed, err.value.got) == (2, 1)


def _key_with_primary_on(store, node, prefix="probe"):
    for i in range(1000):
        k = f"{prefix}-{i}"
        if any(p.startswith(node + "/") for p in primaries_of(store, k)):
            return k
    raise AssertionError("no key found")


def test_strict_table_meets_w2_from_two_primaries_but_not_w3(store):
    key = _key_with_primary_on(store, "node-4")
    store.fail_node("node-4")
    strict = store.table("strict")
    strict.put(key, "two primaries")
    with pytest.raises(dr.Unavailable) as err:
        strict.put(key, "three", w=3)
    assert (err.value.needed, err.value.got) == (3, 2)
    with pytest.raises(dr.Unavailable):
        store.table().put(key, "sloppy off", w=3, sloppy=False)
    store.table().put(key, "sloppy", w=3)  # a fallback stands in for node-4
    copies = store.inspect("default", key)
    assert any("hint for" in replica for replica in copies), copies


def test_hints_drain_after_recovery_and_every_key_reaches_all_primaries(store):
    t = store.table()
    store.fail_node("node-3")
    keys = [f"hinted-{i}" for i in range(200)]
    t.put_many({k: k for k in keys})
    assert store.status()["hints_pending"].sum() > 0
    store.recover_node("node-3")
    interval = store.config.handoff.interval_s
    assert wait_for(lambda: store.status()["hints_pending"].sum() == 0, 5 * interval + 2.0)
    copies = store.inspect_many("default", keys)
    for k in keys:
        held = {replica: values for replica, values in copies[k].items() if "hint" not in replica}
        assert set(held) == set(primaries_of(store, k)), (k, copies[k])
        assert all(values == [k] for values in held.values())


def test_a_hint_whose_target_dies_during_delivery_is_kept(store):
    t = store.table()
    store.fail_node("node-1")
    keys = [f"slow-{i}" for i in range(300)]
    t.put_many({k: k for k in keys})
    pending = store.status()["hints_pending"].sum()
    assert pending > 0
    store.partition(["node-1"])  # no delivery until it is slow
    store.recover_node("node-1")
    store.slow_node("node-1", 150)  # each delivery batch now takes 150 ms to acknowledge
    store.heal()
    assert wait_for(lambda: 0 < store.status()["hints_pending"].sum() < pending, 10, 0.05)
    store.fail_node("node-1")  # the target dies mid-delivery
    time.sleep(5 * store.config.handoff.interval_s)
    assert store.status()["hints_pending"].sum() > 0  # kept: not acknowledged
    store.recover_node("node-1")
    assert wait_for(lambda: store.status()["hints_pending"].sum() == 0, 15)
    assert all(g.value == k for k, g in store.table().get_many(keys, r=3).items())


def _partitioned_cart_run(store, table_name, adds_per_side=15):
    """Two clients add distinct items to one cart on both sides of a partition; returns
    (acknowledged adds, items in the cart after heal)."""
    cart = f"cart-{uuid.uuid4().hex[:8]}"
    store.table(table_name).put(cart, [])
    store.partition(["node-1", "node-2"], ["node-3", "node-4"])
    acked: list = []
    lock = threading.Lock()

    def client(via, side):
        t = store.table(table_name, merge=merges.union, via=via)
        for i in range(adds_per_side):
            item = f"{side}-{i}"
            got = t.get(cart)
            t.put(cart, (got.value or []) + [item], context=got.context)
            with lock:
                acked.append(item)

    threads = [threading.Thread(target=client, args=("node-1", "a")),
               threading.Thread(target=client, args=("node-3", "b"))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.heal()
    assert wait_for(lambda: store.status()["hints_pending"].sum() == 0, 15)
    final = store.table(table_name).get(cart, r=3)
    items = {item for sibling in final.values for item in sibling}
    return set(acked), items, len(final.values)


def test_partition_writes_on_both_sides_become_siblings_and_lose_nothing(store):
    acked, items, siblings = _partitioned_cart_run(store, "carts")
    assert siblings == 2
    lost, unexpected = acked - items, items - acked
    assert (len(lost), len(unexpected)) == (0, 0), (lost, unexpected)


def test_partition_with_last_write_wins_loses_acknowledged_adds(store):
    acked, items, siblings = _partitioned_cart_run(store, "lww")
    assert siblings == 1
    assert len(acked - items) > 0  # the set check can fail: lww drops one side


def test_via_routes_through_the_named_nodes_coordinator(store, key):
    store.partition(["node-1"])  # node-1 alone: it can reach only its own vnodes
    with pytest.raises(dr.Unavailable):
        store.table(via="node-1").put(key, "isolated", sloppy=False, w=3)
    store.table(via="node-2").put(key, "majority side")
    store.heal()


@pytest.mark.parametrize("read_repair", [True, False])
def test_a_get_repairs_a_stale_replica_only_when_read_repair_is_on(start_store, read_repair):
    s = start_store(**{**FOUR_NODES, "read_repair": read_repair, "handoff": {"enabled": False},
                       "antientropy": {"enabled": False}})
    try:
        # a coordinator reads at r=3; a client's synchronous read at r=2 answers from the first
        # two replies and repairs from all three, whether the stale one came in time or late
        reads = {"coordinator": 3, "client": 2}
        keys = {routing: _key_with_primary_on(s, "node-2", routing) for routing in reads}
        s.fail_node("node-2")
        for key in keys.values():
            s.table().put(key, "fresh")
        s.recover_node("node-2")  # back, empty; the hints stay on the fallbacks (handoff off)
        stale = {routing: next(p for p in primaries_of(s, key) if p.startswith("node-2/"))
                 for routing, key in keys.items()}
        for routing, key in keys.items():
            assert stale[routing] not in s.inspect("default", key)
        time.sleep(0.5)  # the coordinators' back-off ends: node-2 is probed again
        for routing, r in reads.items():
            t = s.table(routing=routing)
            assert wait_for(lambda: t.get(keys[routing], r=r).value == "fresh", 10, 0.2)

        def repaired(routing):
            return s.inspect("default", keys[routing]).get(stale[routing]) == ["fresh"]

        wait_for(lambda: all(repaired(routing) for routing in reads), 3, 0.2)
        assert {routing: repaired(routing) for routing in reads} == \
            {routing: read_repair for routing in reads}
    finally:
        s.stop()


def test_a_write_succeeds_when_its_only_reachable_replica_is_the_coordinator(store, key):
    first = primaries_of(store, key)[0].split("/")[0]
    store.partition([first])  # alone: of the key's replicas it reaches only its own
    store.table(via=first).put(key, "alone", w=1, sloppy=False)
    with pytest.raises(dr.Unavailable) as err:
        store.table(via=first).put(key, "alone", w=2, sloppy=False)
    assert (err.value.needed, err.value.got) == (2, 1)
    store.heal()


def test_a_write_its_router_gave_up_on_is_not_applied_late(store, key):
    """The first primary answers later than the call deadline: the router re-coordinates the
    write at the next primary, and the queued call must not be applied afterwards, or the value
    would come back as a second dot, concurrent with every later write (a zombie sibling)."""
    t = store.table()
    slow = primaries_of(store, key)[0]
    node = slow.split("/")[0]
    store.slow_node(node, 1800)  # > timeouts.request_ms (1500)
    try:
        t.put(key, "first")  # re-coordinated once the slow primary's call deadline passes
        t.put(key, "second", context=t.get(key).context)
    finally:
        store.slow_node(node, 0)  # queued behind the slow calls: returns once they drained
    assert wait_for(lambda: t.get(key, r=3).values == ["second"], 10, 0.2), t.get(key, r=3).values
    assert wait_for(lambda: store.inspect("default", key).get(slow) == ["second"], 10, 0.2)
    expired = store.status().query(f"node == '{node}'")["expired"].sum()
    assert expired >= 1  # the late call was dropped unserved, not applied
