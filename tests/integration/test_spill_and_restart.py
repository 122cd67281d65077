"""Storage on a real local Ray (DESIGN §5): spilling past a memory limit, restarts from the
spill directory, durable writes, bad files, and export to pandas."""

import glob
import os

import pytest
import ray

import dynamo_ray as dr
from dynamo_ray.runtime import placement
from helpers import wait_for

SPILL = dict(nodes=3, partitions=4, antientropy={"interval_s": 1.0, "latency_goal_ms": 10000},
             timeouts={"request_ms": 4000},
             handoff={"interval_s": 0.5}, failure_detection={"backoff_ms": 100, "max_backoff_ms": 400})



def restart_all(store):
    for node in store.nodes():
        store.fail_node(node)
    for node in store.nodes():
        store.recover_node(node)


SPILLED_LIMIT_MB = 0.5


@pytest.fixture(scope="module")
def spilled(start_store, tmp_path_factory):
    """One store over its memory limit for the tests that do not restart it: the first fills
    table "default" to ten times the limit, the export test then writes table "carts"."""
    spill_dir = str(tmp_path_factory.mktemp("spill"))
    return start_store(**SPILL, storage={"spill_dir": spill_dir,
                                         "memory_limit_mb": SPILLED_LIMIT_MB})


def test_a_store_holding_ten_times_its_memory_limit_reads_every_key_back(spilled):
    s, limit_mb = spilled, SPILLED_LIMIT_MB
    t = s.table()
    value = "v" * 200
    keys = [f"spill-{i}" for i in range(20000)]  # ~5.6 MB a replica set over 8 vnodes x 3
    for start in range(0, len(keys), 2000):
        t.put_many({k: [k, value] for k in keys[start:start + 2000]})
    frame = s.status()
    assert frame["segments"].sum() > 0
    assert (frame["memory_bytes"] <= limit_mb * 2**20 * 1.1).all(), frame["memory_bytes"].max()
    assert frame["bytes"].sum() > 10 * limit_mb * 2**20 * len(frame) / 3  # 10x the limit at least
    for start in range(0, len(keys), 2500):
        got = t.get_many(keys[start:start + 2500])
        assert all(got[k].value == [k, value] for k in keys[start:start + 2500])
    # spilled keys can be overwritten, deleted and written again
    t.put(keys[0], "new", context=t.get(keys[0]).context)
    t.delete(keys[1], context=t.get(keys[1]).context)
    assert t.get(keys[0]).value == "new" and t.get(keys[1]).values == []
    # Arrow's C++ side (Parquet) in a vnode that spilled never allocated from mimalloc, whose
    # arena kept ~10 MB a vnode resident: the allocator was chosen before Arrow loaded
    owner = frame.set_index("partition").loc[0, "node"]
    vnode = placement.lookup(placement.vnode_actor_name(s.name, owner, 0))
    mimalloc_bytes = ray.get(vnode.__ray_call__.remote(  # a lambda: sent by value
        lambda self: __import__("pyarrow").mimalloc_memory_pool().max_memory()))
    assert mimalloc_bytes == 0


def test_without_durability_only_spilled_writes_survive_a_full_restart(new_store, tmp_path):
    s = new_store(**{**SPILL, "antientropy": {"enabled": False}},
                    storage={"spill_dir": str(tmp_path), "memory_limit_mb": 0.2})
    t = s.table()
    spilled = {f"old-{i}": "x" * 300 for i in range(6000)}  # far over the limit: most spill
    t.put_many(spilled)
    restart_all(s)
    got = t.get_many(list(spilled))
    survived = sum(1 for k in spilled if got[k].exists)
    frame = s.status()
    assert frame["segments"].sum() > 0
    assert survived > 0.5 * len(spilled)  # what was on disk came back
    assert survived < len(spilled)  # what was only in memory did not (the README says so)


def test_a_truncated_segment_is_set_aside_and_antientropy_refills_it(new_store, tmp_path):
    s = new_store(**SPILL, storage={"spill_dir": str(tmp_path), "memory_limit_mb": 0.2})
    t = s.table()
    keys = [f"bad-{i}" for i in range(6000)]
    t.put_many({k: k * 10 for k in keys})
    s.fail_node("node-2")
    files = glob.glob(os.path.join(str(tmp_path), s.name, "node-2", "*", "default", "*",
                                   "seg-*.parquet"))
    assert files
    victim = max(files, key=os.path.getsize)
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    s.recover_node("node-2")  # starts despite the bad file
    frame = s.status()
    assert frame.query("node == 'node-2'")["up"].all()
    assert frame.query("node == 'node-2'")["storage_errors"].sum() >= 1
    assert os.path.exists(victim + ".corrupt")
    got = t.get_many(keys)  # served meanwhile, by quorum
    assert all(got[k].value == k * 10 for k in keys)

    def refilled():
        copies = s.inspect_many("default", keys[:600])
        return all(sum(1 for r in c if "hint" not in r) == 3 for c in copies.values())

    assert wait_for(refilled, 20)


def test_to_pandas_and_scan_agree_with_get_many(spilled):
    s = spilled  # its vnodes are at their memory limit: these rows spill too
    t = s.table("carts")
    keys = [f"row-{i}" for i in range(10000)]
    for start in range(0, len(keys), 5000):
        t.put_many({k: {"n": i} for i, k in enumerate(keys[start:start + 5000], start)})
    for k in keys[:50]:
        t.delete(k, context=t.get(k).context)
    t.put(b"raw-bytes-key", [1, 2])
    got = t.get_many(keys + [b"raw-bytes-key"])
    frame = t.to_pandas()
    assert len(frame) == len(got) and set(frame["key"]) == set(got)
    by_key = frame.set_index("key")
    for k, g in got.items():
        assert by_key.at[k, "values"] == g.values
        assert bool(by_key.at[k, "deleted"]) == (not g.exists)
    batches = list(t.scan(batch_size=3000))
    assert all(len(b) <= 3000 for b in batches) and sum(len(b) for b in batches) == len(got)
    with pytest.raises(dr.InvalidArgument):
        next(t.scan(batch_size=0))
