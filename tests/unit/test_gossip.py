"""Gossip views: merging rings and heartbeats, and who is down in a view (pure)."""

from dynamo_ray.core.gossip import View
from dynamo_ray.core.ring import claim


def test_views_adopt_the_newest_ring_and_never_go_back():
    old = claim(8, ["a", "b", "c"], 3)
    new = claim(8, ["a", "b", "c", "d"], 3, previous=old)
    a = View("a", old, incarnation=1, now=0.0)
    assert a.merge(new, {}, now=1.0) == new and a.ring == new
    assert a.merge(old, {}, now=2.0) is None and a.ring == new


def test_a_node_whose_heartbeat_stops_is_down_after_the_suspect_time():
    ring = claim(8, ["a", "b", "c"], 3)
    a = View("a", ring, incarnation=1, now=0.0)
    for t in range(1, 6):
        a.beat(float(t))
        a.merge(ring, {"b": (7, t), "c": (9, min(t, 2))}, now=float(t))  # c stops beating at 2
    up = a.up(now=5.5, suspect_after_s=3.0)
    assert up == {"a": True, "b": True, "c": False}


def test_a_restarted_node_is_up_again_with_a_new_incarnation():
    ring = claim(8, ["a", "b"], 2)
    a = View("a", ring, incarnation=1, now=0.0)
    a.merge(ring, {"b": (5, 100)}, now=0.0)
    a.merge(ring, {"b": (6, 0)}, now=10.0)  # b restarted: counter from 0, newer incarnation
    assert a.up(now=11.0, suspect_after_s=3.0)["b"]


def test_merge_is_commutative_on_heartbeats():
    ring = claim(8, ["a", "b", "c"], 3)
    x, y = View("a", ring, 1, 0.0), View("a", ring, 1, 0.0)
    beats1, beats2 = {"b": (1, 4), "c": (2, 1)}, {"b": (1, 6), "c": (1, 9)}
    x.merge(ring, beats1, 1.0), x.merge(ring, beats2, 1.0)
    y.merge(ring, beats2, 1.0), y.merge(ring, beats1, 1.0)
    assert x.heartbeats == y.heartbeats == {"a": (1, 0), "b": (1, 6), "c": (2, 1)}
