"""The simulated network, and the seam's `Transport` on it.

Role: carry every call of the simulated store between hosts (store nodes and client
processes), with what a real network and real machines do to messages:
- each message (request and reply) takes a delay drawn from the seed: a base plus an
  exponential tail, so messages reorder;
- a message may be lost (``loss``): its call then ends in `CallTimeout`;
- a partition (``sides``) drops every message between hosts on different sides;
- a crashed host answers nothing: a call to it ends in `Unreachable` one delay later (the
  connection is refused), its objects are gone and its tasks are cancelled;
- a slow host serves one call at a time, each taking ``slow_s[host]`` (a sync actor's queue).
A target's method runs when its request arrives (sync methods at once, as one atomic step;
coroutines as a task of the target's host, interleaving at their awaits, as a Ray async actor).

Messages are passed by reference: the protocol treats what it sends and receives as
immutable (bytes, tuples, frozen dataclasses, lists it never changes after sending).

Invariants: every call ends exactly once, by reply, typed failure or its deadline; nothing
here reads a real clock or an unseeded random source.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections import defaultdict
from typing import Any, Awaitable, Callable, Optional

from ..errors import DynamoError, Overloaded
from ..protocol.transport import Address, CallTimeout, NoMetrics, RemoteError, Unreachable


class SimNetwork:
    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random,
                 base_delay_s: float = 0.0005, tail_delay_s: float = 0.001, loss: float = 0.0):
        self.loop = loop
        self.rng = rng
        self.base_delay_s = base_delay_s
        self.tail_delay_s = tail_delay_s
        self.loss = loss
        self.targets: dict[Address, Any] = {}
        self.down: set[str] = set()  # crashed hosts
        self.sides: dict[str, int] = {}  # host -> side of a partition; absent: no partition
        self.slow_s: dict[str, float] = {}
        self._busy_until: dict[Address, float] = {}
        self.tasks: dict[str, set] = defaultdict(set)  # host -> tasks it runs
        self.messages = 0
        self.dropped = 0

    # --- topology and faults --------------------------------------------------------------
    def register(self, address: Address, target: Any) -> None:
        self.targets[address] = target

    def unregister(self, address: Address) -> None:
        self.targets.pop(address, None)
        self._busy_until.pop(address, None)

    def crash(self, host: str) -> None:
        """The host loses power: its objects and tasks are gone; nothing it sent is answered."""
        self.down.add(host)
        for address in [a for a in self.targets if a.node == host]:
            self.unregister(address)
        for task in self.tasks.pop(host, set()):
            task.cancel()

    def revive(self, host: str) -> None:
        self.down.discard(host)

    def partition(self, groups: list[list[str]]) -> None:
        self.sides = {host: i for i, group in enumerate(groups) for host in group}

    def heal(self) -> None:
        self.sides = {}

    def connected(self, a: str, b: str) -> bool:
        side_a, side_b = self.sides.get(a), self.sides.get(b)
        return side_a is None or side_b is None or side_a == side_b

    def run_task(self, host: str, coroutine: Awaitable) -> asyncio.Task:
        task = self.loop.create_task(coroutine)
        tasks = self.tasks[host]
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    # --- messages -------------------------------------------------------------------------
    def _delay(self) -> float:
        return self.base_delay_s + self.rng.expovariate(1 / self.tail_delay_s)

    def _lost(self, a: str, b: str) -> bool:
        if not self.connected(a, b) or (self.loss and self.rng.random() < self.loss):
            self.dropped += 1
            return True
        return False

    def send(self, source: str, to: Address, method: str, args: tuple, kwargs: dict,
             out: asyncio.Future) -> None:
        self.messages += 1
        if self._lost(source, to.node):
            return  # the caller's deadline ends the call
        self.loop.call_later(self._delay(), self._arrive, source, to, method, args, kwargs, out)

    def _reply(self, source: str, to: Address, out: asyncio.Future, result: Any = None,
               error: Optional[BaseException] = None) -> None:
        if self._lost(to.node, source):
            return
        self.loop.call_later(self._delay(), _settle, out, result, error)

    def _arrive(self, source: str, to: Address, method: str, args: tuple, kwargs: dict,
                out: asyncio.Future) -> None:
        target = self.targets.get(to)
        if to.node in self.down or target is None:
            self._reply(source, to, out, error=Unreachable(f"{to} is not running"))
            return
        service_s = self.slow_s.get(to.node, 0.0)
        if service_s:
            start = max(self.loop.time(), self._busy_until.get(to, 0.0))
            self._busy_until[to] = start + service_s
            self.loop.call_at(start + service_s, self._serve, source, to, method, args, kwargs,
                              out)
        else:
            self._serve(source, to, method, args, kwargs, out)

    def _serve(self, source: str, to: Address, method: str, args: tuple, kwargs: dict,
               out: asyncio.Future) -> None:
        target = self.targets.get(to)
        if to.node in self.down or target is None:
            self._reply(source, to, out, error=Unreachable(f"{to} is not running"))
            return
        try:
            result = getattr(target, method)(*args, **kwargs)
        except Exception as e:
            self._reply(source, to, out, error=_remote(to, e))
            return
        if not inspect.isawaitable(result):
            self._reply(source, to, out, result)
            return

        async def run() -> None:
            try:
                value = await result
            except asyncio.CancelledError:
                raise  # the host crashed: no reply
            except Exception as e:
                self._reply(source, to, out, error=_remote(to, e))
            else:
                self._reply(source, to, out, value)

        self.run_task(to.node, run())


def _remote(to: Address, error: Exception) -> Exception:
    if isinstance(error, (DynamoError, Overloaded)):
        return error
    return RemoteError(f"{to} raised {error!r}", error)


def _settle(out: asyncio.Future, result: Any, error: Optional[BaseException]) -> None:
    if out.done():
        return
    if error is not None:
        out.set_exception(error)
    else:
        out.set_result(result)


class SimTransport:
    """One host's end of the simulated network: the seam's `Transport`."""

    def __init__(self, network: SimNetwork, host: str, clock, rng: random.Random, files=None,
                 metrics=None):
        self.network = network
        self.host = host
        self.clock = clock
        self.rng = rng
        self.files = files
        self.metrics = metrics or NoMetrics()
        self.unreachable: frozenset = frozenset()

    def call(self, to: Address, method: str, *args: Any, timeout_s: float,
             **kwargs: Any) -> asyncio.Future:
        loop = self.network.loop
        out = loop.create_future()
        if to.node in self.unreachable:
            out.set_exception(Unreachable(f"{to} is on the other side of a partition"))
            return out
        timer = loop.call_later(timeout_s, _settle, out, None,
                                CallTimeout(f"{to} did not answer within {timeout_s:.3f}s"))
        out.add_done_callback(lambda _: timer.cancel())
        self.network.send(self.host, to, method, args, kwargs, out)
        return out

    def notify(self, to: Address, method: str, *args: Any) -> None:
        if to.node in self.unreachable:
            return
        out = self.network.loop.create_future()
        out.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody waits for it
        self.network.send(self.host, to, method, args, {}, out)

    def share(self, blob: bytes) -> Any:
        return blob

    def resolve(self, values: list) -> list:
        return values

    def launch(self, work: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future:
        return self.network.run_task(self.host, work(self, *args))

    def set_unreachable(self, nodes: frozenset) -> None:
        self.unreachable = frozenset(nodes)

    def forget(self, to: Address) -> None:
        pass

    def adopt(self, to: Address, target: Any) -> None:
        pass
