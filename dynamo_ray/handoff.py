"""Hinted handoff: a fallback vnode returns the writes it kept for an unreachable primary.

Role (Dynamo §4.6, riak_core's "hinted" handoff kind): run as a Ray task, one per node and
round, launched by the fallback's node from its maintenance loop, pinned to that node. It streams the hinted keys to
the intended vnode in batches and tells the fallback to forget each batch only after the target
acknowledged it, so a target that dies mid-delivery costs a retry, never a write.

Invariants:
- a hint is deleted only after its target's `merge` returned (the acknowledgement);
- a key rewritten on the fallback while its batch was in flight is kept for the next round;
- every call has a deadline (`timeouts.request_ms`).
"""

from __future__ import annotations

from typing import Any

import ray

from . import metrics, placement


def deliver_all(store: str, deliveries: list, batch_keys: int, timeout_s: float) -> int:
    """One node's handoff round: `deliver_hints` for each (fallback, hint, target node) in
    turn; a delivery that fails is left for the next round. Returns the keys handed off."""
    delivered = 0
    for fallback, hint, target_node in deliveries:
        try:
            delivered += deliver_hints(store, fallback, hint, target_node, batch_keys, timeout_s)
        except Exception:  # the target died or timed out: the hint stays, retried next round
            continue
    metrics.count("dynamo_hints_delivered_total", delivered)
    return delivered


def deliver_hints(store: str, fallback: Any, hint: tuple, target_node: str, batch_keys: int,
                  timeout_s: float) -> int:
    """Deliver what ``fallback`` holds for ``hint`` = (table, kp, intended partition) to that
    partition's vnode on ``target_node``. Returns the number of keys handed off."""
    table, kp, intended = hint
    target = placement.lookup(placement.vnode_actor_name(store, target_node, intended))
    if target is None:
        return 0
    delivered = 0
    while True:
        batch = ray.get(fallback.hinted_batch.remote(hint, batch_keys), timeout=timeout_s)
        if not batch:
            break
        ray.get(target.merge.remote(table, [(kp, None, batch)]), timeout=timeout_s)  # the ack
        dropped = ray.get(fallback.drop_hinted.remote(hint, batch), timeout=timeout_s)
        delivered += dropped
        if len(batch) < batch_keys or dropped == 0:
            break
    return delivered
