"""RayTransport: the protocol's calls as Ray actor calls (DESIGN §1).

Role: turn a call to an `Address` into a call of the named actor that lives there, with the
call's deadline enforced here (Ray notices a hung actor only after about a minute), and Ray's
exceptions turned into the seam's typed failures. Handles are looked up by name once and
kept until a call to them fails. Values over `BIG_BLOB_BYTES` travel through the object store
once (`share`) and are fetched where they land (`resolve`). Background work (`launch`) is a
Ray task pinned to this process's Ray node, with a transport of its own.

Must not: block the event loop (calls return futures; nothing here waits).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Awaitable, Callable, Optional

import ray

from . import placement
from ..errors import DynamoError, Overloaded
from ..protocol.transport import (
    COORDINATOR,
    NODE,
    Address,
    CallTimeout,
    OsFiles,
    RemoteError,
    SystemClock,
    Unreachable,
)
from .metrics import RayMetrics

BIG_BLOB_BYTES = 100 * 1024


def actor_name(store: str, to: Address) -> str:
    if to.kind == NODE:
        return placement.node_actor_name(store, to.node)
    if to.kind == COORDINATOR:
        return placement.coordinator_actor_name(store, to.node)
    return placement.vnode_actor_name(store, to.node, to.partition)


def resolve_refs(values: list) -> list:
    """Values passed by reference fetched from the object store, in one call."""
    refs = [v for v in values if isinstance(v, ray.ObjectRef)]
    if not refs:
        return values
    fetched = dict(zip(refs, ray.get(refs)))
    return [fetched[v] if isinstance(v, ray.ObjectRef) else v for v in values]


class RayTransport:
    def __init__(self, store: str, max_pending_calls: int = -1):
        self.store = store
        self.clock = SystemClock()
        self.rng = random.Random()
        self.metrics = RayMetrics()
        self.files = OsFiles()
        self.max_pending_calls = max_pending_calls
        self.unreachable: frozenset = frozenset()
        self._handles: dict[Address, Any] = {}

    def __reduce__(self):
        return (RayTransport, (self.store, self.max_pending_calls))

    # --- calls --------------------------------------------------------------------------------
    def handle(self, to: Address) -> Optional[Any]:
        """The live actor at ``to`` (looked up by name once), or None; not when unreachable."""
        if to.node in self.unreachable:
            return None
        handle = self._handles.get(to)
        if handle is None:
            handle = placement.lookup(actor_name(self.store, to))
            if handle is not None:
                self._handles[to] = handle
        return handle

    def forget(self, to: Address) -> None:
        self._handles.pop(to, None)

    def adopt(self, to: Address, target: Any) -> None:
        self._handles[to] = target

    def set_unreachable(self, nodes: frozenset) -> None:
        self.unreachable = frozenset(nodes)

    def call(self, to: Address, method: str, *args: Any, timeout_s: float,
             **kwargs: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        out = loop.create_future()
        if to.node in self.unreachable:
            out.set_exception(Unreachable(f"{to} is on the other side of a partition"))
            return out
        handle = self.handle(to)
        if handle is None:
            out.set_exception(Unreachable(f"{to} has no live actor"))
            return out
        try:
            ref = getattr(handle, method).remote(*args, **kwargs)
        except ray.exceptions.PendingCallsLimitExceeded:
            out.set_exception(Overloaded(f"{to} has {self.max_pending_calls} calls from this "
                                         "caller queued"))
            return out
        except Exception as e:  # the handle went stale between lookup and call
            self.forget(to)
            out.set_exception(Unreachable(f"{to}: {type(e).__name__}"))
            return out
        reply = asyncio.wrap_future(ref.future(), loop=loop)
        timer = loop.call_later(timeout_s, self._expire, out, to, timeout_s)
        # the callback holds the ObjectRef: released, Ray may never complete its future
        reply.add_done_callback(lambda done, ref=ref: self._settle(out, done, to, timer))
        return out

    def notify(self, to: Address, method: str, *args: Any) -> None:
        handle = self.handle(to)
        if handle is None:
            return
        try:
            getattr(handle, method).remote(*args)  # the reply is never fetched
        except Exception:
            self.forget(to)

    @staticmethod
    def _expire(out: asyncio.Future, to: Address, timeout_s: float) -> None:
        if not out.done():
            out.set_exception(CallTimeout(f"{to} did not answer within {timeout_s:.2f}s"))

    def _settle(self, out: asyncio.Future, reply: asyncio.Future, to: Address, timer) -> None:
        timer.cancel()
        if reply.cancelled():
            if not out.done():
                out.set_exception(Unreachable(f"{to}: the call was cancelled"))
            return
        error = reply.exception()  # retrieved even when the call's deadline came first
        if out.done():
            return
        if error is None:
            out.set_result(reply.result())
        elif isinstance(error, ray.exceptions.RayTaskError):
            cause = error.cause
            out.set_exception(cause if isinstance(cause, DynamoError)
                              else RemoteError(f"{to} raised {cause!r}", cause))
        else:  # the actor died, is restarting, or Ray lost it
            self.forget(to)
            out.set_exception(Unreachable(f"{to}: {type(error).__name__}"))

    # --- values by reference ------------------------------------------------------------------
    def share(self, blob: bytes) -> Any:
        return ray.put(blob) if len(blob) > BIG_BLOB_BYTES else blob

    def resolve(self, values: list) -> list:
        return resolve_refs(values)

    # --- background work ----------------------------------------------------------------------
    def launch(self, work: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future:
        task = ray.remote(_run_work).options(
            num_cpus=0, max_retries=0,
            scheduling_strategy=placement.pinned(placement.current_ray_node()))
        ref = task.remote(self.store, self.unreachable, work, *args)
        return asyncio.wrap_future(ref.future())


def _run_work(store: str, unreachable: frozenset, work: Callable, *args: Any) -> Any:
    """A Ray task running one piece of protocol work on its own transport and event loop."""
    transport = RayTransport(store)
    transport.set_unreachable(unreachable)
    return asyncio.run(work(transport, *args))
