"""The chaos checkers on hand-made histories: each finds the violation it is for, and only it."""

from dynamo_ray.sim.history import History, check_register, check_set, check_siblings


def add(h, process, key, element, outcome="ok"):
    op = h.invoke(process, "add", key, element)
    h.complete(op, outcome)


def test_set_checker_counts_lost_unexpected_and_recovered():
    h = History()
    add(h, 1, "cart", "a")
    add(h, 2, "cart", "b")
    add(h, 1, "cart", "c", outcome="info")
    add(h, 2, "cart", "d", outcome="fail")
    result = check_set(h, {"cart": ["a", "c", "zzz"]})
    assert (result.attempted, result.acknowledged) == (4, 2)
    assert result.lost == [str(("cart", "b"))]
    assert result.unexpected == [str(("cart", "zzz"))]
    assert result.recovered == [str(("cart", "c"))]
    assert not result.valid
    assert check_set(h, {"cart": ["a", "b"]}).valid


def test_register_checker_flags_a_read_older_than_an_acknowledged_write():
    h = History()
    w = h.invoke(1, "write", "r", 1)
    h.complete(w, "ok")
    w = h.invoke(1, "write", "r", 2)
    h.complete(w, "ok")
    fresh = h.invoke(2, "read", "r")
    h.complete(fresh, "ok", value=[2])
    stale = h.invoke(3, "read", "r")
    h.complete(stale, "ok", value=[1])
    result = check_register(h, ["r"])
    assert result.reads == 2 and len(result.stale) == 1 and result.stale[0]["read"] == [1]


def test_register_checker_does_not_judge_reads_across_a_crash():
    h = History()
    w = h.invoke(1, "write", "r", 5)
    h.complete(w, "ok")
    fault = h.invoke(-1, "fault", "crash")
    read = h.invoke(2, "read", "r")
    h.complete(read, "ok", value=[])
    h.complete(fault, "ok")
    result = check_register(h, ["r"], repair_s=0)
    assert result.valid and result.skipped == 1 and result.reads == 0


def test_siblings_checker_bounds_siblings_and_wants_one_after_a_quiet_resolve():
    h = History()
    for p in (1, 2):  # two writers of k
        w = h.invoke(p, "write", "k", p)
        h.complete(w, "ok")
    too_many = h.invoke(1, "read", "k")
    h.complete(too_many, "ok", value=3)  # 3 siblings, 2 writers, nothing unacknowledged
    seen = h.invoke(1, "read", "k")
    h.complete(seen, "ok", value=2)
    resolve = h.invoke(1, "resolve", "k", "merged")
    h.complete(resolve, "ok")
    check = h.invoke(1, "read", "k")
    h.complete(check, "ok", value=2)  # still two: the resolve did not take
    result = check_siblings(h, ["k"])
    assert len(result.too_many) == 1 and len(result.unresolved) == 1
    assert result.resolves_checked == 1


def test_an_unacknowledged_write_may_linger_as_a_sibling():
    h = History()
    w = h.invoke(1, "write", "k", "a")
    h.complete(w, "info")
    w = h.invoke(1, "write", "k", "b")
    h.complete(w, "ok")
    read = h.invoke(2, "read", "k")
    h.complete(read, "ok", value=2)  # one writer, but its info write may live on
    assert check_siblings(h, ["k"]).valid
