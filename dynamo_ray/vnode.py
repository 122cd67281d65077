"""VNode: the replica of one ring partition, holding per table every key range it serves.

Role (DESIGN §1, riak_core's vnode contract): a passive, single-threaded store that answers
three batched calls, each carrying groups of (key partition, keys) so that a request touching
many keys costs one Ray call per vnode:
- `coordinate`: apply writes as their coordinator (makes the new dots; DESIGN §3);
- `merge`: fold states coordinated elsewhere (replication, read repair, handoff, anti-entropy);
- `get`: return the stored states.
A vnode standing in for an unreachable primary (a fallback) keeps those writes apart, in a
hinted range named by the intended vnode, until handoff delivers them.

Invariants:
- the actor id changes on every start, so a vnode that lost its memory never reuses a dot;
- dots come from one counter per incarnation, so they are unique across keys and time;
- a vnode never calls another actor: it cannot deadlock and needs no deadline of its own.
"""

from __future__ import annotations

import random
import time
from typing import Iterable, Optional

from . import versioning
from .config import StoreConfig
from .storage import RangeStore

RangeId = tuple  # (table, key partition)
HintId = tuple  # (table, key partition, intended vnode partition)


def new_actor_id() -> int:
    """A fresh vnode id: random 62 bits (encodes in 9 msgpack bytes; collisions ~ 2**-31
    after 2**15 incarnations)."""
    return random.getrandbits(62)


class VNode:
    def __init__(self, store: str, node: str, partition: int, config: StoreConfig):
        self.store = store
        self.node = node
        self.partition = partition
        self.config = config
        self.actor = new_actor_id()
        self.counter = 0
        self.ranges: dict[RangeId, RangeStore] = {}
        self.hinted: dict[HintId, RangeStore] = {}
        self.clock_skew_ms = 0
        self.calls = 0  # requests served (coordinate, merge, get): one per vnode per batch

    # --- helpers ---------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.clock_skew_ms

    def _store(self, table: str, kp: int, hint: Optional[int]) -> RangeStore:
        rid = (table, kp) if hint is None else (table, kp, hint)
        book = self.ranges if hint is None else self.hinted
        store = book.get(rid)
        if store is None:
            store = book[rid] = RangeStore()
        return store

    def _copies(self, table: str, kp: int) -> list[RangeStore]:
        """Every store here that may hold keys of range (table, kp): its own and hinted ones."""
        own = self.ranges.get((table, kp))
        copies = [own] if own is not None else []
        copies += [s for (t, k, _), s in self.hinted.items() if t == table and k == kp]
        return copies

    # --- the contract ----------------------------------------------------------------------
    def ready(self) -> int:
        return self.actor

    def coordinate(self, table: str, groups: Iterable) -> list[list[bytes]]:
        """Apply writes as coordinator. groups: [(kp, hint, [(key, context|None, value|None)])];
        returns the new encoded state of every key, in order."""
        self.calls += 1
        tcfg = self.config.tables[table]
        max_entries = self.config.versioning.max_clock_entries
        now = self._now_ms()
        out = []
        for kp, hint, writes in groups:
            store = self._store(table, kp, hint)
            blobs = []
            for key, ctx, value in writes:
                old = store.get(key)
                state = versioning.decode(old) if old is not None else versioning.EMPTY
                ctx = ctx or {}
                self.counter = versioning.next_counter(state, ctx, self.actor, self.counter)
                new = versioning.update(
                    state, ctx, value, self.actor, self.counter, now, tcfg.conflict, max_entries
                )
                blob = versioning.encode(new)
                store.put(key, blob)
                blobs.append(blob)
            out.append(blobs)
        return out

    def merge(self, table: str, groups: Iterable) -> list[int]:
        """Fold states made elsewhere. groups: [(kp, hint, [(key, blob)])]; returns, per group,
        how many keys changed here."""
        self.calls += 1
        policy = self.config.tables[table].conflict
        max_entries = self.config.versioning.max_clock_entries
        changed = []
        for kp, hint, entries in groups:
            store = self._store(table, kp, hint)
            count = 0
            for key, blob in entries:
                old = store.get(key)
                if old != blob:
                    new = versioning.merge_blobs(old, blob, policy, max_entries)
                    if new != old:
                        store.put(key, new)
                        count += 1
            changed.append(count)
        return changed

    def get(self, table: str, groups: Iterable) -> list[list[Optional[bytes]]]:
        """Stored states. groups: [(kp, [key])]; a fallback answers from its hinted copies too."""
        self.calls += 1
        policy = self.config.tables[table].conflict
        max_entries = self.config.versioning.max_clock_entries
        out = []
        for kp, keys in groups:
            copies = self._copies(table, kp)
            if len(copies) == 1:
                get = copies[0].get
                out.append([get(k) for k in keys])
                continue
            found = []
            for key in keys:
                blob = None
                for store in copies:
                    other = store.get(key)
                    if other is not None:
                        blob = versioning.merge_blobs(blob, other, policy, max_entries)
                found.append(blob)
            out.append(found)
        return out

    def info(self) -> dict:
        """Figures for Store.status(): one row of this vnode."""
        return {
            "partition": self.partition,
            "node": self.node,
            "actor": f"{self.actor:016x}",
            "keys": sum(len(s) for s in self.ranges.values()),
            "bytes": sum(s.nbytes for s in self.ranges.values()),
            "ranges": len(self.ranges),
            "hints_pending": sum(len(s) for s in self.hinted.values()),
            "calls": self.calls,
        }

    def inspect(self, table: str, kp: int, key) -> list[tuple[Optional[int], bytes]]:
        """Every copy of one key here: (hint or None, blob)."""
        found = []
        own = self.ranges.get((table, kp))
        if own is not None and own.get(key) is not None:
            found.append((None, own.get(key)))
        for (t, k, hint), store in self.hinted.items():
            if t == table and k == kp and store.get(key) is not None:
                found.append((hint, store.get(key)))
        return found
