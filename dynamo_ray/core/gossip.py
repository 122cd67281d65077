"""Gossip: what one node believes about the membership, and how two beliefs merge.

Role (Dynamo §4.8): every node holds a `View` (the newest ring it has seen and a heartbeat per
node) and every ``gossip.interval_s`` exchanges it with a random peer, and with a seed so that
the views cannot drift into separate rings. A heartbeat is (incarnation, counter): a node that
restarts starts a new incarnation, which beats every count of its former one. A node whose
heartbeat has not advanced in a view for ``suspect_after`` intervals is down in that view.

Invariants: merging is commutative and idempotent (newest ring version, greatest heartbeat per
node); a view never goes back to an older ring.
Pure: no Ray import; time is passed in.
"""

from __future__ import annotations

from typing import Mapping, Optional

from .ring import Ring

Heartbeat = tuple  # (incarnation, counter)


class View:
    def __init__(self, me: str, ring: Ring, incarnation: int, now: float):
        self.me = me
        self.ring = ring
        self.heartbeats: dict[str, Heartbeat] = {me: (incarnation, 0)}
        self.advanced_at: dict[str, float] = {me: now}
        self.started_at = now

    def beat(self, now: float) -> None:
        incarnation, counter = self.heartbeats[self.me]
        self.heartbeats[self.me] = (incarnation, counter + 1)
        self.advanced_at[self.me] = now

    def merge(self, ring: Ring, heartbeats: Mapping[str, Heartbeat], now: float) -> Optional[Ring]:
        """Fold a peer's view in; returns the ring if it is newer than ours (now adopted)."""
        for node, beat in heartbeats.items():
            beat = tuple(beat)
            if node != self.me and beat > self.heartbeats.get(node, (-1, -1)):
                self.heartbeats[node] = beat
                self.advanced_at[node] = now
        if ring.version > self.ring.version:
            self.ring = ring
            return ring
        return None

    def adopt(self, ring: Ring) -> bool:
        if ring.version > self.ring.version:
            self.ring = ring
            return True
        return False

    def snapshot(self) -> tuple[Ring, dict]:
        return self.ring, dict(self.heartbeats)

    def up(self, now: float, suspect_after_s: float) -> dict[str, bool]:
        """Each ring node: is its heartbeat fresh in this view? A node never heard of yet is
        given ``suspect_after_s`` from the view's start."""
        return {
            node: now - self.advanced_at.get(node, self.started_at) <= suspect_after_s
            for node in self.ring.nodes
        }
