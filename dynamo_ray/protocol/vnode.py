"""VNode: the replica of one ring partition, holding per table every key range it serves.

Role (DESIGN §1, riak_core's vnode contract): a passive, single-threaded store that answers
three batched calls, each carrying groups of (key partition, keys) so that a request touching
many keys costs one Ray call per vnode:
- `coordinate`: apply writes as their coordinator (makes the new dots; DESIGN §3);
- `merge`: fold states coordinated elsewhere (replication, read repair, handoff, anti-entropy);
- `get`: return the stored states.
A vnode standing in for an unreachable primary (a fallback) keeps those writes apart, in a
hinted range named by the intended vnode, until handoff delivers them.

Maintenance (`maintain`, every few seconds from its node) turns values whose TTL has passed
into tombstones of the same dot (the payload's memory is freed at once; the tombstone keeps
older versions on stale replicas from coming back, and anti-entropy's reaper removes it once
every primary holds it), compacts segments and trims the heap. A cache table (``eviction:
lru``) lives in memory only, keeps its keys in least-recently-used order (reads count as use)
and, past its ``max_memory_mb``, drops the coldest; it has no Merkle tree and no anti-entropy
(a repair would only bring evicted keys back), and its expired keys are dropped outright.

Invariants:
- the actor id changes on every start, so a vnode that lost its memory never reuses a dot, and
  whenever it drops keys holding its own dots (hints delivered, ranges handed to a new
  owner), so that a clock entry (id, n)
  always covers every event id made for that key;
- dots come from one counter per incarnation, so they are unique across keys and time;
- a siblings table's key evicted with a clock entry of this id retires the id too;
- a dot this vnode made for a request whose router gave up on it and had the write coordinated
  elsewhere is dropped when that router says so (`revoke`; the clock keeps covering it, so
  every replica drops it): the write lives on as the other coordinator's dot only, so that a
  later delete covering that one leaves no unseen copy behind. Durable tables log which
  request made each dot, so a revoke still finds it after a restart;
- on a durable table every write it accepts (as coordinator, replica or fallback under a hint)
  is in its write-ahead log, fsynced once per call, before it answers;
- a vnode never calls another actor: it cannot deadlock and needs no deadline of its own; it
  reads time only from its transport's clock and draws ids from its transport's rng;
- a request that carries its caller's deadline (``expires_at``) and waited in the queue past it
  is dropped unserved: the caller has given up on it and may have retried it elsewhere.
"""

from __future__ import annotations

import gc
import logging
import os
from array import array
import random
from collections import OrderedDict
from typing import Any, Iterable, Optional

from ..core import codec, versioning
from ..config import StoreConfig
from ..storage.memtable import SLAB_BYTES
from ..core.ring import Ring, key_hash
from ..storage.range_store import (RangeStore, fix_malloc_thresholds, release_free_memory,
                                   warm_up_storage)
from ..storage.wal import WriteAheadLog
from .switches import NONE, Switches
from .transport import Transport, node_at

log = logging.getLogger(__name__)

MADE_REQUESTS = 4096  # requests whose dots are remembered, for a revoke

RangeId = tuple  # (table, key partition)
HintId = tuple  # (table, key partition, intended vnode partition)


def _private_bytes() -> int:
    """Resident memory no other process shares (USS): the heap, not Ray's shared object store
    pages or the page cache of files read."""
    import psutil

    try:
        return psutil.Process().memory_full_info().uss
    except (psutil.AccessDenied, AttributeError):
        return 0


def expiry_of(blob: bytes) -> Optional[int]:
    """The earliest expiry among a state's live values, or None. A state none of whose
    values can start with an expiry frame costs no decoding (`codec.may_hold_expiry`)."""
    if not codec.may_hold_expiry(blob):
        return None
    found = [codec.expiry_ms(s.value) for s in versioning.decode(blob).siblings
             if s.value is not None]
    return min((e for e in found if e is not None), default=None)


def new_actor_id(rng: random.Random) -> int:
    """A fresh vnode id: random 62 bits (encodes in 9 msgpack bytes; collisions ~ 2**-31
    after 2**15 incarnations)."""
    return rng.getrandbits(62)


class VNode:
    def __init__(self, store: str, node: str, partition: int, config: StoreConfig, ring: Ring,
                 transport: Transport, switches: Switches = NONE):
        self.store = store
        self.ring = ring  # the newest ring its node knows: every reply carries its version
        self.node = node
        self.partition = partition
        self.config = config
        self.transport = transport
        self.clock = transport.clock
        self.switches = switches
        self.actor = self._new_id()
        self.counter = 0
        self.ranges: dict[RangeId, RangeStore] = {}
        self.hinted: dict[HintId, RangeStore] = {}
        self.clock_skew_ms = 0
        self.calls = 0  # requests served (coordinate, merge, get): one per vnode per batch
        self.expired = 0  # requests dropped unserved: their caller's deadline had passed
        self.evicted = 0  # keys of cache tables dropped to stay within their max_memory_mb
        self.evict_limits = {t: tcfg.max_memory_mb * 2**20 for t, tcfg in config.tables.items()
                             if tcfg.evicts}
        self.delay_ms = 0  # injected slowness (Store.slow_node)
        self.coordinated_hints: set[HintId] = set()  # hinted ranges holding dots of this id
        # request -> [(table, kp, hint, actor, [key], array of counters)]: the dots it made
        self.made: OrderedDict = OrderedDict()
        self.transfers: dict[tuple, tuple[list, set]] = {}  # (table, kp, tag) -> (keys, written)
        # told the node since its last look: "changed" (it has maintenance and anti-entropy to
        # do; reset by `maintain`), "hinted" (it has hints to hand off; reset by an empty
        # `hint_summary`). So an idle store's nodes ask their vnodes nothing.
        self.noted = {"changed": False, "hinted": False}
        ae = config.antientropy
        self.tree_shape = (ae.fanout, ae.depth)
        self.exchanges = {"ae_ranges": 0, "ae_nodes": 0, "ae_keys": 0, "ae_bytes": 0,
                          "ae_reaped": 0, "ae_last": 0.0}
        storage = config.storage
        self.files = transport.files
        self.disk = (os.path.join(storage.spill_dir, store, node, str(partition))
                     if storage.spill_dir else None)
        self.segments = self.disk is not None and self.files.segments  # Parquet on this disk
        self.memory_limit = storage.memory_limit_mb * 2**20 if storage.memory_limit_mb else None
        self.durable = {t for t, tcfg in config.tables.items() if tcfg.durable}
        self.wal = (WriteAheadLog(os.path.join(self.disk, "wal.log"), self.files)
                    if self.disk and self.durable else None)
        if self.evict_limits:
            fix_malloc_thresholds()  # evicted slabs go back to the OS, so memory follows the limit
        self._load()

    # --- helpers ---------------------------------------------------------------------------
    def _new_id(self) -> int:
        if self.switches.reuse_ids_after_restart:  # negative control: the kv679 data loss
            return key_hash(f"{self.store}:{self.node}:{self.partition}") & ((1 << 62) - 1)
        return new_actor_id(self.transport.rng)

    def _now_ms(self) -> int:
        return int(self.clock.time() * 1000) + self.clock_skew_ms

    def _serve(self, expires_at: Optional[float] = None) -> bool:
        """Count a request and serve its injected delay; False if its caller has given up on it
        (``expires_at``, wall-clock seconds, has passed): it must then change nothing, or a
        write the router already re-coordinated elsewhere would come back as a second dot of
        the same value, concurrent with everything written since (Cassandra drops such
        mutations too)."""
        self.calls += 1
        if self.delay_ms:
            self.clock.stall(self.delay_ms / 1000)
        if expires_at is not None and self.clock.time() > expires_at:
            self.expired += 1
            return False
        return True

    def _store(self, table: str, kp: int, hint: Optional[int]) -> RangeStore:
        rid = (table, kp) if hint is None else (table, kp, hint)
        book = self.ranges if hint is None else self.hinted
        store = book.get(rid)
        if store is None:  # a range it replicates gets a Merkle tree and a directory
            slab_bytes = self._slab_bytes(table)
            if hint is None and table not in self.evict_limits:
                store = RangeStore(self.tree_shape, self._range_dir(table, kp), expiry_of,
                                   slab_bytes)
            else:  # a cache table's ranges and hinted copies: memory only, no tree
                store = RangeStore(expiry_of=expiry_of, slab_bytes=slab_bytes)
            book[rid] = store
        return store

    def _slab_bytes(self, table: str) -> int:
        """Slabs small enough that each range holds several within its memory limit (the cache
        table's, else the vnode's), and at most 128 KB: a spill or an eviction frees whole
        slabs, and a range's newest slab stays held, so 128 KB slabs under a 0.5 MB limit left
        three ranges' tails alone near it."""
        limit = self.evict_limits.get(table, self.memory_limit)
        if limit is None:
            return SLAB_BYTES
        return max(4096, min(SLAB_BYTES, int(limit / 32)))

    # --- disk (DESIGN §5) ----------------------------------------------------------------------
    def _range_dir(self, table: str, kp: int) -> Optional[str]:
        if not self.segments:
            return None
        safe = table if table.replace("_", "").replace("-", "").isalnum() else "x" + table.encode().hex()
        return os.path.join(self.disk, safe, str(kp))

    def _load(self) -> None:
        """Before serving: reload the segments of every range found on disk (a restart on the
        same spill_dir), then replay the write-ahead log over them."""
        if self.segments:
            self._load_segments()
        if self.wal is not None:
            records = self.wal.replay()
            for table, kp, key, blob, hint, made in records:
                if table not in self.config.tables:
                    continue
                if made is not None:
                    request, actor, counter = made
                    self._remember(request, table, kp, hint, actor, [key], [counter])
                if blob is None:
                    self._store(table, kp, hint).pop(key)
                else:
                    self._fold(self._store(table, kp, hint), table, key, blob)
            for hid in [h for h, store in self.hinted.items() if not len(store)]:
                del self.hinted[hid]
            log.info("vnode %s/%s replayed %d logged writes", self.node, self.partition, len(records))

    def _load_segments(self) -> None:
        warm_up_storage()
        if not os.path.isdir(self.disk):
            return
        for table in self.config.tables:
            if table in self.evict_limits:
                continue
            tdir = self._range_dir(table, 0)
            tdir = os.path.dirname(tdir) if tdir else None
            if tdir is None or not os.path.isdir(tdir):
                continue
            for name in os.listdir(tdir):
                if name.isdigit():
                    self._store(table, int(name), None).load()
        gc.collect()  # reading footers left pyarrow's metadata cycles (see pages.plain_layout)

    def _fold(self, store: RangeStore, table: str, key: Any, blob: bytes) -> bool:
        """Merge one incoming state into ``store``; True when it changed what was there."""
        old = store.get(key)
        if old == blob:
            return False
        new = versioning.merge_blobs(old, blob, self.config.tables[table].conflict)
        if new == old:
            return False
        store.put(key, new, old)
        return True

    def memory_bytes(self) -> int:
        return sum(s.memory_bytes() for s in self.ranges.values()) + sum(
            s.memory_bytes() for s in self.hinted.values())

    def _table_stores(self, table: str) -> tuple[list[RangeStore], list[RangeStore]]:
        """This vnode's own ranges of ``table`` and its hinted ones."""
        own = [s for (t, _), s in self.ranges.items() if t == table]
        return own, [s for (t, _, _), s in self.hinted.items() if t == table]

    def _note(self, what: str) -> None:
        """Tell the node, once until it looks, that this vnode has work of kind ``what``."""
        if not self.noted[what]:
            self.noted[what] = True
            self.transport.notify(node_at(self.node), "vnode_noted", self.partition, what)

    def _after_writes(self, table: str) -> None:
        """Tell the node there is work (`_note`); keep within the memory limits (spill the
        coldest of the spilling tables, evict the least recently used of ``table`` if it is a
        cache) and the log small (checkpoint)."""
        self._note("changed")
        if self.hinted:
            self._note("hinted")
        if self.memory_limit is not None:
            spilling = [s for (t, _), s in self.ranges.items() if t not in self.evict_limits]
            used = sum(s.memory_bytes() for s in spilling) + sum(
                s.memory_bytes() for (t, _, _), s in self.hinted.items()
                if t not in self.evict_limits)
            if used > self.memory_limit:
                spillable = [s for s in spilling if s.hot_bytes]
                hot = sum(s.hot_bytes for s in spillable) or 1
                excess = used - 0.8 * self.memory_limit  # spill to 80 %: fewer, larger segments
                for store in spillable:
                    store.spill(int(excess * store.hot_bytes / hot) + 1)
                release_free_memory()
        if table in self.evict_limits:
            self._evict(table)
        if self.wal is not None and self.wal.size_bytes > self.config.storage.wal_checkpoint_mb * 2**20:
            self.checkpoint()

    def _log_removals(self, table: str, kp: int, hint: Optional[int], gone: list) -> None:
        """Log that keys left a durable range (a hint delivered, a tombstone reaped): replayed
        after a restart, their older records must not bring them back."""
        records = self._log(table, kp, hint, gone)
        if records:
            self.wal.append(records)

    def _log(self, table: str, kp: int, hint: Optional[int], entries: list,
             request: Any = None) -> list:
        """Log records [table, kp, key, blob, hint] of a durable table's changed entries; a
        blob of None records a removal; a coordinated write adds [request, actor, counter],
        the dot it made for that request (see `revoke`)."""
        if table not in self.durable:
            return []
        if request is None:
            return [(table, kp, key, blob, hint) for key, blob in entries]
        return [(table, kp, key, blob, hint, [list(request), self.actor, self.counter])
                for key, blob in entries]

    def _evict(self, table: str) -> int:
        """Past the table's max_memory_mb, drop its least recently used keys (own ranges first,
        each its share) down to 90 % of the limit. Returns the keys dropped."""
        limit = self.evict_limits[table]
        own, hinted = self._table_stores(table)
        used = sum(s.hot_bytes for s in own) + sum(s.hot_bytes for s in hinted)
        if used <= limit:
            return 0
        excess = used - 0.9 * limit
        dropped: list = []
        for stores in (own, hinted):
            held = sum(s.hot_bytes for s in stores)
            if excess <= 0 or not held:
                continue
            share = min(1.0, excess / held)
            for store in stores:
                before = store.hot_bytes
                dropped += store.evict(int(share * before) + 1)
                excess -= before - store.hot_bytes
        if not dropped:
            return 0
        self.evicted += len(dropped)
        self.transport.metrics.count("dynamo_evictions_total", len(dropped), table=table)
        if self.config.tables[table].conflict == "siblings" and any(
                self.actor in versioning.decode(blob).clock for _, blob in dropped):
            self.actor = self._new_id()  # its clock entries there no longer cover its own dots
        release_free_memory()
        return len(dropped)

    def checkpoint(self) -> int:
        """Shrink the log: put every durable write of an own range since the last checkpoint
        into segments, then replace the log by one holding what segments do not (hinted
        copies; every range, where this disk keeps no segments). Its entries are on disk
        twice until then, never zero times. Returns the keys now in the new log."""
        if self.wal is None:
            return 0
        kept = []
        for (table, kp), store in self.ranges.items():
            if table in self.durable:
                if self.segments:
                    store.flush()
                else:
                    kept += self._log(table, kp, None, store.items())
        for (table, kp, hint), store in self.hinted.items():
            kept += self._log(table, kp, hint, store.items())
        self.wal.rewrite(kept)
        return len(kept)

    def maintain(self) -> dict:
        """The node's round every few seconds: expire what is due, fold the segments of ranges
        that have more than ``compact_after_segments``, hand freed heap pages back to the OS.
        Returns {"expired": keys turned into tombstones or dropped, "compacted": segments,
        "changed": whether anything changed since the last round, "next_expiry_ms": the
        earliest expiry still pending (None: none), "hinted": whether it holds hints}."""
        changed, self.noted["changed"] = self.noted["changed"], False
        expired = self._expire_due(int(self.clock.time() * 1000))
        limit = self.config.storage.compact_after_segments
        folded = sum(s.compact() for s in list(self.ranges.values()) if len(s.segments) > limit)
        if changed or expired:
            release_free_memory()  # also what serving reads freed since the last round (~1 ms)
        pending = [s.expiring[0][0] for s in [*self.ranges.values(), *self.hinted.values()]
                   if s.expiring]
        return {"expired": expired, "compacted": folded, "changed": changed or bool(expired),
                "next_expiry_ms": min(pending, default=None), "hinted": bool(self.hinted)}

    def _expire_due(self, now_ms: int) -> int:
        """Turn every value whose expiry has passed into a tombstone of its dot; a key of a
        cache table left with no live value is dropped. Returns the keys changed."""
        changed = 0
        for rid, store in [*self.ranges.items(), *self.hinted.items()]:
            due = store.due(now_ms)
            if not due:
                continue
            cache = rid[0] in self.evict_limits
            for key, blob in zip(due, store.get_many(due)):
                if blob is None:
                    continue
                state = versioning.decode(blob)
                dead = versioning.expire(state, now_ms)
                if dead is state:
                    continue
                if cache and versioning.is_deleted(dead):
                    store.pop(key)
                else:
                    store.put(key, versioning.encode(dead), blob)
                changed += 1
        return changed

    def destroy_storage(self) -> None:
        """Delete this vnode's files: its partition moved to another node."""
        for store in self.ranges.values():
            store.destroy()
        if self.wal is not None:
            self.wal.close()
            self.files.remove(self.wal.path)
            self.wal = None

    def _copies(self, table: str, kp: int) -> list[RangeStore]:
        """Every store here that may hold keys of range (table, kp): its own and hinted ones."""
        own = self.ranges.get((table, kp))
        copies = [own] if own is not None else []
        copies += [s for (t, k, _), s in self.hinted.items() if t == table and k == kp]
        return copies

    # --- the contract ----------------------------------------------------------------------
    def ready(self) -> int:
        return self.actor

    def coordinate(self, table: str, groups: Iterable, expires_at: Optional[float] = None,
                   request: Any = None) -> tuple[int, Optional[list[list[bytes]]]]:
        """Apply writes as coordinator. groups: [(kp, hint, [(key, context|None, value|None)])];
        returns (ring version, the new encoded state of every key, in order), or (ring version,
        None) unapplied when ``expires_at`` has passed (see `_serve`). ``request``: the
        router's id of the request, remembered with the dots made, for a `merge` revoke."""
        if not self._serve(expires_at):
            return self.ring.version, None
        tcfg = self.config.tables[table]
        max_entries = self.config.versioning.max_clock_entries
        min_age_ms = int(self.config.versioning.prune_min_age_s * 1000)
        if self.switches.prune_without_age_floor:  # negative control: Riak's age floor off
            max_entries, min_age_ms = 1, 0
        now = self._now_ms()
        out = []
        logged: list = []
        for kp, hint, writes in groups:
            values = self.transport.resolve([value for _, _, value in writes])
            writes = [(key, ctx, value) for (key, ctx, _), value in zip(writes, values)]
            store = self._store(table, kp, hint)
            if hint is not None:
                self.coordinated_hints.add((table, kp, hint))
            # A new dot must be based on every copy of the key held here (own and hinted), or
            # its clock would claim to cover a sibling it never saw.
            others = [c for c in self._copies(table, kp) if c is not store]
            stored = store.get_many([key for key, _, _ in writes])
            blobs = []
            counters = array("q")
            for (key, ctx, value), mine in zip(writes, stored):
                old = mine
                for other in others:
                    old = versioning.merge_blobs(old, other.get(key), tcfg.conflict)
                state = versioning.decode(old) if old is not None else versioning.EMPTY
                ctx = ctx or {}
                self.counter = versioning.next_counter(state, ctx, self.actor, self.counter)
                new = versioning.update(
                    state, ctx, value, self.actor, self.counter, now, tcfg.conflict, max_entries,
                    min_age_ms)
                blob = versioning.encode(new)
                store.put(key, blob, mine)
                blobs.append(blob)
                counters.append(self.counter)
            out.append(blobs)
            if request is not None:
                self._remember(request, table, kp, hint, self.actor,
                               [key for key, _, _ in writes], counters)
            logged += self._log(table, kp, hint, [(key, b) for (key, _, _), b in zip(writes, blobs)],
                                request)
        if logged:
            self.wal.append(logged)  # fsynced before the acknowledgement leaves this vnode
        self._after_writes(table)
        return self.ring.version, out

    def _remember(self, request: Any, table: str, kp: int, hint: Optional[int], actor: int,
                  keys: list, counters) -> None:
        """Note the dots (``actor``, counter) made for ``request`` on ``keys``, compactly (16
        bytes a key: the keys are the stored ones), for the last `MADE_REQUESTS` requests."""
        groups = self.made.setdefault(tuple(request), [])
        if groups and groups[-1][:4] == (table, kp, hint, actor):
            groups[-1][4].extend(keys)
            groups[-1][5].extend(counters)
        else:
            groups.append((table, kp, hint, actor, list(keys), array("q", counters)))
        while len(self.made) > MADE_REQUESTS:
            self.made.popitem(last=False)

    def revoke(self, table: str, request: Any) -> tuple[int, int]:
        """The router of ``request`` gave up on this vnode as its coordinator and had the
        write coordinated elsewhere, which W replicas acknowledged: drop the dots made here for
        it (the clock keeps covering them). Safe whenever it arrives: it carries no state.
        Returns (ring version, dots dropped)."""
        self.calls += 1
        logged, dropped = [], 0
        dots = [(kp, hint, key, actor, counter)
                for _, kp, hint, actor, keys, counters in self.made.pop(tuple(request), [])
                for key, counter in zip(keys, counters)]
        for kp, hint, key, actor, counter in dots:
            store = self._store(table, kp, hint)
            blob = store.get(key)
            if blob is None:
                continue
            state = versioning.decode(blob)
            kept = tuple(s for s in state.siblings if s.dot != (actor, counter))
            if len(kept) == len(state.siblings):
                continue
            new = versioning.encode(versioning.KeyState(state.clock, kept))
            store.put(key, new, blob)
            logged += self._log(table, kp, hint, [(key, new)])
            dropped += 1
        if logged:
            self.wal.append(logged)
        if dropped:
            self._note("changed")
        return self.ring.version, dropped

    def merge(self, table: str, groups: Iterable,
              expires_at: Optional[float] = None) -> tuple[int, Optional[list[int]]]:
        """Fold states made elsewhere. groups: [(kp, hint, [(key, blob)])]; returns (ring
        version, per group how many keys changed here), or (ring version, None) when
        ``expires_at`` has passed."""
        if not self._serve(expires_at):
            return self.ring.version, None
        policy = self.config.tables[table].conflict
        changed = []
        logged: list = []
        for kp, hint, entries in groups:
            blobs = self.transport.resolve([blob for _, blob in entries])
            store = self._store(table, kp, hint)
            count = 0
            olds = store.get_many([key for key, _ in entries])
            for (key, _), blob, old in zip(entries, blobs, olds):
                if old != blob:
                    new = versioning.merge_blobs(old, blob, policy)
                    if new != old:
                        store.put(key, new, old)
                        count += 1
                        if not self.switches.log_at_coordinator_only:
                            logged += self._log(table, kp, hint, [(key, new)])
            changed.append(count)
        if logged:
            self.wal.append(logged)  # a replica's copy is durable too, before it answers
        self._after_writes(table)
        return self.ring.version, changed

    def get(self, table: str, groups: Iterable,
            expires_at: Optional[float] = None) -> tuple[int, Optional[list[list[Optional[bytes]]]]]:
        """Stored states. groups: [(kp, [key])]; returns (ring version, the states per group),
        or (ring version, None) when ``expires_at`` has passed; a fallback answers from its
        hinted copies too."""
        if not self._serve(expires_at):
            return self.ring.version, None
        policy = self.config.tables[table].conflict
        cache = table in self.evict_limits
        out = []
        for kp, keys in groups:
            copies = self._copies(table, kp)
            if cache:
                for store in copies:
                    store.touch(keys)
            if len(copies) == 1:
                out.append(copies[0].get_many(keys))
                continue
            found = []
            for key in keys:
                blob = None
                for store in copies:
                    other = store.get(key)
                    if other is not None:
                        blob = versioning.merge_blobs(blob, other, policy)
                found.append(blob)
            out.append(found)
        if cache:
            self._evict(table)  # touching moved blobs to fresh slabs
        return self.ring.version, out

    # --- membership (DESIGN §2) -----------------------------------------------------------------
    def set_ring(self, ring: Ring) -> None:
        if ring.version > self.ring.version:
            self.ring = ring

    def ring_view(self) -> Ring:
        return self.ring

    def start_transfer(self, table: str, kp: int, tag: Any) -> int:
        """Begin streaming range (table, kp) to another vnode: snapshot its keys and record
        every key written from now on, for the final sync. Returns the key count."""
        store = self._store(table, kp, None)
        written: set = set()
        store.watchers.append(written)
        keys = store.keys()
        self.transfers[(table, kp, tag)] = (keys, written)
        return len(keys)

    def transfer_batch(self, table: str, kp: int, tag: Any, offset: int, limit: int) -> list:
        keys, _ = self.transfers[(table, kp, tag)]
        chunk = keys[offset:offset + limit]
        return [(k, b) for k, b in zip(chunk, self._store(table, kp, None).get_many(chunk))
                if b is not None]

    def catch_up_transfer(self, table: str, kp: int, tag: Any) -> list:
        """The current state of every key written since the stream began or the last
        catch-up; keeps recording for the final sync."""
        _, written = self.transfers[(table, kp, tag)]
        keys = list(written)
        written.clear()  # in place: the store still adds to this set
        store = self._store(table, kp, None)
        return [(k, b) for k, b in zip(keys, store.get_many(keys)) if b is not None]

    def finish_transfer(self, table: str, kp: int, tag: Any) -> list:
        """End the transfer: the current state of every key written since it began or since
        the last catch-up."""
        _, written = self.transfers.pop((table, kp, tag))
        store = self._store(table, kp, None)
        store.watchers.remove(written)
        keys = list(written)
        return [(k, b) for k, b in zip(keys, store.get_many(keys)) if b is not None]

    def drop_ranges(self, ranges: list[tuple]) -> int:
        """Forget ranges (table, kp) it no longer replicates after a membership change. Its
        dots live on in the new replicas, so it takes a fresh id (see module doc)."""
        dropped = 0
        for rid in ranges:
            store = self.ranges.pop(tuple(rid), None)
            if store is not None:
                dropped += len(store)
                store.destroy()
        if dropped:
            self.actor = self._new_id()
            self._note("changed")
        return dropped

    # --- hinted handoff (DESIGN §4) ------------------------------------------------------------
    def hint_summary(self) -> dict[HintId, int]:
        """Keys held for each intended vnode: {(table, kp, intended partition): count}."""
        summary = {hid: len(store) for hid, store in self.hinted.items() if len(store)}
        if not summary:
            self.noted["hinted"] = False  # the node stops asking: tell it of the next hint
        return summary

    def hinted_batch(self, hint: HintId, limit: int) -> list[tuple]:
        """Up to ``limit`` (key, blob) pairs held for ``hint``'s vnode."""
        store = self.hinted.get(hint)
        if store is None:
            return []
        batch = []
        for key, blob in store.hot.items():  # hinted copies live in memory only
            if blob is not None:
                batch.append((key, blob))
                if len(batch) >= limit:
                    break
        return batch

    def drop_hinted(self, hint: HintId, delivered: list[tuple]) -> int:
        """Forget hinted keys their target acknowledged, unless they changed since they were
        read for delivery. Dropping keys this id coordinated retires the id (see module doc)."""
        store = self.hinted.get(hint)
        if store is None:
            return 0
        table, kp, intended = hint
        gone = []
        for key, blob in delivered:
            if store.get(key) == blob:
                store.pop(key)
                gone.append((key, None))
        dropped = len(gone)
        self._log_removals(table, kp, intended, gone)
        if not len(store):
            del self.hinted[hint]
        if dropped and hint in self.coordinated_hints:
            self.coordinated_hints.discard(hint)
            self.actor = self._new_id()
        return dropped

    # --- anti-entropy (DESIGN §4): the far side of antientropy.exchange -----------------------
    def roots(self, ranges: list[tuple]) -> list[int]:
        """Merkle root of each (table, kp) range; 0 for a range this vnode holds nothing of."""
        return [self._store(t, kp, None).tree.root() for t, kp in ranges]

    def tree_children(self, table: str, kp: int, level: int, indexes: list[int]) -> list[int]:
        return self._store(table, kp, None).tree.children_of(level, indexes)

    def bucket_digests(self, table: str, kp: int, buckets: list[int]) -> list[tuple]:
        return self._store(table, kp, None).digests(buckets)

    def tombstones(self, table: str, kp: int, before_ms: int) -> list[tuple]:
        """(key, blob) of every key that is only tombstones, all written before ``before_ms``."""
        store = self._store(table, kp, None)
        found = []
        for key in list(store.maybe_tombstones):
            blob = store.get(key)
            if blob is None:
                continue
            state = versioning.decode(blob)
            if versioning.is_deleted(state) and versioning.latest_ts_ms(state) < before_ms:
                found.append((key, blob))
        return found

    def hinted_keys(self, table: str, kp: int, keys: list) -> list:
        """Which of ``keys`` this vnode holds a hint for (a pending hint blocks reaping)."""
        return [k for k in keys for store in self._copies(table, kp)
                if store.tree is None and store.get(k) is not None]

    def reap(self, table: str, kp: int, entries: list[tuple]) -> int:
        """Remove tombstones that are still exactly as anti-entropy saw them on all N primaries."""
        store = self._store(table, kp, None)
        gone = []
        for key, blob in entries:
            if store.get(key) == blob:
                store.pop(key)
                gone.append((key, None))
        self._log_removals(table, kp, None, gone)
        self.exchanges["ae_reaped"] += len(gone)
        if gone:
            self._note("changed")
        return len(gone)

    def record_exchange(self, figures: dict) -> None:
        for name in ("ae_ranges", "ae_nodes", "ae_keys", "ae_bytes"):
            self.exchanges[name] += figures.get(name, 0)
        self.exchanges["ae_last"] = self.clock.time()

    def set_faults(self, delay_ms: int = 0, clock_skew_ms: int = 0) -> None:
        """Fault injection: answer every request ``delay_ms`` late; skew the version clock."""
        self.delay_ms = delay_ms
        self.clock_skew_ms = clock_skew_ms

    def range_keys(self, table: str, kp: int) -> list:
        """Every key of range (table, kp) held here, tombstoned ones included (Table.scan)."""
        return self._store(table, kp, None).keys()

    def info(self) -> dict:
        """Figures for Store.status(): one row of this vnode."""
        import psutil

        return {
            "memory_bytes": self.memory_bytes(),
            "rss_bytes": psutil.Process().memory_info().rss,
            "uss_bytes": _private_bytes(),
            "segments": sum(len(s.segments) for s in self.ranges.values()),
            "storage_errors": sum(len(s.errors) for s in self.ranges.values()),
            "partition": self.partition,
            "node": self.node,
            "actor": f"{self.actor:016x}",
            "keys": sum(len(s) for s in self.ranges.values()),
            "bytes": sum(s.data_bytes for s in self.ranges.values()),
            "ranges": len(self.ranges),
            "hints_pending": sum(len(s) for s in self.hinted.values()),
            "calls": self.calls,
            "expired": self.expired,
            "evicted": self.evicted,
            "cache_bytes": sum(s.memory_bytes() for (t, _), s in self.ranges.items()
                               if t in self.evict_limits),
            **self.exchanges,
        }

    def inspect(self, table: str, keys: list) -> list[tuple]:
        """Every copy of ``keys`` here: [(key, hint or None, blob)]."""
        found = []
        for (t, _), store in self.ranges.items():
            if t == table:
                found += [(k, None, store.get(k)) for k in keys if store.get(k) is not None]
        for (t, _, hint), store in self.hinted.items():
            if t == table:
                found += [(k, hint, store.get(k)) for k in keys if store.get(k) is not None]
        return found
