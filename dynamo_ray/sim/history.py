"""Histories and checkers, after Jepsen: what clients saw, and whether the store kept its word.

Role: clients record every operation as an *invoke* followed by *ok* (it happened), *fail* (it
certainly did not) or *info* (unknown: a timeout, or a write that missed its quorum but may
have reached a replica). Checkers read the history, and the final state read after the faults
are healed, and count violations:

- `check_set`: adds of unique elements to a set (the shopping cart). Lost: acknowledged adds
  missing from the final read. Unexpected: elements in the final read that nobody tried to add.
  Recovered: adds that were not acknowledged (info or fail) but survived.
- `check_register`: single-writer registers under a strict quorum with R + W > N. A read may
  not return a value older than the newest one acknowledged before the read began.
- `check_siblings`: a read never returns more siblings than there could be concurrent writes
  (the key's writers, plus its unacknowledged writes), and a read that follows a resolving
  write, with every other write to the key settled before it, returns one (strict quorum).

Pure: no Ray, no store; the chaos job (`jobs/chaos.py`) drives the store and feeds these.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Optional


@dataclass
class Op:
    index: int
    process: int
    type: str  # invoke | ok | fail | info
    f: str  # add | read | write | resolve
    key: Any
    value: Any = None
    time_s: float = 0.0
    error: Optional[str] = None


class History:
    """A thread-safe, append-only log of operations."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        """``now``: the clock operations are timed by (the simulator passes its own)."""
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._now = now
        self._started = now()

    def _append(self, **fields: Any) -> Op:
        with self._lock:
            op = Op(index=next(self._counter), time_s=self._now() - self._started, **fields)
            self.ops.append(op)
            return op

    def invoke(self, process: int, f: str, key: Any, value: Any = None) -> Op:
        return self._append(process=process, type="invoke", f=f, key=key, value=value)

    def complete(self, invoked: Op, type: str, value: Any = None, error: Optional[str] = None) -> Op:
        return self._append(process=invoked.process, type=type, f=invoked.f, key=invoked.key,
                            value=invoked.value if value is None else value, error=error)

    def pairs(self) -> list[tuple[Op, Optional[Op]]]:
        """(invoke, completion or None) for every operation, in invocation order."""
        open_ops: dict[int, Op] = {}
        result: list = []
        slots: dict[int, int] = {}
        for op in self.ops:
            if op.type == "invoke":
                open_ops[op.process] = op
                slots[op.process] = len(result)
                result.append([op, None])
            elif op.process in open_ops:
                result[slots[op.process]][1] = op
                del open_ops[op.process]
        return [(a, b) for a, b in result]

    def to_json(self) -> list[dict]:
        return [asdict(op) for op in self.ops]


LOSSY_FAULTS = ("crash", "machine")  # faults that destroy a replica's memory


def loss_windows(history: History, repair_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds of the faults that destroy replicas' memory, each extended by
    ``repair_s`` (the time anti-entropy takes to refill a replica that came back empty). A
    crash can take one of a write's W copies, so quorum intersection promises nothing across
    it: register and resolve checks skip reads that overlap a window (counted as skipped)."""
    windows = []
    for invoke, done in history.pairs():
        if invoke.f == "fault" and invoke.key in LOSSY_FAULTS:
            end = done.time_s if done is not None else float("inf")
            windows.append((invoke.time_s, end + repair_s))
    return windows


def _overlaps(windows: list, start: Op, end: Op) -> bool:
    return any(a <= end.time_s and start.time_s <= b for a, b in windows)


@dataclass
class SetResult:
    attempted: int = 0
    acknowledged: int = 0
    lost: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    recovered: list = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.lost and not self.unexpected


def check_set(history: History, final: dict[Any, Iterable]) -> SetResult:
    """``final``: key -> the elements a read after healing found (union of its siblings)."""
    out = SetResult()
    present = {(k, e) for k, elements in final.items() for e in elements}
    attempted, acked, unsure = set(), set(), set()
    for invoke, done in history.pairs():
        if invoke.f != "add":
            continue
        element = (invoke.key, invoke.value)
        attempted.add(element)
        if done is not None and done.type == "ok":
            acked.add(element)
        else:
            unsure.add(element)
    out.attempted, out.acknowledged = len(attempted), len(acked)
    out.lost = sorted(map(str, acked - present))
    out.unexpected = sorted(map(str, present - attempted))
    out.recovered = sorted(map(str, unsure & present))
    return out


@dataclass
class RegisterResult:
    reads: int = 0
    skipped: int = 0
    stale: list = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.stale


def check_register(history: History, keys: Iterable, repair_s: float = 10.0) -> RegisterResult:
    """Writes carry increasing integers per key (of ``keys``) from one writer. A read (ok)
    returns the list of values it saw; its greatest must be at least the greatest value whose
    write was acknowledged before the read was invoked."""
    out = RegisterResult()
    keys = set(keys)
    pairs = [(i, d) for i, d in history.pairs() if i.key in keys]
    acked_at: list[tuple[int, Any, int]] = []  # (completion index, key, value)
    for invoke, done in pairs:
        if invoke.f == "write" and done is not None and done.type == "ok":
            acked_at.append((done.index, invoke.key, invoke.value))
    windows = loss_windows(history, repair_s)
    for invoke, done in pairs:
        if invoke.f != "read" or done is None or done.type != "ok":
            continue
        if _overlaps(windows, invoke, done):
            out.skipped += 1
            continue
        out.reads += 1
        floor = max((v for i, k, v in acked_at if k == invoke.key and i < invoke.index),
                    default=None)
        seen = max(done.value, default=None) if done.value else None
        if floor is not None and (seen is None or seen < floor):
            out.stale.append({"key": invoke.key, "read": done.value, "acknowledged": floor,
                              "at_s": round(invoke.time_s, 3)})
    return out


@dataclass
class SiblingResult:
    reads: int = 0
    resolves_checked: int = 0
    resolves_skipped: int = 0
    max_siblings: int = 0
    too_many: list = field(default_factory=list)
    unresolved: list = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.too_many and not self.unresolved


def check_siblings(history: History, keys: Iterable, repair_s: float = 10.0) -> SiblingResult:
    """A read's sibling count (its value) must not exceed the writers that could be concurrent
    with it: the processes that write the key, plus every earlier write to it that was not
    acknowledged (it may live on as a sibling nobody's context covered). A read right after a
    resolving write by the same process, with no other write to the key invoked from the
    resolve's invocation to the read's completion, must return exactly one sibling."""
    out = SiblingResult()
    keys = set(keys)
    pairs = [(i, d) for i, d in history.pairs() if i.key in keys]
    writes = [(i, d) for i, d in pairs if i.f in ("write", "resolve", "add")]
    writers: dict[Any, set] = {}
    for i, _ in writes:
        writers.setdefault(i.key, set()).add(i.process)
    for invoke, done in pairs:
        if invoke.f != "read" or done is None or done.type != "ok":
            continue
        out.reads += 1
        count = done.value if isinstance(done.value, int) else len(done.value)  # or the values
        out.max_siblings = max(out.max_siblings, count)
        unsure = sum(1 for i, d in writes if i.key == invoke.key and i.index < done.index
                     and (d is None or d.type != "ok"))
        bound = len(writers.get(invoke.key, ())) + unsure
        if count > max(bound, 1):
            out.too_many.append({"key": invoke.key, "siblings": count, "bound": bound})
    windows = loss_windows(history, repair_s)
    by_process: dict[int, list] = {}
    for invoke, done in pairs:
        by_process.setdefault(invoke.process, []).append((invoke, done))
    for ops in by_process.values():
        for (seen, _), (w_inv, w_done), (r_inv, r_done) in zip(ops, ops[1:], ops[2:]):
            if (w_inv.f != "resolve" or w_done is None or w_done.type != "ok"
                    or r_inv.f != "read" or r_done is None or r_done.type != "ok"
                    or r_inv.key != w_inv.key or seen.f != "read" or seen.key != w_inv.key):
                continue
            # quiet: every other write to the key invoked before the check read completed was
            # acknowledged before the read whose context the resolve wrote with began
            quiet = all(
                d is not None and d.type == "ok" and d.index < seen.index
                for i, d in writes
                if i.key == w_inv.key and i is not w_inv and i.index < r_done.index
            )
            if not quiet:
                continue
            if _overlaps(windows, w_inv, r_done):
                out.resolves_skipped += 1
                continue
            out.resolves_checked += 1
            if (r_done.value if isinstance(r_done.value, int) else len(r_done.value)) != 1:
                out.unresolved.append({"key": w_inv.key, "siblings": r_done.value})
    return out
