"""How a table's requests reach the store: through a node's coordinator, or from the caller.

Role (Dynamo §4.5, §6.4): two ways to run the request state machine (`protocol.router.Router`):
- ``coordinator`` (default): send the request to the coordinator actor of a node (``via``'s, or
  the node of the first key's first replica), failing over to the next node if it is gone;
- ``client`` (the paper's client-driven coordination): run the Router in this process, on a
  background event loop, and call the vnodes directly: one hop fewer.
Both expose the same two calls, `get_many` and `put_many`, synchronously and as coroutines.
`Coalescer` batches the single-key requests that coroutines make concurrently into one call.

Must not: let a Ray exception through (they become `Unavailable` or `DynamoError`), or wait
on a call without a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any, Optional

import ray

from ..runtime import placement
from ..protocol.router import Router
from ..runtime.transport import RayTransport
from ..errors import DynamoError, Overloaded, Unavailable


def rpc_timeout_s(config) -> float:
    # A router spends at most three call deadlines on a request; allow for queueing too.
    return 3 * config.timeouts.request_ms / 1000 + 5.0


class CoordinatorRoute:
    """Requests through the coordinator actors of the store's nodes."""

    def __init__(self, store: Any):
        self.store = store
        self._handles: dict[str, tuple] = {}
        self._round_robin = itertools.count()
        self._inflight = 0  # coroutine requests of this process awaiting a coordinator
        self._inflight_lock = threading.Lock()

    def _coordinator(self, node: str) -> Optional[Any]:
        """The coordinator of ``node``; a node found gone is not looked up again for a second."""
        cached = self._handles.get(node)
        if cached is not None and (cached[0] is not None or time.monotonic() < cached[1]):
            return cached[0]
        handle = placement.lookup(placement.coordinator_actor_name(self.store.name, node))
        self._handles[node] = (handle, time.monotonic() + 1.0)
        return handle

    def forget(self) -> None:
        self._handles.clear()

    def _order(self, first_key: Any, via: Optional[str]) -> list[str]:
        if via is not None:
            return [via]
        ring = self.store.ring
        nodes = list(ring.nodes)
        start_at = (nodes.index(ring.owners[ring.partition_of(first_key)])
                    if first_key is not None else next(self._round_robin) % len(nodes))
        return nodes[start_at:] + nodes[:start_at]

    def call(self, method: str, args: tuple, first_key: Any = None, via: Optional[str] = None) -> Any:
        timeout = rpc_timeout_s(self.store.config)
        failures = []
        for node in self._order(first_key, via):
            handle = self._coordinator(node)
            if handle is None:
                failures.append(f"{node}: no coordinator")
                continue
            try:
                call = getattr(handle, method).remote(*args, sent_at=time.time())
                return ray.get(call, timeout=timeout)
            except Exception as e:
                self._failed(node, e, failures, timeout)
        raise _no_coordinator(failures, first_key)

    async def acall(self, method: str, args: tuple, first_key: Any = None,
                    via: Optional[str] = None) -> Any:
        """As `call`, for coroutines. Past ``overload.max_inflight_requests`` of them in flight
        from this process, a request is shed here, before it costs the store anything."""
        limit = self.store.config.overload.max_inflight_requests
        with self._inflight_lock:
            if self._inflight >= limit:
                raise Overloaded(f"{limit} requests from this process are in flight; retry later")
            self._inflight += 1
        try:
            return await self._acall(method, args, first_key, via)
        finally:
            with self._inflight_lock:
                self._inflight -= 1

    async def _acall(self, method: str, args: tuple, first_key: Any, via: Optional[str]) -> Any:
        timeout = rpc_timeout_s(self.store.config)
        failures = []
        for node in self._order(first_key, via):
            handle = self._coordinator(node)
            if handle is None:
                failures.append(f"{node}: no coordinator")
                continue
            try:
                call = getattr(handle, method).remote(*args, sent_at=time.time())
                return await asyncio.wait_for(call, timeout)
            except Exception as e:
                self._failed(node, e, failures, timeout)
        raise _no_coordinator(failures, first_key)

    def _failed(self, node: str, error: Exception, failures: list, timeout: float) -> None:
        """Raise what the coordinator raised; note a coordinator that is gone or silent."""
        if isinstance(error, ray.exceptions.RayTaskError):
            if isinstance(error.cause, DynamoError):
                raise error.cause from None
            raise DynamoError(f"coordinator on {node} failed: {error.cause!r}") from None
        if isinstance(error, (ray.exceptions.GetTimeoutError, asyncio.TimeoutError)):
            failures.append(f"{node}: no answer within {timeout:.1f}s")
            return
        if isinstance(error, ray.exceptions.RayError):
            self._handles[node] = (None, time.monotonic() + 1.0)
            failures.append(f"{node}: {type(error).__name__}")
            return
        raise error


def _take(read: Any, calls: dict, ready: list) -> list:
    """Hand the ``ready`` replies to ``read``; the vnodes whose call failed or was dropped."""
    failed = []
    for ref in ready:
        try:
            reply = ray.get(ref, timeout=0)
        except Exception:
            failed.append(calls[ref])
            continue
        if not read.take(calls[ref], reply):
            failed.append(calls[ref])
    return failed


def _mark_down(router: Router, vnodes: list) -> None:
    for vnode in vnodes:
        router.mark_down(vnode)


async def _late_repair(read: Any, calls: dict, deadline: float) -> None:
    """On the background loop: the replies that came after a direct read answered, until its
    call deadline, then the repairs its replies call for."""
    waiting = {asyncio.wrap_future(ref.future()): vnode for ref, vnode in calls.items()}
    for future in waiting:
        future.add_done_callback(_retrieve)
    done, _ = await asyncio.wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
    for future in done:
        if future.exception() is None:
            read.take(waiting[future], future.result())
    repairs = read.repairs()
    if repairs:
        read.router.send_repairs(read.table, repairs)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _no_coordinator(failures: list, first_key: Any) -> Unavailable:
    return Unavailable(f"no coordinator answered ({'; '.join(failures)})", key=first_key,
                       needed=1, got=0)


class ClientRoute:
    """Requests coordinated in this process: a Router per event loop, calling vnodes directly.
    Synchronous calls run on one background loop thread shared by the process."""

    _loop: Optional[asyncio.AbstractEventLoop] = None
    _loop_lock = threading.Lock()

    def __init__(self, store: Any):
        self.store = store
        self._routers: dict[int, Router] = {}

    @classmethod
    def background_loop(cls) -> asyncio.AbstractEventLoop:
        with cls._loop_lock:
            if cls._loop is None or not cls._loop.is_running():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="dynamo-ray-client",
                                 daemon=True).start()
                cls._loop = loop
            return cls._loop

    def _router(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> Router:
        loop = loop or asyncio.get_running_loop()
        router = self._routers.get(id(loop))
        if router is None:
            router = self._routers.setdefault(id(loop), Router(
                self.store.config, self.store.ring,
                RayTransport(self.store.name, self.store.config.overload.max_pending_calls)))
        elif self.store.ring.version > router.ring.version:
            router.set_ring(self.store.ring)
        return router

    def forget(self) -> None:
        self._routers.clear()

    def call(self, method: str, args: tuple, first_key: Any = None, via: Optional[str] = None) -> Any:
        if method == "get_many" and len(args) == 4:
            states = self._direct_get_many(*args)
            if states is not None:
                return states
        future = asyncio.run_coroutine_threadsafe(self.acall(method, args, first_key, via),
                                                  self.background_loop())
        try:
            return future.result(timeout=rpc_timeout_s(self.store.config))
        except TimeoutError:
            future.cancel()
            raise Unavailable("the request got no answer within its deadline", key=first_key,
                              needed=1, got=0) from None

    def _direct_get_many(self, table: str, keys: list, r: Optional[int],
                         sloppy: Optional[bool]) -> Optional[list]:
        """A synchronous read run in the calling thread: the vnode calls sent from here and
        waited for with ``ray.wait``, as a hand-written replicated store would, instead of a
        hop to the background loop and back (two thread switches per call). Only a read
        whose replicas are all healthy primaries goes this way, and only while it goes well:
        on a failure, a timeout or a dropped call it returns None and the Router's own
        `get_many` runs the read again (a read changes nothing), having first been told of
        the vnodes that failed. Late replies and read repair go on in the background."""
        loop = self.background_loop()
        router = self._router(loop)
        read = router.direct_read(table, keys, r, sloppy)
        if read is None:
            return None
        call_s = self.store.config.timeouts.request_ms / 1000
        expires_at = time.time() + call_s
        calls: dict = {}
        for vnode, address, groups in read.calls():
            handle = router.transport.handle(address)
            if handle is None:
                return None
            try:
                calls[handle.get.remote(table, groups, expires_at=expires_at)] = vnode
            except Exception:  # a stale handle, or this caller's queue to it is full
                return None
        pending = list(calls)
        deadline = time.monotonic() + call_s
        first = read.r if len(read.jobs) == 1 else 1
        while not read.quorate():
            ready, pending = ray.wait(pending, num_returns=min(first, len(pending)),
                                      timeout=max(0.0, deadline - time.monotonic()))
            first = 1
            if not ready:  # the rest are slow: the Router marks them down and falls back
                loop.call_soon_threadsafe(_mark_down, router, [calls[p] for p in pending])
                return None
            failed = _take(read, calls, ready)
            if failed:
                loop.call_soon_threadsafe(_mark_down, router, failed)
                return None
        if pending:
            late, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
            _take(read, calls, late)
        states = read.answer()
        if read.ring_version > router.ring.version:
            loop.call_soon_threadsafe(router._learn_ring, read.ring_vnode, read.ring_version)
        if self.store.config.read_repair:
            if pending:
                asyncio.run_coroutine_threadsafe(
                    _late_repair(read, {ref: calls[ref] for ref in pending}, deadline), loop)
            else:
                repairs = read.repairs()
                if repairs:
                    loop.call_soon_threadsafe(router.send_repairs, table, repairs)
        return states

    async def acall(self, method: str, args: tuple, first_key: Any = None,
                    via: Optional[str] = None) -> Any:
        try:
            return await getattr(self._router(), method)(*args)
        except DynamoError:
            raise
        except Exception as e:  # a bug or a Ray error the router did not classify
            raise DynamoError(f"client-side coordination failed: {e!r}") from None


class Coalescer:
    """Batches the single-key reads and writes that coroutines issue in one event-loop turn
    into one `get_many`/`put_many` per (kind, table, quorum) group: 16 requests in flight cost
    about one batched call, not 16. One per event loop."""

    def __init__(self, route: Any, via: Optional[str]):
        self.route, self.via = route, via
        self.pending: dict[tuple, list] = {}
        self.scheduled = False

    def submit(self, group: tuple, item: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.setdefault(group, []).append((item, future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self.scheduled = False
        batches, self.pending = self.pending, {}
        for group, entries in batches.items():
            asyncio.ensure_future(self._run(group, entries))

    async def _run(self, group: tuple, entries: list) -> None:
        kind, table, quorum, sloppy = group
        items = [item for item, _ in entries]
        try:
            if kind == "get":
                args = (table, items, quorum, sloppy, True)
                results, failed = await self.route.acall("get_many", args, items[0], self.via)
            else:
                args = (table, items, quorum, sloppy, True, True)
                results, failed = await self.route.acall("put_many", args, items[0][0], self.via)
        except Exception as e:
            for _, future in entries:
                if not future.done():
                    future.set_exception(e)
            return
        for i, (_, future) in enumerate(entries):
            if future.done():
                continue
            if i in failed:
                future.set_exception(failed[i])
            else:
                future.set_result(results[i])
