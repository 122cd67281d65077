"""The in-memory part of a range: blobs packed into slabs, so resident memory is what is counted.

Role (DESIGN §5): `range_store.RangeStore` keeps its hot entries here. A plain dict of bytes objects
leaves the C heap fragmented: every write allocates a blob among the short-lived objects of the
request that carried it, and every spill frees blobs scattered over pages that stay resident
(a range spilling 10x its limit, no Ray: resident growth 7.0 MB for 3.7 MB held; 4.8 MB with
slabs and the other fixes of `range_store.warm_up_storage`). Here each blob is copied into the tail of a fixed-size slab (`SLAB_BYTES`), and a slab is
freed whole once none of its entries is live, so memory comes back to the system in pages. A
table's first slabs are small (4 KB, doubling up to `SLAB_BYTES`): the many ranges of a store
that hold a few keys each cost kilobytes, not 128 KB each.

Layout: ``_where`` maps key -> location (or None: a removal marker with no blob) in recency
order, a location being one int, ``slab << 64 | offset << 32 | length`` (one small object a
key, not a tuple of three); a write moves the key to the end and appends its blob to the tail
slab, so the front of ``_where`` (the coldest, what `RangeStore.spill` takes first) lives in the
oldest slabs.

Invariants:
- ``nbytes`` is the capacity of every slab plus `ENTRY_OVERHEAD_BYTES` and the key of every
  entry: what the entries hold in memory, counted before it is spent;
- a slab's live count is the sum of the lengths of the blobs located in it; a slab whose count
  falls to 0 is dropped at once (so an empty table holds no slab);
- dead bytes (blobs overwritten or removed, in slabs still held) stay under the live bytes
  plus four slabs: `_repack` copies the live blobs to fresh slabs when overwrites with no spill
  to free their slabs would pass that, a cost paid for by those overwrites.

Must not: import Ray, or look inside blobs.
"""

from __future__ import annotations

from typing import Iterator, Optional

ENTRY_OVERHEAD_BYTES = 240  # key and location objects, dict and set slots (measured: ~235)
SLAB_BYTES = 128 * 1024  # glibc's mmap threshold: each slab is its own mapping, unmapped when freed
_NOTHING = object()
_LOW32 = (1 << 32) - 1


def key_bytes(key: str | bytes) -> int:
    return len(key) if isinstance(key, bytes) else len(key.encode())


class MemTable:
    """key -> blob or None, in recency order, blobs in slabs."""

    def __init__(self, slab_bytes: int = SLAB_BYTES) -> None:
        self.slab_bytes = slab_bytes
        self._reset()

    def _reset(self) -> None:
        self._where: dict[str | bytes, Optional[int]] = {}
        self._slabs: dict[int, bytearray] = {}
        self._live: dict[int, int] = {}  # slab id -> bytes of live blobs in it
        self._used: dict[int, int] = {}  # slab id -> bytes appended to it
        self._tail: Optional[int] = None  # id of the slab being filled, if it is still held
        self._next_slab = 0
        self._capacity = 0  # bytes of every slab
        self._live_bytes = 0
        self._dead_bytes = 0  # blobs forgotten in slabs still held
        self._entry_bytes = 0  # keys and per-entry overhead

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str | bytes) -> bool:
        return key in self._where

    @property
    def nbytes(self) -> int:
        return self._capacity + self._entry_bytes

    def get(self, key: str | bytes, default=None):
        where = self._where.get(key, _NOTHING)
        if where is _NOTHING:
            return default
        return None if where is None else self._read(where)

    def items(self) -> Iterator[tuple[str | bytes, Optional[bytes]]]:
        """(key, blob or None), coldest first."""
        for key, where in list(self._where.items()):
            yield key, None if where is None else self._read(where)

    def keys(self) -> list:
        return list(self._where)

    def _read(self, where: int) -> bytes:
        slab, offset, length = where >> 64, (where >> 32) & _LOW32, where & _LOW32
        return bytes(memoryview(self._slabs[slab])[offset:offset + length])

    # --- writing --------------------------------------------------------------------------------
    def put(self, key: str | bytes, blob: Optional[bytes]) -> None:
        """Store ``blob`` (None: a removal marker) as the newest entry."""
        where = None if blob is None else self._append(blob)  # first: the tail slab stays
        self._forget(key)
        self._where[key] = where
        self._entry_bytes += key_bytes(key) + ENTRY_OVERHEAD_BYTES
        if self._dead_bytes > self._live_bytes + 4 * self.slab_bytes:
            self._repack()  # overwrites with no spill to free their slabs

    def touch(self, key: str | bytes) -> None:
        """Make ``key`` the most recently used entry: it moves to the end and its blob to the
        tail slab, so that the oldest slabs keep only what is cold (and free whole once it is
        evicted): an LRU whose order is the slabs' order."""
        where = self._where.get(key)
        if where is not None and key != next(reversed(self._where)):
            self.put(key, self._read(where))

    def coldest(self) -> Iterator[str | bytes]:
        """Keys, least recently written or touched first."""
        return iter(list(self._where))

    def pop(self, key: str | bytes, default=None):
        if key not in self._where:
            return default
        blob = self.get(key)
        self._forget(key)
        return blob

    def _forget(self, key: str | bytes) -> None:
        where = self._where.pop(key, _NOTHING)
        if where is _NOTHING:
            return
        self._entry_bytes -= key_bytes(key) + ENTRY_OVERHEAD_BYTES
        if where is not None:
            slab, length = where >> 64, where & _LOW32
            self._live_bytes -= length
            self._dead_bytes += length
            self._live[slab] -= length
            if self._live[slab] == 0:
                self._drop_slab(slab)

    def _append(self, blob: bytes) -> int:
        length = len(blob)
        tail = self._tail
        if tail is None or self._used[tail] + length > len(self._slabs[tail]):
            tail = self._tail = self._next_slab
            self._next_slab += 1
            # the first slabs small (4 KB, doubling): a range that holds little costs little
            size = max(min(self.slab_bytes, 4096 << min(tail, 5)), length)
            self._slabs[tail] = bytearray(size)
            self._live[tail] = self._used[tail] = 0
            self._capacity += size
        offset = self._used[tail]
        self._slabs[tail][offset:offset + length] = blob
        self._used[tail] += length
        self._live[tail] += length
        self._live_bytes += length
        return tail << 64 | offset << 32 | length

    def _drop_slab(self, slab: int) -> None:
        self._capacity -= len(self._slabs.pop(slab))
        self._dead_bytes -= self._used.pop(slab)
        del self._live[slab]
        if slab == self._tail:
            self._tail = None

    def _repack(self) -> None:
        """Copy every live blob into fresh slabs, keeping the recency order."""
        old = self._where
        blobs = [(k, None if w is None else self._read(w)) for k, w in old.items()]
        self._reset()
        for key, blob in blobs:
            self._where[key] = None if blob is None else self._append(blob)
            self._entry_bytes += key_bytes(key) + ENTRY_OVERHEAD_BYTES
