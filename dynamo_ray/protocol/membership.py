"""Membership changes: a node joins or leaves while reads and writes go on (DESIGN §2).

Role: carry out one change from the old ring to the new one that `ring.claim` computed, with the
transfer plan `ring.transfer_plan` derived purely from the two rings:

1. create the vnodes that will own moved partitions (a joining node, or new vnodes on the nodes
   that inherit a leaving node's partitions); they are not yet in anyone's ring;
2. stream every planned range from its old replica to its new one in batches, as background
   work of the source's node (a Ray task pinned to it in the runtime); the source records every
   key written meanwhile, and sends those keys' states once the stream ends (the catch-up), so
   that the new owners hold every write acknowledged before the commit;
3. commit: push the new ring to every node (which pushes it to its coordinator and vnodes;
   gossip and replies carry it to anyone missed), so requests go to the new owners;
4. wait out the requests routed by the old ring (three call deadlines, as long as a write
   may take), then the final sync: each source sends the keys written since the catch-up;
5. retire: kill the vnodes of partitions that moved, let staying vnodes drop ranges they no
   longer replicate, and for a leaving node deliver its hints and stop it.

A write that reaches a retired vnode fails like any unreachable replica: the coordinator hands
it to a fallback, whose hint is delivered to the partition's current owner. So nothing
acknowledged is lost, with W >= 2 even a write acknowledged by a source just before it retired.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Awaitable, Callable, Mapping, Optional

from ..config import StoreConfig
from ..errors import DynamoError
from ..core.ring import Ring, Transfer, ranges_dropped, transfer_plan
from .transport import Transport, node_at, vnode_at

STREAM_BATCH_KEYS = 2000
NODE_WORK_TIMEOUT_S = 600.0
OLD_RING_REQUEST_CALLS = 3  # the call deadlines a request routed by the old ring may spend


def _pair(transfer: Transfer):
    return (vnode_at(transfer.source_node, transfer.source),
            vnode_at(transfer.target_node, transfer.target))


async def stream_range(transport: Transport, table: str, transfer: Transfer, batch_keys: int,
                       timeout_s: float) -> int:
    """Stream range (table, kp) from the transfer's source vnode to its target; returns the
    number of keys sent. The source keeps recording writes until `final_sync`."""
    source, target = _pair(transfer)
    tag = (transfer.target, transfer.target_node)
    total = await transport.call(source, "start_transfer", table, transfer.kp, tag,
                                 timeout_s=timeout_s)
    sent = 0
    for offset in range(0, total, batch_keys):
        batch = await transport.call(source, "transfer_batch", table, transfer.kp, tag, offset,
                                     batch_keys, timeout_s=timeout_s)
        if batch:
            await transport.call(target, "merge", table, [(transfer.kp, None, batch)],
                                 timeout_s=timeout_s)
            sent += len(batch)
    return sent


async def final_sync(transport: Transport, table: str, transfer: Transfer,
                     timeout_s: float, finish: bool = True) -> int:
    """Send what was written at the source since its stream began or its last catch-up, and
    end the transfer unless ``finish`` is false (the catch-up); returns the keys sent."""
    source, target = _pair(transfer)
    tag = (transfer.target, transfer.target_node)
    method = "finish_transfer" if finish else "catch_up_transfer"
    written = await transport.call(source, method, table, transfer.kp, tag, timeout_s=timeout_s)
    if written:
        await transport.call(target, "merge", table, [(transfer.kp, None, written)],
                             timeout_s=timeout_s)
    return len(written)


async def stream_ranges(transport: Transport, work: list, timeout_s: float) -> int:
    """`stream_range` for each (transfer, table) in turn: one piece of work per source node."""
    return sum([await stream_range(transport, table, t, STREAM_BATCH_KEYS, timeout_s)
                for t, table in work])


async def catch_up_syncs(transport: Transport, work: list, timeout_s: float) -> int:
    return sum([await final_sync(transport, table, t, timeout_s, finish=False)
                for t, table in work])


async def final_syncs(transport: Transport, work: list, timeout_s: float) -> int:
    return sum([await final_sync(transport, table, t, timeout_s) for t, table in work])


async def change(transport: Transport, config: StoreConfig, old: Ring, new: Ring,
                 joining: Mapping[str, str], leaving: list[str],
                 spawn_node: Callable[[str, Ring, list, str], Awaitable[None]],
                 progress: Optional[Callable] = None) -> dict:
    """Carry out the change from ``old`` to ``new``. ``joining``: {node: where to place it}
    to start; ``leaving``: nodes to stop at the end; ``spawn_node(node, ring, host, where)``
    starts a node. Returns a report: partitions moved, transfers, keys moved, seconds."""
    clock = transport.clock
    started = clock.monotonic()
    timeout_s = config.timeouts.request_ms / 1000
    tables_by_n: dict[int, list[str]] = defaultdict(list)
    for table, tcfg in config.tables.items():
        tables_by_n[tcfg.n].append(table)
    plan = transfer_plan(old, new, tables_by_n)
    moved = [p for p in range(new.partitions) if old.owners[p] != new.owners[p]]

    async def on_nodes(calls: Mapping[str, tuple], timeout: float) -> list:
        """Call each running node; a node that is down learns the ring by gossip later."""
        futures = [transport.call(node_at(n), method, *args, timeout_s=timeout)
                   for n, (method, args) in calls.items()]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for node, result in zip(calls, results):
            if isinstance(result, DynamoError):
                raise result
            if isinstance(result, Exception) and node in joining:
                raise DynamoError(f"joining node {node!r} failed: {result}")
        return results

    # 1. the vnodes that will own moved partitions
    for node, where in joining.items():
        await spawn_node(node, old, list(new.partitions_of(node)), where)
    gaining: dict[str, list[int]] = defaultdict(list)
    for p in moved:
        if new.owners[p] not in joining:
            gaining[new.owners[p]].append(p)
    await on_nodes({n: ("add_vnodes", (ps,)) for n, ps in gaining.items()}, 120)

    # 2. stream, one piece of work per source node, run by that node
    work = [(t, table) for t in plan for table in tables_by_n[t.n]]
    by_source: dict[str, list] = defaultdict(list)
    for t, table in work:
        by_source[t.source_node].append((t, table))

    async def per_source(method: str, what: str, bar) -> int:
        async def one(node: str, items: list) -> int:
            try:
                count = await transport.call(node_at(node), method, items, timeout_s,
                                             timeout_s=NODE_WORK_TIMEOUT_S)
            except Exception as e:
                raise DynamoError(f"{what} from {node} failed: {e}") from None
            if bar is not None:
                bar.update(1)
            return count
        return sum(await asyncio.gather(*(one(n, items) for n, items in by_source.items())))

    bar = progress(len(by_source), "streaming ranges", "node") if progress and by_source else None
    keys_streamed = await per_source("stream_ranges", "streaming ranges", bar)
    if bar is not None:
        bar.close()
    # what was written while the ranges streamed, before any request reads the new owners
    caught_up = await per_source("catch_up_syncs", "catch-up sync", None)

    # 3. commit the new ring everywhere
    nodes = set(old.nodes) | set(new.nodes)
    await on_nodes({n: ("set_ring", (new,)) for n in sorted(nodes)}, 60)

    # 4. requests routed by the old ring finish (a write may spend three call deadlines);
    # then the final sync
    await clock.sleep(OLD_RING_REQUEST_CALLS * timeout_s)
    synced = caught_up + await per_source("final_syncs", "final sync", None)

    # 5. retire what moved, drop what staying vnodes no longer replicate, stop leavers
    retiring: dict[str, list[int]] = defaultdict(list)
    for p in moved:
        if old.owners[p] not in leaving:
            retiring[old.owners[p]].append(p)
    await on_nodes({n: ("retire_vnodes", (ps,)) for n, ps in retiring.items()}, 60)
    drops: dict[tuple, list] = defaultdict(list)
    for n, vnode, kp in ranges_dropped(old, new, tables_by_n):
        drops[(new.owners[vnode], vnode)] += [(table, kp) for table in tables_by_n[n]]
    for (node, vnode), ranges in drops.items():
        await on_nodes({node: ("drop_ranges", (vnode, ranges))}, 60)
    if leaving:
        await on_nodes({n: ("handoff_now", ()) for n in leaving}, 120)
    return {
        "partitions_moved": len(moved),
        "transfers": len(work),
        "keys_streamed": keys_streamed,
        "keys_synced": synced,
        "keys_moved": keys_streamed + synced,
        "seconds": round(clock.monotonic() - started, 2),
    }
