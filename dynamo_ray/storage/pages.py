"""A direct reader for the one Parquet layout segments are written in, for point lookups.

Role (DESIGN §5): a spilled get reads one row group of one segment. Through pyarrow that costs
about 0.1 ms of fixed overhead a row group, ten times the cost of reading its bytes; a spilled
`get_many` is dominated by it. Segments are written uncompressed, PLAIN-encoded, without
dictionaries, with two required BYTE_ARRAY columns (key, blob) and version-1 data pages, so a row
group is one contiguous byte range of page headers (Thrift compact structs) and values (a 4-byte
little-endian length, then the bytes). `plain_layout` checks a file's metadata for exactly that
layout and records each row group's byte range; `read_group` reads one with a single `pread`.

Must not: guess. A file in any other layout (written by another version, or by hand) gets no
layout and is read through pyarrow; a row group whose pages do not parse as expected raises
`PageError`, and the caller falls back to pyarrow, which reports a truly broken file.
Pure: no Ray import.
"""

from __future__ import annotations

import os
import struct
from array import array
from typing import Any, Optional

_DATA_PAGE = 0
_PLAIN = 0
_LENGTH = struct.Struct("<I")


class PageError(Exception):
    """The bytes of a row group are not the pages `plain_layout` promised."""


def plain_layout(metadata: Any, *, schema_known: bool = False) -> Optional[array]:
    """For each row group, (start, end, rows) of its two column chunks, flattened; None unless
    every chunk is uncompressed PLAIN BYTE_ARRAY of a required column, without a dictionary page.
    ``schema_known``: the caller wrote the file with two required binary columns, so the schema
    is not read (pyarrow's ``metadata.schema`` makes a reference cycle that keeps the file's
    parsed footer, C++ memory that grows with its row groups, alive until a full collection)."""
    if metadata.num_columns != 2:
        return None
    if not schema_known:
        schema = metadata.schema
        if any(schema.column(i).physical_type != "BYTE_ARRAY"
               or schema.column(i).max_definition_level or schema.column(i).max_repetition_level
               for i in range(2)):
            return None
    spans = array("q")
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        chunks = [group.column(i) for i in range(2)]
        if any(c.compression != "UNCOMPRESSED" or c.has_dictionary_page
               or not set(c.encodings) <= {"PLAIN", "RLE", "BIT_PACKED"} for c in chunks):
            return None
        start = chunks[0].data_page_offset
        end = chunks[1].data_page_offset + chunks[1].total_compressed_size
        if chunks[1].data_page_offset != start + chunks[0].total_compressed_size:
            return None  # not contiguous: unexpected, so not ours to read
        spans.extend((start, end, group.num_rows))
    return spans


def read_group(fd: int, spans: array, group: int) -> tuple[list[bytes], list[bytes]]:
    """The (keys, blobs) of row ``group`` from the open file ``fd``."""
    start, end, rows = spans[3 * group], spans[3 * group + 1], spans[3 * group + 2]
    data = os.pread(fd, end - start, start)
    if len(data) != end - start:
        raise PageError(f"row group {group} is cut short ({len(data)} of {end - start} bytes)")
    keys, pos = _column(data, 0, rows)
    blobs, pos = _column(data, pos, rows)
    if pos != len(data):
        raise PageError(f"row group {group} has {len(data) - pos} bytes past its pages")
    return keys, blobs


def _column(data: bytes, pos: int, rows: int) -> tuple[list[bytes], int]:
    """The values of one column chunk (one or more data pages) starting at ``pos``."""
    values: list[bytes] = []
    while len(values) < rows:
        header = _Header(data, pos)
        if header.type != _DATA_PAGE or header.encoding != _PLAIN or header.size < 0:
            raise PageError(f"page at {pos} is not a PLAIN data page")
        pos, page_end = header.end, header.end + header.size
        for _ in range(header.count):
            (n,) = _LENGTH.unpack_from(data, pos)
            pos += 4
            values.append(data[pos:pos + n])
            pos += n
        if pos != page_end:
            raise PageError(f"page at {header.end} holds {pos - header.end} of {header.size} bytes")
    if len(values) != rows:
        raise PageError(f"column chunk holds {len(values)} values, not {rows}")
    return values, pos


class _Header:
    """The fields of a Parquet PageHeader this reader needs, parsed from Thrift's compact
    protocol; every other field is skipped."""

    def __init__(self, data: bytes, pos: int):
        self.data = data
        self.type = self.size = self.count = self.encoding = -1
        self.pos = pos
        for field, kind in self._fields():
            if field == 1 and kind == 5:
                self.type = self._int()
            elif field == 3 and kind == 5:
                self.size = self._int()  # compressed_page_size: the bytes after the header
            elif field == 5 and kind == 12:  # DataPageHeader
                for inner, inner_kind in self._fields():
                    if inner == 1 and inner_kind == 5:
                        self.count = self._int()
                    elif inner == 2 and inner_kind == 5:
                        self.encoding = self._int()
                    else:
                        self._skip(inner_kind)
            else:
                self._skip(kind)
        self.end = self.pos

    def _fields(self):
        last = 0
        while True:
            byte = self._byte()
            if byte == 0:
                return
            delta, kind = byte >> 4, byte & 0x0F
            last = last + delta if delta else _unzigzag(self._varint())
            yield last, kind

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            raise PageError("page header runs past the row group")
        self.pos += 1
        return self.data[self.pos - 1]

    def _varint(self) -> int:
        shift = result = 0
        while True:
            byte = self._byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise PageError("varint too long")

    def _int(self) -> int:
        return _unzigzag(self._varint())

    def _skip(self, kind: int) -> None:
        if kind in (1, 2):  # booleans live in the field header
            return
        if kind == 3:
            self.pos += 1
        elif kind in (4, 5, 6):
            self._varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            self.pos += self._varint()
        elif kind in (9, 10):
            byte = self._byte()
            count, element = byte >> 4, byte & 0x0F
            if count == 15:
                count = self._varint()
            for _ in range(count):
                if element in (1, 2):  # a boolean element takes a byte of its own
                    self._byte()
                else:
                    self._skip(element)
        elif kind == 11:
            count = self._varint()
            if count:
                types = self._byte()
                for _ in range(count):
                    self._skip(types >> 4)
                    self._skip(types & 0x0F)
        elif kind == 12:
            for _, inner in self._fields():
                self._skip(inner)
        else:
            raise PageError(f"unknown Thrift type {kind}")


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)
