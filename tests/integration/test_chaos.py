"""A 30-second chaos run in the suite (the long one is `python jobs/chaos.py --minutes 5`):
nothing acknowledged is lost with siblings and union, and last-write-wins, run beside it under
the same faults, loses adds: the checker can fail."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "jobs"))
import chaos  # noqa: E402


def test_30_seconds_of_chaos_lose_nothing_and_lww_does(new_store):
    tables = {"cart": {"n": 3, "r": 2, "w": 2}, "cart_lww": {"n": 3, "r": 2, "w": 2, "conflict": "lww"},
              "register": {"n": 3, "r": 2, "w": 2, "strict": True},
              "sib": {"n": 3, "r": 2, "w": 2, "strict": True}}
    store = new_store({"nodes": 5, "partitions": 8, "tables": tables}, handoff={"interval_s": 0.5},
                      antientropy={"interval_s": 5.0}, timeouts={"request_ms": 1500},
                      failure_detection={"backoff_ms": 200, "max_backoff_ms": 2000})
    result = chaos.run(store, 30, hold_s=3.0, control=True)
    # faults run in turn (crash, halves, isolate, slow, skew), and one begun before the end is
    # held no longer but healed and logged; on a loaded machine a crash and recovery took 23 s,
    # so the short run is sure of the first two (the job runs all five)
    kinds = {f["fault"].split()[0] for f in result["faults"]}
    assert {"crashed", "partitioned"} <= kinds, result["faults"]
    s = result["set"]
    assert s.acknowledged > 100
    assert (len(s.lost), len(s.unexpected)) == (0, 0), (s.lost[:5], s.unexpected[:5])
    assert result["register"].valid, result["register"].stale[:5]
    assert result["siblings"].valid, (result["siblings"].too_many[:3], result["siblings"].unresolved[:3])
    assert result["register"].reads > 0 and result["siblings"].reads > 0
    assert len(result["set_lww_control"].lost) > 0  # the negative control
