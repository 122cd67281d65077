"""An asyncio event loop on virtual time: the simulator's clock.

Role: run coroutines exactly as asyncio does, except that waiting costs nothing: when no
callback is ready, the loop's time jumps to the next timer instead of sleeping. With no real
I/O and callbacks run in the order they were scheduled, a run is a pure function of what the
coroutines do, so a seeded simulation replays exactly.

Invariants: `time()` never goes back; the loop never blocks on the operating system.
Must not: be used with real sockets, threads or subprocesses.
"""

from __future__ import annotations

import asyncio
import selectors

EPOCH_S = 1_800_000_000.0  # the wall clock the simulation starts at (2027-01-15)


class _VirtualSelector(selectors.BaseSelector):
    """A selector with nothing to select: `select(timeout)` advances the virtual clock."""

    def __init__(self, loop: "SimLoop"):
        self._loop = loop
        self._keys: dict = {}

    def register(self, fileobj, events, data=None):
        key = selectors.SelectorKey(fileobj, id(fileobj), events, data)
        self._keys[fileobj] = key
        return key

    def unregister(self, fileobj):
        return self._keys.pop(fileobj)

    def select(self, timeout=None):
        if timeout is None:
            raise RuntimeError("the simulation is stuck: nothing is scheduled and nothing runs")
        if timeout > 0:
            self._loop.advance(timeout)
        return []

    def get_map(self):
        return self._keys

    def close(self):
        self._keys.clear()


class SimLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(selector=_VirtualSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


class SimClock:
    """The seam's `Clock` on a `SimLoop`: wall time is the epoch plus virtual seconds."""

    def __init__(self, loop: SimLoop):
        self.loop = loop

    def time(self) -> float:
        return EPOCH_S + self.loop.time()

    def monotonic(self) -> float:
        return self.loop.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def stall(self, seconds: float) -> None:
        pass  # the network models slow nodes (service time), not a blocked thread
