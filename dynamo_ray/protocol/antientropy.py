"""Anti-entropy: replicas of a range compare Merkle trees and exchange only what differs.

Role (Dynamo §4.7, DESIGN §4): background work that a node's maintenance loop launches every
``antientropy.interval_s`` (a Ray task pinned to that node in the runtime). For every range
each of the node's vnodes replicates, it compares the vnode's tree with the next replica's in the preference list (so the
N replicas of a range form a ring of exchanges): roots first, one batched call per vnode; then,
for ranges whose roots differ, the trees top-down one level per call; then the (key, hash)
listings of the differing leaf buckets; and only then the states of the keys that differ,
merged with the versioning merge and sent to whichever side lacks the merge. The first primary
of each range also reaps tombstones that all N primaries hold unchanged past the grace period
while no hint for the key is pending anywhere.

Throttled: a cap on keys repaired per round (the node pauses whole rounds while foreground p99
latency is over its goal). Every call has a deadline. A quiet store repairs nothing: equal
ranges cost one root hash a side.

Figures per exchange, recorded on the initiating vnode: ranges compared, tree nodes sent (node
hashes plus leaf listing entries received from the peer), keys transferred across the pair
(states fetched from the peer plus states sent to it) and bytes (``tree_bytes``: hashes and
listings received from the peer; ``state_bytes``: the states moved).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from ..core import versioning
from ..config import StoreConfig
from ..core.merkle import NODE_HASH_BYTES, TopDownDiff
from ..core.ring import Ring
from .transport import Transport, vnode_at

Job = tuple  # (local partition, peer partition, table, key partition, reaper: bool)


async def run_round(transport: Transport, config: StoreConfig, ring: Ring,
                    jobs: list[Job]) -> dict:
    """One node's anti-entropy round over ``jobs``. Returns the round's totals."""
    timeout_s = config.timeouts.request_ms / 1000

    def call(partition: int, method: str, *args):
        return transport.call(vnode_at(ring.owners[partition], partition), method, *args,
                              timeout_s=timeout_s)

    async def both(*calls):
        return await asyncio.gather(*calls)

    totals: dict = defaultdict(int)
    roots = await _roots(jobs, call)
    budget = config.antientropy.max_keys_per_round
    per_vnode: dict = defaultdict(lambda: defaultdict(int))
    for job in jobs:
        local, peer, table, kp, reaper = job
        figures = per_vnode[local]
        figures["ae_ranges"] += 1
        mine, theirs = roots.get((local, table, kp)), roots.get((peer, table, kp))
        if mine is None or theirs is None:
            continue  # a side did not answer: next round
        figures["ae_nodes"] += 1
        figures["tree_bytes"] += NODE_HASH_BYTES
        try:
            if mine != theirs and budget > 0:
                budget -= await _repair_range(config, call, both, job, mine, theirs, figures,
                                              budget)
            if reaper:
                figures["reaped"] += await _reap(config, ring, call, both, table, kp,
                                                 transport.clock.time())
        except Exception:  # a replica died mid-exchange: what it answered is kept, next round
            continue
    for local, figures in per_vnode.items():
        for name, value in figures.items():
            totals[name] += value
    transport.metrics.count("dynamo_antientropy_repairs_total", totals.get("repaired", 0))
    for local, figures in per_vnode.items():
        figures["ae_bytes"] = figures["tree_bytes"] + figures["state_bytes"]
        try:
            await call(local, "record_exchange", dict(figures))
        except Exception:
            pass
    return dict(totals)


async def _roots(jobs: list[Job], call) -> dict:
    """Roots of every range of the round, one call per vnode: {(partition, table, kp): root}."""
    wanted: dict = defaultdict(set)
    for local, peer, table, kp, _ in jobs:
        wanted[local].add((table, kp))
        wanted[peer].add((table, kp))
    asked = {partition: (sorted(ranges), call(partition, "roots", sorted(ranges)))
             for partition, ranges in wanted.items()}
    found = {}
    for partition, (ranges, future) in asked.items():
        try:
            answered = await future
        except Exception:
            continue
        found.update({(partition, t, kp): root for (t, kp), root in zip(ranges, answered)})
    return found


async def _repair_range(config: StoreConfig, call, both, job: Job, mine: int, theirs: int,
                        figures: dict, budget: int) -> int:
    """Walk both trees down to the differing leaves, compare their listings, move the states
    that differ both ways. Returns the number of keys repaired."""
    local, peer, table, kp, _ = job
    ae = config.antientropy
    walk = TopDownDiff(ae.fanout, ae.depth, [mine], [theirs])
    while not walk.done:
        a, b = await both(call(local, "tree_children", table, kp, walk.level, walk.frontier),
                          call(peer, "tree_children", table, kp, walk.level, walk.frontier))
        walk.step(a, b)
    sent = walk.nodes_compared - 1  # the root was counted with the roots
    figures["ae_nodes"] += sent
    figures["tree_bytes"] += sent * NODE_HASH_BYTES
    buckets = walk.leaves
    mine_listing, their_listing = await both(call(local, "bucket_digests", table, kp, buckets),
                                             call(peer, "bucket_digests", table, kp, buckets))
    figures["ae_nodes"] += len(their_listing)
    figures["tree_bytes"] += sum(_key_size(k) + NODE_HASH_BYTES for k, _ in their_listing)
    a_hashes, b_hashes = dict(mine_listing), dict(their_listing)
    # in listing order (not set order): the same exchange repairs the same keys every run
    differing = [k for k in dict.fromkeys([*a_hashes, *b_hashes])
                 if a_hashes.get(k) != b_hashes.get(k)][:budget]
    if not differing:
        return 0
    (_, a_blobs), (_, b_blobs) = await both(call(local, "get", table, [(kp, differing)]),
                                            call(peer, "get", table, [(kp, differing)]))
    policy = config.tables[table].conflict
    to_mine, to_theirs = [], []
    for key, a, b in zip(differing, a_blobs[0], b_blobs[0]):
        merged = versioning.merge_blobs(a, b, policy)
        if merged != a:
            to_mine.append((key, merged))
        if merged != b:
            to_theirs.append((key, merged))
    calls = []
    if to_mine:
        calls.append(call(local, "merge", table, [(kp, None, to_mine)]))
    if to_theirs:
        calls.append(call(peer, "merge", table, [(kp, None, to_theirs)]))
    await both(*calls)
    fetched = [b for b in b_blobs[0] if b is not None]
    figures["ae_keys"] += len(fetched) + len(to_theirs)
    figures["state_bytes"] += sum(len(b) for b in fetched) + sum(len(b) for _, b in to_theirs)
    figures["repaired"] += len(to_mine) + len(to_theirs)
    return len(to_mine) + len(to_theirs)


async def _reap(config: StoreConfig, ring: Ring, call, both, table: str, kp: int,
                now_s: float) -> int:
    """Remove the tombstones of range (table, kp) that every primary holds byte-for-byte,
    older than the grace period, with no hint for the key pending on any fallback."""
    n = config.tables[table].n
    primaries = ring.preference_list(kp, n)
    before_ms = int((now_s - config.antientropy.tombstone_grace_s) * 1000)
    candidates = await call(primaries[0], "tombstones", table, kp, before_ms)
    if not candidates:
        return 0
    keys = [k for k, _ in candidates]
    copies = await both(*(call(p, "get", table, [(kp, keys)]) for p in primaries[1:]))
    hinted = await both(*(call(f, "hinted_keys", table, kp, keys) for f in ring.fallbacks(kp, n)))
    blocked = {k for found in hinted for k in found}
    agreed = [
        (key, blob) for i, (key, blob) in enumerate(candidates)
        if key not in blocked and all(groups[0][i] == blob for _, groups in copies)
    ]
    if not agreed:
        return 0
    await both(*(call(p, "reap", table, kp, agreed) for p in primaries))
    return len(agreed)


def _key_size(key: str | bytes) -> int:
    return len(key) if isinstance(key, bytes) else len(key.encode())
