"""Segments: immutable Parquet files of one range's spilled entries, and their small index.

Role (DESIGN §5): the on-disk half of `range_store.RangeStore`. A segment holds (key, blob) rows
sorted by key in row groups of ``ROW_GROUP_ROWS``; in memory it keeps only a Bloom filter of its
keys and the first key of each row group, about 2 bytes a key, so a lookup touches one row group
of one file and a miss usually touches none. Files are written in the one layout `pages` reads
with a single `pread` a row group (ten times cheaper than pyarrow's per-row-group overhead);
any other file is read through pyarrow.

Invariants: a file is written completely (temporary name, fsync, rename) or not at all; rows
are sorted by their encoded key; a blob of ``REMOVED`` marks a key removed after an older
segment spilled it. Must not: import Ray, or decode blobs. Unreadable files raise `StorageError`
naming the file.
"""

from __future__ import annotations

import os
import struct
from array import array
from bisect import bisect_right
from itertools import accumulate
from typing import Iterable, Iterator, Optional

import mmh3

from ..errors import StorageError
from .pages import PageError, plain_layout, read_group

ROW_GROUP_ROWS = 32  # rows per Parquet row group: what one lookup reads
REMOVED = b""  # a removal marker (real blobs are never empty)


def encode_key(key: str | bytes) -> bytes:
    """A sortable byte form that keeps str and bytes keys apart."""
    return b"s" + key.encode() if isinstance(key, str) else b"b" + key


def decode_key(raw: bytes) -> str | bytes:
    return raw[1:].decode() if raw[:1] == b"s" else raw[1:]


class Bloom:
    """A Bloom filter over byte strings: about 0.2 % false positives at 14 bits a key (each
    false positive costs a row group read, once per segment a new key is checked against)."""

    __slots__ = ("bits", "size", "hashes")

    def __init__(self, expected: int, bits_per_key: int = 14, hashes: int = 9):
        self.size = max(64, expected * bits_per_key)
        self.bits = bytearray((self.size + 7) // 8)
        self.hashes = hashes

    def _positions(self, item: bytes) -> list[int]:
        h1, h2 = mmh3.hash64(item, signed=False)
        size = self.size
        return [(h1 + i * h2) % size for i in range(self.hashes)]

    def add(self, item: bytes) -> None:
        bits = self.bits
        for p in self._positions(item):
            bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, item: bytes) -> bool:
        bits = self.bits
        for p in self._positions(item):
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
        return True

    def memory_bytes(self) -> int:
        return len(self.bits)


class PackedKeys:
    """A sorted list of byte strings kept as one buffer and an offset array: two objects
    instead of one per key, so a long-lived index never pins the allocator's pages that a
    flood of short-lived keys passed through. Indexable, so `bisect` works on it."""

    __slots__ = ("_data", "_ends")

    def __init__(self, keys: Iterable[bytes]):
        keys = list(keys)
        self._data = b"".join(keys)
        self._ends = array("Q", accumulate(len(k) for k in keys))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> bytes:
        start = self._ends[i - 1] if i > 0 else 0
        return self._data[start:self._ends[i]]

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (PackedKeys, list)) else NotImplemented

    def memory_bytes(self) -> int:
        return len(self._data) + 8 * len(self._ends) + 120


class Segment:
    """One immutable Parquet file of (key, blob) rows sorted by key."""

    def __init__(self, path: str, seq: int, first_keys: list, bloom: Bloom, rows: int,
                 spans: Optional[array] = None):
        self.path, self.seq, self.bloom, self.rows = path, seq, bloom, rows
        self.first_keys = PackedKeys(first_keys)
        self.spans = spans  # row groups' byte ranges, when `pages` can read them directly
        self._file = None

    @classmethod
    def write(cls, path: str, seq: int, rows: Iterable[tuple[bytes, bytes]]) -> "Segment":
        """Write (encoded key, blob) rows, sorted by key, streaming in row-group-sized chunks;
        atomically: a crash leaves no partial file under ``path``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        # the layout `pages` reads directly: required columns, PLAIN, uncompressed, v1 pages
        schema = pa.schema([pa.field("key", pa.binary(), nullable=False),
                            pa.field("blob", pa.binary(), nullable=False)])
        tmp = path + ".tmp"
        keys: list[bytes] = []
        chunk: list[tuple[bytes, bytes]] = []

        def flush(writer) -> None:
            writer.write_table(pa.Table.from_arrays(
                [pa.array([k for k, _ in chunk], pa.binary()),
                 pa.array([b for _, b in chunk], pa.binary())], schema=schema),
                row_group_size=ROW_GROUP_ROWS)
            chunk.clear()

        try:
            with pq.ParquetWriter(tmp, schema, compression="none", use_dictionary=False,
                                  write_statistics=False, data_page_version="1.0") as writer:
                for row in rows:
                    keys.append(row[0])
                    chunk.append(row)
                    if len(chunk) >= 64 * ROW_GROUP_ROWS:
                        flush(writer)
                if chunk:
                    flush(writer)
        except BaseException:  # e.g. a compaction input broke mid-merge: no garbage left
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        spans = plain_layout(pq.read_metadata(path), schema_known=True)
        return cls._index(path, seq, keys, spans=spans)

    @classmethod
    def load(cls, path: str, seq: int) -> "Segment":
        """Read a segment's keys to rebuild its in-memory index; StorageError if unreadable."""
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
            keys = parquet.read(columns=["key"]).column(0).to_pylist()
            # Row groups as the file has them, not as ROW_GROUP_ROWS is now: a file written
            # under another value stays readable.
            starts, at = [], 0
            for group in range(parquet.metadata.num_row_groups):
                starts.append(at)
                at += parquet.metadata.row_group(group).num_rows
            first_keys = [keys[i] for i in starts]
            spans = plain_layout(parquet.metadata)
        except Exception as e:
            raise StorageError(f"segment file {path} is unreadable: {e}") from None
        return cls._index(path, seq, keys, first_keys, spans)

    @classmethod
    def _index(cls, path: str, seq: int, keys: list[bytes],
               first_keys: list[bytes] | None = None, spans: Optional[array] = None) -> "Segment":
        bloom = Bloom(len(keys))
        for k in keys:
            bloom.add(k)
        if first_keys is None:  # as `write` cuts row groups
            first_keys = keys[::ROW_GROUP_ROWS]
        return cls(path, seq, first_keys, bloom, len(keys), spans)

    def memory_bytes(self) -> int:
        spans = 8 * len(self.spans) if self.spans is not None else 0
        return self.bloom.memory_bytes() + self.first_keys.memory_bytes() + spans + 200

    def _parquet(self):
        import pyarrow.parquet as pq

        if self._file is None:
            # Not memory-mapped: a mapped file cut short on disk faults (SIGBUS, the process
            # dies) where a read raises, which `lookup` and `scan` turn into StorageError.
            self._file = pq.ParquetFile(self.path, memory_map=False)
        return self._file

    def lookup(self, wanted: Iterable[bytes]) -> dict[bytes, bytes]:
        """The rows of the ``wanted`` encoded keys that this segment holds; one row group read
        per group of keys that share it. StorageError if the file broke since it was indexed."""
        by_group: dict[int, list[bytes]] = {}
        for k in wanted:
            if k in self.bloom:
                group = bisect_right(self.first_keys, k) - 1
                if group >= 0:
                    by_group.setdefault(group, []).append(k)
        found: dict[bytes, bytes] = {}
        if not by_group:
            return found
        fd = None
        try:
            if self.spans is not None:
                try:
                    fd = os.open(self.path, os.O_RDONLY)
                except OSError as e:
                    raise StorageError(f"segment file {self.path} is unreadable: {e}") from None
            for group, keys in by_group.items():
                row_keys, blobs = self._read_group(fd, group)
                for k in keys:
                    i = bisect_right(row_keys, k) - 1
                    if i >= 0 and row_keys[i] == k:
                        found[k] = blobs[i]
        finally:
            if fd is not None:
                os.close(fd)
            self.close()  # an open reader holds ~75 KB of metadata and buffers: not between calls
        return found

    def _read_group(self, fd: Optional[int], group: int) -> tuple[list[bytes], list[bytes]]:
        """One row group's keys and blobs: directly (`pages`) when the layout allows, else, or
        when its pages do not parse, through pyarrow (which names a truly broken file)."""
        if fd is not None:
            try:
                return read_group(fd, self.spans, group)
            except (PageError, OSError, struct.error):
                pass
        try:
            chunk = self._parquet().read_row_group(group, use_threads=False)
            return chunk.column(0).to_pylist(), chunk.column(1).to_pylist()
        except Exception as e:
            raise StorageError(f"segment file {self.path} is unreadable: {e}") from None

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        try:
            parquet = self._parquet()
            for group in range(parquet.num_row_groups):
                chunk = parquet.read_row_group(group, use_threads=False)
                yield from zip(chunk.column(0).to_pylist(), chunk.column(1).to_pylist())
        except StorageError:
            raise
        except Exception as e:
            raise StorageError(f"segment file {self.path} is unreadable: {e}") from None
        finally:
            self.close()

    def close(self) -> None:
        self._file = None
