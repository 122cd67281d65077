"""The ring: Q equal partitions of the 128-bit mmh3 space, their owners, and preference lists.

Follows Dynamo §4.2-4.3 and strategy 3 of §6.2: the hash space is cut into Q equal partitions
(Q a power of two, fixed for the life of a store); each partition is claimed by one node and
served by one vnode on that node. The preference list of a key walks clockwise from the key's
partition, taking partitions whose node is not yet taken, until it has N distinct nodes; walking
further gives the fallbacks, one per remaining node, in walk order.

Invariants:
- every node owns floor(Q/S) or ceil(Q/S) partitions;
- a preference list names N distinct nodes whenever S >= N;
- `claim` moves as few partitions as the balance allows: adding one node to S moves at most
  ceil(Q/(S+1)) partitions and removing one moves only that node's.

Pure: no Ray import; membership is passed in.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import mmh3

HASH_BITS = 128


def natural_order(name: str) -> tuple:
    """Sort key that orders the numbers inside names by value: node-2 before node-10."""
    parts = re.split(r"(\d+)", name)  # text, digits, text, ...: types align between names
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts))


def key_hash(key: str | bytes) -> int:
    """Position of a key on the ring: mmh3 x64 128-bit hash of its bytes, unsigned.

    Keywords, not positions: mmh3 5.x reads ``hash128(key, 0, True, False)`` as signed."""
    return mmh3.hash128(key, seed=0, x64arch=True, signed=False)


@dataclass(frozen=True)
class Ring:
    """Ownership of Q partitions: ``owners[p]`` is the node that serves partition p.

    ``version`` grows with every membership change so that newer views win."""

    owners: tuple[str, ...]
    version: int = 1
    _preference_cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        q = len(self.owners)
        if q < 1 or q & (q - 1):
            raise ValueError(f"a ring needs a power-of-two number of partitions, not {q}")
        object.__setattr__(self, "_shift", HASH_BITS - (q.bit_length() - 1))

    @property
    def partitions(self) -> int:
        return len(self.owners)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Distinct owners in natural order (node-2 before node-10)."""
        return tuple(sorted(set(self.owners), key=natural_order))

    def partition_of(self, key: str | bytes) -> int:
        return key_hash(key) >> self._shift

    def partitions_of(self, node: str) -> tuple[int, ...]:
        return tuple(p for p, owner in enumerate(self.owners) if owner == node)

    def preference_list(self, partition: int, n: int) -> tuple[int, ...]:
        """The vnodes (by partition) that replicate key partition ``partition``: N distinct nodes,
        clockwise from it (fewer only when the ring has fewer than N nodes)."""
        return self._walk(partition, n)[0]

    def fallbacks(self, partition: int, n: int) -> tuple[int, ...]:
        """Vnodes that stand in for unreachable members of the preference list, in walk order:
        the first vnode met on each node that is not already in the list."""
        return self._walk(partition, n)[1]

    def ranges_held(self, vnode: int, n: int) -> tuple[int, ...]:
        """Key partitions whose preference list includes vnode ``vnode``."""
        return tuple(k for k in range(self.partitions) if vnode in self.preference_list(k, n))

    def _walk(self, partition: int, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        cached = self._preference_cache.get((partition, n))
        if cached is not None:
            return cached
        q = self.partitions
        taken: set[str] = set()
        preference: list[int] = []
        fallbacks: list[int] = []
        for step in range(q):
            p = (partition + step) % q
            owner = self.owners[p]
            if owner in taken:
                continue
            taken.add(owner)
            (preference if len(preference) < n else fallbacks).append(p)
        result = (tuple(preference), tuple(fallbacks))
        self._preference_cache[(partition, n)] = result
        return result

    def with_owners(self, owners: Sequence[str]) -> "Ring":
        return Ring(tuple(owners), self.version + 1)


def claim(partitions: int, nodes: Sequence[str], n: int, previous: Ring | None = None) -> Ring:
    """A balanced claim of ``partitions`` among ``nodes`` that keeps every partition of
    ``previous`` whose owner need not change, and avoids putting one node twice in any N
    consecutive partitions where it can (Riak's claim goal; impossible for some Q, S)."""
    nodes = list(dict.fromkeys(nodes))
    if not nodes:
        raise ValueError("a ring needs at least one node")
    if partitions < len(nodes):
        raise ValueError(f"{partitions} partitions cannot be spread over {len(nodes)} nodes")
    members = set(nodes)
    version = previous.version + 1 if previous is not None else 1  # newer views win
    if previous is not None and previous.partitions == partitions:
        owners: list[str | None] = [o if o in members else None for o in previous.owners]
    else:
        owners = [None] * partitions
    order = {node: i for i, node in enumerate(nodes)}
    held = Counter(o for o in owners if o is not None)
    base, extra = divmod(partitions, len(nodes))
    # The `extra` larger quotas go to the nodes that already hold most: nothing moves needlessly.
    by_holding = sorted(nodes, key=lambda x: (-held[x], order[x]))
    quota = {x: base + (1 if i < extra else 0) for i, x in enumerate(by_holding)}

    def clashes(p: int, node: str) -> int:
        near = range(p - (n - 1), p + n)
        return sum(1 for i in near if i != p and owners[i % partitions] == node)

    def deficit(node: str) -> int:
        return quota[node] - held[node]

    # Partitions without an owner (new ring, or a node left): fill in walk order.
    for p in range(partitions):
        if owners[p] is None:
            best = min(
                (x for x in nodes if deficit(x) > 0),
                key=lambda x: (clashes(p, x), -deficit(x), order[x]),
            )
            owners[p] = best
            held[best] += 1
    # Nodes over quota (a node joined) give partitions to nodes under it, one at a time,
    # each move the one that leaves the fewest clashes.
    while True:
        takers = [x for x in nodes if deficit(x) > 0]
        if not takers:
            break
        givers = {x for x in nodes if deficit(x) < 0}
        _, p, taker = min(
            ((clashes(p, y), -deficit(y), p, order[y]), p, y)
            for p, owner in enumerate(owners)
            if owner in givers
            for y in takers
        )
        held[owners[p]] -= 1
        owners[p] = taker
        held[taker] += 1
    return Ring(tuple(owners), version)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Transfer:
    """Range ``kp`` of every table with N = ``n`` must be streamed from vnode ``source`` (on
    ``source_node`` in the old ring) to vnode ``target`` (on ``target_node`` in the new ring)."""

    n: int
    kp: int
    source: int
    source_node: str
    target: int
    target_node: str


def transfer_plan(old: Ring, new: Ring, ns: Iterable[int]) -> list[Transfer]:
    """What a membership change must stream before ownership switches: for every range and
    replication factor, each vnode of the new preference list that did not hold the range in
    the old ring (a vnode is a partition on a node) receives it from an old replica, preferably
    the old vnode of the same partition (the one being moved), else the range's first one."""
    if old.partitions != new.partitions:
        raise ValueError("a membership change keeps Q: the rings have different partition counts")
    plan = []
    for n in sorted(set(ns)):
        for kp in range(new.partitions):
            old_replicas = [(p, old.owners[p]) for p in old.preference_list(kp, n)]
            for target in new.preference_list(kp, n):
                if (target, new.owners[target]) in old_replicas:
                    continue
                source = next((r for r in old_replicas if r[0] == target), old_replicas[0])
                plan.append(Transfer(n, kp, source[0], source[1], target, new.owners[target]))
    return plan


def ranges_dropped(old: Ring, new: Ring, ns: Iterable[int]) -> list[tuple[int, int, int]]:
    """(n, vnode, kp): ranges a vnode keeps serving in both rings (same partition, same node)
    but no longer replicates in the new one; it drops them once the change has committed."""
    dropped = []
    for n in sorted(set(ns)):
        for vnode in range(new.partitions):
            if old.owners[vnode] != new.owners[vnode]:
                continue  # the vnode moves: the whole old vnode retires
            before = set(old.ranges_held(vnode, n))
            after = set(new.ranges_held(vnode, n))
            dropped += [(n, vnode, kp) for kp in sorted(before - after)]
    return dropped


def clashing_windows(ring: Ring, n: int) -> int:
    """How many windows of N consecutive partitions name some node twice (0 is the goal)."""
    q = ring.partitions
    return sum(
        1
        for start in range(q)
        if len({ring.owners[(start + i) % q] for i in range(min(n, q))}) < min(n, q)
    )


def moved_partitions(old: Ring, new: Ring) -> tuple[int, ...]:
    return tuple(p for p in range(old.partitions) if old.owners[p] != new.owners[p])


def distinct_nodes(ring: Ring, vnodes: Iterable[int]) -> int:
    return len({ring.owners[v] for v in vnodes})
