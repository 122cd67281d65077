"""The per-range store behind a vnode: memory first, Parquet segments when memory runs out.

Role (DESIGN §5): hold one table's key range (one ring partition) on one vnode, apart from every
other range, so a range can be compared, streamed or dropped on its own. Values are the opaque
blobs of `versioning.encode`; this module never decodes them, so tombstones and versions survive
a spill byte for byte.

Layout: the *hot* entries live in a `memtable.MemTable` in recency order (a write moves a key to
the end, so the front holds the coldest), their blobs packed in slabs so that resident memory
follows what is counted. With a spill directory, `spill` writes the coldest hot entries to
a new immutable Parquet *segment* (rows sorted by key, small row groups) and forgets them; a
segment keeps in memory only a Bloom filter and the first key of each row group, so a lookup
reads just the one row group of the one segment that holds the key. Newer data shadows older:
hot before segments, newer segments before older; a key removed while it was spilled stays
shadowed by a removal marker (``REMOVED``) until compaction folds the segments into one.

A range of a cache table (``eviction: lru``) never spills: `touch` keeps its hot entries in
least-recently-used order and `evict` drops the coldest. A range told how to read an expiry
from a blob (``expiry_of``, the vnode's: this module still never decodes one) keeps a heap of
when its keys expire, so maintenance finds the expired ones (`due`) without a scan.

Invariants:
- ``count`` and ``data_bytes`` describe the live entries wherever they are;
- the Merkle tree, when there is one, equals `MerkleTree.build` of the live entries;
- a segment file is written completely (to a temporary name, fsynced, renamed) or not at all.

Must not: import Ray, or know about replication. Errors reading files raise `StorageError`
naming the file.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import os
import re
from typing import Callable, Iterable, Iterator, Optional

from ..errors import StorageError
from .memtable import ENTRY_OVERHEAD_BYTES, SLAB_BYTES, MemTable, key_bytes
from ..core.merkle import MerkleTree, item_hash
from .segments import REMOVED, Segment, decode_key, encode_key

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^seg-(\d+)\.parquet$")


@functools.lru_cache(maxsize=1)
def _libc():
    """glibc, loaded once (each ``CDLL`` is a small reference cycle), or None."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return None


def release_free_memory() -> None:
    """Hand the heap pages freed by a spill back to the OS (glibc keeps them otherwise), so
    resident memory follows what the vnode holds."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


# Above the 1 MiB buffer msgpack.packb allocates on every call, which Ray makes for every
# call's arguments and reply: below it, each packb is an mmap and munmap pair (or a heap trim),
# 10 us instead of 0.5 us, and a vnode call cost 25 % more CPU (measured, 2 cores).
MMAP_THRESHOLD_BYTES = 2 * 2**20
TRIM_THRESHOLD_BYTES = 4 * 2**20


def fix_malloc_thresholds() -> None:
    """Keep glibc's mmap and trim thresholds fixed (`MMAP_THRESHOLD_BYTES`,
    `TRIM_THRESHOLD_BYTES`): left dynamic, freeing one large buffer (a Parquet chunk) raises
    them up to 32 MB, so that later frees of up to twice its size stay resident and memory no
    longer follows what a vnode holds. What stays free below them goes back to the OS at each
    `release_free_memory` (after a spill or an eviction, and every maintenance round)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, MMAP_THRESHOLD_BYTES)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, TRIM_THRESHOLD_BYTES)  # M_TRIM_THRESHOLD


def warm_up_storage() -> None:
    """Make a spilling vnode's resident memory follow what it holds, and pay the one-time costs
    of the spill path (pyarrow's first use, Parquet writer and reader set-up) before serving,
    so they are part of the vnode's base and not of its first write's deadline.

    - glibc's thresholds are fixed (`fix_malloc_thresholds`);
    - pyarrow allocates from the system allocator (for Arrow's C++ side, the Parquet readers and
      writers, `dynamo_ray/__init__` sets ARROW_DEFAULT_MEMORY_POOL=system in Ray workers
      before Arrow loads, as it is read only then);
    - one small range goes through put, spill, lookup, compaction and scan in a temporary
      directory, and is deleted."""
    import tempfile

    import pyarrow as pa

    fix_malloc_thresholds()
    pa.set_memory_pool(pa.system_memory_pool())
    with tempfile.TemporaryDirectory(prefix="dynamo-warm-up-") as directory:
        store = RangeStore((4, 2), directory)
        for i in range(600):
            store.put(f"warm-up-{i:04d}", b"w" * 1000)
        store.spill(300 * 1200)
        store.spill(300 * 1200)
        store.get_many([f"warm-up-{i:04d}" for i in range(0, 600, 7)])
        store.compact()
        store.items()
        store.destroy()
    release_free_memory()


class _BrokenSegment(Exception):
    def __init__(self, segment: Segment, error: StorageError):
        self.segment, self.error = segment, error


class RangeStore:
    """One range: hot entries in memory, optional segments on disk, optional Merkle tree."""

    def __init__(self, tree_shape: Optional[tuple[int, int]] = None,
                 directory: Optional[str] = None,
                 expiry_of: Optional[Callable[[bytes], Optional[int]]] = None,
                 slab_bytes: int = SLAB_BYTES):
        self.hot = MemTable(slab_bytes)  # a None blob: removed, shadows segments
        self.segments: list[Segment] = []  # oldest first
        self.directory = directory
        self.tree = MerkleTree(*tree_shape) if tree_shape else None
        self.watchers: list[set] = []  # keys written while a range transfer streams
        self.unflushed: set = set()  # keys written since they were last put in a segment
        self.count = 0
        self.data_bytes = 0
        self.errors: list[str] = []  # storage errors met (files set aside)
        self.maybe_tombstones: set = set()  # keys whose blob may be tombstones only (see put)
        self.expiry_of = expiry_of
        self.expiring: list = []  # heap of (expires_at_ms, seq, key); stale entries are skipped
        self._expiring_seq = itertools.count()
        self._next_seq = 1

    # --- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return self.data_bytes

    @property
    def hot_bytes(self) -> int:
        """Memory the hot entries hold (their slabs, keys and per-entry overhead)."""
        return self.hot.nbytes

    def get(self, key: str | bytes) -> Optional[bytes]:
        if key in self.hot or not self.segments:
            return self.hot.get(key)
        return self._from_segments([key]).get(key)

    def get_many(self, keys: list) -> list[Optional[bytes]]:
        hot = self.hot
        if not self.segments:
            return [hot.get(k) for k in keys]
        cold = [k for k in keys if k not in hot]
        found = self._from_segments(cold) if cold else {}
        return [hot.get(k) if k in hot else found.get(k) for k in keys]

    def _from_segments(self, keys: list) -> dict:
        """Newest segment first; a removal marker hides older rows."""
        wanted = {encode_key(k): k for k in keys}
        found: dict = {}
        for segment in reversed(list(self.segments)):
            if not wanted:
                break
            try:
                rows = segment.lookup(list(wanted))
            except StorageError as e:
                self._set_aside(segment, e)
                continue
            for raw, blob in rows.items():
                key = wanted.pop(raw)
                if blob != REMOVED:
                    found[key] = blob
        return found

    def _set_aside(self, segment: Segment, error: StorageError) -> None:
        """A segment broke after it was indexed: log, rename it ``*.corrupt``, rebuild counts
        and tree without it (so anti-entropy sees the keys missing and refills them)."""
        log.error("%s", error)
        self.errors.append(str(error))
        self.segments.remove(segment)
        segment.close()
        if os.path.exists(segment.path):
            os.replace(segment.path, segment.path + ".corrupt")
        self._recount()

    def items(self) -> list[tuple[str | bytes, bytes]]:
        """Every live (key, blob), hot first, then each segment's rows not shadowed."""
        return self._over_live(list)

    def keys(self) -> list:
        return self._over_live(lambda live: [k for k, _ in live])

    def digests(self, buckets: Iterable[int]) -> list[tuple]:
        """(key, item hash) of every key in the tree's leaf ``buckets``: what anti-entropy
        compares before it moves any value."""
        wanted = set(buckets)
        bucket_of = self.tree.bucket_of
        if not self.segments:  # the bucket from the key alone: read only the wanted blobs
            hot = self.hot
            return [(k, item_hash(k, b)) for k in hot.keys()
                    if bucket_of(k) in wanted and (b := hot.get(k)) is not None]
        return self._over_live(
            lambda live: [(k, item_hash(k, b)) for k, b in live if bucket_of(k) in wanted])

    def _over_live(self, consume):
        """``consume(live items)``, again from the start if a segment broke on the way."""
        while True:
            try:
                return consume(self._live())
            except _BrokenSegment as broken:
                self._set_aside(broken.segment, broken.error)

    def _live(self) -> Iterator[tuple[str | bytes, bytes]]:
        """The live (key, blob) pairs, streamed: the blobs of one row group in memory at a
        time, not the range (listing keys or digests of a spilled range stays in the limit)."""
        seen = set()
        for k, b in self.hot.items():
            if self.segments:
                seen.add(encode_key(k))
            if b is not None:
                yield k, b
        for segment in reversed(list(self.segments)):
            try:
                for raw, blob in segment.scan():
                    if raw not in seen:
                        seen.add(raw)
                        if blob != REMOVED:
                            yield decode_key(raw), blob
            except StorageError as e:
                raise _BrokenSegment(segment, e) from None

    # --- writing ------------------------------------------------------------------------------
    def put(self, key: str | bytes, blob: bytes, old: Optional[bytes] = ...) -> None:
        """Store ``blob``; ``old`` is the current blob if the caller already read it."""
        if old is ...:
            old = self.get(key)
        self.hot.put(key, blob)  # the newest entry
        size = len(blob) + key_bytes(key)
        if old is None:
            self.count += 1
            self.data_bytes += size
        else:
            self.data_bytes += len(blob) - len(old)
        if self.tree is not None:
            self.tree.update(key, old, blob)
        for written in self.watchers:
            written.add(key)
        if self.directory is not None:
            self.unflushed.add(key)
        # Encoded states end with their newest sibling's value: msgpack nil when that is a
        # tombstone. A cheap filter for the reaper, which decodes the candidates.
        if blob[-1] == 0xC0:
            self.maybe_tombstones.add(key)
        else:
            self.maybe_tombstones.discard(key)
        self._note_expiry(key, blob)

    def _note_expiry(self, key: str | bytes, blob: bytes) -> None:
        if self.expiry_of is not None:
            expires = self.expiry_of(blob)
            if expires is not None:
                heapq.heappush(self.expiring, (expires, next(self._expiring_seq), key))

    def due(self, now_ms: int) -> list:
        """The keys with an expiry at or before ``now_ms`` (each once; maybe rewritten since:
        the caller reads them again)."""
        found: dict = {}
        while self.expiring and self.expiring[0][0] <= now_ms:
            found[heapq.heappop(self.expiring)[2]] = None
        return list(found)

    def touch(self, keys: Iterable) -> None:
        """The hot ``keys`` were just read: they become the most recently used."""
        hot = self.hot
        for key in keys:
            if key in hot:
                hot.touch(key)

    def evict(self, free_bytes: int) -> list[tuple]:
        """Drop the least recently used hot entries until ``free_bytes`` of memory are free;
        returns the (key, blob) pairs dropped. They are forgotten, not spilled."""
        dropped: list = []
        goal = self.hot_bytes - free_bytes
        for key in self.hot.coldest():
            if self.hot_bytes <= goal:
                break
            blob = self.pop(key)
            if blob is not None:
                dropped.append((key, blob))
        return dropped

    def pop(self, key: str | bytes) -> Optional[bytes]:
        old = self.get(key)
        if old is None:
            return None
        if self.segments:  # a spilled copy may exist: shadow it
            self.hot.put(key, None)
        else:
            self.hot.pop(key)
        self.count -= 1
        self.data_bytes -= len(old) + key_bytes(key)
        self.maybe_tombstones.discard(key)
        if self.tree is not None:
            self.tree.update(key, old, None)
        for written in self.watchers:
            written.add(key)
        if self.directory is not None:  # the removal must reach a segment at the next flush
            self.unflushed.add(key)
        return old

    # --- spilling, flushing, compaction ---------------------------------------------------------
    def _segment_path(self, seq: int) -> str:
        return os.path.join(self.directory, f"seg-{seq:08d}.parquet")

    def _write_segment(self, entries: list[tuple]) -> None:
        rows = sorted((encode_key(k), REMOVED if b is None else b) for k, b in entries)
        os.makedirs(self.directory, exist_ok=True)
        seq = self._next_seq
        self._next_seq += 1
        self.segments.append(Segment.write(self._segment_path(seq), seq, rows))

    def spill(self, free_bytes: int) -> int:
        """Move the coldest hot entries (at least ``free_bytes`` of memory) to a new segment;
        returns the memory freed."""
        if self.directory is None or not self.hot or free_bytes <= 0:
            return 0
        victims, counted = [], 0
        for key, blob in self.hot.items():
            if counted >= free_bytes:
                break
            victims.append((key, blob))
            counted += key_bytes(key) + (len(blob) if blob else 0) + ENTRY_OVERHEAD_BYTES
        before = self.hot_bytes
        self._write_segment(victims)
        for key, _ in victims:
            self.hot.pop(key)
            self.unflushed.discard(key)
        return before - self.hot_bytes

    def flush(self) -> int:
        """Put every key written since its last flush or spill into a segment, keeping it hot
        (a write-ahead log checkpoint); returns the keys flushed."""
        if self.directory is None or not self.unflushed:
            return 0
        entries = [(k, self.hot.get(k)) for k in self.unflushed if k in self.hot]
        if entries:
            self._write_segment(entries)
        self.unflushed.clear()
        return len(entries)

    def compact(self) -> int:
        """Fold every segment into one, streaming (a k-way merge of sorted files: memory for
        one row group a segment): the newest row of each key wins, removal markers are
        dropped as nothing older is left to hide. Returns the number of segments folded."""
        if len(self.segments) < 2:
            return 0
        old = list(self.segments)

        def rows(segment: Segment):
            for raw, blob in segment.scan():
                yield (raw, -segment.seq), blob

        def newest_live():
            last = None
            for (raw, _), blob in heapq.merge(*(rows(s) for s in old)):
                if raw != last:
                    last = raw
                    if blob != REMOVED:
                        yield raw, blob

        seq = self._next_seq
        self._next_seq += 1
        try:
            folded = Segment.write(self._segment_path(seq), seq, newest_live())
        except StorageError as e:  # a broken input: set it aside, compact next time
            bad = next(s for s in old if s.path in str(e))
            self._set_aside(bad, e)
            return 0
        self.segments = [folded] if folded.rows else []
        if not folded.rows:
            os.remove(folded.path)
        for segment in old:
            segment.close()
            os.remove(segment.path)
        if not self.segments:  # nothing older is left: removal markers can go
            for key in [k for k, b in self.hot.items() if b is None]:
                self.hot.pop(key)
        return len(old)

    def memory_bytes(self) -> int:
        """Memory this range holds: hot entries plus segment indexes (not the tree)."""
        return self.hot_bytes + sum(s.memory_bytes() for s in self.segments)

    # --- on disk --------------------------------------------------------------------------------
    def load(self) -> None:
        """Index the segments in ``directory`` and rebuild counts and the tree from them. A
        segment that cannot be read is logged, renamed ``*.corrupt`` and skipped (anti-entropy
        refills what it held): a bad file never stops the vnode from starting."""
        if self.directory is None or not os.path.isdir(self.directory):
            return
        found = sorted((int(m.group(1)), name) for name in os.listdir(self.directory)
                       if (m := _SEGMENT.match(name)))
        for seq, name in found:
            path = os.path.join(self.directory, name)
            self._next_seq = max(self._next_seq, seq + 1)
            try:
                self.segments.append(Segment.load(path, seq))
            except StorageError as e:
                log.error("%s", e)
                self.errors.append(str(e))
                os.replace(path, path + ".corrupt")
        self._recount()

    def _recount(self) -> None:
        def tally(live):
            count, data, tombstones = 0, 0, set()
            self.expiring = []

            def counted():
                nonlocal count, data
                for k, b in live:
                    count += 1
                    data += len(b) + key_bytes(k)
                    if b[-1] == 0xC0:
                        tombstones.add(k)
                    self._note_expiry(k, b)
                    yield k, b
            if self.tree is None:
                for _ in counted():
                    pass
                return count, data, tombstones, None
            tree = MerkleTree.build(counted(), *self.tree.shape)  # before count is read
            return count, data, tombstones, tree

        self.count, self.data_bytes, self.maybe_tombstones, tree = self._over_live(tally)
        if self.tree is not None:
            self.tree = tree

    def destroy(self) -> None:
        """Delete this range's files (the range moved to another vnode)."""
        for segment in self.segments:
            segment.close()
        if self.directory is not None and os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                os.remove(os.path.join(self.directory, name))
            os.rmdir(self.directory)
        self.segments = []
