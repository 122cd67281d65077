"""Tables: validated reads and writes of one table, synchronous or as coroutines.

Role (DESIGN §6): the client edge. Every request is checked here first (a rejected request
changes nothing): keys are str or bytes within the limit, values are what the table's codec
encodes within the limit, contexts belong to their key, quorums are within 1..N, TTLs are
positive numbers. Values are encoded once, here (`codec`), and framed with their expiry when
they have a TTL; a value over 100 KiB is put in Ray's object store once and passed by
reference. Reads come back as `GetResult`s, which decode lazily and leave out values whose
expiry has passed (by this process's clock: an expired key reads absent at once, however far
the replicas' maintenance has got); writes return the new `Context`.

Must not: make one Ray call per key on a bulk path, or let a Ray exception through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from typing import Any, Callable, Iterable, Mapping, Optional

import ray

from ..core import codec, versioning
from ..runtime import placement
from ..errors import (
    ConflictError,
    InvalidArgument,
    InvalidContext,
    InvalidKey,
    InvalidValue,
    Unavailable,
)
from ..core.ring import Ring, key_hash
from .routing import Coalescer, rpc_timeout_s

BIG_VALUE_BYTES = 100 * 1024  # larger encoded values travel by object reference


@dataclasses.dataclass(frozen=True)
class Context:
    """What a read saw of one key: hand it back on the next put or delete of that key so the
    write replaces exactly those versions. Opaque; pickles."""

    key_fingerprint: int
    clock: tuple  # ((actor, counter), ...)

    def __repr__(self) -> str:
        return f"Context({len(self.clock)} entries)"


def _fingerprint(key: str | bytes) -> int:
    return key_hash(key) & 0xFFFFFFFFFFFFFFFF


def _context_of(key: str | bytes, state: versioning.KeyState) -> Context:
    return Context(_fingerprint(key), tuple(sorted(versioning.context(state).items())))


def check_key(key: Any, max_key_bytes: int) -> None:
    if isinstance(key, str):
        try:
            size = len(key.encode())
        except UnicodeEncodeError:
            raise InvalidKey(f"key {key!r} is not valid UTF-8 text") from None
    elif isinstance(key, bytes):
        size = len(key)
    else:
        raise InvalidKey(f"a key must be str or bytes, not {type(key).__name__}")
    if size == 0:
        raise InvalidKey("a key must not be empty")
    if size > max_key_bytes:
        raise InvalidKey(f"key of {size} bytes is over limits.max_key_bytes={max_key_bytes}")


def check_ttl(ttl_s: Any) -> Optional[float]:
    """``ttl_s`` as given, checked: None or a finite number of seconds above 0."""
    if ttl_s is None:
        return None
    if (isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or ttl_s != ttl_s
            or ttl_s <= 0 or math.isinf(ttl_s)):
        raise InvalidArgument(f"ttl_s={ttl_s!r} must be a number of seconds above 0")
    return ttl_s


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def by_reference(blob: bytes) -> Any:
    """A large encoded value goes into the object store once; every hop passes the reference."""
    return ray.put(blob) if len(blob) > BIG_VALUE_BYTES else blob


class GetResult:
    """A read of one key: ``values`` (every live sibling, oldest first), ``context`` (hand it
    back on the next write) and ``value`` (the one value, None when absent, deleted or
    expired). Decoded on first use."""

    __slots__ = ("key", "_blob", "_state", "_merge", "_codec", "_read_ms", "_values")

    def __init__(self, key: str | bytes, blob: Optional[bytes], merge: Optional[Callable] = None,
                 codec_name: str = "msgpack", read_ms: Optional[int] = None):
        self.key = key
        self._blob = blob
        self._state: Optional[versioning.KeyState] = None
        self._merge = merge
        self._codec = codec_name
        self._read_ms = now_ms() if read_ms is None else read_ms
        self._values: Optional[list] = None

    def _key_state(self) -> versioning.KeyState:
        if self._state is None:
            self._state = (versioning.decode(self._blob) if self._blob is not None
                           else versioning.EMPTY)
        return self._state

    def _live(self) -> list:
        """The live sibling blobs: no tombstones, no expired values, equal payloads once."""
        live: dict = {}
        for s in self._key_state().siblings:
            if s.value is not None and not codec.expired(s.value, self._read_ms):
                live.setdefault(bytes(codec.payload(s.value)), s.value)
        return list(live.values())

    @property
    def values(self) -> list:
        if self._values is None:
            values = [codec.decode(v, self._codec) for v in self._live()]
            if self._merge is not None and len(values) > 1:
                values = [self._merge(values)]
            self._values = values
        return self._values

    @property
    def value(self) -> Any:
        values = self.values
        if len(values) > 1:
            raise ConflictError(
                f"key {self.key!r} has {len(values)} siblings: read .values, or open the table "
                "with merge=fn"
            )
        return values[0] if values else None

    @property
    def context(self) -> Context:
        return _context_of(self.key, self._key_state())

    @property
    def exists(self) -> bool:
        """True when the key has a live value (not absent, deleted or expired)."""
        if self._values is not None:
            return bool(self._values)
        return bool(self._live())

    @property
    def siblings(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"GetResult(key={self.key!r}, values={self.values!r})"


class Table:
    """Reads and writes of one table. Methods validate first: a rejected call stores nothing."""

    def __init__(self, store: Any, name: str, *, merge: Optional[Callable] = None,
                 via: Optional[str] = None, routing: str = "coordinator"):
        self.store = store
        self.name = name
        self.merge = merge
        self.via = via
        self.routing = routing
        self._route = store._route_for(routing)
        self._tcfg = store.config.tables[name]
        self._limits = store.config.limits

    def __repr__(self) -> str:
        return f"Table({self.store.name!r}, {self.name!r})"

    def __reduce__(self):
        # a handle travels into Ray tasks and actors; its routes are rebuilt there
        return (_rebuild, (type(self), self.store, self.name, self.merge, self.via, self.routing))

    # --- checks at the edge ---------------------------------------------------------------------
    def _quorum(self, value: Optional[int], which: str) -> Optional[int]:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= self._tcfg.n:
            raise InvalidArgument(
                f"{which}={value!r} must be an integer from 1 to n={self._tcfg.n} "
                f"(table {self.name!r})"
            )
        return value

    def _context(self, key: Any, context: Optional[Context]) -> Optional[dict]:
        if context is None:
            return None
        if not isinstance(context, Context):
            raise InvalidContext(
                f"context must be the .context of a GetResult or what put returned, not "
                f"{type(context).__name__}"
            )
        if context.key_fingerprint != _fingerprint(key):
            raise InvalidContext(f"this context belongs to another key than {key!r}")
        return dict(context.clock)

    def _expires_at_ms(self, ttl_s: Any) -> Optional[int]:
        """When a write made now expires: its own ``ttl_s``, else the table's, else never."""
        ttl_s = check_ttl(ttl_s)
        if ttl_s is None:
            ttl_s = self._tcfg.ttl_s
        return None if ttl_s is None else now_ms() + int(ttl_s * 1000)

    def _encoded(self, key: Any, value: Any, expires_at_ms: Optional[int]) -> Any:
        check_key(key, self._limits.max_key_bytes)
        blob = codec.encode(value, self._tcfg.codec, self._limits.max_value_bytes)
        return by_reference(codec.with_expiry(blob, expires_at_ms))

    def _result(self, key: Any, blob: Optional[bytes], read_ms: Optional[int] = None) -> GetResult:
        return GetResult(key, blob, self.merge, self._tcfg.codec, read_ms)

    def _batch_keys(self, keys: Iterable[Any]) -> list:
        return _checked_keys(keys, self._limits.max_key_bytes, self._limits.max_batch_keys)

    def _writes(self, mapping: Mapping[Any, Any], contexts: Optional[Mapping], ttl_s: Any) -> list:
        """[(key, context clock or None, encoded value)] of a batch, checked whole first."""
        if not isinstance(mapping, Mapping):
            raise InvalidValue(f"put_many takes a mapping of key to value, not {type(mapping).__name__}")
        if len(mapping) > self._limits.max_batch_keys:
            raise InvalidArgument(f"a batch of {len(mapping)} keys is over limits.max_batch_keys="
                                  f"{self._limits.max_batch_keys}")
        if contexts is None:
            contexts = {}
        elif not isinstance(contexts, Mapping):
            raise InvalidContext(f"contexts must map keys to the .context of their reads, not "
                                 f"{type(contexts).__name__}")
        else:
            stray = [k for k in contexts if k not in mapping]
            if stray:
                raise InvalidContext(f"contexts names {len(stray)} keys the batch does not write "
                                     f"(first: {stray[0]!r})")
        expires_at_ms = self._expires_at_ms(ttl_s)
        return [(key, self._context(key, contexts.get(key)), self._encoded(key, value, expires_at_ms))
                for key, value in mapping.items()]

    # --- reads and writes -----------------------------------------------------------------------
    def get(self, key: Any, *, r: Optional[int] = None, sloppy: Optional[bool] = None) -> GetResult:
        check_key(key, self._limits.max_key_bytes)
        r = self._quorum(r, "r")
        (blob,) = self._route.call("get_many", (self.name, [key], r, sloppy), key, self.via)
        return self._result(key, blob)

    def put(self, key: Any, value: Any, *, context: Optional[Context] = None,
            w: Optional[int] = None, sloppy: Optional[bool] = None,
            ttl_s: Optional[float] = None) -> Context:
        """Store ``value``; returns the new context. Without a context the value is concurrent
        with whatever is stored (a sibling, unless an equal value is stored: that one it
        replaces); with a read's context it replaces what was read. ``ttl_s``: it reads absent
        after this many seconds (default: the table's ``ttl_s``, else never)."""
        blob = self._encoded(key, value, self._expires_at_ms(ttl_s))
        return self._write(key, context, blob, w, sloppy)

    def delete(self, key: Any, *, context: Optional[Context] = None, w: Optional[int] = None,
               sloppy: Optional[bool] = None) -> Context:
        """Write a tombstone: the key reads absent; returns the new context."""
        check_key(key, self._limits.max_key_bytes)
        return self._write(key, context, None, w, sloppy)

    def _write(self, key: Any, context: Optional[Context], blob: Optional[bytes],
               w: Optional[int], sloppy: Optional[bool]) -> Context:
        ctx = self._context(key, context)
        w = self._quorum(w, "w")
        (state,) = self._route.call(
            "put_many", (self.name, [(key, ctx, blob)], w, sloppy, True), key, self.via
        )
        return _context_of(key, versioning.decode(state))

    def get_many(self, keys: Iterable[Any], *, r: Optional[int] = None,
                 sloppy: Optional[bool] = None) -> dict:
        """{key: GetResult} for every key, in one coordinator call and one call per vnode;
        each result carries its context, for a `put_many(..., contexts=)` write-back."""
        keys = list(dict.fromkeys(self._batch_keys(keys)))
        r = self._quorum(r, "r")
        if not keys:
            return {}
        blobs = self._route.call("get_many", (self.name, keys, r, sloppy), None, self.via)
        read_ms = now_ms()
        return {key: self._result(key, blob, read_ms) for key, blob in zip(keys, blobs)}

    def put_many(self, mapping: Mapping[Any, Any], *, contexts: Optional[Mapping] = None,
                 w: Optional[int] = None, sloppy: Optional[bool] = None,
                 ttl_s: Optional[float] = None) -> None:
        """Write every (key, value) in one batch. A key given a context in ``contexts`` ({key:
        the .context of its read}) replaces exactly what that read saw; the others are written
        blind (a sibling beside what is stored, unless it is an equal value). ``ttl_s`` as in
        `put`, for every key of the batch."""
        writes = self._writes(mapping, contexts, ttl_s)
        w = self._quorum(w, "w")
        if writes:
            self._route.call("put_many", (self.name, writes, w, sloppy, False), None, self.via)

    def load(self, items: Any, *, batch_keys: int = 5000, w: Optional[int] = None,
             ttl_s: Optional[float] = None, progress: bool = True) -> int:
        """Bulk load: ``items`` (a mapping, or an iterable of (key, value) pairs) written blind
        with `put_many` in batches of ``batch_keys``, with a progress bar. Returns the count."""
        from .progress import bar

        if isinstance(batch_keys, bool) or not isinstance(batch_keys, int) or batch_keys < 1:
            raise InvalidArgument(f"batch_keys={batch_keys!r} must be a positive integer")
        check_ttl(ttl_s)
        pairs = items.items() if isinstance(items, Mapping) else items
        total = len(items) if hasattr(items, "__len__") else None
        progress_bar = bar(total, f"loading {self.name}", "key", progress)
        written, chunk = 0, {}

        def flush() -> None:
            nonlocal written, chunk
            self.put_many(chunk, w=w, ttl_s=ttl_s)
            written += len(chunk)
            if progress_bar is not None:
                progress_bar.update(len(chunk))
            chunk = {}

        for key, value in pairs:
            chunk[key] = value
            if len(chunk) >= batch_keys:
                flush()
        if chunk:
            flush()
        if progress_bar is not None:
            progress_bar.close()
        return written

    # --- export (DESIGN §5) ----------------------------------------------------------------------
    def scan(self, batch_size: int = 1000):
        """Every key of the table, as pandas DataFrames of at most ``batch_size`` rows (key,
        values, deleted), range by range: only one range's key list is held at a time, and
        each batch is read with ``get_many``, so it sees what a quorum read sees."""
        import pandas as pd

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgument(f"batch_size={batch_size!r} must be a positive integer")
        ring = self.store.refresh_ring()
        for kp in range(ring.partitions):
            keys = self.range_keys(ring, kp)
            for start in range(0, len(keys), batch_size):
                got = self.get_many(keys[start:start + batch_size])
                yield pd.DataFrame({
                    "key": list(got),
                    "values": [g.values for g in got.values()],
                    "deleted": [not g.exists for g in got.values()],
                })

    def to_pandas(self):
        """The whole table as one DataFrame: one row per key (key, values, deleted)."""
        import pandas as pd

        frames = list(self.scan(batch_size=10_000))
        if not frames:
            return pd.DataFrame({"key": [], "values": [], "deleted": []})
        return pd.concat(frames, ignore_index=True)

    def range_keys(self, ring: Ring, kp: int) -> list:
        """The union of the keys that range ``kp``'s reachable primaries hold (R at least):
        one call per replica."""
        from ..storage.segments import encode_key

        replicas = ring.preference_list(kp, self._tcfg.n)
        refs = []
        for p in replicas:
            handle = placement.lookup(placement.vnode_actor_name(self.store.name, ring.owners[p], p))
            if handle is not None:
                refs.append(handle.range_keys.remote(self.name, kp))
        keys: set = set()
        answered = 0
        for ref in refs:
            try:
                keys.update(ray.get(ref, timeout=rpc_timeout_s(self.store.config)))
                answered += 1
            except Exception:
                continue
        if answered < self._tcfg.r:
            raise Unavailable(f"scan of range {kp}: {answered} of the {self._tcfg.r} replicas "
                              "it needs answered", needed=self._tcfg.r, got=answered)
        return sorted(keys, key=encode_key)


class AsyncTable(Table):
    """`Table` with coroutine methods. Single-key requests issued concurrently from one event
    loop are coalesced into batched calls (one per vnode), so 16 in flight cost about what one
    batch does."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._coalescers: dict[int, Coalescer] = {}

    def _coalescer(self) -> Coalescer:
        loop = asyncio.get_running_loop()
        coalescer = self._coalescers.get(id(loop))
        if coalescer is None:
            coalescer = self._coalescers[id(loop)] = Coalescer(self._route, self.via)
        return coalescer

    async def get(self, key: Any, *, r: Optional[int] = None,
                  sloppy: Optional[bool] = None) -> GetResult:
        check_key(key, self._limits.max_key_bytes)
        r = self._quorum(r, "r")
        blob = await self._coalescer().submit(("get", self.name, r, sloppy), key)
        return self._result(key, blob)

    async def put(self, key: Any, value: Any, *, context: Optional[Context] = None,
                  w: Optional[int] = None, sloppy: Optional[bool] = None,
                  ttl_s: Optional[float] = None) -> Context:
        blob = self._encoded(key, value, self._expires_at_ms(ttl_s))
        return await self._awrite(key, context, blob, w, sloppy)

    async def delete(self, key: Any, *, context: Optional[Context] = None,
                     w: Optional[int] = None, sloppy: Optional[bool] = None) -> Context:
        check_key(key, self._limits.max_key_bytes)
        return await self._awrite(key, context, None, w, sloppy)

    async def _awrite(self, key: Any, context: Optional[Context], blob: Any, w: Optional[int],
                      sloppy: Optional[bool]) -> Context:
        ctx = self._context(key, context)
        w = self._quorum(w, "w")
        state = await self._coalescer().submit(("put", self.name, w, sloppy), (key, ctx, blob))
        return _context_of(key, versioning.decode(state))

    async def get_many(self, keys: Iterable[Any], *, r: Optional[int] = None,
                       sloppy: Optional[bool] = None) -> dict:
        keys = list(dict.fromkeys(self._batch_keys(keys)))
        r = self._quorum(r, "r")
        if not keys:
            return {}
        blobs = await self._route.acall("get_many", (self.name, keys, r, sloppy), None, self.via)
        read_ms = now_ms()
        return {key: self._result(key, blob, read_ms) for key, blob in zip(keys, blobs)}

    async def put_many(self, mapping: Mapping[Any, Any], *, contexts: Optional[Mapping] = None,
                       w: Optional[int] = None, sloppy: Optional[bool] = None,
                       ttl_s: Optional[float] = None) -> None:
        writes = self._writes(mapping, contexts, ttl_s)
        w = self._quorum(w, "w")
        if writes:
            await self._route.acall("put_many", (self.name, writes, w, sloppy, False), None,
                                    self.via)


def _rebuild(cls: type, store: Any, name: str, merge: Any, via: Any, routing: str) -> Table:
    return cls(store, name, merge=merge, via=via, routing=routing)


def _checked_keys(keys: Iterable[Any], max_key_bytes: int, max_batch_keys: int = 0) -> list:
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise InvalidKey(f"get_many takes an iterable of keys, not {type(keys).__name__}")
    keys = list(keys)
    if max_batch_keys and len(keys) > max_batch_keys:
        raise InvalidArgument(f"a batch of {len(keys)} keys is over limits.max_batch_keys="
                              f"{max_batch_keys}")
    for key in keys:
        check_key(key, max_key_bytes)
    return keys
