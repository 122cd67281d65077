"""Values of a table: how a Python value becomes the bytes one version holds, and back.

Role (DESIGN §6): the one place that knows the two codecs and the expiry frame. Everything
below the client edge (routers, vnodes, storage, handoff, anti-entropy) moves value bytes
without decoding them; only a vnode reads a value's expiry (`expiry_ms`), to reclaim it.

- ``msgpack`` (the default): None, bool, int (64 bits), float, str, bytes, lists and dicts.
  Portable and safe: decoding runs no code.
- ``pickle``: any picklable object, as pickle protocol 5 with out-of-band buffers. The data of
  a numpy array (a pandas column, a pyarrow buffer) is copied once, into the value's bytes,
  not first into a pickle stream; a read hands back arrays that are read-only views of the
  bytes Ray delivered, as ``ray.get`` does. Decoding runs code named by the bytes: anyone who
  can write the table can run code in its readers (the trust boundary of Ray's object store).

Frames:
- pickle: ``[PICKLE_V5][u32 n][u64 length] * n [pickle stream][buffer] * n`` (little-endian);
- a value written with a TTL: ``[EXPIRY_MARK][u64 expires_at_ms, big-endian][codec bytes]``.
  0xC1 is the one byte msgpack never writes and not the pickle frame's first byte, so a
  framed value is told from a plain one by its first byte.

Invariants: ``decode(encode(v, c), c) == v`` for every value the codec takes (tuples come back
as lists under msgpack); a value's expiry never changes its payload (`payload`), so two writes
of one value with different TTLs are equal values to versioning.

Pure: no Ray import.
"""

from __future__ import annotations

import pickle
import struct
import threading
from typing import Any, Optional

import msgpack

from ..errors import InvalidValue, ValueTooLarge

CODECS = ("msgpack", "pickle")
EXPIRY_MARK = 0xC1
PICKLE_V5 = 0x05
_EXPIRY = struct.Struct(">BQ")
_COUNT = struct.Struct("<BI")
_LENGTH = struct.Struct("<Q")
_PLAIN = (str, bytes, int, float, bool, type(None))


def encode(value: Any, codec: str, max_value_bytes: int) -> bytes:
    """The codec's bytes of ``value``; `InvalidValue` names the codec when it cannot encode it,
    `ValueTooLarge` when they are over ``max_value_bytes``."""
    try:
        blob = _pickle(value) if codec == "pickle" else _msgpack(value)
    except InvalidValue:
        raise
    except Exception as e:  # each codec fails in its own ways: TypeError, PicklingError, ...
        raise InvalidValue(f"codec {codec!r} cannot encode a value of type "
                           f"{type(value).__name__}: {e}") from None
    if len(blob) > max_value_bytes:
        raise ValueTooLarge(f"value encodes to {len(blob)} bytes with codec {codec!r}, over "
                            f"limits.max_value_bytes={max_value_bytes}")
    return blob


def decode(blob: bytes | memoryview, codec: str) -> Any:
    """The value of codec bytes (an expiry frame is skipped)."""
    data = payload(blob)
    if codec == "pickle":
        return _unpickle(data)
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


_packers = threading.local()  # msgpack.packb builds a Packer per call: 4 x the cost of one


def pack(obj: Any) -> bytes:
    """``msgpack.packb(obj, use_bin_type=True)`` on this thread's Packer."""
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(obj)


def _msgpack(value: Any) -> bytes:
    blob = pack(value)
    if not isinstance(value, _PLAIN):  # map keys must come back hashable
        msgpack.unpackb(blob, raw=False, strict_map_key=False)
    return blob


def _pickle(value: Any) -> bytes:
    buffers: list = []
    stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    head = [_COUNT.pack(PICKLE_V5, len(raws)), *(_LENGTH.pack(r.nbytes) for r in raws), stream]
    return b"".join([*head, *raws])


def _unpickle(data: bytes | memoryview) -> Any:
    view = memoryview(data)
    fmt, count = _COUNT.unpack_from(view, 0)
    if fmt != PICKLE_V5:
        raise InvalidValue(f"bytes are not a pickle frame (first byte {fmt:#x})")
    at = _COUNT.size
    lengths = [_LENGTH.unpack_from(view, at + i * _LENGTH.size)[0] for i in range(count)]
    at += count * _LENGTH.size
    stream_end = len(view) - sum(lengths)
    buffers, start = [], stream_end
    for length in lengths:
        buffers.append(view[start:start + length])
        start += length
    return pickle.loads(view[at:stream_end], buffers=buffers)


# --- expiry -----------------------------------------------------------------------------------
def with_expiry(blob: bytes, expires_at_ms: Optional[int]) -> bytes:
    """``blob`` framed with its expiry time (wall clock, ms), or as it is without one."""
    if expires_at_ms is None:
        return blob
    return _EXPIRY.pack(EXPIRY_MARK, expires_at_ms) + blob


def expiry_ms(blob: Optional[bytes]) -> Optional[int]:
    """When the value expires (wall clock, ms), or None: it does not."""
    if not blob or blob[0] != EXPIRY_MARK:
        return None
    return _EXPIRY.unpack_from(blob, 0)[1]


# The msgpack headers of a binary field of 8-, 16- and 32-bit length, by the offset of its first
# byte from them: an encoded key state holds each value as such a field.
_BIN_HEADERS = ((2, 0xC4), (3, 0xC5), (5, 0xC6))


def may_hold_expiry(state_blob: bytes) -> bool:
    """Whether an encoded key state may hold a value with an expiry frame: some binary field
    starts with `EXPIRY_MARK`. False is certain; True is a hint to decode (states of random
    100-byte values: 1 in 120 match, where a bare search for the byte matched 1 in 3)."""
    at = state_blob.find(EXPIRY_MARK)
    while at != -1:
        for back, header in _BIN_HEADERS:
            if at >= back and state_blob[at - back] == header:
                return True
        at = state_blob.find(EXPIRY_MARK, at + 1)
    return False


def expired(blob: Optional[bytes], now_ms: int) -> bool:
    expires = expiry_ms(blob)
    return expires is not None and expires <= now_ms


def payload(blob: bytes | memoryview) -> bytes | memoryview:
    """The codec bytes without an expiry frame (a view, not a copy)."""
    if blob and blob[0] == EXPIRY_MARK:
        return memoryview(blob)[_EXPIRY.size:]
    return blob
