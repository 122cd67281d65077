"""The per-range store behind a vnode: key -> encoded key state, with byte accounting.

Role (DESIGN §5): hold one table's key range (one ring partition) on one vnode, apart from every
other range, so a range can be compared, streamed or dropped on its own. Values are the opaque
blobs of `versioning.encode`; this module never decodes them.

Invariant: ``nbytes`` equals the sum of len(key bytes) + len(blob) over the entries.
Must not: import Ray, or know about replication.
"""

from __future__ import annotations

from typing import Iterator, Optional


def key_bytes(key: str | bytes) -> int:
    return len(key) if isinstance(key, bytes) else len(key.encode())


class RangeStore:
    __slots__ = ("entries", "nbytes")

    def __init__(self) -> None:
        self.entries: dict[str | bytes, bytes] = {}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str | bytes) -> Optional[bytes]:
        return self.entries.get(key)

    def put(self, key: str | bytes, blob: bytes) -> None:
        old = self.entries.get(key)
        self.nbytes += len(blob) - (len(old) if old is not None else -key_bytes(key))
        self.entries[key] = blob

    def pop(self, key: str | bytes) -> Optional[bytes]:
        old = self.entries.pop(key, None)
        if old is not None:
            self.nbytes -= len(old) + key_bytes(key)
        return old

    def items(self) -> Iterator[tuple[str | bytes, bytes]]:
        return iter(list(self.entries.items()))
