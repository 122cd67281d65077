"""The per-range store behind a vnode: key -> encoded key state, with byte accounting and,
for the ranges a vnode replicates, the range's Merkle tree kept current on every write.

Role (DESIGN §5): hold one table's key range (one ring partition) on one vnode, apart from every
other range, so a range can be compared, streamed or dropped on its own. Values are the opaque
blobs of `versioning.encode`; this module never decodes them.

Invariants: ``nbytes`` equals the sum of len(key bytes) + len(blob) over the entries; the tree,
when there is one, equals `MerkleTree.build` of the entries (every write goes through `put`/`pop`).
Must not: import Ray, or know about replication.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Optional

from .merkle import MerkleTree, item_hash


def key_bytes(key: str | bytes) -> int:
    return len(key) if isinstance(key, bytes) else len(key.encode())


class RangeStore:
    __slots__ = ("entries", "nbytes", "tree", "watchers")

    def __init__(self, tree_shape: Optional[tuple[int, int]] = None) -> None:
        self.entries: dict[str | bytes, bytes] = {}
        self.nbytes = 0
        self.tree = MerkleTree(*tree_shape) if tree_shape else None
        self.watchers: list[set] = []  # keys written while a range transfer streams

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str | bytes) -> Optional[bytes]:
        return self.entries.get(key)

    def put(self, key: str | bytes, blob: bytes) -> None:
        old = self.entries.get(key)
        self.nbytes += len(blob) - (len(old) if old is not None else -key_bytes(key))
        self.entries[key] = blob
        if self.tree is not None:
            self.tree.update(key, old, blob)
        for written in self.watchers:
            written.add(key)

    def pop(self, key: str | bytes) -> Optional[bytes]:
        old = self.entries.pop(key, None)
        if old is not None:
            self.nbytes -= len(old) + key_bytes(key)
            if self.tree is not None:
                self.tree.update(key, old, None)
            for written in self.watchers:
                written.add(key)
        return old

    def items(self) -> Iterator[tuple[str | bytes, bytes]]:
        return iter(list(self.entries.items()))

    def digests(self, buckets: Iterable[int]) -> list[tuple]:
        """(key, item hash) of every key in the tree's leaf ``buckets``: what anti-entropy
        compares before it moves any value."""
        wanted = set(buckets)
        bucket_of = self.tree.bucket_of
        return [(k, item_hash(k, b)) for k, b in self.entries.items() if bucket_of(k) in wanted]
