"""The seam between the protocol and what carries its messages (FoundationDB's INetwork).

Role: the one small interface through which routers, vnodes, nodes, handoff, anti-entropy
and membership changes talk to each other and read the time. Two implementations:
`dynamo_ray.runtime.transport.RayTransport` (named Ray actors, on the network) and
`dynamo_ray.sim.network.SimTransport` (objects in one process, on a simulated network, clock
and disk, driven by a seed).

A call goes to an `Address` with a deadline and ends in exactly one of:
- the reply;
- `Unreachable`: no live target at that address, or the network between is cut;
- `CallTimeout`: no reply before the deadline (the target may still act on the call: callers
  that must not be acted on late pass ``expires_at`` for the target to check);
- `dynamo_ray.errors.Overloaded`: the target's queue for this caller is full (nothing done);
- `RemoteError`: the target raised (``.cause``); a `DynamoError` it raised on purpose (a bad
  request) is raised as itself.

Besides calls, a transport carries what else depends on where the code runs: the `Clock`
(never `time.time()` in protocol code), a seeded `rng`, `share`/`resolve` for values passed
by reference, `launch` for scheduled background work (a Ray task; a simulated task),
`metrics`, and the `Files` of the node's disk.

Must not: import Ray.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any, Awaitable, Callable, NamedTuple, Optional, Protocol

VNODE, NODE, COORDINATOR = "vnode", "node", "coordinator"


class Address(NamedTuple):
    """Where a call goes: a vnode (node, partition), a node, or a node's coordinator."""

    kind: str
    node: str
    partition: int = -1

    def __str__(self) -> str:
        return f"{self.node}/p{self.partition}" if self.kind == VNODE else f"{self.kind}:{self.node}"


def vnode_at(node: str, partition: int) -> Address:
    return Address(VNODE, node, partition)


def node_at(node: str) -> Address:
    return Address(NODE, node)


def coordinator_at(node: str) -> Address:
    return Address(COORDINATOR, node)


class CallFailed(Exception):
    """A call ended without a reply; see the subclasses."""


class Unreachable(CallFailed):
    """No live target at the address, or the network to it is cut."""


class CallTimeout(CallFailed):
    """No reply before the call's deadline."""


class RemoteError(CallFailed):
    """The target raised while serving the call; ``cause`` is what it raised."""

    def __init__(self, message: str, cause: Optional[BaseException] = None):
        super().__init__(message)
        self.cause = cause


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds (what versions are stamped with and expiries compared to)."""

    def monotonic(self) -> float:
        """Seconds that never go back (deadlines, back-offs, heartbeats)."""

    async def sleep(self, seconds: float) -> None: ...

    def stall(self, seconds: float) -> None:
        """Hold the caller's thread (an injected slow machine; a no-op where the network
        models slowness itself)."""


class SystemClock:
    """The machine's clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def stall(self, seconds: float) -> None:
        time.sleep(seconds)


class Metrics(Protocol):
    def count(self, name: str, value: float = 1, **tags: str) -> None: ...

    def observe(self, name: str, value: float, **tags: str) -> None: ...


class NoMetrics:
    def count(self, name: str, value: float = 1, **tags: str) -> None:
        pass

    def observe(self, name: str, value: float, **tags: str) -> None:
        pass


class LogFile(Protocol):
    """An append-only file whose bytes survive a crash once `sync` returned."""

    def append(self, data: bytes) -> None: ...

    def sync(self) -> None: ...

    def read(self) -> bytes: ...

    def truncate(self, size: int) -> None: ...

    def size(self) -> int: ...

    def close(self) -> None: ...


class Files(Protocol):
    """The disk of one node: logs by path (the write-ahead logs). ``segments``: whether it
    also keeps Parquet segments (the machine's disk does; the simulated one does not)."""

    segments: bool

    def open_log(self, path: str) -> LogFile: ...

    def replace_log(self, path: str, data: bytes) -> LogFile:
        """Atomically make ``path`` hold exactly ``data`` (synced), and open it for appends."""

    def remove(self, path: str) -> None: ...


class OsLogFile:
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.path = path
        self._file = open(path, "ab")

    def append(self, data: bytes) -> None:
        self._file.write(data)

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def read(self) -> bytes:
        self._file.flush()
        with open(self.path, "rb") as f:
            return f.read()

    def truncate(self, size: int) -> None:
        self._file.flush()
        self._file.truncate(size)
        self._file.seek(0, os.SEEK_END)
        os.fsync(self._file.fileno())

    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class OsFiles:
    """The machine's own file system."""

    segments = True

    def open_log(self, path: str) -> OsLogFile:
        return OsLogFile(path)

    def replace_log(self, path: str, data: bytes) -> OsLogFile:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        temporary = path + ".new"
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        return OsLogFile(path)

    def remove(self, path: str) -> None:
        if os.path.exists(path):
            os.remove(path)


class Transport(Protocol):
    clock: Clock
    rng: random.Random
    metrics: Metrics

    def call(self, to: Address, method: str, *args: Any, timeout_s: float,
             **kwargs: Any) -> asyncio.Future:
        """Start ``method(*args, **kwargs)`` at ``to``; the future ends as the module says.
        Called from the running event loop."""

    def notify(self, to: Address, method: str, *args: Any) -> None:
        """Send ``method(*args)`` to ``to`` one way. Nothing waits for it, so it has no
        deadline; it is lost if ``to`` is down or cut off, so what it says must also reach its
        target some slower way (a vnode telling its node it has work: the node's periodic
        safety round)."""

    def share(self, blob: bytes) -> Any:
        """``blob`` as it should travel to several targets (by reference when large)."""

    def resolve(self, values: list) -> list:
        """Values that travelled by reference, fetched (others as they are)."""

    def launch(self, work: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future:
        """Run ``await work(transport, *args)`` as scheduled background work near the caller
        (its own Ray task; a task of the simulation). The future ends with its result."""

    def set_unreachable(self, nodes: frozenset) -> None:
        """Fault injection: calls from here to these nodes fail as `Unreachable`."""

    def forget(self, to: Address) -> None:
        """The target failed: look it up afresh next time (it may have restarted)."""

    def adopt(self, to: Address, target: Any) -> None:
        """A target this process just started (what `NodeHost.spawn_vnode` returned): reach
        it directly, before its name is known everywhere."""
