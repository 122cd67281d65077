"""Versions of one key: dotted version vectors in their causal-container form (DESIGN §3).

A key's state on a replica is a *clock* (actor id -> (counter, timestamp)): every event of the
key this replica has seen, and the *siblings*: the values still live, each tagged with the dot
(actor, counter) that created it and that dot's wall-clock timestamp. A value of ``None`` is a
tombstone (a delete). This is the dotted causal container of Almeida et al.; Riak's DVVSet is
its compacted form. It tracks causality per sibling, so concurrent writes through one replica
stay siblings instead of exploding (plain vector clocks) or being lost (last-write-wins).

Actors are vnode ids. A vnode draws its counters from one per-incarnation sequence and takes a
fresh id whenever it starts without its data or drops data it still holds for others, so:
- two different values never share one dot (the riak kv679 data loss);
- a clock entry (a, n) covers every event a made for this key up to n.

Laws the unit tests pin down:
- a put with no context is concurrent with every stored version: it adds a sibling, except
  that it supersedes the siblings it makes redundant: those holding an equal value (equal
  `codec.payload`, whatever their expiry) and, when it writes a value, those holding none (a
  tombstone, or a value whose expiry has passed). Its clock covers their dots, so no replica
  keeps them, and no distinct value is lost: state stays bounded by the distinct concurrent
  values, however often the same value is written blind;
- a put with the context of a read replaces exactly the siblings that read returned;
- writes on both sides of a partition are siblings after the merge; none is lost;
- merge is commutative, associative and idempotent.

A value whose expiry (see `codec`) has passed is turned into a tombstone of the same dot by
`expire`; a merge that meets one dot with and without its value keeps the tombstone, so
replicas converge whichever expires it first, and the tombstone's clock keeps older versions
on stale replicas from coming back.

Past ``max_entries`` clock entries the oldest (by timestamp) that names no live sibling and is
older than ``min_age_ms`` is pruned when a write adds an entry (Dynamo §4.4, with Riak's age
floor): it can only cause a false conflict, never a lost sibling.

Pure: no Ray import; time and actor ids are passed in.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Optional

import msgpack

from .codec import expired, pack as _pack, payload

POLICIES = ("siblings", "lww")


class Sibling(NamedTuple):
    actor: int
    counter: int
    ts_ms: int
    value: Optional[bytes]  # None: tombstone

    @property
    def dot(self) -> tuple[int, int]:
        return (self.actor, self.counter)


class KeyState(NamedTuple):
    clock: dict  # actor -> (counter, ts_ms)
    siblings: tuple  # of Sibling


EMPTY = KeyState({}, ())


def _age(s: Sibling) -> tuple[int, int, int]:
    return (s.ts_ms, s.actor, s.counter)


def _covered(clock: Mapping, sibling: Sibling) -> bool:
    entry = clock.get(sibling.actor)
    return entry is not None and entry[0] >= sibling.counter


def _join_clocks(a: Mapping, b: Mapping) -> dict:
    out = dict(a)
    for actor, entry in b.items():
        mine = out.get(actor)
        if mine is None or entry[0] > mine[0] or (entry[0] == mine[0] and entry[1] > mine[1]):
            out[actor] = entry
    return out


def next_counter(state: KeyState, context: Mapping[int, int], actor: int, floor: int) -> int:
    """The counter of the next dot of ``actor``: above its own sequence (``floor``), its entry in
    the stored clock and in the context (so a dot is never reused)."""
    stored = state.clock.get(actor, (0, 0))[0]
    return max(floor, stored, context.get(actor, 0)) + 1


def update(
    state: KeyState,
    context: Mapping[int, int] | None,
    value: Optional[bytes],
    actor: int,
    counter: int,
    now_ms: int,
    policy: str = "siblings",
    max_entries: int = 10,
    min_age_ms: int = 0,
) -> KeyState:
    """A write coordinated at ``actor``: drop exactly the siblings the context covers, add the
    new value under dot (actor, counter). Under ``lww`` the new value replaces everything and
    is stamped after every version it replaces, so a write never loses to what it overwrote.
    The clock is pruned here, where entries are added (see `prune`)."""
    context = context or {}
    if policy == "lww":
        now_ms = max(now_ms, latest_ts_ms(state) + 1)
        kept: tuple = ()
    else:
        new = None if value is None else payload(value)
        kept = tuple(s for s in state.siblings if context.get(s.actor, 0) < s.counter
                     and not _superseded(s.value, new, now_ms))
    clock = dict(state.clock)
    for a, n in context.items():
        mine = clock.get(a)
        if mine is None or mine[0] < n:
            clock[a] = (n, now_ms)
    clock[actor] = (counter, now_ms)
    new = KeyState(clock, tuple(sorted(kept + (Sibling(actor, counter, now_ms, value),), key=_age)))
    return prune(new, max_entries, now_ms, min_age_ms)


def _superseded(old: Optional[bytes], new: Optional[bytes | memoryview], now_ms: int) -> bool:
    """Does a write of payload ``new`` (None: a delete) make a sibling holding ``old`` redundant?"""
    if old is None or expired(old, now_ms):
        return True  # a tombstone or a dead value: the new dot's clock still covers its dot
    return new is not None and payload(old) == new


def _same_dot_winner(a: Sibling, b: Sibling) -> Sibling:
    """One dot, two contents: only `expire` makes these, so the tombstone wins; ties by bytes
    keep the choice order-free."""
    if a == b or a.value is None:
        return a
    if b.value is None:
        return b
    return max(a, b, key=lambda s: s.value)


def merge(a: KeyState, b: KeyState, policy: str = "siblings") -> KeyState:
    """Join of two replicas' states: a sibling survives unless the other side's clock covers
    it without holding it (then the other side saw it overwritten). Under ``lww`` the newest
    sibling of either side wins, causality aside (Cassandra's rule: it is what loses writes
    under concurrency and clock skew, and it is order-free, so replicas agree)."""
    if a is b or a == b:
        return a
    if policy == "lww":
        both = a.siblings + b.siblings
        kept = [max(both, key=lambda s: (*_age(s), s.value is None))] if both else []
    else:
        by_dot_b = {s.dot: s for s in b.siblings}
        dots_a = {s.dot for s in a.siblings}
        kept = [_same_dot_winner(s, by_dot_b[s.dot]) if s.dot in by_dot_b else s
                for s in a.siblings if s.dot in by_dot_b or not _covered(b.clock, s)]
        kept += [s for s in b.siblings if s.dot not in dots_a and not _covered(a.clock, s)]
        kept.sort(key=_age)
    return KeyState(_join_clocks(a.clock, b.clock), tuple(kept))


def prune(state: KeyState, max_entries: int, now_ms: int = 0, min_age_ms: int = 0) -> KeyState:
    """Drop the oldest clock entries past ``max_entries``, never one that names a live sibling
    nor one younger than ``min_age_ms`` (Riak's rule: a recent entry may still be needed to
    recognise a stale replica's sibling as overwritten; pruning it would bring that back)."""
    if len(state.clock) <= max_entries:
        return state
    live = {s.actor for s in state.siblings}
    cutoff = now_ms - min_age_ms
    removable = sorted((ts, a) for a, (_, ts) in state.clock.items()
                       if a not in live and (not min_age_ms or ts < cutoff))
    clock = dict(state.clock)
    for _, actor in removable[: len(clock) - max_entries]:
        del clock[actor]
    return KeyState(clock, state.siblings)


def expire(state: KeyState, now_ms: int) -> KeyState:
    """``state`` with every value whose expiry has passed turned into a tombstone of the same
    dot (``state`` itself when none has)."""
    if not any(s.value is not None and expired(s.value, now_ms) for s in state.siblings):
        return state
    return KeyState(state.clock, tuple(
        s._replace(value=None) if s.value is not None and expired(s.value, now_ms) else s
        for s in state.siblings))


def values(state: KeyState) -> list[bytes]:
    """The distinct live values (tombstones left out), oldest first. Siblings holding equal
    bytes (a write retried through another coordinator) are one value to the reader."""
    return list(dict.fromkeys(s.value for s in state.siblings if s.value is not None))


def is_deleted(state: KeyState) -> bool:
    """True when no live value remains (absent, or only tombstones)."""
    return all(s.value is None for s in state.siblings)


def context(state: KeyState) -> dict[int, int]:
    """The causal context a read hands back on the next put: actor -> counter."""
    return {a: n for a, (n, _) in state.clock.items()}


def descends(a: Mapping[int, int], b: Mapping[int, int]) -> bool:
    """True when context ``a`` has seen every event ``b`` has."""
    return all(a.get(actor, 0) >= n for actor, n in b.items())


def latest_ts_ms(state: KeyState) -> int:
    return max((s.ts_ms for s in state.siblings), default=0)


# --- encoding: one msgpack blob per key replica -------------------------------------------------
# General form: [[a, n, ts, ...clock], [a, n, ts, value, ...siblings]].
# Compact form, the common case of one sibling whose dot is the clock's only entry: [a, n, ts, v].
# Canonical: clock entries sorted by actor and siblings by age, so equal states are equal bytes.


def encode(state: KeyState) -> bytes:
    clock, siblings = state.clock, state.siblings
    if len(siblings) == 1 and len(clock) == 1:
        s = siblings[0]
        if clock.get(s.actor) == (s.counter, s.ts_ms):
            return _pack([s.actor, s.counter, s.ts_ms, s.value])
    flat_clock: list = []
    for a in sorted(clock):
        flat_clock += (a, *clock[a])
    flat_siblings: list = []
    for s in sorted(siblings, key=_age):
        flat_siblings += s
    return _pack([flat_clock, flat_siblings])


def decode(blob: bytes) -> KeyState:
    parts = msgpack.unpackb(blob, raw=False)
    if len(parts) == 4:
        a, n, ts, v = parts
        return KeyState({a: (n, ts)}, (Sibling(a, n, ts, v),))
    flat_clock, flat_siblings = parts
    clock = {flat_clock[i]: (flat_clock[i + 1], flat_clock[i + 2]) for i in range(0, len(flat_clock), 3)}
    siblings = tuple(
        Sibling(*flat_siblings[i : i + 4]) for i in range(0, len(flat_siblings), 4)
    )
    return KeyState(clock, siblings)


def merge_blobs(a: Optional[bytes], b: Optional[bytes], policy: str = "siblings") -> Optional[bytes]:
    """Merge two encoded states; equal bytes (the common case) cost no decoding."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    merged = merge(decode(a), decode(b), policy)
    return encode(merged)


def encode_context(ctx: Mapping[int, int]) -> bytes:
    flat: list = []
    for a, n in sorted(ctx.items()):
        flat += (a, n)
    return msgpack.packb(flat)


def decode_context(blob: bytes) -> dict[int, int]:
    flat = msgpack.unpackb(blob)
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
