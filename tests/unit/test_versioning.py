"""Dotted version vectors (DESIGN §3): the laws a key's versions obey on replicas and clients.

The model: a few vnode actors (replicas), each holding one state per key and drawing dots
from one running counter (``next_counter`` with a floor, as the vnode does); clients read from
any subset of replicas and put with or without the context of an earlier read; replicas
merge each other's states (replication, read repair, anti-entropy). The oracle: once every
replica has merged every other, a key's siblings are exactly the dots written for it that no
put's context covered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_ray.core import versioning as vv
from dynamo_ray.core.versioning import EMPTY, KeyState, Sibling

FAST = settings(deadline=None, max_examples=100)

KEYS = ("k0", "k1")
MAX_REPLICAS = 4


# --- the model --------------------------------------------------------------------------------


def dots(state: KeyState) -> set:
    return {s.dot for s in state.siblings}


def covers(context: dict, dot: tuple) -> bool:
    actor, counter = dot
    return context.get(actor, 0) >= counter


def canonical(state: KeyState) -> tuple:
    return (state.clock, frozenset(state.siblings))


@dataclass
class Write:
    key: str
    dot: tuple
    value: bytes | None
    context: dict
    seq: int  # how many writes came before it
    superseded: frozenset = frozenset()  # siblings it made redundant at its coordinator

    def covers(self, dot: tuple) -> bool:
        return covers(self.context, dot) or dot in self.superseded


@dataclass
class Read:
    key: str
    context: dict
    dots: frozenset
    seq: int  # how many writes came before it


@dataclass
class Cluster:
    actors: list
    policy: str = "siblings"
    max_entries: int = 10
    skews_ms: list | None = None
    floor: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    writes: list = field(default_factory=list)
    reads: list = field(default_factory=list)
    now_ms: int = 1_000

    def __post_init__(self) -> None:
        self.floor = {a: 0 for a in self.actors}
        self.states = {(r, k): EMPTY for r in range(len(self.actors)) for k in KEYS}
        self.skews_ms = self.skews_ms or [0] * len(self.actors)

    @property
    def replicas(self) -> range:
        return range(len(self.actors))

    def put(self, r: int, key: str, context: dict | None, value: bytes | None) -> KeyState:
        """A write coordinated by replica r, as VNode.coordinate makes it."""
        actor, state = self.actors[r], self.states[(r, key)]
        counter = vv.next_counter(state, context or {}, actor, self.floor[actor])
        self.floor[actor] = counter
        self.now_ms += 1
        new = vv.update(
            state, context, value, actor, counter, self.now_ms + self.skews_ms[r],
            self.policy, self.max_entries,
        )
        self.states[(r, key)] = new
        superseded = frozenset(s.dot for s in state.siblings if not covers(context or {}, s.dot)
                               and s.dot not in dots(new))
        made = Write(key, (actor, counter), value, dict(context or {}), len(self.writes),
                     superseded)
        self.writes.append(made)
        return new

    def sync(self, key: str, src: int, dst: int) -> None:
        mine, theirs = self.states[(dst, key)], self.states[(src, key)]
        self.states[(dst, key)] = vv.merge(mine, theirs, self.policy)

    def view(self, key: str, replicas) -> KeyState:
        return reduce(
            lambda a, b: vv.merge(a, b, self.policy),
            (self.states[(r, key)] for r in replicas),
            EMPTY,
        )

    def read(self, key: str, replicas) -> Read:
        merged = self.view(key, replicas)
        read = Read(key, vv.context(merged), frozenset(dots(merged)), len(self.writes))
        self.reads.append(read)
        return read

    def converge(self, key: str) -> KeyState:
        """Anti-entropy to the end: every replica merges every other, twice round."""
        for _ in range(2):
            for src in self.replicas:
                for dst in self.replicas:
                    if src != dst:
                        self.sync(key, src, dst)
        return self.view(key, self.replicas)

    def written(self, key: str) -> dict:
        return {w.dot: w for w in self.writes if w.key == key}

    def expected_live(self, key: str) -> set:
        """The oracle: every dot written for key that no put's context covered or superseded
        (a tombstone a later write dropped, or an equal value)."""
        mine = [w for w in self.writes if w.key == key]
        return {w.dot for w in mine if not any(o.covers(w.dot) for o in mine)}

    # a random operation, its indexes taken modulo what exists; `among` limits the replicas
    # (one side of a partition) and `reads` the read contexts a client there may hold
    def apply(self, op: tuple, among: list | None = None, reads: list | None = None) -> None:
        among = list(self.replicas) if among is None else among
        reads = self.reads if reads is None else reads
        kind, key = op[0], KEYS[op[1] % len(KEYS)]
        if kind == "put":
            _, _, r, read_pick, delete, replicate = op
            r = among[r % len(among)]
            mine = [x for x in reads if x.key == key]
            ctx = mine[read_pick % len(mine)].context if mine and read_pick is not None else None
            self.put(r, key, ctx, None if delete else b"v%d" % len(self.writes))
            for i, other in enumerate(among):
                if other != r and replicate >> i & 1:
                    self.sync(key, r, other)
        elif kind == "read":
            mask = op[2]
            chosen = [x for i, x in enumerate(among) if mask >> i & 1] or among[:1]
            read = self.read(key, chosen)
            if reads is not self.reads:
                reads.append(read)
        else:
            src, dst = among[op[2] % len(among)], among[op[3] % len(among)]
            if src != dst:
                self.sync(key, src, dst)


# replica indexes and masks cover up to 8 replicas; `apply` takes them modulo what exists
key_index = st.integers(0, len(KEYS) - 1)
replica_index = st.integers(0, 7)
put_ops = st.tuples(
    st.just("put"), key_index, replica_index, st.none() | st.integers(0, 40),
    st.sampled_from([False, False, False, True]), st.integers(0, 255),
)
read_ops = st.tuples(st.just("read"), key_index, st.integers(1, 255))
sync_ops = st.tuples(st.just("sync"), key_index, replica_index, replica_index)
histories = st.lists(st.one_of(put_ops, read_ops, sync_ops), min_size=8, max_size=30)
actor_ids = st.lists(st.integers(1, 2**62 - 1), min_size=2, max_size=MAX_REPLICAS, unique=True)


def run(actors: list, history: list, **kw) -> Cluster:
    cluster = Cluster(actors, **kw)
    for op in history:
        cluster.apply(op)
    return cluster


# --- the four consequences of DESIGN §3 -------------------------------------------------------


@FAST
@given(actors=actor_ids, history=histories, r=replica_index, k=key_index)
def test_put_without_context_adds_a_sibling_and_keeps_every_stored_value(actors, history, r, k):
    cluster = run(actors, history)
    r, key = r % len(actors), KEYS[k]
    before, everywhere = cluster.states[(r, key)], cluster.view(key, cluster.replicas)
    after = cluster.put(r, key, None, b"new")
    new, superseded = cluster.writes[-1].dot, cluster.writes[-1].superseded
    live = {s.dot for s in before.siblings if s.value is not None}
    assert dots(after) == live | {new}, "tombstones go, every stored value stays"
    assert superseded == dots(before) - live
    assert dots(cluster.converge(key)) == (dots(everywhere) - superseded) | {new}


@FAST
@given(
    actors=actor_ids, before=histories, mask=st.integers(1, 2**MAX_REPLICAS - 1),
    after=histories, r=replica_index, k=key_index,
)
def test_put_with_read_context_replaces_exactly_the_siblings_that_read_returned(
    actors, before, mask, after, r, k
):
    cluster = run(actors, before)
    key = KEYS[k]
    read = cluster.read(key, [x for x in cluster.replicas if mask >> x & 1] or [0])
    for op in after:
        cluster.apply(op)
    everywhere = cluster.view(key, cluster.replicas)
    cluster.put(r % len(actors), key, read.context, b"new")
    new = cluster.writes[-1].dot
    final = dots(cluster.converge(key))
    superseded = cluster.writes[-1].superseded
    assert final == (dots(everywhere) - read.dots - superseded) | {new}
    assert not final & read.dots, "everything the read returned is replaced"
    written_since = {w.dot for w in cluster.writes[read.seq : -1]
                     if w.key == key and w.value is not None}
    assert written_since & dots(everywhere) <= final, "values written after the read survive"


@FAST
@given(
    actors=actor_ids, start=histories, side_mask=st.integers(1, 2**MAX_REPLICAS - 2),
    left=histories, right=histories,
)
def test_writes_on_both_sides_of_a_partition_are_all_siblings_after_merge(
    actors, start, side_mask, left, right
):
    cluster = run(actors, start)
    side_l = [x for x in cluster.replicas if side_mask >> x & 1]
    side_r = [x for x in cluster.replicas if not side_mask >> x & 1]
    if not side_l or not side_r:
        side_l, side_r = list(cluster.replicas)[:1], list(cluster.replicas)[1:]
    split = len(cluster.writes)
    # clients on each side hold the reads made before the split and those made on their side
    reads_l, reads_r = list(cluster.reads), list(cluster.reads)
    for op in left:
        cluster.apply(op, among=side_l, reads=reads_l)
    for op in right:
        cluster.apply(op, among=side_r, reads=reads_r)
    for key in KEYS:
        view_l, view_r = cluster.view(key, side_l), cluster.view(key, side_r)
        healed = vv.merge(view_l, view_r)
        made_apart = {w.dot for w in cluster.writes[split:] if w.key == key}
        survivors = (dots(view_l) | dots(view_r)) & made_apart
        assert survivors <= dots(healed), "no write made during the partition is lost"
        written = cluster.written(key)
        for dot in survivors:
            if written[dot].value is not None:
                assert written[dot].value in vv.values(healed)
        assert dots(healed) == cluster.expected_live(key)
        assert dots(cluster.converge(key)) == dots(healed)


def test_two_sides_overwriting_one_value_with_its_context_become_two_siblings():
    cluster = Cluster([7, 8, 9])
    cluster.put(0, "k0", None, b"start")
    cluster.converge("k0")
    read = cluster.read("k0", [0])
    cluster.put(0, "k0", read.context, b"left")  # side {0}
    cluster.put(2, "k0", read.context, b"right")  # side {1, 2}
    cluster.sync("k0", 2, 1)
    healed = cluster.converge("k0")
    assert sorted(vv.values(healed)) == [b"left", b"right"]


@FAST
@given(
    actors=actor_ids,
    history=st.lists(st.one_of(put_ops, read_ops, sync_ops), min_size=20, max_size=60),
)
def test_two_different_values_never_share_one_dot(actors, history):
    cluster = run(actors, history)
    made = [w.dot for w in cluster.writes]
    assert len(made) == len(set(made)), "every put makes a fresh dot, across keys and actors"
    value_of = {w.dot: w.value for w in cluster.writes}
    for state in cluster.states.values():
        for s in state.siblings:
            assert s.value == value_of[s.dot]


@FAST
@given(actors=actor_ids, history=histories)
def test_converged_siblings_are_exactly_the_writes_no_context_covered(actors, history):
    cluster = run(actors, history)
    for key in KEYS:
        assert dots(cluster.converge(key)) == cluster.expected_live(key)
        for r in cluster.replicas:
            assert canonical(cluster.states[(r, key)]) == canonical(cluster.view(key, [r]))


@FAST
@given(actors=actor_ids, history=histories)
def test_every_sibling_is_covered_by_its_own_clock(actors, history):
    cluster = run(actors, history)
    for state in cluster.states.values():
        for s in state.siblings:
            assert covers(vv.context(state), s.dot)


@FAST
@given(
    state=st.builds(
        KeyState,
        st.dictionaries(st.integers(1, 5), st.tuples(st.integers(0, 50), st.integers(0, 10**6))),
        st.just(()),
    ),
    ctx=st.dictionaries(st.integers(1, 5), st.integers(0, 50)),
    actor=st.integers(1, 5),
    floor=st.integers(0, 50),
)
def test_next_counter_is_above_floor_stored_clock_and_context(state, ctx, actor, floor):
    n = vv.next_counter(state, ctx, actor, floor)
    assert n > floor
    assert n > state.clock.get(actor, (0, 0))[0]
    assert n > ctx.get(actor, 0)


# --- merge is a join: commutative, associative, idempotent ------------------------------------


def assert_same(a: KeyState, b: KeyState) -> None:
    assert canonical(a) == canonical(b)
    assert vv.encode(a) == vv.encode(b)


@st.composite
def reachable_triples(draw):
    """Three replicas' states of one key after a random history."""
    actors = draw(actor_ids)
    cluster = run(actors, draw(histories))
    key = KEYS[draw(key_index)]
    pick = st.integers(0, len(actors) - 1)
    return tuple(cluster.states[(draw(pick), key)] for _ in range(3))


@st.composite
def consistent_triples(draw):
    """Three arbitrary states over one pool of siblings (a dot always means one value), each
    clock covering its own siblings: states no history need have produced."""
    actors = draw(st.lists(st.integers(1, 2**62 - 1), min_size=1, max_size=4, unique=True))
    pool = draw(
        st.lists(
            st.builds(
                Sibling,
                st.sampled_from(actors),
                st.integers(1, 12),
                st.integers(0, 100),
                st.none() | st.binary(max_size=4),
            ),
            max_size=8,
            unique_by=lambda s: s.dot,
        )
    )
    out = []
    for _ in range(3):
        siblings = draw(st.lists(st.sampled_from(pool), unique=True)) if pool else []
        clock = {}
        for a in actors:
            low = max((s.counter for s in siblings if s.actor == a), default=0)
            counter = draw(st.integers(low, 14))
            if counter:
                clock[a] = (counter, draw(st.integers(0, 100)))
        out.append(KeyState(clock, tuple(sorted(siblings, key=lambda s: (s.ts_ms, *s.dot)))))
    return tuple(out)


@st.composite
def expiring_triples(draw):
    """Consistent triples some of whose values have been expired (`expire` keeps the dot and
    drops the value) on some replicas and not others."""
    states = draw(consistent_triples())
    out = []
    for state in states:
        gone = draw(st.sets(st.sampled_from([s.dot for s in state.siblings]))) if state.siblings else set()
        out.append(KeyState(state.clock, tuple(s._replace(value=None) if s.dot in gone else s
                                               for s in state.siblings)))
    return tuple(out)


triples = st.one_of(reachable_triples(), consistent_triples(), expiring_triples())


@FAST
@given(triples)
def test_merge_is_commutative(states):
    a, b, _ = states
    assert_same(vv.merge(a, b), vv.merge(b, a))


@FAST
@given(triples)
def test_merge_is_associative(states):
    a, b, c = states
    assert_same(vv.merge(vv.merge(a, b), c), vv.merge(a, vv.merge(b, c)))


@FAST
@given(triples)
def test_merge_is_idempotent(states):
    a, b, _ = states
    assert_same(vv.merge(a, a), a)
    assert_same(vv.merge(a, KeyState(dict(reversed(a.clock.items())), a.siblings[::-1])), a)
    ab = vv.merge(a, b)
    assert_same(vv.merge(ab, b), ab)
    assert_same(vv.merge(a, ab), ab)


@FAST
@given(triples)
def test_merge_with_empty_changes_nothing(states):
    a, _, _ = states
    assert_same(vv.merge(a, EMPTY), a)
    assert_same(vv.merge(EMPTY, a), a)


@FAST
@given(triples)
def test_merge_blobs_agrees_with_merge(states):
    a, b, _ = states
    assert vv.merge_blobs(vv.encode(a), vv.encode(b)) == vv.encode(vv.merge(a, b))
    assert vv.merge_blobs(None, vv.encode(b)) == vv.encode(b)
    assert vv.merge_blobs(vv.encode(a), None) == vv.encode(a)


@FAST
@given(triples)
def test_merged_context_descends_both_sides(states):
    a, b, _ = states
    merged = vv.context(vv.merge(a, b))
    assert vv.descends(merged, vv.context(a)) and vv.descends(merged, vv.context(b))


# --- encoding ---------------------------------------------------------------------------------


@st.composite
def key_states(draw, max_actors: int = 6):
    actors = draw(
        st.lists(st.integers(0, 2**62 - 1), min_size=0, max_size=max_actors, unique=True)
    )
    clock = {a: (draw(st.integers(1, 2**40)), draw(st.integers(0, 2**45))) for a in actors}
    siblings = []
    for a in actors:
        for counter in draw(st.sets(st.integers(1, clock[a][0]), max_size=2)):
            value = draw(st.none() | st.binary(max_size=8))
            siblings.append(Sibling(a, counter, draw(st.integers(0, 2**45)), value))
    siblings.sort(key=lambda s: (s.ts_ms, s.actor, s.counter))
    return KeyState(clock, tuple(siblings))


@FAST
@given(st.one_of(key_states(), triples.map(lambda t: t[0])))
def test_encode_then_decode_gives_back_the_state(state):
    blob = vv.encode(state)
    back = vv.decode(blob)
    assert canonical(back) == canonical(state)
    assert back.siblings == state.siblings
    assert vv.encode(back) == blob


@FAST
@given(state=key_states(), data=st.data())
def test_equal_states_encode_to_equal_bytes_whatever_the_insertion_order(state, data):
    items = data.draw(st.permutations(list(state.clock.items())))
    siblings = data.draw(st.permutations(list(state.siblings)))
    shuffled = KeyState(dict(items), tuple(siblings))
    assert vv.encode(shuffled) == vv.encode(state)


def test_a_lone_write_uses_the_compact_encoding():
    state = vv.update(EMPTY, None, b"x", actor=3, counter=1, now_ms=5)
    blob = vv.encode(state)
    assert vv.decode(blob) == state
    assert blob == vv.encode(KeyState({3: (1, 5)}, (Sibling(3, 1, 5, b"x"),)))
    assert len(blob) < len(vv.encode(KeyState({3: (1, 5), 4: (1, 1)}, state.siblings)))


@FAST
@given(st.dictionaries(st.integers(0, 2**62 - 1), st.integers(0, 2**62), max_size=12))
def test_context_encoding_round_trips(ctx):
    assert vv.decode_context(vv.encode_context(ctx)) == ctx


# --- pruning ----------------------------------------------------------------------------------


@FAST
@given(state=key_states(max_actors=14), max_entries=st.integers(0, 12))
def test_prune_keeps_live_siblings_entries_and_at_most_max_entries_otherwise(state, max_entries):
    pruned = vv.prune(state, max_entries)
    live = {s.actor for s in state.siblings}
    assert pruned.siblings == state.siblings
    assert pruned.clock.items() <= state.clock.items()
    assert live & state.clock.keys() <= pruned.clock.keys(), "no live sibling's entry goes"
    assert len(pruned.clock) <= max(max_entries, len(live & state.clock.keys()))
    if len(state.clock) <= max_entries:
        assert pruned.clock == state.clock
    dropped = state.clock.keys() - pruned.clock.keys()
    kept_removable = pruned.clock.keys() - live
    if dropped and kept_removable:
        assert max(state.clock[a][1] for a in dropped) <= min(
            state.clock[a][1] for a in kept_removable
        ), "the oldest entries go first"


@FAST
@given(
    actors=st.lists(st.integers(1, 2**62 - 1), min_size=3, max_size=6, unique=True),
    history=st.lists(st.one_of(put_ops, read_ops, sync_ops), min_size=10, max_size=40),
    max_entries=st.integers(1, 3),
)
def test_pruning_never_loses_a_write_it_can_only_keep_extra_siblings(actors, history, max_entries):
    cluster = Cluster(actors, max_entries=max_entries)
    for op in history:
        cluster.apply(op)
    for key in KEYS:
        converged = cluster.converge(key)
        assert cluster.expected_live(key) <= dots(converged)
        # (pruning happens where a write adds an entry; merges may hold more until then)


# --- last-write-wins: the negative control ----------------------------------------------------


@FAST
@given(
    actors=st.lists(st.integers(1, 2**62 - 1), min_size=2, max_size=4, unique=True),
    skews=st.lists(st.integers(-1000, 1000), min_size=4, max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_lww_merge_of_concurrent_writes_keeps_only_the_newest_and_loses_the_rest(
    actors, skews, order
):
    cluster = Cluster(actors, policy="lww", skews_ms=skews[: len(actors)])
    cluster.put(0, "k0", None, b"start")
    cluster.converge("k0")
    for r in cluster.replicas:  # one concurrent write on each replica
        cluster.put(r, "k0", None, b"w%d" % r)
    concurrent = [
        s for r in cluster.replicas for s in cluster.states[(r, "k0")].siblings
    ]
    assert len(concurrent) == len(actors)
    states = [cluster.states[(r, "k0")] for r in cluster.replicas]
    order.shuffle(states)
    merged = reduce(lambda a, b: vv.merge(a, b, "lww"), states)
    newest = max(concurrent, key=lambda s: (s.ts_ms, s.actor, s.counter))
    assert merged.siblings == (newest,)
    assert len(vv.values(merged)) == 1 < len(concurrent), "lww loses concurrent writes"
    # the same writes under the default policy are all kept
    kept = reduce(vv.merge, [KeyState(s.clock, s.siblings) for s in states])
    assert dots(kept) == {s.dot for s in concurrent}


def test_lww_merge_never_empties_a_key_under_clock_skew():
    s1 = vv.update(EMPTY, None, b"a", 1, 1, 10, "lww")  # at vnode 1
    s2 = vv.update(EMPTY, None, b"b", 2, 1, 30, "lww")  # at vnode 2, concurrent with s1
    s3 = vv.update(s2, vv.context(s2), b"c", 3, 1, 5, "lww")  # at vnode 3, clock behind, after s2
    assert vv.values(s3) == [b"c"]  # a write is stamped after what it replaces, despite skew
    x = vv.merge(vv.merge(s1, s2, "lww"), s3, "lww")  # two replicas, two merge orders
    y = vv.merge(s1, vv.merge(s2, s3, "lww"), "lww")
    assert vv.values(x) == vv.values(y) == vv.values(vv.merge(x, y, "lww")) == [b"c"]


def test_lww_put_replaces_every_stored_sibling():
    state = vv.update(EMPTY, None, b"a", 1, 1, 10)
    state = vv.merge(state, vv.update(EMPTY, None, b"b", 2, 1, 11))
    assert len(state.siblings) == 2
    after = vv.update(state, None, b"c", 3, 1, 12, policy="lww")
    assert vv.values(after) == [b"c"]


# --- values and deletes -----------------------------------------------------------------------


@FAST
@given(key_states())
def test_values_leave_tombstones_out_oldest_first(state):
    live = [s for s in state.siblings if s.value is not None]
    assert vv.values(state) == list(dict.fromkeys(s.value for s in live))  # equal bytes: one value
    assert None not in vv.values(state)
    assert vv.is_deleted(state) == (not live)


def test_is_deleted_for_empty_and_tombstone_only_states():
    assert vv.is_deleted(EMPTY)
    assert vv.values(EMPTY) == []
    tomb = vv.update(EMPTY, None, None, 1, 1, 10)
    assert vv.is_deleted(tomb) and vv.values(tomb) == []
    two_tombs = vv.merge(tomb, vv.update(EMPTY, None, None, 2, 1, 11))
    assert len(two_tombs.siblings) == 2 and vv.is_deleted(two_tombs)
    alive = vv.merge(two_tombs, vv.update(EMPTY, None, b"x", 3, 1, 12))
    assert not vv.is_deleted(alive) and vv.values(alive) == [b"x"]


def test_delete_with_the_context_of_a_read_leaves_only_a_tombstone():
    cluster = Cluster([1, 2, 3])
    cluster.put(0, "k0", None, b"a")
    cluster.put(1, "k0", None, b"b")
    cluster.converge("k0")
    read = cluster.read("k0", [2])
    assert sorted(vv.values(cluster.view("k0", [2]))) == [b"a", b"b"]
    cluster.put(2, "k0", read.context, None)
    final = cluster.converge("k0")
    assert vv.is_deleted(final) and len(final.siblings) == 1


@pytest.mark.parametrize("policy", vv.POLICIES)
def test_latest_ts_ms_is_the_newest_siblings_timestamp(policy):
    assert vv.latest_ts_ms(EMPTY) == 0
    state = vv.update(EMPTY, None, b"a", 1, 1, 10, policy)
    state = vv.merge(state, vv.update(EMPTY, None, b"b", 2, 1, 30, policy), policy)
    assert vv.latest_ts_ms(state) == 30


def test_pruning_spares_entries_younger_than_the_minimum_age():
    state = EMPTY
    for actor in range(1, 13):  # 12 actors write in turn, one millisecond apart
        state = vv.update(state, vv.context(state), b"v", actor, 1, now_ms=1000 + actor,
                          max_entries=10, min_age_ms=60_000)
    assert len(state.clock) == 12  # all younger than a minute: none pruned
    later = vv.update(state, vv.context(state), b"w", 99, 1, now_ms=1000 + 120_000,
                      max_entries=10, min_age_ms=60_000)
    assert len(later.clock) == 10  # a minute on, the oldest go
    assert 99 in later.clock and 1 not in later.clock and 2 not in later.clock


# --- superseding equal values, and expiry -----------------------------------------------------


@FAST
@given(actors=actor_ids, history=histories, rounds=st.integers(2, 8), k=key_index)
def test_blind_writes_of_an_equal_value_keep_one_sibling_of_it(actors, history, rounds, k):
    cluster = run(actors, history)
    key = KEYS[k]
    before = cluster.states[(0, key)]
    for _ in range(rounds):
        after = cluster.put(0, key, None, b"same")
    live_before = {s.dot for s in before.siblings if s.value not in (None, b"same")}
    assert sum(s.value == b"same" for s in after.siblings) == 1
    assert {s.dot for s in after.siblings if s.value != b"same"} == live_before
    assert len(vv.encode(after)) <= len(vv.encode(cluster.put(0, key, None, b"same"))) + 2


def test_an_equal_value_supersedes_whatever_its_expiry():
    from dynamo_ray.core import codec

    first = vv.update(EMPTY, None, codec.with_expiry(b"v", 10_000), actor=1, counter=1, now_ms=1)
    second = vv.update(first, None, codec.with_expiry(b"v", 20_000), actor=1, counter=2, now_ms=2)
    assert [s.value for s in second.siblings] == [codec.with_expiry(b"v", 20_000)]


def test_expire_turns_expired_values_into_tombstones_of_the_same_dot():
    from dynamo_ray.core import codec

    state = vv.update(EMPTY, None, codec.with_expiry(b"v", 100), actor=1, counter=1, now_ms=1)
    state = vv.update(state, None, b"w", actor=2, counter=1, now_ms=2)
    assert vv.expire(state, 99) is state
    dead = vv.expire(state, 100)
    assert [(s.dot, s.value) for s in dead.siblings] == [((1, 1), None), ((2, 1), b"w")]
    assert dead.clock == state.clock and vv.expire(dead, 10**9) == dead


@FAST
@given(order=st.permutations([0, 1, 2]))
def test_an_expired_overwrite_never_lets_the_older_value_come_back(order):
    from dynamo_ray.core import codec

    cluster = Cluster([7, 8, 9])
    cluster.put(0, "k0", None, b"old")
    cluster.converge("k0")
    read = cluster.read("k0", [0])
    cluster.put(0, "k0", read.context, codec.with_expiry(b"new", 5_000))
    cluster.sync("k0", 0, 1)  # replica 2 is stale: it holds only b"old"
    for r in (0, 1):  # replicas expire on their own clocks, one after the other
        cluster.states[(r, "k0")] = vv.expire(cluster.states[(r, "k0")], 6_000)
    for dst in order:
        for src in order:
            if src != dst:
                cluster.sync("k0", src, dst)
    for r in cluster.replicas:
        assert vv.values(cluster.states[(r, "k0")]) == [], r
        assert vv.is_deleted(cluster.states[(r, "k0")])


@given(values=st.lists(st.one_of(st.none(), st.binary(max_size=70_000)), min_size=1, max_size=4),
       ttls=st.lists(st.one_of(st.none(), st.integers(0, 2**63 - 1)), min_size=4, max_size=4),
       actors=st.lists(st.integers(0, 2**62), min_size=4, max_size=4, unique=True))
@settings(max_examples=200, deadline=None)
def test_a_state_holding_an_expiring_value_is_never_missed_by_the_expiry_filter(values, ttls,
                                                                               actors):
    from dynamo_ray.core import codec

    siblings = tuple(Sibling(a, 1, i, None if v is None else codec.with_expiry(v, t))
                     for i, (a, v, t) in enumerate(zip(actors, values, ttls)))
    blob = vv.encode(KeyState({s.actor: (1, s.ts_ms) for s in siblings}, siblings))
    expiring = any(v is not None and t is not None for v, t in zip(values, ttls))
    assert codec.may_hold_expiry(blob) or not expiring
