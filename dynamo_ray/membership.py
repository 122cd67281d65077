"""Membership changes: a node joins or leaves while reads and writes go on (DESIGN §2).

Role: carry out one change from the old ring to the new one that `ring.claim` computed, with the
transfer plan `ring.transfer_plan` derived purely from the two rings:

1. create the vnodes that will own moved partitions (a joining node, or new vnodes on the nodes
   that inherit a leaving node's partitions); they are not yet in anyone's ring;
2. stream every planned range from its old replica to its new one in batches, as Ray tasks
   pinned to the source node; the source records every key written meanwhile;
3. commit: push the new ring to every node (which pushes it to its coordinator and vnodes;
   gossip and replies carry it to anyone missed), so requests go to the new owners;
4. wait one request deadline for requests routed by the old ring to finish, then the final
   sync: each source sends the keys written since its stream began;
5. retire: kill the vnodes of partitions that moved, let staying vnodes drop ranges they no
   longer replicate, and for a leaving node deliver its hints and stop it.

A write that reaches a retired vnode fails like any unreachable replica: the coordinator hands
it to a fallback, whose hint is delivered to the partition's current owner. So nothing
acknowledged is lost, with W >= 2 even a write acknowledged by a source just before it retired.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Mapping, Optional

import ray

from . import placement
from .config import StoreConfig
from .errors import DynamoError
from .ring import Ring, Transfer, ranges_dropped, transfer_plan

STREAM_BATCH_KEYS = 2000


def stream_range(store: str, table: str, transfer: Transfer, batch_keys: int,
                 timeout_s: float) -> int:
    """Stream range (table, kp) from the transfer's source vnode to its target; returns the
    number of keys sent. The source keeps recording writes until `final_sync`."""
    source, target = _pair(store, transfer)
    tag = (transfer.target, transfer.target_node)
    total = ray.get(source.start_transfer.remote(table, transfer.kp, tag), timeout=timeout_s)
    sent = 0
    for offset in range(0, total, batch_keys):
        batch = ray.get(source.transfer_batch.remote(table, transfer.kp, tag, offset, batch_keys),
                        timeout=timeout_s)
        if batch:
            ray.get(target.merge.remote(table, [(transfer.kp, None, batch)]), timeout=timeout_s)
            sent += len(batch)
    return sent


def final_sync(store: str, table: str, transfer: Transfer, timeout_s: float) -> int:
    """Send what was written at the source since its stream began; returns the keys sent."""
    source, target = _pair(store, transfer)
    tag = (transfer.target, transfer.target_node)
    written = ray.get(source.finish_transfer.remote(table, transfer.kp, tag), timeout=timeout_s)
    if written:
        ray.get(target.merge.remote(table, [(transfer.kp, None, written)]), timeout=timeout_s)
    return len(written)


def stream_ranges(store: str, work: list, batch_keys: int, timeout_s: float) -> int:
    """`stream_range` for each (transfer, table) in turn: one task per source node."""
    return sum(stream_range(store, table, t, batch_keys, timeout_s) for t, table in work)


def final_syncs(store: str, work: list, timeout_s: float) -> int:
    return sum(final_sync(store, table, t, timeout_s) for t, table in work)


def _pair(store: str, transfer: Transfer) -> tuple[Any, Any]:
    source = placement.lookup(
        placement.vnode_actor_name(store, transfer.source_node, transfer.source))
    target = placement.lookup(
        placement.vnode_actor_name(store, transfer.target_node, transfer.target))
    if source is None or target is None:
        raise DynamoError(f"range {transfer.kp}: vnode {transfer.source} on "
                          f"{transfer.source_node} or {transfer.target} on "
                          f"{transfer.target_node} is not running")
    return source, target


def change(store: str, config: StoreConfig, old: Ring, new: Ring,
           joining: Mapping[str, str], leaving: list[str], spawn_node, progress=None) -> dict:
    """Carry out the change from ``old`` to ``new``. ``joining``: {node: Ray node id} to start;
    ``leaving``: nodes to stop at the end; ``spawn_node(node, ring, host, ray_node)`` starts a
    node actor. Returns a report: partitions moved, transfers, keys moved, seconds."""
    started = time.monotonic()
    timeout_s = config.timeouts.request_ms / 1000
    tables_by_n: dict[int, list[str]] = defaultdict(list)
    for table, tcfg in config.tables.items():
        tables_by_n[tcfg.n].append(table)
    plan = transfer_plan(old, new, tables_by_n)
    moved = [p for p in range(new.partitions) if old.owners[p] != new.owners[p]]

    # 1. the vnodes that will own moved partitions
    for node, ray_node in joining.items():
        spawn_node(node, old, new.partitions_of(node), ray_node)
    gaining: dict[str, list[int]] = defaultdict(list)
    for p in moved:
        if new.owners[p] not in joining:
            gaining[new.owners[p]].append(p)
    _on_nodes(store, {n: ("add_vnodes", (ps,)) for n, ps in gaining.items()}, 120)

    # 2. stream, one task per source node, pinned to its Ray node
    work = [(t, table) for t in plan for table in tables_by_n[t.n]]
    by_source: dict[str, list] = defaultdict(list)
    for t, table in work:
        by_source[t.source_node].append((t, table))
    ray_node_of = _ray_nodes(store, set(by_source))

    def per_source(fn, *args) -> list:
        return [
            ray.remote(fn).options(
                num_cpus=0, max_retries=0, scheduling_strategy=placement.pinned(ray_node_of[node])
            ).remote(store, items, *args)
            for node, items in by_source.items()
        ]

    keys_streamed = _wait_all(per_source(stream_ranges, STREAM_BATCH_KEYS, timeout_s),
                              progress, "streaming ranges")

    # 3. commit the new ring everywhere
    nodes = set(old.nodes) | set(new.nodes)
    _on_nodes(store, {n: ("set_ring", (new,)) for n in nodes}, 60)

    # 4. requests routed by the old ring finish; then the final sync
    time.sleep(timeout_s)
    synced = _wait_all(per_source(final_syncs, timeout_s), None, "final sync")

    # 5. retire what moved, drop what staying vnodes no longer replicate, stop leavers
    retiring: dict[str, list[int]] = defaultdict(list)
    for p in moved:
        if old.owners[p] not in leaving:
            retiring[old.owners[p]].append(p)
    _on_nodes(store, {n: ("retire_vnodes", (ps,)) for n, ps in retiring.items()}, 60)
    drops: dict[tuple, list] = defaultdict(list)
    for n, vnode, kp in ranges_dropped(old, new, tables_by_n):
        drops[(new.owners[vnode], vnode)] += [(table, kp) for table in tables_by_n[n]]
    for (node, vnode), ranges in drops.items():
        _on_nodes(store, {node: ("drop_ranges", (vnode, ranges))}, 60)
    if leaving:
        _on_nodes(store, {n: ("handoff_now", ()) for n in leaving}, 120)
    return {
        "partitions_moved": len(moved),
        "transfers": len(work),
        "keys_streamed": keys_streamed,
        "keys_synced": synced,
        "keys_moved": keys_streamed + synced,
        "seconds": round(time.monotonic() - started, 2),
    }


def _on_nodes(store: str, calls: Mapping[str, tuple], timeout_s: float) -> list:
    refs = []
    for node, (method, args) in calls.items():
        handle = placement.lookup(placement.node_actor_name(store, node))
        if handle is None:
            continue  # a node that is down learns the ring by gossip when it is back
        refs.append(getattr(handle, method).remote(*args))
    return ray.get(refs, timeout=timeout_s)


def _ray_nodes(store: str, nodes: set) -> dict[str, str]:
    found = {}
    for node in nodes:
        handle = placement.lookup(placement.node_actor_name(store, node))
        if handle is None:
            raise DynamoError(f"node {node!r} holds data to move but is not running")
        found[node] = ray.get(handle.describe.remote(), timeout=30)["ray_node"]
    return found


def _wait_all(refs: list, progress: Optional[Any], what: str) -> int:
    total = 0
    bar = progress(len(refs), what, "node") if progress and refs else None
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=600)
        if not done:
            raise DynamoError(f"{what}: {len(pending)} transfers did not finish in 600 s")
        total += ray.get(done[0])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return total
