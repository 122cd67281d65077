"""The faults a seed draws, and how each is done to the simulated store and undone.

Role: during the workload, one fault at a time, each held for a while and then healed:
- ``crash``: a node loses power (memory and unsynced bytes gone) and restarts later;
- ``restart-all``: every node at once (what a durable table must survive);
- ``partition``: the hosts split into two random sides (clients go with one or the other);
- ``isolate``: one node cut off from everyone;
- ``slow``: one node serves each call 50-300 ms late;
- ``skew``: one node stamps its versions 1-10 minutes off;
- ``loss``: 2-10 % of all messages are lost;
- ``join`` / ``leave``: a node joins or leaves (the real membership change), at most once.
Each fault is recorded in the history as an operation ``fault`` (its key the kind), so that
checkers can tell which reads a lost replica may excuse.

Invariants: faults are drawn from the nemesis' own rng; every fault is undone by `heal_all`;
a node is never asked to leave when fewer than N + 1 nodes run.
"""

from __future__ import annotations

import random

FAULTS = ("crash", "restart-all", "partition", "isolate", "slow", "skew", "loss", "join",
          "leave")


class Nemesis:
    def __init__(self, cluster, history, rng: random.Random, clients: int,
                 faults: tuple = FAULTS):
        self.cluster = cluster
        self.clients = clients  # client hosts take sides in partitions too
        self.history = history
        self.rng = rng
        self.faults = [f for f in faults if f in FAULTS]
        self.done: list[str] = []
        self.trace: list[str] = []
        self._crashed: list[str] = []
        self._members_changed: set = set()
        self._skewed = None

    def _note(self, text: str) -> None:
        self.trace.append(f"{self.cluster.clock.monotonic():9.3f}s {text}")

    async def run_until(self, end_s: float, mean_gap_s: float, hold_s: tuple) -> None:
        clock = self.cluster.clock
        while self.faults:
            await clock.sleep(self.rng.expovariate(1 / mean_gap_s))
            if clock.monotonic() >= end_s:
                return
            kind = self.rng.choice(self.faults)
            if kind in self._members_changed or not self._feasible(kind):
                continue
            invoked = self.history.invoke(-1, "fault", "crash" if "crash" in kind
                                          or kind == "restart-all" else kind)
            detail = await self._start(kind)
            self._note(f"{kind} {detail}")
            self.done.append(kind)
            await clock.sleep(self.rng.uniform(*hold_s))
            await self.heal_all()
            self.history.complete(invoked, "ok", value=detail)
            self._note(f"healed {kind}")

    async def _start(self, kind: str) -> str:
        c, rng = self.cluster, self.rng
        running = c.running()
        if kind == "crash":
            victim = rng.choice(running)
            c.crash(victim)
            self._crashed.append(victim)
            return victim
        if kind == "restart-all":
            for node in running:
                c.crash(node)
            await self._restart_crashed(running)
            return ",".join(running)
        if kind in ("partition", "isolate"):
            hosts = sorted({*c.ring.nodes, *(f"client-{i}" for i in range(self.clients))})
            if kind == "isolate":
                lone = rng.choice(running)
                groups = [[lone], [h for h in hosts if h != lone]]
            else:
                shuffled = rng.sample(hosts, len(hosts))
                cut = rng.randint(1, len(hosts) - 1)
                groups = [shuffled[:cut], shuffled[cut:]]
            c.network.partition(groups)
            return "|".join(",".join(sorted(g)) for g in groups)
        if kind == "slow":
            victim = rng.choice(running)
            c.network.slow_s[victim] = rng.uniform(0.05, 0.3)
            return f"{victim} {c.network.slow_s[victim] * 1000:.0f}ms"
        if kind == "skew":
            victim = rng.choice(running)
            skew_ms = rng.choice([-1, 1]) * rng.randint(60_000, 600_000)
            await c.nodes[victim].set_faults(0, skew_ms)
            self._skewed = victim
            return f"{victim} {skew_ms / 1000:+.0f}s"
        if kind == "loss":
            c.network.loss = rng.uniform(0.02, 0.1)
            return f"{c.network.loss * 100:.1f}%"
        if kind == "join":
            self._members_changed.add(kind)
            name = next(f"node-{i}" for i in range(len(c.ring.nodes) + 1, 99)
                        if f"node-{i}" not in c.ring.nodes)
            report = await c.join(name)
            return f"{name} ({report['keys_moved']} keys moved)"
        self._members_changed.add(kind)
        name = rng.choice(running)
        report = await c.leave(name)
        return f"{name} ({report['keys_moved']} keys moved)"

    def _feasible(self, kind: str) -> bool:
        """A node may leave only when every node runs and more than N + 1 do."""
        if kind != "leave":
            return True
        c = self.cluster
        n = max(t.n for t in c.config.tables.values())
        return len(c.running()) == len(c.ring.nodes) > n + 1

    async def _restart_crashed(self, nodes: list[str]) -> None:
        for node in nodes:
            if node not in self.cluster.nodes and node in self.cluster.ring.nodes:
                await self.cluster.restart(node)

    async def heal_all(self) -> None:
        c = self.cluster
        c.network.heal()
        c.network.loss = 0.0
        c.network.slow_s.clear()
        if self._skewed is not None and self._skewed in c.nodes:
            await c.nodes[self._skewed].set_faults(0, 0)
        self._skewed = None
        crashed, self._crashed = self._crashed, []
        await self._restart_crashed(crashed)
