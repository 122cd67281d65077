"""The request state machine of reads and writes (Dynamo §4.5-4.7): the `Router`.

Role: turn a batch of gets or puts on one table into as few vnode calls as possible (one per
vnode per round), wait for R or W of the N replicas of every key range, and repair what it saw
stale. The same Router runs inside each node's `Coordinator` (routing "coordinator") and in a
caller's process (routing "client"), and in the simulator: it speaks only to its transport.

Rules it keeps:
- every call has a deadline (`timeouts.request_ms`); a vnode that times out or errs is marked
  down by this router's local failure detector and probed again after a back-off that doubles
  per consecutive failure (§4.8.1: a local view, never waiting for Ray's own);
- a put is coordinated by the first reachable primary of the key's preference list (a fallback
  only when none is), which makes the new version and returns it; the other replicas merge it.
  A coordinator that timed out is asked once more before the next one is (it may have made a
  version already: asked again, it supersedes it instead of leaving a second copy behind);
- sloppy quorum (§4.6): a down or unreachable primary is replaced by the next healthy fallback
  in walk order, which keeps the write under a hint naming the primary; when no healthy one is
  left, a vnode in back-off is probed before the router settles for fewer; ``strict`` tables
  and ``sloppy=False`` requests use primaries only;
- N copies: a put answers once W replicas hold it and goes on in the background until N
  distinct nodes do (primaries, or fallbacks under hints), each replica that fails or times out
  getting the next fallback (and one that timed out, when none is left, one more try), for
  up to a call deadline per spare fallback after the request's. So whenever N nodes are up and reachable from the router, and the router lives,
  every acknowledged write reaches N of them;
- a read merges the states of R replicas; after answering it waits for the rest until their
  deadline and sends the merged state to every primary that replied stale or missing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from typing import Any, Callable, Iterable, Optional

from ..core import versioning
from ..config import StoreConfig
from ..errors import InvalidArgument, Overloaded, TableNotFound, Unavailable
from ..core.ring import Ring
from .switches import NONE, Switches
from .transport import CallTimeout, Transport, vnode_at


class _RangeJob:
    """One key range of one request: its keys, the vnodes serving it and their answers."""

    __slots__ = ("kp", "keys", "payload", "slots", "spare", "probes", "primaries", "acked",
                 "covered", "replies", "blobs", "coordinator", "tried", "abandoned",
                 "overloaded", "failures")

    def __init__(self, kp: int, primaries: tuple, slots: list, spare: list, probes: list):
        self.kp = kp
        self.keys: list = []
        self.payload: list = []  # writes (key, ctx, value) or, after coordination, (key, blob)
        self.primaries = primaries
        self.slots = slots  # [(vnode, hint)]: the N replicas this request uses
        self.spare = spare  # fallbacks not used yet, in walk order
        self.probes = probes  # (primary in back-off, the fallback standing in for it)
        self.acked: set = set()  # vnodes that hold the write (W counts these)
        self.covered: set = set()  # primaries that hold it, or for which a fallback holds it
        self.replies: list = []  # reads: (vnode, [blob | None])
        self.blobs: Optional[list] = None  # puts: the coordinated states
        self.coordinator: Optional[int] = None
        self.tried: set = set()
        self.abandoned: list = []  # (vnode, hint) coordinators that timed out: maybe applied
        self.overloaded = False  # a replica shed one of its calls
        self.failures: list = []  # "vnode: why" of each failed call, for the error message

    @property
    def acks(self) -> int:
        return len(self.acked)

    def holds(self, vnode: int, hint: Optional[int]) -> None:
        self.acked.add(vnode)
        self.covered.add(vnode if hint is None else hint)

    def substitute(self, failed: int, hint: Optional[int], usable: Callable) -> list[tuple]:
        """The slots that replace a failed one, so that N distinct nodes can still hold the
        write once hints are delivered: the next healthy spare fallback, hinted for the
        intended primary; else a primary in back-off, probed directly, while the fallback
        that stood in for it now also holds the write for the intended primary; else a spare
        in back-off (a probe too). None left: []."""
        self.slots = [s for s in self.slots if s[0] != failed]
        intended = hint if hint is not None else failed
        healthy = [v for v in self.spare if usable(v)]
        if healthy:
            self.spare.remove(healthy[0])
            subs = [(healthy[0], intended)]
        elif self.probes:
            primary, stand_in = self.probes.pop(0)
            subs = [(primary, None)]
            if stand_in != failed and primary != intended:
                subs.append((stand_in, intended))
        elif self.spare:
            subs = [(self.spare.pop(0), intended)]
        else:
            return []
        self.slots += subs
        return subs


class Router:
    def __init__(self, config: StoreConfig, ring: Ring, transport: Transport,
                 origin: Optional[str] = None, switches: Switches = NONE):
        self.config = config
        self.ring = ring
        self.transport = transport
        self.clock = transport.clock
        self.metrics = transport.metrics
        self.origin = origin  # the node this router runs for (None: a client process)
        self.switches = switches
        self._down_until: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._background: set = set()
        self._fetching_ring = False
        self._router_id = transport.rng.getrandbits(62)
        self._requests = 0
        self.inflight = 0  # requests admitted and not yet answered (overload.max_inflight_requests)
        self.latencies_ms: deque = deque(maxlen=512)  # recent requests, for the AE throttle

    def latency_p99_ms(self) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]

    async def settle(self) -> None:
        """Wait for the background work of earlier requests (writes going on to N copies,
        read repairs) to end."""
        while self._background:
            await asyncio.wait(list(self._background))

    # --- membership and local failure detection --------------------------------------------
    def set_ring(self, ring: Ring) -> None:
        """Adopt a newer ring. The handles of the vnodes whose owner changed are forgotten: a
        partition that comes back to a node (a shrink after a grow) gets a new actor at its old
        address, and a kept handle would still be the retired actor's."""
        if ring.version > self.ring.version:
            old, self.ring = self.ring, ring
            for partition, (was, now) in enumerate(zip(old.owners, ring.owners)):
                if was != now:
                    self.transport.forget(vnode_at(was, partition))
                    self.transport.forget(vnode_at(now, partition))

    def _learn_ring(self, vnode: int, version: int) -> None:
        """A reply carried a newer ring version than ours: fetch that ring from the vnode that
        sent it (no polling: replies are how a router hears of membership changes)."""
        if version > self.ring.version and not self._fetching_ring:
            self._fetching_ring = True
            self._keep(self._fetch_ring(vnode))

    async def _fetch_ring(self, vnode: int) -> None:
        try:
            self.set_ring(await self._call(vnode, "ring_view"))
        except Exception:
            pass
        finally:
            self._fetching_ring = False

    def usable(self, vnode: int) -> bool:
        return self._down_until.get(vnode, 0.0) <= self.clock.monotonic()

    def mark_down(self, vnode: int) -> None:
        fd = self.config.failure_detection
        failures = self._failures.get(vnode, 0) + 1
        self._failures[vnode] = failures
        backoff_ms = min(fd.backoff_ms * 2 ** (failures - 1), fd.max_backoff_ms)
        self._down_until[vnode] = self.clock.monotonic() + backoff_ms / 1000
        self.transport.forget(self._address(vnode))  # it may have restarted by the probe

    def mark_up(self, vnode: int) -> None:
        if self._failures.pop(vnode, None) is not None:
            self._down_until.pop(vnode, None)

    def down_vnodes(self) -> list[int]:
        now = self.clock.monotonic()
        return sorted(v for v, t in self._down_until.items() if t > now)

    def _address(self, vnode: int):
        return vnode_at(self.ring.owners[vnode], vnode)

    def _call(self, vnode: int, method: str, *args: Any, timeout_s: Optional[float] = None,
              **kwargs: Any) -> asyncio.Future:
        """Start one vnode call with a deadline; a failure nobody awaits is still retrieved."""
        if timeout_s is None:
            timeout_s = self.config.timeouts.request_ms / 1000
        future = self.transport.call(self._address(vnode), method, *args, timeout_s=timeout_s,
                                     **kwargs)
        future.add_done_callback(_retrieve)
        return future

    def _keep(self, awaitable: Any) -> asyncio.Future:
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    @contextlib.contextmanager
    def _admitted(self, sent_at: Optional[float] = None):
        """Admission control: a request is shed at once past ``max_inflight_requests`` or when
        it queued longer than ``max_queue_ms`` to get here, so the ones admitted keep their
        latency and memory stays bounded."""
        overload = self.config.overload
        if self.inflight >= overload.max_inflight_requests:
            raise Overloaded(f"{overload.max_inflight_requests} requests are in flight at this "
                             "coordinator; retry later")
        queued_ms = 0.0 if sent_at is None else (self.clock.time() - sent_at) * 1000
        if queued_ms > overload.max_queue_ms:
            raise Overloaded(f"the request queued {queued_ms:.0f} ms before a coordinator could "
                             "take it; retry later")
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

    @contextlib.contextmanager
    def _measured(self, op: str, table: str):
        """Latency (for the anti-entropy throttle and the metrics) and outcome of a request."""
        started = self.clock.monotonic()
        outcome = "ok"
        try:
            yield
        except Overloaded:
            outcome = "overloaded"
            raise
        except Unavailable:
            outcome = "unavailable"
            raise
        finally:
            self.record(op, table, (self.clock.monotonic() - started) * 1000, outcome)

    def record(self, op: str, table: str, elapsed_ms: float, outcome: str = "ok") -> None:
        self.latencies_ms.append(elapsed_ms)
        routing = "client" if self.origin is None else "coordinator"
        self.metrics.observe("dynamo_request_latency_ms", elapsed_ms, op=op, table=table,
                             routing=routing)
        self.metrics.count("dynamo_requests_total", op=op, table=table, outcome=outcome)

    # --- planning ----------------------------------------------------------------------------
    def _table(self, table: str):
        try:
            return self.config.tables[table]
        except KeyError:
            raise TableNotFound(f"table {table!r} is not in the store's config") from None

    def _plan(self, keys: Iterable, n: int, sloppy: bool) -> tuple[dict, list]:
        """Group keys by range and choose each range's replicas: healthy primaries, and for
        each primary in back-off the next healthy fallback (sloppy) with a hint naming it, or,
        when none is healthy, the primary itself as a probe. A primary a fallback stands in
        for, and fallbacks in back-off, stay candidates: probed, when a healthy one fails,
        before the request settles for fewer than N."""
        jobs: dict[int, _RangeJob] = {}
        index: list = []
        partition_of = self.ring.partition_of
        for key in keys:
            kp = partition_of(key)
            job = jobs.get(kp)
            if job is None:
                primaries = self.ring.preference_list(kp, n)
                spare = list(self.ring.fallbacks(kp, n)) if sloppy else []
                slots, probes = [], []
                for p in primaries:
                    healthy = next((f for f in spare if self.usable(f)), None)
                    if self.usable(p) or healthy is None:
                        slots.append((p, None))  # healthy, or the best left: probe it
                    else:
                        spare.remove(healthy)
                        slots.append((healthy, p))
                        probes.append((p, healthy))
                job = jobs[kp] = _RangeJob(kp, primaries, slots, spare, probes)
            index.append((job, len(job.keys)))
            job.keys.append(key)
        return jobs, index

    def _deadline(self, calls: int) -> float:
        """A request may spend ``calls`` call deadlines in sequence (a failed call's substitute)."""
        return self.clock.monotonic() + calls * self.config.timeouts.request_ms / 1000

    async def _fan_out(self, table: str, method: str, sends: dict, group: Callable,
                       on_reply: Callable, on_failure: Callable, done: Callable,
                       deadline: float, **extra: Any) -> dict:
        """Send ``sends`` ({vnode: [(job, hint)]}), one call per vnode, until ``done()`` or the
        request's deadline. A call that fails or outlives its deadline marks its vnode down and
        gives each of its jobs a substitute via ``on_failure``.
        Returns the calls still outstanding: {future: (vnode, items)}."""
        pending: dict = {}
        call_s = self.config.timeouts.request_ms / 1000

        def launch(batch: dict) -> None:
            timeout_s = max(0.0, min(call_s, deadline - self.clock.monotonic()))
            # the vnode drops the call unserved once this router has given up on it
            expires_at = self.clock.time() + timeout_s
            for vnode, items in batch.items():
                groups = [group(job, hint) for job, hint in items]
                call = self._call(vnode, method, table, groups, timeout_s=timeout_s,
                                  expires_at=expires_at, **extra)
                pending[call] = (vnode, items)

        launch(sends)
        while pending and not done():
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                break
            finished, _ = await asyncio.wait(pending, timeout=remaining,
                                             return_when=asyncio.FIRST_COMPLETED)
            retry: dict = defaultdict(list)
            for fut in [f for f in list(pending) if f in finished]:  # in the order sent
                vnode, items = pending.pop(fut)
                self._settle(fut, vnode, items, on_reply, on_failure, retry)
            launch(retry)
        return pending

    def _settle(self, fut: asyncio.Future, vnode: int, items: list, on_reply: Callable,
                on_failure: Callable, retry: dict) -> None:
        """One finished call: its replies to ``on_reply``; if it failed, the vnode marked
        down and each of its jobs' substitutes added to ``retry`` ({vnode: [(job, hint)]})."""
        error = fut.exception()
        if error is None and fut.result()[1] is None:
            error = _Dropped(f"vnode {vnode} dropped the call unserved")
        if error is None:
            self.mark_up(vnode)
            ring_version, results = fut.result()
            self._learn_ring(vnode, ring_version)
            for (job, hint), result in zip(items, results):
                on_reply(job, vnode, hint, result)
        elif isinstance(error, Overloaded):
            # Busy, not down: no fallback stands in (it would answer "not found" for keys it
            # does not hold); the request is shed if too few others answer.
            for job, _ in items:
                job.overloaded = True
                job.failures.append(f"vnode {vnode}: overloaded")
        else:
            self.mark_down(vnode)
            for job, hint in items:
                job.failures.append(f"vnode {vnode}: {type(error).__name__}")
                for sub_vnode, sub_hint in on_failure(job, vnode, hint, error):
                    retry[sub_vnode].append((job, sub_hint))

    # --- reads --------------------------------------------------------------------------------
    async def get_many(self, table: str, keys: list, r: Optional[int] = None,
                       sloppy: Optional[bool] = None, partial: bool = False,
                       sent_at: Optional[float] = None) -> Any:
        """The merged encoded state of every key (None when no replica has it), in order.
        ``partial``: instead of raising Unavailable for ranges short of R, return (states,
        {index: Unavailable}) for the keys that missed."""
        tcfg = self._table(table)
        r = _quorum(r, tcfg.r, tcfg.n, "r")
        sloppy = (not tcfg.strict) if sloppy is None else sloppy
        with self._admitted(sent_at), self._measured("get", table):
            return await self._get_many(table, tcfg, keys, r, sloppy, partial)

    async def _get_many(self, table, tcfg, keys, r, sloppy, partial) -> Any:
        jobs, index = self._plan(keys, tcfg.n, sloppy)
        sends: dict = defaultdict(list)
        for job in jobs.values():
            for vnode, hint in job.slots:
                sends[vnode].append((job, hint))

        def on_reply(job, vnode, hint, blobs):
            job.replies.append((vnode, blobs))

        retried: set = set()

        def on_failure(job, vnode, hint, error):
            subs = job.substitute(vnode, hint, self.usable)[:1]  # a read needs one stand-in
            if not subs and isinstance(error, CallTimeout) and (job.kp, vnode) not in retried:
                retried.add((job.kp, vnode))  # slow is not dead: with no spare left, once more
                subs = [(vnode, hint)]
            return subs

        def done():
            return all(len(j.replies) >= r for j in jobs.values())

        pending = await self._fan_out(
            table, "get", sends, lambda job, hint: (job.kp, job.keys), on_reply, on_failure,
            done, self._deadline(2),
        )
        short = [j for j in jobs.values() if len(j.replies) < r]
        if short and not partial:
            raise _unavailable("read", short, r, lambda j: len(j.replies))
        policy = tcfg.conflict
        merged = {kp: _merge_replies(job.replies, policy)
                  for kp, job in jobs.items() if len(job.replies) >= r}
        self.metrics.count("dynamo_siblings_returned_total", table=table,
                           value=sum(_has_siblings(b) for states in merged.values() for b in states))
        if self.config.read_repair:
            self._keep(self._read_repair(table, jobs, pending, policy))
        if not partial:
            return [merged[job.kp][i] for job, i in index]
        return _partial(index, merged, short, r, lambda j: len(j.replies), "read")

    def direct_read(self, table: str, keys: list, r: Optional[int] = None,
                    sloppy: Optional[bool] = None) -> Optional["DirectRead"]:
        """A read whose calls the caller sends and waits for itself (a client's synchronous
        path: no hop to an event loop): its plan when every replica of every range is a
        primary this router holds healthy; None otherwise (the caller runs `get_many`, which
        handles back-off, fallbacks and failures). Bad arguments raise as `get_many` does."""
        tcfg = self._table(table)
        r = _quorum(r, tcfg.r, tcfg.n, "r")
        sloppy = (not tcfg.strict) if sloppy is None else sloppy
        jobs, index = self._plan(keys, tcfg.n, sloppy)
        sends: dict = defaultdict(list)
        for job in jobs.values():
            for vnode, hint in job.slots:
                if hint is not None or not self.usable(vnode):
                    return None
                sends[vnode].append(job)
        return DirectRead(self, table, tcfg.conflict, r, jobs, index, sends)

    async def _read_repair(self, table: str, jobs: dict, pending: dict, policy: str) -> None:
        """Wait for late replies (each call ends by its own deadline), then send the merged
        state to every primary that replied stale or missing."""
        if pending:
            await asyncio.wait(pending)
            for fut, (vnode, items) in pending.items():
                if fut.exception() is None and fut.result()[1] is not None:
                    for (job, _), blobs in zip(items, fut.result()[1]):
                        job.replies.append((vnode, blobs))
        self.send_repairs(table, _repairs(jobs, policy))

    def send_repairs(self, table: str, repairs: dict) -> None:
        """Send each primary that replied stale or missing the merged states ({vnode: groups})."""
        for vnode, groups in repairs.items():
            self.metrics.count("dynamo_read_repairs_total", table=table,
                               value=sum(len(entries) for _, _, entries in groups))
            # a late repair must not land after a tombstone it predates was reaped
            self._call(vnode, "merge", table, groups,
                       expires_at=self.clock.time() + self.config.timeouts.request_ms / 1000)

    # --- writes -------------------------------------------------------------------------------
    async def put_many(self, table: str, writes: list, w: Optional[int] = None,
                       sloppy: Optional[bool] = None, want_states: bool = True,
                       partial: bool = False, sent_at: Optional[float] = None) -> Any:
        """Write ``writes`` [(key, context | None, value bytes | None for a delete)]; returns the
        new encoded state of every key (``want_states``) once W replicas hold it. ``partial``:
        return (states, {index: Unavailable}) instead of raising for ranges short of W."""
        tcfg = self._table(table)
        w = _quorum(w, tcfg.w, tcfg.n, "w")
        sloppy = (not tcfg.strict) if sloppy is None else sloppy
        with self._admitted(sent_at), self._measured("put", table):
            return await self._put_many(table, tcfg, writes, w, sloppy, want_states, partial)

    async def _put_many(self, table, tcfg, writes, w, sloppy, want_states, partial) -> Any:
        jobs, index = self._plan((key for key, _, _ in writes), tcfg.n, sloppy)
        for (job, _), write in zip(index, writes):
            job.payload.append(write)
        deadline = self._deadline(3)
        self._requests += 1
        request = (self._router_id, self._requests)
        await self._coordinate(table, jobs, deadline, request)
        await self._replicate(table, jobs, w, tcfg.n, deadline, request)
        short = [j for j in jobs.values() if j.acks < w]
        if short and not partial:
            raise _unavailable("write", short, w, lambda j: j.acks)
        if partial:
            states = {kp: job.blobs for kp, job in jobs.items() if job.acks >= w}
            return _partial(index, states, short, w, lambda j: j.acks, "write")
        if not want_states:
            return None
        return [job.blobs[i] for job, i in index]

    def _next_coordinator(self, job: _RangeJob) -> Optional[tuple]:
        """The first untried primary slot, else the first untried fallback slot."""
        untried = [s for s in job.slots if s[0] not in job.tried]
        untried.sort(key=lambda s: s[1] is not None)
        return untried[0] if untried else None

    async def _coordinate(self, table: str, jobs: dict, deadline: float, request: tuple) -> None:
        sends: dict = defaultdict(list)
        for job in jobs.values():
            slot = self._next_coordinator(job)
            if slot is not None:
                job.tried.add(slot[0])
                sends[slot[0]].append((job, slot[1]))

        def on_reply(job, vnode, hint, blobs):
            job.blobs, job.coordinator = blobs, vnode
            job.holds(vnode, hint)
            if hint is not None:
                self.metrics.count("dynamo_hints_stored_total", len(job.keys), table=table)

        retried: set = set()

        def on_failure(job, vnode, hint, error):
            if isinstance(error, CallTimeout) and not isinstance(error, _Dropped):
                job.abandoned.append((vnode, hint))  # it may hold a dot of this write
            if isinstance(error, CallTimeout) and (job.kp, vnode) not in retried:
                # It may have applied the write and only its reply is late or lost: coordinated
                # again there, the write supersedes its own first dot (an equal value). Moving
                # on at once would leave that dot behind as a second, unseen copy of the write,
                # which a later delete's context would not cover.
                retried.add((job.kp, vnode))
                return [(vnode, hint)]
            job.substitute(vnode, hint, self.usable)
            slot = self._next_coordinator(job)
            if slot is None:
                return []
            job.tried.add(slot[0])
            return [slot]

        await self._fan_out(
            table, "coordinate", sends, lambda job, hint: (job.kp, hint, job.payload),
            on_reply, on_failure, lambda: all(j.blobs is not None for j in jobs.values()),
            deadline, request=request,
        )

    async def _replicate(self, table: str, jobs: dict, w: int, n: int, deadline: float,
                         request: tuple) -> None:
        """Send the coordinated states to the other replicas; return once every range has W
        acknowledgements (or none can get them), leaving the rest to go on in the background
        until N distinct nodes hold each range's write."""
        sends: dict = defaultdict(list)
        for job in jobs.values():
            if job.blobs is None:
                continue
            # a large state goes into the object store once, for all the replicas it goes to
            job.payload = [(k, self.transport.share(b)) for k, b in zip(job.keys, job.blobs)]
            for vnode, hint in job.slots:
                if vnode != job.coordinator:
                    sends[vnode].append((job, hint))
        written = [j for j in jobs.values() if j.blobs is not None]
        self._revoke_abandoned(table, written, request, deadline)

        def at_quorum() -> bool:
            return all(j.acks >= w for j in written)

        def all_copies() -> bool:
            return all(len(j.covered) >= n for j in written)

        def on_reply(job, vnode, hint, count):
            job.holds(vnode, hint)
            if hint is not None:
                self.metrics.count("dynamo_hints_stored_total", len(job.keys), table=table)

        retried: set = set()

        def on_failure(job, vnode, hint, error):
            subs = job.substitute(vnode, hint, self.usable)
            if not subs and isinstance(error, CallTimeout) and (job.kp, vnode) not in retried:
                retried.add((job.kp, vnode))  # slow is not dead: with no spare left, once more
                subs = [(vnode, hint)]
                job.slots += subs
            return subs

        def group(job, hint):
            return job.kp, hint, job.payload

        pending = await self._fan_out(table, "merge", sends, group, on_reply, on_failure,
                                      at_quorum, deadline)
        if self.switches.stop_at_w or all_copies():  # stop_at_w: the negative control
            return
        # The rest goes on after the answer: late replies count, and a call that fails gets a
        # substitute in the background, which may outlive the request by a call deadline per
        # spare fallback (and one for a last retry of a replica that timed out).
        spares = max((len(j.spare) for j in written), default=0)
        copies_deadline = deadline + (spares + 1) * self.config.timeouts.request_ms / 1000

        def late(fut: asyncio.Future, vnode: int, items: list) -> None:
            if fut.cancelled():
                return
            retry: dict = defaultdict(list)
            self._settle(fut, vnode, items, on_reply, on_failure, retry)
            if retry and not all_copies():
                self._keep(self._fan_out(table, "merge", retry, group, on_reply, on_failure,
                                         all_copies, copies_deadline))

        for fut, (vnode, items) in pending.items():
            fut.add_done_callback(lambda f, v=vnode, i=items: late(f, v, i))


    def _revoke_abandoned(self, table: str, written: list, request: tuple,
                          deadline: float) -> None:
        """A coordinator that timed out may have made a dot of the write before the one that
        answered did (its reply was lost or late): tell it to drop that dot. Otherwise it
        would stay behind as a second, unseen copy of the write, which a later delete with
        this write's context would not cover. In the background, retried (a revoke carries no
        state, so it may land late) for up to 20 call deadlines."""
        abandoned = sorted({vnode for job in written for vnode, _ in job.abandoned
                            if vnode != job.coordinator})
        call_s = self.config.timeouts.request_ms / 1000

        async def revoke(vnode: int) -> None:
            until = deadline + 20 * call_s
            while self.clock.monotonic() < until:
                try:
                    await self._call(vnode, "revoke", table, request)
                    return
                except Exception:
                    await self.clock.sleep(call_s)

        for vnode in abandoned:
            self._keep(revoke(vnode))


class Coordinator:
    """The coordinator of one node (stateless: a Router whose origin is that node). The
    runtime wraps it with ``ray.remote``; the simulator calls it directly."""

    def __init__(self, node: str, config: StoreConfig, ring: Ring, transport: Transport,
                 switches: Switches = NONE):
        self.router = Router(config, ring, transport, origin=node, switches=switches)

    def ready(self) -> bool:
        return True

    async def get_many(self, table: str, keys: list, r=None, sloppy=None, partial=False,
                       sent_at=None) -> Any:
        return await self.router.get_many(table, keys, r, sloppy, partial, sent_at)

    async def put_many(self, table: str, writes: list, w=None, sloppy=None,
                       want_states: bool = True, partial: bool = False, sent_at=None) -> Any:
        return await self.router.put_many(table, writes, w, sloppy, want_states, partial, sent_at)

    def latency_p99_ms(self) -> float:
        return self.router.latency_p99_ms()

    def set_unreachable(self, nodes: list) -> None:
        self.router.transport.set_unreachable(frozenset(nodes))

    def set_ring(self, ring: Ring) -> None:
        self.router.set_ring(ring)

    def ring_version(self) -> int:
        return self.router.ring.version


class DirectRead:
    """One read planned by `Router.direct_read`: the calls to send ({vnode: its ranges}), the
    replies taken so far, and from them the answer and the repairs. It changes no router state
    but the latency record of its answer: the caller reports what it learnt (a vnode down, a
    newer ring) to the router's own loop, which owns the rest."""

    def __init__(self, router: Router, table: str, policy: str, r: int, jobs: dict, index: list,
                 sends: dict):
        self.router, self.table, self.policy, self.r = router, table, policy, r
        self.jobs, self.index, self.sends = jobs, index, sends
        self.started = router.clock.monotonic()
        self.ring_version, self.ring_vnode = 0, None  # the newest a reply carried, and whose

    def calls(self) -> list[tuple]:
        """(vnode, address, groups) of each call: one per vnode."""
        return [(vnode, self.router._address(vnode), [(job.kp, job.keys) for job in jobs])
                for vnode, jobs in self.sends.items()]

    def take(self, vnode: int, reply: tuple) -> bool:
        """A vnode's reply (ring version, states per range); False if it dropped the call."""
        ring_version, results = reply
        if results is None:
            return False
        if ring_version > self.ring_version:
            self.ring_version, self.ring_vnode = ring_version, vnode
        for job, blobs in zip(self.sends[vnode], results):
            job.replies.append((vnode, blobs))
        return True

    def quorate(self) -> bool:
        return all(len(job.replies) >= self.r for job in self.jobs.values())

    def answer(self) -> list:
        """The merged state of every key, in order; recorded as the router records a read."""
        merged = {kp: _merge_replies(job.replies, self.policy) for kp, job in self.jobs.items()}
        self.router.metrics.count(
            "dynamo_siblings_returned_total", table=self.table,
            value=sum(_has_siblings(b) for states in merged.values() for b in states))
        self.router.record("get", self.table,
                           (self.router.clock.monotonic() - self.started) * 1000)
        return [merged[job.kp][i] for job, i in self.index]

    def repairs(self) -> dict:
        return _repairs(self.jobs, self.policy)


# --- helpers ------------------------------------------------------------------------------------
def _repairs(jobs: dict, policy: str) -> dict:
    """{vnode: [(kp, None, [(key, merged state)])]} for every primary that replied a state
    older than the merge of the replies (or none)."""
    repairs: dict = defaultdict(list)
    for job in jobs.values():
        if not job.replies:
            continue
        merged = _merge_replies(job.replies, policy)
        for vnode, blobs in job.replies:
            if vnode not in job.primaries:
                continue
            stale = [(k, m) for k, b, m in zip(job.keys, blobs, merged) if m is not None and b != m]
            if stale:
                repairs[vnode].append((job.kp, None, stale))
    return repairs


class _Dropped(CallTimeout):
    """The vnode dropped the call unserved (its deadline had passed there): nothing applied."""


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _quorum(value: Optional[int], default: int, n: int, name: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n:
        raise InvalidArgument(f"{name}={value!r} must be an integer from 1 to n={n}")
    return value


def _has_siblings(blob: Optional[bytes]) -> bool:
    """Several live values? The compact encoding (a lone sibling) answers without decoding."""
    if blob is None or blob[0] != 0x92:
        return False
    return len(versioning.values(versioning.decode(blob))) > 1


def _merge_replies(replies: list, policy: str) -> list:
    merged = list(replies[0][1])
    for _, blobs in replies[1:]:
        for i, blob in enumerate(blobs):
            if blob != merged[i]:
                merged[i] = versioning.merge_blobs(merged[i], blob, policy)
    return merged


def _unavailable(what: str, short: list, needed: int, got: Callable) -> Unavailable:
    first = short[0]
    # Overloaded promises nothing was stored: not so once a coordinator applied the write
    if any(job.overloaded and job.blobs is None for job in short):
        return Overloaded(f"{what} of {first.keys[0]!r} was shed: its replicas' queues are full "
                          f"({got(first)} of {needed} answered)")
    keys = [k for job in short for k in job.keys]
    why = sorted({f for job in short for f in job.failures})
    return Unavailable(
        f"{what} of {first.keys[0]!r} reached {got(first)} of the {needed} replicas it needs"
        + (f" ({len(keys)} keys in {len(short)} ranges missed their quorum)" if len(keys) > 1 else "")
        + (f"; failed: {', '.join(why[:6])}" if why else ""),
        key=first.keys[0], keys=keys, needed=needed, got=got(first),
    )


def _partial(index: list, states: dict, short: list, needed: int, got: Callable,
             what: str) -> tuple[list, dict]:
    """(state per key or None, {position: Unavailable}) for a batch some ranges of which
    missed their quorum."""
    errors = {id(job): _unavailable(what, [job], needed, got) for job in short}
    results, failed = [], {}
    for position, (job, i) in enumerate(index):
        if id(job) in errors:
            results.append(None)
            failed[position] = errors[id(job)]
        else:
            results.append(states[job.kp][i] if states.get(job.kp) is not None else None)
    return results, failed
