"""Hinted handoff: a fallback vnode returns the writes it kept for an unreachable primary.

Role (Dynamo §4.6, riak_core's "hinted" handoff kind): background work that the fallback's
node launches from its maintenance loop (a Ray task pinned to that node in the runtime). It
streams the hinted keys to the intended vnode in batches and tells the fallback to forget each
batch only after the target acknowledged it, so a target that dies mid-delivery costs a retry,
never a write.

Invariants:
- a hint is deleted only after its target's `merge` returned (the acknowledgement);
- a key rewritten on the fallback while its batch was in flight is kept for the next round;
- every call has a deadline (`timeouts.request_ms`).
"""

from __future__ import annotations

from ..errors import DynamoError
from .transport import Address, CallFailed, Transport, vnode_at


async def deliver_all(transport: Transport, deliveries: list, batch_keys: int,
                      timeout_s: float) -> int:
    """One node's handoff round: `deliver_hints` for each (fallback address, hint, target
    node) in turn; a delivery that fails is left for the next round. Returns the keys
    handed off."""
    delivered = 0
    for fallback, hint, target_node in deliveries:
        try:
            delivered += await deliver_hints(transport, fallback, hint, target_node, batch_keys,
                                             timeout_s)
        except (CallFailed, DynamoError):  # the target died or timed out: retried next round
            continue
    transport.metrics.count("dynamo_hints_delivered_total", delivered)
    return delivered


async def deliver_hints(transport: Transport, fallback: Address, hint: tuple, target_node: str,
                        batch_keys: int, timeout_s: float) -> int:
    """Deliver what ``fallback`` holds for ``hint`` = (table, kp, intended partition) to that
    partition's vnode on ``target_node``. Returns the number of keys handed off."""
    table, kp, intended = hint
    target = vnode_at(target_node, intended)
    delivered = 0
    while True:
        batch = await transport.call(fallback, "hinted_batch", hint, batch_keys,
                                     timeout_s=timeout_s)
        if not batch:
            break
        await transport.call(target, "merge", table, [(kp, None, batch)],
                             timeout_s=timeout_s)  # the acknowledgement
        dropped = await transport.call(fallback, "drop_hinted", hint, batch, timeout_s=timeout_s)
        delivered += dropped
        if len(batch) < batch_keys or dropped == 0:
            break
    return delivered
