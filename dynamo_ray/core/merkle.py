"""Merkle trees over one key range: find which keys two replicas disagree on, cheaply.

Follows Dynamo §4.7 (and DESIGN §4, anti-entropy): each vnode keeps one tree per key range per
table; two replicas of a range compare their trees top-down, exchanging node hashes one level
at a time, descend only into nodes that differ, and end with the leaf buckets whose keys they
must exchange. Equal ranges cost one hash (the root); k differing keys cost about
``k * fanout * depth`` hashes however large the range.

Shape: ``fanout ** depth`` leaf buckets. Level ``d`` (0 = root, ``depth`` = leaves) is a flat
list of ``fanout ** d`` 64-bit node hashes; the children of node ``i`` at level ``d`` are nodes
``i * fanout .. i * fanout + fanout - 1`` at level ``d + 1``. A key's bucket is the low 64 bits
of ``mmh3.hash128(key)`` modulo the leaf count (the low bits: keys of one ring partition share
the high bits). An item is (key, blob), the blob being the key's encoded state; its hash is the
first 64 bits of mmh3 x64-128 over (the key's 16-byte mmh3 digest, then the blob), seeded
apart for ``str`` and ``bytes`` keys (so ``"a"`` and ``b"a"``, two keys of a dict, never
cancel). A leaf is the XOR of its items' hashes and an inner node the XOR of its children, so a
write updates the tree in O(depth) without a rebuild: XOR ``h(key, old) ^ h(key, new)`` into
the key's leaf and each ancestor (an absent side contributes 0).

Invariants:
- after any sequence of updates the tree equals ``MerkleTree.build`` of the same items: the
  same root, the same nodes at every level (XOR is commutative and its own inverse);
- equal item sets give equal trees, whatever the order of the writes, on any process or
  machine (mmh3 is seedless of the process: no ``hash()``);
- XOR aggregation is sound because a key appears at most once per tree: the caller passes the
  blob it really held before (``old``); two equal item hashes never come from one tree except
  by a 64-bit collision, which we treat as impossible;
- ``diff(a, b)`` returns exactly the buckets holding a key whose blob differs or that only one
  side holds (hash collisions aside).

Must not: import Ray, hold or decode keys' values, or know about replicas, the ring or the
network; it trusts the caller for ``old`` (a wrong ``old`` corrupts the tree until a rebuild).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, Sequence
from functools import reduce
from operator import xor

import mmh3

MAX_LEAVES = 1 << 20
NODE_HASH_BYTES = 8  # a node hash is a 64-bit unsigned int on the wire (msgpack: 9 bytes)

_digest = mmh3.hash_bytes  # 16 bytes, little-endian form of mmh3.hash128(key)
_hash_buffer = mmh3.mmh3_x64_128_utupledigest
_low64 = struct.Struct("<Q").unpack_from
_BYTES_SEED = 0
_STR_SEED = 1


def item_hash(key: str | bytes, blob: bytes) -> int:
    """The 64-bit hash of one (key, blob) item, as a leaf folds it in."""
    seed = _STR_SEED if isinstance(key, str) else _BYTES_SEED
    return _hash_buffer(_digest(key) + blob, seed)[0]


def check_shape(fanout: int, depth: int) -> int:
    """The number of leaf buckets of a tree of this shape; ValueError naming the parameter
    when ``fanout < 2``, ``depth < 1`` or ``fanout ** depth > 2 ** 20``."""
    if isinstance(fanout, bool) or not isinstance(fanout, int) or fanout < 2:
        raise ValueError(f"fanout must be an int >= 2, not {fanout!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, not {depth!r}")
    if depth > 20 or fanout**depth > MAX_LEAVES:  # fanout >= 2: depth > 20 is over anyway
        raise ValueError(
            f"fanout ** depth (the leaf buckets) must be at most 2**20, "
            f"not fanout={fanout} ** depth={depth}: lower fanout or depth"
        )
    return fanout**depth


class MerkleTree:
    """The hash tree of one key range: ``fanout ** depth`` leaf buckets of (key, blob) items."""

    __slots__ = ("_count", "_levels", "_path", "depth", "fanout", "leaves")

    def __init__(self, fanout: int = 16, depth: int = 3) -> None:
        self.fanout = fanout
        self.depth = depth
        self.leaves = check_shape(fanout, depth)
        # unsigned 64-bit arrays: 8 bytes a node, not a pointer plus an int object
        self._levels: list[array] = [array("Q", bytes(8 * fanout**d)) for d in range(depth + 1)]
        self._count = 0
        self._index_path()

    def _index_path(self) -> None:
        # (level nodes, leaf-to-node divisor) from root to leaves: one XOR per level per write.
        f, depth = self.fanout, self.depth
        self._path = tuple((self._levels[d], f ** (depth - d)) for d in range(depth + 1))

    @classmethod
    def build(
        cls, items: Iterable[tuple[str | bytes, bytes | None]], fanout: int = 16, depth: int = 3
    ) -> MerkleTree:
        """The tree of ``items`` (key, blob) in one pass; a None blob is an absent key.
        ValueError when a key appears twice."""
        tree = cls(fanout, depth)
        leaves, n = tree._levels[depth], tree.leaves
        seen: set = set()
        for key, blob in items:
            if blob is None:
                continue
            if key in seen:
                raise ValueError(f"key {key!r} appears twice: a tree holds one blob per key")
            seen.add(key)
            d = _digest(key)
            seed = _STR_SEED if isinstance(key, str) else _BYTES_SEED
            leaves[_low64(d)[0] % n] ^= _hash_buffer(d + blob, seed)[0]
        tree._count = len(seen)
        for d in range(depth - 1, -1, -1):
            below = tree._levels[d + 1]
            tree._levels[d][:] = array(
                "Q", [reduce(xor, below[i : i + fanout]) for i in range(0, len(below), fanout)]
            )
        return tree

    def copy(self) -> MerkleTree:
        """An independent snapshot (e.g. to walk a comparison while writes go on)."""
        other = MerkleTree.__new__(MerkleTree)
        other.fanout, other.depth, other.leaves = self.fanout, self.depth, self.leaves
        other._levels = [array("Q", nodes) for nodes in self._levels]
        other._count = self._count
        other._index_path()
        return other

    # --- writes ------------------------------------------------------------------------------
    def update(self, key: str | bytes, old: bytes | None, new: bytes | None) -> None:
        """Account one write of ``key``: its blob was ``old`` and is now ``new`` (None: absent).
        O(depth); a no-op when they are equal."""
        if old == new:
            return
        d = _digest(key)
        seed = _STR_SEED if isinstance(key, str) else _BYTES_SEED
        if old is None:
            x = 0
            self._count += 1
        else:
            x = _hash_buffer(d + old, seed)[0]
        if new is None:
            self._count -= 1
        else:
            x ^= _hash_buffer(d + new, seed)[0]
        b = _low64(d)[0] % self.leaves
        for nodes, div in self._path:
            nodes[b // div] ^= x

    # --- reads -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return (
            f"MerkleTree(fanout={self.fanout}, depth={self.depth}, items={self._count}, "
            f"root={self.root():#018x})"
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(fanout, depth): two trees compare only when their shapes are equal."""
        return (self.fanout, self.depth)

    def bucket_of(self, key: str | bytes) -> int:
        """The leaf bucket of ``key``: its mmh3 hash128's low 64 bits modulo the leaf count."""
        return _low64(_digest(key))[0] % self.leaves

    def root(self) -> int:
        return self._levels[0][0]

    def level(self, d: int) -> list[int]:
        """Every node hash of level ``d`` (0: the root alone; ``depth``: the leaves), a copy."""
        if not 0 <= d <= self.depth:
            raise IndexError(f"level {d} is outside 0..{self.depth}")
        return list(self._levels[d])

    def children(self, d: int, index: int) -> list[int]:
        """The ``fanout`` hashes of the children of node ``index`` at level ``d`` (< depth)."""
        return self.children_of(d, (index,))

    def children_of(self, d: int, indexes: Sequence[int]) -> list[int]:
        """The children hashes of several level-``d`` nodes, concatenated in the order given:
        one network reply per level of a comparison (``fanout * len(indexes)`` hashes)."""
        if not 0 <= d < self.depth:
            raise IndexError(f"level {d} has no children: inner levels are 0..{self.depth - 1}")
        f, width = self.fanout, self.fanout**d
        below = self._levels[d + 1]
        out: list[int] = []
        for i in indexes:
            if not 0 <= i < width:
                raise IndexError(f"level {d} has nodes 0..{width - 1}, not {i}")
            out += below[i * f : i * f + f]
        return out


# --- comparison ------------------------------------------------------------------------------


def diff_children(mine: Sequence[int], theirs: Sequence[int]) -> list[int]:
    """Positions where two equally long lists of node hashes differ."""
    if len(mine) != len(theirs):
        raise ValueError(f"cannot compare {len(mine)} node hashes with {len(theirs)}")
    return [i for i, (x, y) in enumerate(zip(mine, theirs)) if x != y]


def child_indexes(parents: Sequence[int], fanout: int) -> list[int]:
    """The next-level indexes of ``children_of(d, parents)``'s hashes, position by position."""
    return [p * fanout + j for p in parents for j in range(fanout)]


class TopDownDiff:
    """A top-down comparison of two trees of one shape, one level per step, wherever they are.

    Start from the whole of one level on each side (by default level 0, ``[root]``); while not
    ``done``, fetch ``children_of(level, frontier)`` from both sides (one request each, the
    same ``frontier`` indexes) and pass them to ``step``. At the end ``leaves`` are the
    differing leaf buckets, in increasing order.

    Counts, for the network: ``nodes_compared`` pairs of node hashes compared, i.e. hashes each
    side sent (``per_level[d]`` of them at level d, so a side sends ``NODE_HASH_BYTES *
    nodes_compared`` bytes of tree); ``indexes_sent`` frontier indexes sent in requests to each
    side; ``rounds`` requests to each side, the first (the starting level) included.
    """

    def __init__(
        self, fanout: int, depth: int, mine: Sequence[int], theirs: Sequence[int], level: int = 0
    ) -> None:
        check_shape(fanout, depth)
        if not 0 <= level <= depth or len(mine) != fanout**level:
            raise ValueError(f"a start at level {level} needs its {fanout}**{level} node hashes")
        self.fanout, self.depth, self.level = fanout, depth, level
        self.frontier: list[int] = diff_children(mine, theirs)
        self.nodes_compared = len(mine)
        self.per_level: dict[int, int] = {level: len(mine)}
        self.indexes_sent = 0
        self.rounds = 1

    @property
    def done(self) -> bool:
        return not self.frontier or self.level == self.depth

    @property
    def leaves(self) -> list[int]:
        """The differing leaf buckets (only meaningful once ``done``)."""
        return list(self.frontier) if self.level == self.depth else []

    def step(self, mine: Sequence[int], theirs: Sequence[int]) -> None:
        """Descend one level, given both sides' ``children_of(self.level, self.frontier)``."""
        if self.done:
            raise ValueError("the comparison is done: no further level to fetch")
        want = len(self.frontier) * self.fanout
        if len(mine) != want or len(theirs) != want:
            raise ValueError(
                f"expected {want} children hashes a side, got {len(mine)} and {len(theirs)}"
            )
        f, parents = self.fanout, self.frontier
        self.frontier = [parents[p // f] * f + p % f for p in diff_children(mine, theirs)]
        self.level += 1
        self.nodes_compared += want
        self.per_level[self.level] = want
        self.indexes_sent += len(parents)
        self.rounds += 1


def diff(a: MerkleTree, b: MerkleTree, stats: dict | None = None, level: int = 0) -> list[int]:
    """The leaf buckets where trees ``a`` and ``b`` differ, in increasing order, found top down
    as a remote exchange would, starting from the whole of ``level``. ``stats``, if given, gets
    ``nodes_compared``, ``per_level``, ``indexes_sent`` and ``rounds`` (see TopDownDiff)."""
    if a.shape != b.shape:
        raise ValueError(f"trees of shapes {a.shape} and {b.shape} cannot be compared")
    walk = TopDownDiff(a.fanout, a.depth, a.level(level), b.level(level), level)
    while not walk.done:
        walk.step(
            a.children_of(walk.level, walk.frontier), b.children_of(walk.level, walk.frontier)
        )
    if stats is not None:
        stats.update(
            nodes_compared=walk.nodes_compared,
            per_level=dict(walk.per_level),
            indexes_sent=walk.indexes_sent,
            rounds=walk.rounds,
        )
    return walk.leaves
